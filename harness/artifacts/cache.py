"""Converted artifacts: PyTorch model → one .tflite with `prefill` and `decode` signatures, cached by content.

The cache key covers everything that changes the bytes (model spec and weights source, quantization recipe,
lengths, conversion tool versions), so a second run with the same inputs converts nothing. A model is exported
once: its float artifact is the root of its recipes, each quantized from that file (`quantized_from_float`),
the quantizer's child reading the float file from disk. Conversion runs in
a child process (harness/artifacts/convert_worker.py): it needs 13+ GiB at full size and leaves PyTorch's
threads spinning, neither of which should stay in the process that then measures.
"""

from __future__ import annotations

import collections
import dataclasses
import hashlib
import json
import os
import re
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
RECIPES_FILE = "recipes.json"  # beside a float artifact: ai-edge-quantizer's recipe per quantization
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
    if quantized_from_float(spec, recipe):  # another way to the bytes: a key of its own
        inputs["quantized_from_float"] = True
    digest = hashlib.sha256(json.dumps(inputs, sort_keys=True).encode()).hexdigest()[:16]
    return digest, inputs


def _recipe_inputs(recipe: Recipe) -> dict:
    # The default layout is left out of the key, so artifacts cached before layouts existed keep their keys.
    fields = dataclasses.asdict(recipe)
    if recipe.kv_layout == "default":
        del fields["kv_layout"]
    return fields


def uses_lightweight_conversion(spec: ModelSpec, recipe: Recipe) -> bool:
    # Lightweight lowering points the MLIR constants at the torch weights instead of copying them, which is what
    # lets full-size models convert in 24 GiB (README, "Conversion memory"). Its float flatbuffer differs from the
    # dense one, so tiny models, whose bytes tests compare with earlier runs, keep the dense path.
    return spec.size == "full"


def quantized_from_float(spec: ModelSpec, recipe: Recipe) -> bool:
    return recipe.quant != "none"


def float_recipe(recipe: Recipe) -> Recipe:
    return dataclasses.replace(recipe, quant="none")


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


def ensure_artifacts(pairs: list[tuple[ModelSpec, Recipe]], *, jobs: int = 1, log=sys.stderr,
                     keep_going: bool = False) -> None:
    """ensure_artifact for each pair, `jobs` at a time: the float roots first, then the recipes made from them.
    Full-size conversions take most of the machine's memory, so they run one at a time whatever `jobs` says.
    With `keep_going` a failed conversion is reported and skipped (whoever needs it next tries again and fails
    there, where the failure belongs to one cell)."""
    from concurrent.futures import ThreadPoolExecutor  # threads: each only waits on its conversion child

    def one(pair: tuple[ModelSpec, Recipe]) -> None:
        try:
            ensure_artifact(*pair, log=log)
        except Exception as e:
            if not keep_going:
                raise
            print(f"converting {pair[0].name} {pair[1].quant} ahead of its cells failed ({e}); its cells will "
                  "try again", file=log, flush=True)

    def distinct(pairs: list[tuple[ModelSpec, Recipe]]) -> list[tuple[ModelSpec, Recipe]]:
        return list({cache_key(*pair)[0]: pair for pair in pairs}.values())  # specs hold dicts: not hashable

    unique = distinct(pairs)
    roots = distinct([(spec, float_recipe(recipe)) for spec, recipe in unique])
    for stage in (roots, unique):
        tiny = [(spec, recipe) for spec, recipe in stage if spec.size != "full"]
        with ThreadPoolExecutor(max_workers=max(1, jobs)) as pool:
            list(pool.map(one, tiny))
        for pair in stage:
            if pair[0].size == "full":
                one(pair)


# What TensorFlow, absl, torchao and torch print on every import, and ai-edge-quantizer's progress bar (the phase
# lines say the same once): not progress, and kept only for a failure.
_NOISE = re.compile(r"^(?:[IWE]\d{4} |WARNING: All log messages|Failed to load .*torchao|.*Warning: |  return cls|"
                    r"WARNING:root:Quantized data for tensor|\s*Applying Transformations to tensors|\s*$)")


