"""What a model is to the harness: a family (architecture + HF weight names) at a size, with weights.

A family is one small file (see families/tinyllama.py) exporting a `Family`; registry.py lists them. This file
holds the descriptions only: the sizes, the config mapping's shared part, the fingerprint that keys the artifact
cache, and the FLOP profile. Building the torch module and putting weights in it is weights.py's.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
from collections.abc import Callable
from pathlib import Path

import torch
from litert_torch.generative.layers import model_config as cfg
from litert_torch.generative.utilities import loader as loading_utils
from litert_torch.generative.utilities.model_builder import DecoderOnlyModel

SIZES = ("tiny", "full")
DEFAULT_SEED = 1234


@dataclasses.dataclass(frozen=True)
class Family:
    """An architecture, described the way its Hugging Face checkpoint describes itself.

    `hf_full` is the published config.json (the fields the architecture depends on); `hf_tiny` overrides the
    dimensions for a CI-sized model of the same architecture. `to_config` maps either to litert-torch's
    ModelConfig, so both sizes go through the same mapping, and the `transformers` reference for the
    reauthoring check is built from the same dict (models/hf_reference.py).
    """

    name: str
    source: str  # the HF checkpoint the full config mirrors
    hf_full: dict
    hf_tiny: dict
    to_config: Callable[[dict], cfg.ModelConfig]
    tensor_names: loading_utils.ModelLoader.TensorNames  # HF checkpoint layout → litert-torch layers
    model_class: type[torch.nn.Module] = DecoderOnlyModel
    atol: float = 1e-4  # reauthored vs transformers logits (fp32); a looser bound says why in the family file

    def hf_config(self, size: str) -> dict:
        if size not in SIZES:
            raise ValueError(f"unknown size {size!r}; sizes: {', '.join(SIZES)}")
        return dict(self.hf_full) if size == "full" else {**self.hf_full, **self.hf_tiny}

    def config(self, size: str) -> cfg.ModelConfig:
        return self.to_config(self.hf_config(size))


def decoder_config(hf: dict, blocks, final_norm: cfg.NormalizationConfig, **extra) -> cfg.ModelConfig:
    """litert-torch's ModelConfig from the config.json fields every family names alike; `extra` holds the
    family's own (embedding scale, tied head, head bias, RoPE builder)."""
    return cfg.ModelConfig(
        vocab_size=hf["vocab_size"],
        num_layers=hf["num_hidden_layers"],
        max_seq_len=hf["max_position_embeddings"],
        embedding_dim=hf["hidden_size"],
        block_configs=blocks,
        final_norm_config=final_norm,
        **extra,
    )


@dataclasses.dataclass(frozen=True)
class ModelSpec:
    family: Family
    size: str = "tiny"
    checkpoint_dir: Path | None = None  # local HF safetensors checkpoint; None → seeded random weights
    seed: int = DEFAULT_SEED

    @property
    def name(self) -> str:
        return f"{self.family.name}-{self.size}"

    def config(self) -> cfg.ModelConfig:
        return self.family.config(self.size)

    def fingerprint(self) -> dict:
        """Everything about the model that changes a converted file's bytes (for the artifact cache)."""
        return {
            "family": self.family.name,
            "size": self.size,
            "config": _config_digest(self.config()),
            "weights": _checkpoint_digest(self.checkpoint_dir) if self.checkpoint_dir else f"seed:{self.seed}/init2",
        }


def _config_digest(config: cfg.ModelConfig) -> str:
    # Not repr(config): it holds functions (e.g. build_rope), whose repr carries a per-process address.
    return hashlib.sha256(json.dumps(_stable(config), sort_keys=True).encode()).hexdigest()[:16]


def _stable(value):
    """A JSON-able form of a config that is the same in every process."""
    if dataclasses.is_dataclass(value):
        return {f.name: _stable(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, list | tuple):
        return [_stable(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _stable(v) for k, v in value.items()}
    if isinstance(value, functools.partial):
        return {"func": _stable(value.func), "args": _stable(value.args), "keywords": _stable(value.keywords)}
    if callable(value) and hasattr(value, "__qualname__"):
        return f"{value.__module__}.{value.__qualname__}"
    if isinstance(value, str | int | float | bool) or value is None:
        return value
    return repr(value)  # enums and other plain values


def _checkpoint_digest(ckpt: Path) -> str:
    """Names, sizes and mtimes of the checkpoint's files: cheap, and changes whenever the weights do."""
    files = sorted(p for p in Path(ckpt).iterdir() if p.is_file())
    listing = [(p.name, p.stat().st_size, p.stat().st_mtime_ns) for p in files]
    return hashlib.sha256(json.dumps(listing).encode()).hexdigest()[:16]


def compute_profile(config: cfg.ModelConfig, prefill_len: int, kv_len: int) -> dict:
    """Parameter and FLOP counts of one prefill and one decode step, for roofline figures.

    The export has static shapes: attention runs over the whole KV buffer (kv_len) whatever the position,
    and prefill emits no logits, so the LM head runs only in decode.
    """
    layer_params = attention_flops_per_pos = 0
    for i in range(config.num_layers):
        block = config.block_config(i)
        attn, ff = block.attn_config, block.ff_config
        q_dim, kv_dim = attn.num_heads * attn.head_dim, attn.num_query_groups * attn.head_dim
        mlp_mats = 3 if ff.type == cfg.FeedForwardType.GATED else 2
        layer_params += 2 * config.embedding_dim * q_dim + 2 * config.embedding_dim * kv_dim
        layer_params += mlp_mats * config.embedding_dim * ff.intermediate_size
        attention_flops_per_pos += 4 * kv_len * q_dim  # QKᵀ and (softmax)·V over the KV buffer
    head_params = config.embedding_dim * config.vocab_size
    return {
        "matmul_params": layer_params + head_params,
        "prefill_flops": prefill_len * (2 * layer_params + attention_flops_per_pos),
        "decode_flops_per_token": 2 * (layer_params + head_params) + attention_flops_per_pos,
    }
