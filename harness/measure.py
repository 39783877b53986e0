"""One measurement: the native runner on a device, over one artifact and workload, summarized.

The runner prints every repetition's figures; this module keeps all samples, adds medians, spread and a
stability verdict (harness.stats), roofline figures (harness.roofline), the device's state before and after,
and provenance: which bytes ran, where, built from which commit, by which exact command.
"""

from __future__ import annotations

import dataclasses
import json
import shlex
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from device_runners.device import Device, abi_name, runner_abi
from device_runners.device_state import changes
from device_runners.transport import tail
from harness import stats
from harness.provenance import HARNESS_VERSION, git_commit
from harness.roofline import roofline

if TYPE_CHECKING:
    from device_runners.build import RunnerBuild

# Metrics taken per repetition by the runner, summarized here; the rest (init, memory) are per process.
SAMPLED = ("prefill_tok_s", "decode_tok_s", "ttft_ms")
# The runner's exit code when it cannot load the model file (its last stderr line names the file).
EXIT_BAD_MODEL = 3


@dataclasses.dataclass(frozen=True)
class Workload:
    prefill_len: int = 128
    decode_len: int = 128
    threads: int = 4
    warmup: int = 1
    reps: int = 5
    depth: int = 0  # KV positions filled before the timed decode (llama-bench's -d)
    cpus: tuple[int, ...] | None = None  # pin to these cores instead of the device's fastest
    # 0: no bandwidth probe. Smaller probes under-read this host's bandwidth (256 MiB: below what decode streams).
    bandwidth_probe_mb: int = 1024

    def __post_init__(self) -> None:
        for name in ("prefill_len", "decode_len", "threads", "reps"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        for name in ("warmup", "depth", "bandwidth_probe_mb"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")


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


def bench(device: Device, runner: RunnerBuild, model: Path, workload: Workload, timeout: float = 600.0,
          compute: dict | None = None, cv_limit_pct: float = stats.CV_LIMIT_PCT) -> dict:
    """Run the native runner once (warmup + reps inside) and return its JSON plus summaries and context."""
    check_abi(device, runner)
    # RUNPATH $ORIGIN: the library sits next to the binary
    binary, lib = device.transport.stage_together([runner.binary, runner.runtime_lib])
    result = run_benchmark(device, [binary], model, workload, timeout, compute, cv_limit_pct)
    result["provenance"]["sha256"] |= {"runner": device.transport.sha256(binary),
                                       "runtime_lib": device.transport.sha256(lib)}
    return result


def check_abi(device: Device, runner: RunnerBuild) -> None:
    """A runner built for another ABI fails on the device with an obscure loader error: say what is wrong first."""
    wanted, found = runner_abi(runner.target), abi_name(device.facts.abi)
    if found and found != wanted:
        raise RuntimeError(f"{device.name} reports ABI {found}, but its profile '{device.profile.name}' runs the "
                           f"{runner.target} runner, built for {wanted}")


def bench_inprocess(device: Device, model: Path, workload: Workload, timeout: float = 600.0,
                    compute: dict | None = None) -> dict:
    """The yardstick: the same workload in LiteRT's Python CompiledModel loop (KV in place), host only."""
    if device.transport.kind != "host":
        raise ValueError(f"the in-process LiteRT loop runs on the host only, not on {device.name}")
    program = [sys.executable, "-m", "device_runners.inprocess"]
    return run_benchmark(device, program, model, dataclasses.replace(workload, bandwidth_probe_mb=0), timeout,
                         compute)


def run_benchmark(device: Device, program: list[str], model: Path, workload: Workload, timeout: float,
                  compute: dict | None = None, cv_limit_pct: float = stats.CV_LIMIT_PCT) -> dict:
    """Run a program that speaks the runner's command line and prints its JSON, pinned and under a timeout."""
    cpus = list(workload.cpus) if workload.cpus else device.cpus_for(device.threads_for(workload.threads))
    threads = min(workload.threads, len(cpus))
    model_on_device = device.transport.stage(model)
    argv = [*program, "--model", model_on_device, "--prefill", workload.prefill_len,
            "--decode", workload.decode_len, "--threads", threads, "--warmup", workload.warmup,
            "--reps", workload.reps, "--depth", workload.depth, "--bandwidth-probe-mb", workload.bandwidth_probe_mb]
    before = device.transport.state()
    result = device.transport.run(argv, timeout=timeout, cpus=cpus)
    after = device.transport.state()
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

    summary = summarize(out, compute, cv_limit_pct)
    warnings = changes(before, after, cpus) + [
        f"{name}: unstable ({summary['spread'][name]['verdict']})"
        for name in ("prefill_tok_s", "decode_tok_s") if not summary["spread"][name]["stable"]]
    return summary | {
        "command": command, "cpus": cpus, "threads": threads, "depth": workload.depth,
        "stable": all(summary["spread"][n]["stable"] for n in ("prefill_tok_s", "decode_tok_s")),
        "warnings": warnings,
        "device_state": {"before": dataclasses.asdict(before), "after": dataclasses.asdict(after)},
        "provenance": {
            "device": dataclasses.asdict(device.facts),
            "runtime_version": out.get("runtime_version"), "runner_version": out.get("runner_version"),
            "harness_version": HARNESS_VERSION, "harness_git_commit": git_commit(),
            "sha256": {"model": device.transport.sha256(model_on_device)},
            "command": command,
            "device_command": result.command,  # as the device ran it: timeout, taskset mask, environment
        },
    }


def summarize(runner_json: dict, compute: dict | None = None, cv_limit_pct: float = stats.CV_LIMIT_PCT) -> dict:
    """Medians (named as the CLI and store name them), spread and roofline next to the runner's document."""
    samples = runner_json["samples"]
    spread = {name: stats.summarize([s[name] for s in samples], cv_limit_pct) for name in SAMPLED}
    # VmHWM first: ru_maxrss can carry the launching process's high-water mark across exec.
    peak_kb = runner_json.get("vmhwm_kb") or runner_json["peak_rss_kb"]
    prefill_s = stats.summarize([s["prefill_s"] for s in samples])["median"]
    return {
        **{name: spread[name]["median"] for name in SAMPLED},
        "init_ms": runner_json["init_ms"],
        "init_warm_ms": runner_json.get("init_warm_ms"),
        "peak_rss_mb": peak_kb / 1024,
        "spread": spread,
        "roofline": roofline(runner_json, spread["decode_tok_s"]["median"], prefill_s, compute),
        "runner": runner_json,
    }


def cooldown(device: Device, baseline_c: float | None, tolerance_c: float = 2.0, max_wait_s: float = 60.0,
             poll_s: float = 1.0) -> float:
    """Wait until the device's hottest zone is back within tolerance of its session baseline, at most
    max_wait_s; the seconds waited. Devices without thermal zones (most VMs) are not waited for."""
    import time

    start = time.monotonic()
    while baseline_c is not None and time.monotonic() - start < max_wait_s:
        now = device.transport.state().max_temp_c()
        if now is None or now <= baseline_c + tolerance_c:
            break
        time.sleep(poll_s)
    return time.monotonic() - start
