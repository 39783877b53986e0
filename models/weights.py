"""The reauthored torch module with weights in it: a local HF checkpoint read through the family's tensor-name
remap (checked first, models/checkpoint.py), or seeded random weights that every process rebuilds alike.
"""

from __future__ import annotations

from pathlib import Path

import torch
from litert_torch.generative.layers import normalization
from litert_torch.generative.utilities import loader as loading_utils

from models.checkpoint import check_checkpoint  # imports transformers only when a checkpoint is checked
from models.spec import ModelSpec
from models.weights_file import move_weights_to_file, skip_random_init


def build_model(spec: ModelSpec, kv_len: int, weights_folder: Path | None = None) -> torch.nn.Module:
    """The reauthored torch module with the spec's weights, in eval mode, mask cache sized for kv_len.

    With `weights_folder`, the large weights live in a file there, mapped shared, rather than in anonymous memory
    (models/weights_file.py): what the conversion child asks for, so that full-size models convert in 24 GiB.
    """
    config = spec.config()
    if kv_len > config.max_seq_len:
        raise ValueError(f"kv length {kv_len} exceeds {spec.name}'s max_seq_len {config.max_seq_len}")
    # init_random overwrites every parameter torch initializes at random: skipping that init saves half a minute
    # per billion parameters and leaves the pages untouched until the weights are written. A checkpoint may
    # leave parameters out (strict=False), so with one torch's init stays.
    with skip_random_init(spec.checkpoint_dir is None):
        model = spec.family.model_class(config, mask_cache_size=kv_len)
    if spec.checkpoint_dir is not None:
        load_checkpoint(model, spec)
        if weights_folder is not None:
            move_weights_to_file(model, weights_folder)
    else:
        if weights_folder is not None:  # map first, then write the random values straight into the file's pages
            move_weights_to_file(model, weights_folder, keep_values=False)
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
                # torch.randn(shape, generator=gen) * 0.02, drawn in place: the same values (randn is normal_ on
                # a new tensor) without a temporary the size of the largest matrix (Gemma's embedding: 2 GB).
                param.normal_(generator=gen).mul_(0.02)
        for module in model.modules():
            # litert-torch allocates LayerNorm/GroupNorm parameters with torch.empty (it expects a checkpoint):
            # left alone, random-weight models read uninitialized memory (Phi-2 gave NaN logits).
            if isinstance(module, normalization.LayerNorm | normalization.GroupNorm):
                module.weight.fill_(1.0)
                if module.bias is not None:
                    module.bias.zero_()
