"""The `transformers` model a family is reauthored from.

The reference is built offline from the family's HF config dict (models/spec.py Family.hf_config), so the
reauthoring check needs no download: random weights, saved as a local safetensors checkpoint, read back
through the family's TensorNames remap (models/weights.py). The same config tells which tensors a checkpoint
must hold (models/checkpoint.py). `transformers` is imported inside the functions: only when a reference or
a checkpoint is used.
"""

from __future__ import annotations

from pathlib import Path

import torch

from models.spec import Family


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
