"""Our reauthored model's weights as a Hugging Face checkpoint (config.json + model.safetensors), so that other
runtimes (llama.cpp's convert_hf_to_gguf.py) run exactly the weights our LiteRT artifact was converted from.

The inverse of the family's checkpoint remap (litert-torch's `ModelLoader` with the family's `TensorNames`), taken
from the loader itself rather than written a second time: the loader is driven with a recording state (each HF
name standing for its own tensor, `_fuse_qkv` recording the three names it fuses) and a stand-in model that keeps
what it would load. Every parameter of ours then names its HF source, and fused q/k/v projections are split the
way `_fuse_qkv` joined them (per KV group when interleaved, else [q; k; v]).
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

import torch
from litert_torch.generative.layers import model_config as cfg
from litert_torch.generative.utilities import loader as loading_utils

from models.checkpoint import expected_tensors
from models.hf_reference import reference_config
from models.spec import ModelSpec
from models.weights import build_model

WEIGHTS_FILE = "model.safetensors"
# The module's mask cache size: build_model needs one, no weight depends on it, and a small one costs nothing.
MASK_LEN = 128
_SAFETENSORS_DTYPES = {"F32": torch.float32, "F16": torch.float16, "BF16": torch.bfloat16, "F64": torch.float64}


class ExportError(ValueError):
    """The family's remap does not give back the checkpoint layout its HF config describes."""


@dataclasses.dataclass(frozen=True)
class _Fused:
    """A fused q/k/v parameter of ours: the HF names it was joined from, and how."""

    attn_config: cfg.AttentionConfig
    names: tuple[str, str, str]


class _RecordingLoader(loading_utils.ModelLoader):
    """The family's loader with `_fuse_qkv` recording what it fuses instead of concatenating tensors."""

    def _fuse_qkv(self, attn_config: cfg.AttentionConfig, q: str, k: str, v: str) -> _Fused:
        return _Fused(attn_config, (q, k, v))


class _Recipient:
    """What ModelLoader.load uses of a model: its config, and load_state_dict (here: keep the mapping)."""

    def __init__(self, config: cfg.ModelConfig):
        self.config = config
        self.mapping: dict[str, str | _Fused] = {}

    def load_state_dict(self, state: dict, strict: bool = True) -> tuple[list, list]:
        self.mapping = dict(state)
        return [], []


def _hf_layout(model: torch.nn.Module, spec: ModelSpec, hf_names: list[str]) -> dict[str, str | _Fused]:
    """Our parameter name → its HF tensor name (or the three it was fused from), as the loader maps them.

    Raises ExportError where the remap leaves an HF tensor unmapped or maps one twice, names a tensor the
    model lacks, or leaves a parameter unset (a tied head shares the embedding's memory: not unset): then no
    checkpoint could round-trip.
    """
    loader = _RecordingLoader("recording", spec.family.tensor_names,
                              custom_loader=lambda _path: {name: name for name in hf_names})
    recipient = _Recipient(model.config)
    try:
        loader.load(recipient, strict=False)
    except KeyError as e:
        raise ExportError(f"{spec.name}: the family's tensor names want {e}, which its HF config lacks") from None
    mapping = recipient.mapping
    sources = [n for v in mapping.values() for n in (v.names if isinstance(v, _Fused) else (v,))]
    unmapped = sorted(set(hf_names) - set(sources))
    if unmapped or len(sources) != len(set(sources)):
        raise ExportError(f"{spec.name}: the family's remap leaves HF tensors {unmapped} unmapped "
                          f"or maps one twice ({len(sources)} mapped, {len(set(sources))} distinct)")
    params = dict(model.named_parameters(remove_duplicate=False))
    mapped = {params[n].data_ptr() for n in mapping if n in params}
    strays = sorted(set(mapping) - set(model.state_dict()))
    unset = sorted(n for n, p in params.items() if n not in mapping and p.data_ptr() not in mapped)
    if strays or unset:
        raise ExportError(f"{spec.name}: the remap names tensors the model lacks ({strays}) or leaves parameters "
                          f"unset ({unset})")
    return mapping


