"""Checks of a local HF checkpoint directory against the model it is loaded into.

The family's `transformers` reference (models/hf_reference.py) tells which tensors a checkpoint must hold and
their shapes; the safetensors headers tell what it holds. A bad checkpoint then fails with the tensor's name
rather than deep inside the loader.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors import safe_open

from models.hf_reference import reference_config
from models.spec import Family, ModelSpec


class CheckpointError(ValueError):
    """A checkpoint directory that does not fit the model it is loaded into."""


def expected_tensors(family: Family, size: str) -> dict[str, tuple[int, ...]]:
    """Name → shape of every tensor the checkpoint must hold (tied heads are stored once, as the embedding)."""
    from transformers import AutoModelForCausalLM

    config = reference_config(family, size)
    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(config)
    tied = getattr(config, "tie_word_embeddings", False)
    return {name: tuple(t.shape) for name, t in model.state_dict().items()
            if not (tied and name == "lm_head.weight")}


def checkpoint_shapes(checkpoint_dir: Path) -> dict[str, tuple[int, ...]]:
    """Name → shape of every tensor in the directory's safetensors files, read from their headers only."""
    shapes = {}
    for path in sorted(Path(checkpoint_dir).glob("*.safetensors")):
        try:
            with safe_open(path, framework="pt") as f:
                for name in f.keys():  # noqa: SIM118 (safe_open is not a mapping)
                    shapes[name] = tuple(f.get_slice(name).get_shape())
        except Exception as e:  # safetensors raises its own error types for a corrupt header
            raise CheckpointError(f"cannot read {str(path)!r} as safetensors: {e}") from None
    return shapes


def check_checkpoint(spec: ModelSpec) -> None:
    """Raise CheckpointError naming the first missing or misshaped tensor of spec.checkpoint_dir."""
    ckpt = Path(spec.checkpoint_dir)
    if not ckpt.is_dir() or not any(ckpt.glob("*.safetensors")):
        raise CheckpointError(f"checkpoint dir {str(ckpt)!r} holds no *.safetensors files (a local HF checkpoint)")
    have, want = checkpoint_shapes(ckpt), expected_tensors(spec.family, spec.size)
    hint = _size_hint(ckpt, spec)
    for name, shape in want.items():
        if name not in have:
            raise CheckpointError(f"checkpoint {str(ckpt)!r} lacks tensor {name!r} (expected shape {list(shape)} "
                                  f"for {spec.name}){hint}")
        if have[name] != shape:
            raise CheckpointError(f"checkpoint {str(ckpt)!r}: tensor {name!r} has shape {list(have[name])}, "
                                  f"expected {list(shape)} for {spec.name}{hint}")


def _size_hint(ckpt: Path, spec: ModelSpec) -> str:
    """When the checkpoint's own config.json describes other dimensions, say which."""
    try:
        theirs = json.loads((ckpt / "config.json").read_text())
    except (OSError, ValueError):
        return ""
    ours = spec.family.hf_config(spec.size)
    differ = [f"{k}={theirs[k]} (ours {ours[k]})" for k in ("model_type", "hidden_size", "num_hidden_layers",
                                                             "vocab_size") if k in theirs and theirs[k] != ours.get(k)]
    return f"; its config.json differs: {', '.join(differ)}" if differ else ""
