"""What each runtime opens for one model and recipe, built from the same weights (harness/measure/runtimes.py
measures them):

- litert: the converted `.tflite` (harness/artifacts/cache.py);
- litert-lm: that recipe converted with the transposed KV layout (the only one whose context length LiteRT-LM's
  engine reads, harness/artifacts/bundle.py) and bundled as `.litertlm` with the harness's tokenizer, padded to
  the model's vocabulary (the engine detokenizes every decode step);
- llama.cpp: the model's weights saved as a Hugging Face checkpoint (models/hf_export.py: the user's checkpoint
  as it is, or our seeded random weights under HF names), converted by llama.cpp's own `convert_hf_to_gguf.py`
  and quantized by `llama-quantize` to the nearest type (harness/artifacts/gguf.py).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import sys
from pathlib import Path

import filelock

from harness.artifacts.recipe import Recipe
from harness.common.files import cache_root
from models.spec import ModelSpec

RUNTIMES = ("litert", "litert-lm", "llama.cpp")


class RuntimeUnsupported(Exception):
    """A runtime cannot measure this cell (no counterpart of the recipe, a family its converter refuses, a device
    it does not run on): the cell is skipped with this reason, nothing is stored."""


def runtime_input(runtime: str, spec: ModelSpec, recipe: Recipe, log=sys.stderr) -> Path:
    """The file `runtime` runs for this model and recipe, built (and cached) on first use."""
    if runtime == "litert":
        from harness.artifacts.cache import ensure_artifact

        return ensure_artifact(spec, recipe, log=log).path
    if runtime == "litert-lm":
        return litertlm_bundle(spec, recipe, log)
    if runtime == "llama.cpp":
        return gguf_model(spec, recipe, log)
    raise ValueError(f"unknown runtime {runtime!r}; known: {', '.join(RUNTIMES)}")


def litertlm_bundle(spec: ModelSpec, recipe: Recipe, log=sys.stderr) -> Path:
    """`.litertlm` of the recipe (transposed KV layout), beside its artifact in the cache."""
    from harness.artifacts import bundle, tokenizer
    from harness.artifacts.cache import ensure_artifact

    artifact = ensure_artifact(spec, dataclasses.replace(recipe, kv_layout="transposed"), log=log)
    tok_spec = tokenizer.TokenizerSpec(vocab_size=spec.config().vocab_size)
    tok = tokenizer.ensure_tokenizer(tok_spec)
    out = artifact.path.with_name(f"{artifact.path.stem}-{tokenizer.cache_key(tok_spec)[:12]}.litertlm")
    with filelock.FileLock(f"{out}.lock"):
        if not out.is_file():
            part = out.with_suffix(".litertlm.part")
            bundle.build_litertlm(artifact, tok, part)
            os.replace(part, out)
    return out


def gguf_model(spec: ModelSpec, recipe: Recipe, log=sys.stderr) -> Path:
    """The GGUF nearest the recipe (none/fp16 → F16, int8 → Q8_0, int4 block32 → Q4_0) of the same weights."""
    from harness.artifacts import gguf
    from harness.artifacts.llama_cpp import ensure_llama_cpp

    try:
        gguf.gguf_type(recipe.quant)  # first: a recipe with no counterpart needs no build and no conversion
    except gguf.NoCounterpart as e:
        raise RuntimeUnsupported(f"llama.cpp: {e}") from None
    checkpoint = hf_checkpoint(spec, log)
    try:
        return gguf.ensure_gguf(checkpoint, recipe.quant, spec.config().vocab_size, ensure_llama_cpp("host", log=log),
                                log=log)
    except gguf.ConverterRefused as e:
        raise RuntimeUnsupported(f"llama.cpp's convert_hf_to_gguf.py refused {spec.name}: {e}") from None


def hf_checkpoint(spec: ModelSpec, log=sys.stderr) -> Path:
    """The user's checkpoint folder as it is; else our seeded random weights saved under HF names, cached."""
    if spec.checkpoint_dir is not None:
        return spec.checkpoint_dir
    from models.hf_export import export_hf_checkpoint

    digest = hashlib.sha256(json.dumps(spec.fingerprint(), sort_keys=True).encode()).hexdigest()[:16]
    folder = cache_root() / "hf-export" / f"{spec.name}-{digest}"
    folder.parent.mkdir(parents=True, exist_ok=True)
    with filelock.FileLock(f"{folder}.lock"):
        if not (folder / "config.json").is_file():
            print(f"saving {spec.name}'s seeded weights as a Hugging Face checkpoint for llama.cpp", file=log,
                  flush=True)
            part = folder.with_name(folder.name + ".part")
            export_hf_checkpoint(spec, part)
            os.replace(part, folder)
    return folder
