"""The `transformers` model a family is reauthored from, and checks of a checkpoint against it.

The reference is built offline from the family's HF config dict (models/spec.py Family.hf_config), so the
reauthoring check needs no download: random weights, saved as a local safetensors checkpoint, read back
through the family's TensorNames remap. The same config tells which tensors a checkpoint must hold and their
shapes, which lets a bad checkpoint fail with the tensor's name rather than deep inside the loader.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors import safe_open

from models.spec import Family, ModelSpec


class CheckpointError(ValueError):
    """A checkpoint directory that does not fit the model it is loaded into."""


def reference_config(family: Family, size: str):
    from transformers import AutoConfig

    hf = family.hf_config(size)
    return AutoConfig.for_model(hf["model_type"], **{k: v for k, v in hf.items() if k != "model_type"})


def build_reference(family: Family, size: str, seed: int) -> torch.nn.Module:
    """The transformers model with seeded random weights, every tensor distinct.

    HF initializes norms to exactly 1 (or 0 for Gemma's 1+w norms) and biases to 0, so a remap that swapped
    two norms or dropped a bias would still agree. Every tensor gets seeded noise on top.
    """
    from transformers import AutoModelForCausalLM

    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_config(reference_config(family, size), attn_implementation="eager")
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for _, param in sorted(model.named_parameters()):
            scale = 0.02 if param.dim() >= 2 else 0.1
            param.add_(torch.randn(param.shape, generator=gen) * scale)
    return model.eval()


def load_reference(checkpoint_dir: Path) -> torch.nn.Module:
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM.from_pretrained(checkpoint_dir, attn_implementation="eager",
                                                dtype=torch.float32).eval()


def save_reference(family: Family, size: str, seed: int, out: Path) -> Path:
    build_reference(family, size, seed).save_pretrained(out, safe_serialization=True)
    return out


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