def _run_worker(args: list[str], log) -> tuple[int, int]:
    """`python -m ARGS`'s exit code and its own peak RSS in KiB (wait4 gives this child's rusage, where
    RUSAGE_CHILDREN would give the largest child so far: the float export before a quantization).

    The child's lines go to `log` as they come, less the import noise; when it fails, its last lines, noise
    included, follow, so the failure's own words are never filtered away."""
    proc = subprocess.Popen([sys.executable, "-m", *args], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True, errors="replace")
    tail: collections.deque[str] = collections.deque(maxlen=40)
    try:
        for line in proc.stdout:
            tail.append(line)
            if not _NOISE.match(line):
                log.write(line)
                log.flush()
        _, status, usage = os.wait4(proc.pid, 0)
    except BaseException:
        proc.kill()
        proc.wait()
        raise
    finally:
        proc.stdout.close()
    proc.returncode = os.waitstatus_to_exitcode(status)  # so that Popen does not wait for it again
    if proc.returncode != 0:
        log.write("".join(tail))
        log.flush()
    return proc.returncode, usage.ru_maxrss


def _quant_recipes(root: Artifact, job: dict, log) -> Path:
    """The float artifact's translated quantization recipes, written by its export (or now, for a float
    artifact cached before they were kept)."""
    path = root.path.parent / RECIPES_FILE
    if not path.is_file():
        partial = path.with_suffix(".partial")
        returncode, _ = _run_worker(["harness.artifacts.convert_worker",
                                     json.dumps({**job, "recipes_only": True, "out": str(partial)})], log)
        if returncode != 0:
            raise RuntimeError(f"translating the quantization recipes of {job['family']} failed with exit code "
                               f"{returncode}; its output is above")
        partial.rename(path)
    return path


def _read_phases(partial: Path) -> list[dict]:
    """The child's per-phase seconds and peak memory (harness/artifacts/phases.py); the file is then removed."""
    path = Path(f"{partial}.phases.json")
    if not path.is_file():
        return []
    phases = json.loads(path.read_text())
    path.unlink()
    return phases


def _load_or_convert(spec: ModelSpec, recipe: Recipe, key: str, inputs: dict, folder: Path, log) -> Artifact:
    model_path, meta_path = folder / "model.tflite", folder / "meta.json"
    if model_path.is_file() and meta_path.is_file():
        meta = json.loads(meta_path.read_text())
        if "compute" not in meta:  # cached by a harness before roofline figures: add them, bytes unchanged
            meta["compute"] = compute_profile(spec.config(), recipe.prefill_len, recipe.kv_len)
            meta_path.write_text(json.dumps(meta, indent=2))
        return Artifact(model_path, meta)

    partial = folder / "model.tflite.partial"
    # Taken while this folder is locked: the float artifact's lock is only ever taken after a recipe's, never the
    # other way round, so two processes cannot wait on each other.
    root = ensure_artifact(spec, float_recipe(recipe), log=log) if quantized_from_float(spec, recipe) else None
    job = {
        "family": spec.family.name,
        "size": spec.size,
        "checkpoint_dir": str(spec.checkpoint_dir) if spec.checkpoint_dir else None,
        "seed": spec.seed,
        "recipe": dataclasses.asdict(recipe),
        "lightweight": inputs["lightweight"],
        "out": str(partial),
    }
    verb = "quantizing" if root else "converting"
    print(f"{verb} {spec.name} quant={recipe.quant} prefill={recipe.prefill_len} kv={recipe.kv_len} ...",
          file=log, flush=True)
    start = time.monotonic()
    if root:
        returncode, peak_kb = _run_worker(["harness.artifacts.quantize_worker", str(root.path),
                                           str(_quant_recipes(root, job, log)), recipe.quant, str(partial)], log)
    else:
        returncode, peak_kb = _run_worker(["harness.artifacts.convert_worker", json.dumps(job)], log)
    seconds = time.monotonic() - start
    if returncode != 0 or not partial.is_file():
        partial.unlink(missing_ok=True)
        Path(f"{partial}.phases.json").unlink(missing_ok=True)
        raise RuntimeError(f"conversion of {spec.name} ({recipe.quant}) failed with exit code {returncode}; "
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
        "quantized_from": root.sha256 if root else None,  # the float artifact's bytes
        "convert_peak_rss_mb": round(peak_kb / 1024, 1),
        "convert_phases": _read_phases(partial),
        "compute": compute_profile(spec.config(), recipe.prefill_len, recipe.kv_len),
    }
    meta_path.write_text(json.dumps(meta, indent=2))
    recipes = Path(f"{partial}.recipes.json")  # a float export's: what its quantized recipes are made with
    if recipes.is_file():
        recipes.rename(folder / RECIPES_FILE)
    partial.rename(model_path)
    print(f"{'quantized' if root else 'converted'} {spec.name} {recipe.quant} in {seconds:.1f} s → {model_path} "
          f"({meta['bytes'] / 2**20:.1f} MiB)", file=log, flush=True)
    return Artifact(model_path, meta)
