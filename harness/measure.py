"""One measurement: the native runner on a device, over one artifact and workload, summarized.

The runner prints every repetition's figures; this module keeps all samples and adds medians and spread.
"""

from __future__ import annotations

import dataclasses
import json
import shlex
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from device_runners.device import Device
from device_runners.transport import tail
from harness import stats

if TYPE_CHECKING:
    from device_runners.build import RunnerBuild

# Metrics taken per repetition by the runner, summarized here; the rest (init, memory) are per process.
SAMPLED = ("prefill_tok_s", "decode_tok_s", "ttft_ms")


@dataclasses.dataclass(frozen=True)
class Workload:
    prefill_len: int = 128
    decode_len: int = 128
    threads: int = 4
    warmup: int = 1
    reps: int = 5

    def __post_init__(self) -> None:
        for field in dataclasses.fields(self):
            minimum = 0 if field.name == "warmup" else 1
            if getattr(self, field.name) < minimum:
                raise ValueError(f"{field.name} must be >= {minimum}, got {getattr(self, field.name)}")


# The runner's exit code when it cannot load the model file (its last stderr line names the file).
EXIT_BAD_MODEL = 3


class RunnerError(RuntimeError):
    """The runner failed, hung or printed no result; the message carries its stderr tail."""

    def __init__(self, message: str, exit_code: int | None = None, stderr: str = ""):
        super().__init__(message)
        self.exit_code = exit_code
        self.stderr = stderr

    @property
    def load_error(self) -> str | None:
        """The runner's one-line 'cannot load model file' message, when that is why it failed."""
        lines = self.stderr.strip().splitlines()
        return lines[-1] if self.exit_code == EXIT_BAD_MODEL and lines else None


def bench(device: Device, runner: RunnerBuild, model: Path, workload: Workload,
          timeout: float = 600.0) -> dict:
    """Run the native runner once (warmup + reps inside) and return its JSON plus summaries and context."""
    binary = device.transport.stage(runner.binary)
    device.transport.stage(runner.runtime_lib)  # RUNPATH $ORIGIN: the library sits next to the binary
    return run_benchmark(device, [binary], model, workload, timeout)


def bench_inprocess(device: Device, model: Path, workload: Workload, timeout: float = 600.0) -> dict:
    """The yardstick: the same workload in LiteRT's Python CompiledModel loop (KV in place), host only."""
    if device.transport.kind != "host":
        raise ValueError(f"the in-process LiteRT loop runs on the host only, not on {device.name}")
    return run_benchmark(device, [sys.executable, "-m", "device_runners.inprocess"], model, workload, timeout)


def run_benchmark(device: Device, program: list[str], model: Path, workload: Workload, timeout: float) -> dict:
    """Run a program that speaks the runner's command line and prints its JSON, pinned and under a timeout."""
    threads = device.threads_for(workload.threads)
    cpus = device.cpus_for(threads)
    argv = [*program, "--model", device.transport.stage(model), "--prefill", workload.prefill_len,
            "--decode", workload.decode_len, "--threads", threads, "--warmup", workload.warmup,
            "--reps", workload.reps]
    result = device.transport.run(argv, timeout=timeout, cpus=cpus)
    command = shlex.join(str(a) for a in argv)
    if result.timed_out:
        raise RunnerError(f"runner timed out after {timeout:g} s on {device.name}: {command}\n"
                          f"stderr tail:\n{tail(result.stderr)}")
    if result.exit_code != 0:
        raise RunnerError(f"runner exited with code {result.exit_code} on {device.name}: {command}\n"
                          f"stderr tail:\n{tail(result.stderr)}", result.exit_code, result.stderr)
    try:
        out = json.loads(result.stdout)
    except json.JSONDecodeError as e:
        raise RunnerError(f"runner printed no valid JSON ({e}) on {device.name}\n"
                          f"stdout tail:\n{tail(result.stdout)}\nstderr tail:\n{tail(result.stderr)}") from None
    return summarize(out) | {"command": command, "cpus": cpus, "threads": threads}


def summarize(runner_json: dict) -> dict:
    """Medians (named as the CLI and store name them) and spread next to the runner's own document."""
    samples = runner_json["samples"]
    summary = {name: stats.summarize([s[name] for s in samples]) for name in SAMPLED}
    peak_kb = max(v for v in (runner_json.get("peak_rss_kb"), runner_json.get("vmhwm_kb")) if v is not None)
    return {
        **{name: summary[name]["median"] for name in SAMPLED},
        "init_ms": runner_json["init_ms"],
        "peak_rss_mb": peak_kb / 1024,
        "spread": summary,
        "runner": runner_json,
    }
