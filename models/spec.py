"""What a model is to the harness: a family (architecture + HF weight names) at a size, with weights.

A family is one small file (see tinyllama.py) exporting a `Family`; registry.py lists them.
"""

from __future__ import annotations

import dataclasses
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
    name: str
    source: str  # where the full config comes from (the HF checkpoint it mirrors)
    full: Callable[[], cfg.ModelConfig]
    tiny: Callable[[], cfg.ModelConfig]  # same architecture, small dims, for CI
    tensor_names: loading_utils.ModelLoader.TensorNames  # HF checkpoint layout → litert-torch layers
    model_class: type[torch.nn.Module] = DecoderOnlyModel

    def config(self, size: str) -> cfg.ModelConfig:
        if size not in SIZES:
            raise ValueError(f"unknown size {size!r}; sizes: {', '.join(SIZES)}")
        return self.full() if size == "full" else self.tiny()


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
            "weights": _checkpoint_digest(self.checkpoint_dir) if self.checkpoint_dir else f"seed:{self.seed}",
        }


def build_model(spec: ModelSpec, kv_len: int) -> torch.nn.Module:
    """The reauthored torch module with the spec's weights, in eval mode, mask cache sized for kv_len."""
    config = spec.config()
    if kv_len > config.max_seq_len:
        raise ValueError(f"kv length {kv_len} exceeds {spec.name}'s max_seq_len {config.max_seq_len}")
    model = spec.family.model_class(config, mask_cache_size=kv_len)
    if spec.checkpoint_dir is not None:
        load_checkpoint(model, spec)
    else:
        init_random(model, spec.seed)
    return model.eval()


def load_checkpoint(model: torch.nn.Module, spec: ModelSpec) -> None:
    ckpt = Path(spec.checkpoint_dir)
    if not ckpt.is_dir() or not any(ckpt.glob("*.safetensors")):
        raise ValueError(f"checkpoint dir {str(ckpt)!r} holds no *.safetensors files (a local HF checkpoint)")
    loader = loading_utils.ModelLoader(str(ckpt), spec.family.tensor_names)
    loader.load(model, strict=not spec.config().lm_head_share_weight_with_embedding)


def init_random(model: torch.nn.Module, seed: int) -> None:
    """HF-style init (matrices ~ N(0, 0.02), norms at their defaults), reproducible from the seed."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for _, param in sorted(model.named_parameters()):
            if param.dim() >= 2:
                param.copy_(torch.randn(param.shape, generator=gen) * 0.02)


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
