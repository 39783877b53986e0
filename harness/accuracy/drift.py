"""Quantization drift: how far a quantized .tflite's next-token distributions move from the fp32 file's.

Both files come from the same model and lengths (harness/artifacts/cache.py) and see the same tokens: a few seeded
prompts, then a teacher-forced continuation (the fp32 file's own greedy tokens, fed to both), so every decode
step of the quantized file is compared with the fp32 step at the same position and context. A free-running
quantized generation would diverge after its first different token and turn every later step into noise.

The figures per (model, quant): top-1 agreement, mean KL(p_fp32 || p_quant), max abs logit difference and the
file-size ratio. The bounds they must meet live in one file, `accuracy.toml` at the repository root, one
`[drift.<recipe>]` table per recipe; `judge` lists the broken ones.

Random weights (no --checkpoint-dir) give logits with small top-1 margins, so their top-1 agreement is a
pessimistic figure; the fp32 margin is reported with the figures to read it by.
"""

from __future__ import annotations

import functools
import gc
import sys
from pathlib import Path
from typing import Any

import numpy as np

from harness.accuracy.thresholds import judge, recipe_thresholds
from harness.artifacts.cache import Artifact, ensure_artifact
from harness.artifacts.recipe import QUANTS, Recipe, kv_len_for
from models.spec import ModelSpec

# ---------------------------------------------------------------------------------------------- prompts

DRIFT_PREFILL, DRIFT_DECODE = 32, 16  # the lengths the harness's tests convert anyway: drift reuses them


def make_prompts(vocab_size: int, n_prompts: int, length: int, seed: int = 0, low: int = 0) -> list[np.ndarray]:
    """`n_prompts` int32 token arrays of `length` with ids in [low, vocab_size), the same for the same arguments
    on every machine."""
    rng = np.random.default_rng(seed)
    return [rng.integers(low, vocab_size, size=length, dtype=np.int64).astype(np.int32) for _ in range(n_prompts)]


# ---------------------------------------------------------------------------------------------- running


def _kv_inputs(details: dict[str, dict]) -> dict[str, np.ndarray]:
    """A zeroed KV cache for every kv_cache_* input of a signature."""
    return {name: np.zeros(d["shape"], dtype=d["dtype"]) for name, d in details.items() if name.startswith("kv_cache")}


