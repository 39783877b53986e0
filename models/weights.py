"""The reauthored torch module with weights in it: a local HF checkpoint read through the family's tensor-name
remap (checked first, models/checkpoint.py), or seeded random weights that every process rebuilds alike.
"""

from __future__ import annotations

import torch
from litert_torch.generative.layers import normalization
from litert_torch.generative.utilities import loader as loading_utils

from models.checkpoint import check_checkpoint  # imports transformers only when a checkpoint is checked
from models.spec import ModelSpec


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
    check_checkpoint(spec)  # names the missing or misshaped tensor, which the loader would not
    loader = loading_utils.ModelLoader(str(spec.checkpoint_dir), spec.family.tensor_names)
    loader.load(model, strict=not spec.config().lm_head_share_weight_with_embedding)


def init_random(model: torch.nn.Module, seed: int) -> None:
    """HF-style init (matrices and biases ~ N(0, 0.02), norms at their defaults), reproducible from the seed.

    Every parameter that torch initializes from the global RNG (linear biases) is set here: the conversion
    child process must rebuild the same weights as the process that checks it.
    """
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, param in sorted(model.named_parameters()):
            if param.dim() >= 2 or name.endswith(".bias") and "norm" not in name:
                param.copy_(torch.randn(param.shape, generator=gen) * 0.02)
        for module in model.modules():
            # litert-torch allocates LayerNorm/GroupNorm parameters with torch.empty (it expects a checkpoint):
            # left alone, random-weight models read uninitialized memory (Phi-2 gave NaN logits).
            if isinstance(module, normalization.LayerNorm | normalization.GroupNorm):
                module.weight.fill_(1.0)
                if module.bias is not None:
                    module.bias.zero_()
