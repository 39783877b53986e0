"""The runtimes a cell can be measured with, side by side on the same weights, device, threads and lengths.

- `litert`: our native runner on LiteRT's C API (harness/measure/bench.py), the default.
- `litert-lm`: LiteRT-LM's engine through its own benchmark (`litert_lm.Benchmark`) on the cell's artifact
  bundled as `.litertlm` (device_runners/runners/litert_lm.py). Its Python package exists for the host only; on
  a phone or board the cell is skipped with that reason.
- `llama.cpp`: `llama-bench` built from the llama.cpp that llama-cpp-python's source package vendors, on the
  same weights converted to GGUF (harness/artifacts/gguf.py), pinned to the same cores
  (device_runners/runners/llama_bench.py).

Each engine's figures are read into the one `RunnerReport` and summarized like the native runner's, so the store,
the gate and the reports treat a runtime as one more column. What an engine does not report (llama-bench: init,
memory, tokens) stays empty.
"""

from __future__ import annotations

import shlex
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from harness.artifacts.runtime_inputs import RUNTIMES, RuntimeUnsupported
from harness.measure import stats
from harness.measure.bench import Context, Measurement, Workload, summarize

if TYPE_CHECKING:
    from device_runners.device import Device

__all__ = ["RUNTIMES", "RuntimeUnsupported", "bench_runtime", "unsupported_reason"]


def unsupported_reason(runtime: str, device: Device) -> str | None:
    """Why `runtime` cannot run on this device at all (checked before its file is built), or None."""
    if runtime == "litert-lm" and device.transport.kind != "host":
        return (f"litert-lm: LiteRT-LM's benchmark runs through litert-lm-api's Python package, which exists for "
                f"the host only; {device.name} would need LiteRT-LM's native C API in a program of its own "
                f"(not built)")
    if runtime == "llama.cpp" and device.profile.runner_target not in ("host", "linux-arm64", "android-arm64"):
        return f"llama.cpp: llama-bench is built for the host, linux-arm64 and android-arm64, not for {device.name}"
    return None


def bench_runtime(runtime: str, device: Device, model: Path, workload: Workload, timeout: float,
                  compute: dict | None = None, cv_limit_pct: float = stats.CV_LIMIT_PCT) -> Measurement:
    """One cell's measurement by a runtime other than our runner; RuntimeUnsupported where it cannot run here."""
    reason = unsupported_reason(runtime, device)
    if reason:
        raise RuntimeUnsupported(reason)
    if workload.depth:
        raise RuntimeUnsupported(f"{runtime}: decode at a depth is measured by our runner only (--depth "
                                 f"{workload.depth}); this runtime's benchmark starts decode after the prefill")
    cpus = list(workload.cpus) if workload.cpus else device.cpus_for(device.threads_for(workload.threads))
    threads = min(workload.threads, len(cpus))
    before = device.transport.state()
    if runtime == "litert-lm":
        report, command = _litert_lm(device, model, workload, threads, cpus, timeout)
        device_command = command
    elif runtime == "llama.cpp":
        report, command, device_command = _llama_cpp(device, model, workload, threads, cpus, timeout)
    else:
        raise ValueError(f"unknown runtime {runtime!r}; known: {', '.join(RUNTIMES)}")
    after = device.transport.state()
    sha = device.transport.sha256(report.model)
    context = Context(command, device_command, cpus, threads, 0, sha, before, after)
    return summarize(device, report, context, compute, cv_limit_pct)


def _litert_lm(device: Device, bundle: Path, workload: Workload, threads: int, cpus: list[int], timeout: float):
    from device_runners.runners.litert_lm import engine_benchmark

    report = engine_benchmark(bundle, workload.prefill_len, workload.decode_len, threads, workload.reps,
                              workload.warmup, cpus, timeout)
    command = shlex.join([sys.executable, "-m", "device_runners.runners.litert_lm", "benchmark", "--model",
                          str(bundle), "--prefill", str(workload.prefill_len), "--decode", str(workload.decode_len),
                          "--threads", str(threads), "--reps", str(workload.reps), "--warmup", str(workload.warmup)])
    return report, command


def _llama_cpp(device: Device, gguf: Path, workload: Workload, threads: int, cpus: list[int], timeout: float):
    from device_runners.runners.llama_bench import llama_bench_run
    from harness.artifacts.llama_cpp import ensure_llama_cpp

    target = device.profile.runner_target
    try:
        build = ensure_llama_cpp(target)
    except ValueError as e:  # a target llama.cpp is not built for (iOS), or a missing NDK
        raise RuntimeUnsupported(f"llama.cpp: {e}") from None
    run = llama_bench_run(device, build, gguf, workload.prefill_len, workload.decode_len, threads, workload.reps,
                          cpus, timeout)
    return run.report, run.command, run.device_command