def _teacher_forced(prefill, decode, prompt: np.ndarray, steps: int,
                    forced: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
    """Logits [steps, vocab] of `steps` decode steps after one prompt, and the tokens fed to steps 1..steps-1.

    The prefill signature returns no logits, so the prompt's last token goes through decode: prefill takes
    prompt[:-1] (exactly prefill_len tokens), step 0 feeds prompt[-1], and step i feeds forced[i-1], or the
    previous step's argmax when `forced` is None (the fp32 reference making the continuation).
    """
    prefill_len = len(prompt) - 1
    kv = _kv_inputs(prefill.get_input_details())
    out = prefill(tokens=prompt[None, :-1], input_pos=np.arange(prefill_len, dtype=np.int32), **kv)
    kv = {name: out[name] for name in kv}
    logits, fed = [], []
    token = int(prompt[-1])
    for step in range(steps):
        out = decode(tokens=np.array([[token]], dtype=np.int32),
                     input_pos=np.array([prefill_len + step], dtype=np.int32), **kv)
        kv = {name: out[name] for name in kv}
        logits.append(out["logits"].reshape(-1).astype(np.float64))
        if step + 1 < steps:
            token = int(forced[step]) if forced is not None else int(np.argmax(logits[-1]))
            fed.append(token)
    return np.stack(logits), np.array(fed, dtype=np.int32)


def run_prompts(path: Path, prompts: list[np.ndarray], steps: int, forced: list[np.ndarray] | None = None,
                threads: int = 2) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Teacher-forced logits of every prompt through one .tflite, and the continuations fed.

    One interpreter at a time: it is dropped (and collected) before returning, so two models never sit in
    memory together (FIELD_NOTES: "free one interpreter before creating the next").
    """
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_path=str(path), num_threads=threads)
    try:
        prefill, decode = interpreter.get_signature_runner("prefill"), interpreter.get_signature_runner("decode")
        results = [_teacher_forced(prefill, decode, prompt, steps, forced[i] if forced is not None else None)
                   for i, prompt in enumerate(prompts)]
    finally:
        del interpreter
        prefill = decode = None
        gc.collect()
    return [r[0] for r in results], [r[1] for r in results]


# ---------------------------------------------------------------------------------------------- figures


def _log_softmax(logits: np.ndarray) -> np.ndarray:
    shifted = logits.astype(np.float64) - logits.max(axis=-1, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(axis=-1, keepdims=True))


def compare_logits(reference: np.ndarray, test: np.ndarray) -> dict[str, float]:
    """Drift figures of `test` against `reference`, both [steps, vocab] logits of the same positions."""
    if reference.shape != test.shape or reference.ndim != 2:
        raise ValueError(f"need two [steps, vocab] arrays of one shape, got {reference.shape} and {test.shape}")
    log_p, log_q = _log_softmax(reference), _log_softmax(test)
    kl = (np.exp(log_p) * (log_p - log_q)).sum(axis=-1)
    top2 = np.sort(reference, axis=-1)[:, -2:]
    return {
        "top1_agreement": float(np.mean(reference.argmax(-1) == test.argmax(-1))),
        "mean_kl": float(max(kl.mean(), 0.0)),  # KL >= 0; float64 rounding can leave -1e-17 for equal inputs
        "max_kl": float(max(kl.max(), 0.0)),
        "max_abs_logit_diff": float(np.abs(reference - test).max()),
        # How decisive the reference is: with random weights the top-1 lead is small, so small logit
        # changes flip the argmax; read top1_agreement against this.
        "fp32_mean_top1_margin": float((top2[:, 1] - top2[:, 0]).mean()),
        "fp32_logit_std": float(reference.std()),
    }


def measure_drift(spec: ModelSpec, quant: str, *, prefill_len: int = DRIFT_PREFILL, steps: int = DRIFT_DECODE,
                  n_prompts: int = 3, seed: int = 0, threads: int = 2, log=sys.stderr) -> dict[str, Any]:
    """Drift figures of `quant` against fp32 for one model (converting both files if the cache lacks them).

    prefill_len 32 / steps 16 match the artifacts the harness's tests already convert, so the check reuses them.
    """
    if quant not in QUANTS:
        raise ValueError(f"unknown quantization {quant!r}; known: {', '.join(QUANTS)}")
    kv_len = kv_len_for(prefill_len, steps)
    reference = ensure_artifact(spec, Recipe("none", prefill_len, kv_len), log=log)
    quantized = ensure_artifact(spec, Recipe(quant, prefill_len, kv_len), log=log)
    vocab = spec.config().vocab_size
    ref_logits, continuations = _reference_run(str(reference.path), reference.sha256, vocab, n_prompts,
                                                prefill_len + 1, seed, steps, threads)
    test_logits, _ = run_prompts(quantized.path, make_prompts(vocab, n_prompts, prefill_len + 1, seed), steps,
                                 forced=continuations, threads=threads)
    figures = compare_logits(np.concatenate(ref_logits), np.concatenate(test_logits))
    return figures | {
        "size_ratio": quantized.meta["bytes"] / reference.meta["bytes"],
        "n_steps": n_prompts * steps,
        "n_prompts": n_prompts,
        "steps_per_prompt": steps,
        "prefill_len": prefill_len,
        "kv_len": kv_len,
        "seed": seed,
        "model": spec.name,
        "quant": quant,
        **_artifact_facts("fp32", reference),
        **_artifact_facts("quant", quantized),
    }


@functools.lru_cache(maxsize=2)
def _reference_run(path: str, sha256: str, vocab: int, n_prompts: int, length: int, seed: int, steps: int,
                   threads: int) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """The fp32 file's logits and continuations: every recipe of a model is compared with the same run, so
    it is made once per session (keyed by the file's sha256 and the prompts' parameters)."""
    return run_prompts(Path(path), make_prompts(vocab, n_prompts, length, seed), steps, threads=threads)


def _artifact_facts(prefix: str, artifact: Artifact) -> dict[str, Any]:
    return {f"{prefix}_sha256": artifact.sha256, f"{prefix}_bytes": artifact.meta["bytes"]}


# ---------------------------------------------------------------------------------------------- thresholds


def check_drift(spec: ModelSpec, quant: str, path: Path | str | None = None,
                **measure: Any) -> tuple[dict[str, Any], list[str]]:
    """Measure and judge one (model, quant) cell: (figures, broken bounds). Thresholds are read first, so a
    bad accuracy.toml fails before any conversion."""
    thresholds = recipe_thresholds(quant, path, spec.name)
    figures = measure_drift(spec, quant, **measure)
    return figures, judge(figures, thresholds)
