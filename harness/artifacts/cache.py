"""Converted artifacts: PyTorch model → one .tflite with `prefill` and `decode` signatures, cached by content.

The cache key covers everything that changes the bytes (model spec and weights source, quantization recipe,
lengths, conversion tool versions), so a second run with the same inputs converts nothing. Conversion runs in
a child process (harness/artifacts/convert_worker.py): it needs 13+ GiB at full size and leaves PyTorch's
threads spinning, neither of which should stay in the process that then measures.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import resource
import subprocess
import sys
import time
from importlib import metadata
from pathlib import Path

import filelock

from harness.artifacts.recipe import Recipe
from harness.common.files import cache_root, sha256_file
from models.spec import ModelSpec, compute_profile

# Bump when harness/artifacts/convert_worker.py changes what it writes.
CONVERTER_REVISION = 1
_TOOLS = ("torch", "litert-torch", "ai-edge-litert", "ai-edge-quantizer", "litert-converter")



@dataclasses.dataclass(frozen=True)
class Artifact:
    path: Path
    meta: dict

    @property
    def sha256(self) -> str:
        return self.meta["sha256"]


def cache_key(spec: ModelSpec, recipe: Recipe) -> tuple[str, dict]:
    inputs = {
        "model": spec.fingerprint(),
        "recipe": _recipe_inputs(recipe),
        "lightweight": uses_lightweight_conversion(spec, recipe),
        "tools": {name: metadata.version(name) for name in _TOOLS},
        "converter_revision": CONVERTER_REVISION,
    }
    digest = hashlib.sha256(json.dumps(inputs, sort_keys=True).encode()).hexdigest()[:16]
    return digest, inputs


def _recipe_inputs(recipe: Recipe) -> dict:
    # The default layout is left out of the key, so artifacts cached before layouts existed keep their keys.
    fields = dataclasses.asdict(recipe)
    if recipe.kv_layout == "default":
        del fields["kv_layout"]
    return fields


def uses_lightweight_conversion(spec: ModelSpec, recipe: Recipe) -> bool:
    # Full-size quantized conversion in one step peaks above 20 GiB; the lightweight path stays near 13 GiB.
    return spec.size == "full" and recipe.quant != "none"


def ensure_artifact(spec: ModelSpec, recipe: Recipe, *, log=sys.stderr) -> Artifact:
    """The cached artifact for (spec, recipe), converting it first if the cache lacks it."""
    if spec.checkpoint_dir is not None:  # here, not in the conversion child: the user sees the tensor's name
        from models.checkpoint import check_checkpoint

        check_checkpoint(spec)
    key, inputs = cache_key(spec, recipe)
    layout = "" if recipe.kv_layout == "default" else f"-{recipe.kv_layout}"
    folder = (cache_root() / "artifacts"
              / f"{spec.name}-{recipe.quant}-p{recipe.prefill_len}-kv{recipe.kv_len}{layout}-{key}")
    folder.mkdir(parents=True, exist_ok=True)
    # Processes that want the same artifact at once (pytest-xdist workers, one per device) convert it once.
    with filelock.FileLock(folder / "convert.lock"):
        return _load_or_convert(spec, recipe, key, inputs, folder, log)


def _load_or_convert(spec: ModelSpec, recipe: Recipe, key: str, inputs: dict, folder: Path, log) -> Artifact:
    model_path, meta_path = folder / "model.tflite", folder / "meta.json"
    if model_path.is_file() and meta_path.is_file():
        meta = json.loads(meta_path.read_text())
        if "compute" not in meta:  # cached by a harness before roofline figures: add them, bytes unchanged
            meta["compute"] = compute_profile(spec.config(), recipe.prefill_len, recipe.kv_len)
            meta_path.write_text(json.dumps(meta, indent=2))
        return Artifact(model_path, meta)

    partial = folder / "model.tflite.partial"
    job = {
        "family": spec.family.name,
        "size": spec.size,
        "checkpoint_dir": str(spec.checkpoint_dir) if spec.checkpoint_dir else None,
        "seed": spec.seed,
        "recipe": dataclasses.asdict(recipe),
        "lightweight": inputs["lightweight"],
        "out": str(partial),
    }
    print(f"converting {spec.name} quant={recipe.quant} prefill={recipe.prefill_len} kv={recipe.kv_len} ...",
          file=log, flush=True)
    start = time.monotonic()
    proc = subprocess.run([sys.executable, "-m", "harness.artifacts.convert_worker", json.dumps(job)],
                          stdout=log, stderr=subprocess.STDOUT)
    seconds = time.monotonic() - start
    if proc.returncode != 0 or not partial.is_file():
        partial.unlink(missing_ok=True)
        raise RuntimeError(f"conversion of {spec.name} ({recipe.quant}) failed with exit code {proc.returncode}; "
                           "its output is above")
    meta = {
        "key": key,
        "inputs": inputs,
        "model": spec.name,
        "quant": recipe.quant,
        "prefill_len": recipe.prefill_len,
        "kv_len": recipe.kv_len,
        "kv_layout": recipe.kv_layout,
        "bytes": partial.stat().st_size,
        "sha256": sha256_file(partial),
        "convert_seconds": round(seconds, 2),
        # ru_maxrss of waited-for children: the largest child so far, i.e. this conversion unless an
        # earlier child of this process was larger.
        "convert_peak_rss_mb": round(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024, 1),
        "compute": compute_profile(spec.config(), recipe.prefill_len, recipe.kv_len),
    }
    meta_path.write_text(json.dumps(meta, indent=2))
    partial.rename(model_path)
    print(f"converted {spec.name} {recipe.quant} in {seconds:.1f} s → {model_path} "
          f"({meta['bytes'] / 2**20:.1f} MiB)", file=log, flush=True)
    return Artifact(model_path, meta)