def hf_state_dict(model: torch.nn.Module, spec: ModelSpec) -> dict[str, torch.Tensor]:
    """The model's weights under HF names, in the order and shapes the HF config gives.

    Views of the model's own parameters wherever the layouts agree (no copy); fused q/k/v split back, which
    copies only where the fusion interleaved KV groups. Every tensor is contiguous and none overlaps another,
    as safetensors wants. A tied head is the embedding, stored once (HF does the same).
    """
    shapes = expected_tensors(spec.family, spec.size)
    ours = model.state_dict()  # detached tensors sharing the parameters' storage
    out: dict[str, torch.Tensor] = {}
    for name, source in _hf_layout(model, spec, list(shapes)).items():
        if isinstance(source, _Fused):
            out.update(zip(source.names, split_qkv(ours[name], source.attn_config), strict=True))
        else:
            out[source] = ours[name]
    wrong = [f"{n} {tuple(out[n].shape)} (HF {shape})" for n, shape in shapes.items() if tuple(out[n].shape) != shape]
    if wrong:
        raise ExportError(f"{spec.name}: exported shapes differ from the HF config's: {', '.join(wrong)}")
    return {name: out[name] for name in shapes}


def split_qkv(fused: torch.Tensor, attn: cfg.AttentionConfig) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """q, k, v of a fused projection weight [rows, in] or bias [rows]: the inverse of ModelLoader._fuse_qkv.

    Interleaved: rows are KV group by KV group, each its q heads, then its k head, then its v head. Otherwise
    [q; k; v] whole, split by views.
    """
    q_rows, kv_rows = attn.num_heads * attn.head_dim, attn.num_query_groups * attn.head_dim
    if not attn.qkv_fused_interleaved:
        return tuple(torch.split(fused, [q_rows, kv_rows, kv_rows]))
    groups = attn.num_query_groups
    per_group = fused.reshape(groups, -1, *fused.shape[1:])
    q, k, v = torch.split(per_group, [q_rows // groups, attn.head_dim, attn.head_dim], dim=1)
    return tuple(t.reshape(-1, *fused.shape[1:]).contiguous() for t in (q, k, v))


def checkpoint_dtypes(checkpoint_dir: Path) -> dict[str, torch.dtype]:
    """Name → dtype of the checkpoint's float tensors, from its safetensors headers (others, e.g. fp8, are left
    out: our module holds them as fp32, and so does the export)."""
    from safetensors import safe_open

    dtypes = {}
    for path in sorted(Path(checkpoint_dir).glob("*.safetensors")):
        with safe_open(path, framework="pt") as f:
            for name in f.keys():  # noqa: SIM118 (safe_open is not a mapping)
                if (dtype := _SAFETENSORS_DTYPES.get(f.get_slice(name).get_dtype())) is not None:
                    dtypes[name] = dtype
    return dtypes


def hf_config(spec: ModelSpec):
    """The family's transformers config, naming its model class as `save_pretrained` of a model would:
    convert_hf_to_gguf.py picks its converter by `architectures[0]`."""
    from transformers.models.auto.modeling_auto import MODEL_FOR_CAUSAL_LM_MAPPING_NAMES

    config = reference_config(spec.family, spec.size)
    config.architectures = [MODEL_FOR_CAUSAL_LM_MAPPING_NAMES[config.model_type]]
    return config


def export_hf_checkpoint(spec: ModelSpec, out: Path, kv_len: int = MASK_LEN) -> Path:
    """The spec's weights (its checkpoint's, or the seeded random ones every process builds alike) as an HF
    checkpoint folder: config.json from the family's config dict and one model.safetensors. Returns `out`.

    From a user checkpoint, each tensor keeps the checkpoint's dtype (our module computes in fp32; a bf16
    checkpoint widens exactly and narrows back exactly), so the export holds the checkpoint's values, bit for bit.
    Held besides the model: the q/k/v copies where KV groups interleave, and from a checkpoint of narrower dtype
    the narrowed tensors; safetensors writes straight from the tensors' memory (full TinyLlama, fp32: peak RSS
    5.6 GiB for a 4.4 GB file, 23 s on 2 cores).
    """
    from safetensors.torch import save_file

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    others = sorted(p.name for p in out.glob("*.safetensors") if p.name != WEIGHTS_FILE)
    if others:  # a loader reads every *.safetensors of a folder as one checkpoint
        raise FileExistsError(f"{out} holds other safetensors files ({', '.join(others)}); export to a new folder")
    tensors = hf_state_dict(build_model(spec, kv_len), spec)
    if spec.checkpoint_dir is not None:
        dtypes = checkpoint_dtypes(spec.checkpoint_dir)
        tensors = {name: t.to(dtypes.get(name, t.dtype)) for name, t in tensors.items()}
    hf_config(spec).save_pretrained(out)
    partial = out / f"{WEIGHTS_FILE}.partial"  # not *.safetensors: never read as half a checkpoint
    save_file(tensors, partial, metadata={"format": "pt"})
    os.replace(partial, out / WEIGHTS_FILE)
    return out
