"""Stored results shaped exactly like the suites store them (row + data with every sample and its spread),
from seeded synthetic samples: for report, gate and export tests that need many runs but no measurements."""

from __future__ import annotations

import random

from harness.measure import stats
from harness.measure.metrics import SAMPLED, CellResult
from harness.store.store import Store

HOSTILE = '<script>alert("x")</script> | *bold* [link](javascript:alert(1)) $\\frac{a}{b}$ & </svg> -->'

CELLS = [  # model, quant, device, prefill tok/s, decode tok/s, peak MB
    ("tinyllama-tiny", "none", "host", 180_000.0, 14_000.0, 80.0),
    ("tinyllama-tiny", "dynamic_int8", "host", 350_000.0, 25_000.0, 65.0),
]


def add_run(store: Store, label: str | None = None, cells=CELLS, scale: float = 1.0, noise_pct: float = 1.0,
            seed: int = 0, reps: int = 5, threads: int = 2, accuracy: dict | None = None,
            device_facts: dict | None = None, runtime: str | None = None) -> int:
    """One finished run: for every cell `reps` samples around its medians × scale (speeds; TTFT ÷ scale);
    `runtime` stored as the cells' runtime (None: left out, as in rows stored before runtimes existed)."""
    rng = random.Random(seed)
    run = store.start_run(label, ["suites/"], "0123456789abcdef", "0.1.0")
    for model, quant, device, prefill, decode, peak in cells:
        def jitter(x: float) -> float:
            return x * (1 + rng.gauss(0, noise_pct / 100))

        samples = [{"prefill_tok_s": jitter(prefill * scale), "decode_tok_s": jitter(decode * scale),
                    "ttft_ms": jitter(128 / (prefill * scale) * 1000 + 1000 / (decode * scale))} for _ in range(reps)]
        spread = {m: stats.summarize([s[m] for s in samples]) for m in SAMPLED}
        row = {"model": model, "quant": quant, "device": device, "prefill_len": 128, "decode_len": 128,
               "depth": 0, "threads": threads, "cpus": "0,1", "status": "ok",
               **{m: spread[m]["median"] for m in SAMPLED}, "init_ms": 6.0, "init_warm_ms": 2.0,
               "peak_rss_mb": peak, "prefill_cv_pct": spread["prefill_tok_s"]["cv_pct"],
               "decode_cv_pct": spread["decode_tok_s"]["cv_pct"],
               "decode_ci_low": spread["decode_tok_s"]["ci95"][0], "decode_ci_high": spread["decode_tok_s"]["ci95"][1],
               "stable": True, "artifact_bytes": 5_000_000_000, **({"runtime": runtime} if runtime else {})}
        facts = device_facts or {"name": device, "model": "vm", "os": "Linux", "cpus": [0, 1]}
        data = {"spread": spread, "runner": {"samples": samples, "runtime_version": "2.23.0",
                                             **({"runtime": runtime} if runtime else {}),
                                             "runner_version": "llm_runner 1"},
                "command": f"llm_runner --model {model}.tflite --threads 2", "device_facts": facts,
                "provenance": {"runtime_version": "2.23.0", "harness_version": "0.1.0",
                               "harness_git_commit": "0123456789abcdef",
                               "sha256": {"model": "ab" * 32, "runner": "cd" * 32, "runtime_lib": "ef" * 32}}}
        store.add_result(run, CellResult(**row), data)
        if accuracy is not None:  # as the accuracy suite stores a drift check of this model and quant
            store.add_accuracy(run, model, quant, "drift", accuracy, [])
    store.finish_run(run)
    return run
