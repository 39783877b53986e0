"""One measurement: the native runner on a device, over one artifact and workload, summarized.

The runner prints every repetition's figures; this module keeps all samples, adds medians, spread and a
stability verdict (harness.measure.stats), roofline figures (harness.measure.roofline), the device's state
before and after, and provenance: which bytes ran, where, built from which commit, by which exact command.
"""

from __future__ import annotations

import dataclasses
import json
import shlex
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from device_runners.device import Device, abi_name, runner_abi
from device_runners.runners.report import ReportError, RunnerReport
from device_runners.transports.state import changes
from harness.common.options import default, first_default
from harness.common.text import tail
from harness.measure import energy, stats
from harness.measure.metrics import SAMPLED
from harness.measure.provenance import HARNESS_VERSION, git_commit
from harness.measure.roofline import roofline
from harness.measure.weight_cache import ColdRun, build_cache

if TYPE_CHECKING:
    from device_runners.runners.native import RunnerBuild
    from device_runners.transports.base import RunResult
    from device_runners.transports.state import DeviceState

# The runner's exit code when it cannot load the model file (its last stderr line names the file).
EXIT_BAD_MODEL = 3


@dataclasses.dataclass(frozen=True)
class Workload:
    prefill_len: int = first_default("prefill")
    decode_len: int = first_default("decode")
    threads: int = first_default("threads")
    warmup: int = default("warmup")
    reps: int = default("reps")
    depth: int = first_default("depth")  # KV positions filled before the timed decode (llama-bench's -d)
    cpus: tuple[int, ...] | None = None  # pin to these cores instead of the device's fastest
    # 0: no bandwidth probe. Smaller probes under-read this host's bandwidth (256 MiB: below what decode streams).
    bandwidth_probe_mb: int = default("bandwidth_probe_mb")
    # For comparing devices, not for timing: the N highest logits of every decode step, and decode steps fed
    # these tokens instead of their own argmax (the runner's --top-k and --follow-tokens).
    top_k: int = 0
    follow_tokens: tuple[int, ...] = ()
    # XNNPACK's weight cache beside the model, as apps ship it: the cell records init without it (cold) and with
    # it (warm), and speed and memory with it (harness/measure/weight_cache.py).
    weight_cache: bool = default("weight_cache")
    # Ask XNNPACK to compute fp32 operators in fp16 (the runner's --fp16-arithmetic): the runner does where the
    # CPU has fp16 arithmetic (ARMv8.2 FP16, AVX512-FP16) and reports whether it did. Off for every cell: XNNPACK
    # (liblitert-lm 0.18.1, and LiteRT's xnnpack_delegate.cc today) builds the odml.scaled_dot_product_attention
    # composite of these exports from fp32 tensors whatever the flag says, and with FORCE_FP16 its query is fp16:
    # xnn_define_binary(multiply) refuses the mix and the delegate fails to prepare (measured here with the CPU
    # check bypassed; the refusal is in the graph definition, so an ARM phone would refuse it too).
    fp16_arithmetic: bool = False
    # One more repetition after the measured ones, with the runtime's profiler on (the runner's --profile): op
    # timings of its prefill and last decode step in report.profile (harness/measure/profile.py reads them). It
    # runs on an engine of its own, so the measured repetitions are the same with it or without it.
    profile: bool = False
    # Energy per token where the device has a power meter (harness/measure/energy.py): the runner reads it from an
    # idle window of energy_idle_s before the measured repetitions to their end.
    energy: bool = default("energy")
    energy_idle_s: float = default("energy_idle")
    api: str | None = None  # the runner's --api (compiled_model, interpreter); None: the runner's default

    def __post_init__(self) -> None:
        for name in ("prefill_len", "decode_len", "threads", "reps"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        for name in ("warmup", "depth", "bandwidth_probe_mb", "top_k"):
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


@dataclasses.dataclass
class Measurement:
    """One run of a runner over one artifact and workload: its report, summarized, with the context it ran in."""

    report: RunnerReport
    spread: dict[str, dict]  # per sampled metric: harness.measure.stats.summarize
    roofline: dict
    command: str
    cpus: list[int]
    threads: int
    depth: int
    stable: bool
    warnings: list[str]
    device_state: dict  # before and after: frequencies, temperatures, throttling
    provenance: dict  # which bytes ran where, built from which commit, by which exact command
    cold_run: ColdRun | None = None  # the weight cache's cold run; None with the cache off
    energy: dict | None = None  # harness/measure/energy.py's figures; None where energy was not asked for

    def median(self, name: str) -> float:
        return self.spread[name]["median"]

    @property
    def peak_rss_mb(self) -> float | None:
        return None if self.report.peak_kb is None else self.report.peak_kb / 1024

    def figures(self) -> dict:
        """The CellResult fields this measurement fills (medians, spread, memory, roofline)."""
        decode = self.spread["decode_tok_s"]
        init_ms, init_cold_ms = self.report.init_ms, None if self.cold_run is None else self.cold_run.report.init_ms
        if self.cold_run is None and self.report.weight_cache == "cold" and self.report.init_warm_ms is not None:
            # An engine that built its own weight cache in this process (LiteRT-LM's): its reload found the cache,
            # as an app's every launch but its first does, which is what init_ms holds for our runner too.
            init_ms, init_cold_ms = self.report.init_warm_ms, self.report.init_ms
        return {
            **{name: self.median(name) for name in SAMPLED},
            "init_ms": init_ms, "init_warm_ms": self.report.init_warm_ms,
            "peak_rss_mb": self.peak_rss_mb, "stable": self.stable,
            # Ours: on when the harness built the cache; LiteRT-LM's engine keeps one of its own beside the bundle.
            "weight_cache": "on" if self.cold_run is not None or self.report.weight_cache != "off" else "off",
            "fp16_arithmetic": self.report.fp16_arithmetic,
            "init_cache_cold_ms": init_cold_ms,
            "peak_rss_cache_cold_mb": None if self.cold_run is None else self.cold_run.report.peak_kb / 1024,
            "weight_cache_mb": None if self.report.weight_cache_bytes is None else
            self.report.weight_cache_bytes / 2**20,
            **self.memory_figures(), **(self.energy or {}),
            "threads": self.threads, "cpus": ",".join(map(str, self.cpus)), "depth": self.depth,
            "prefill_cv_pct": self.spread["prefill_tok_s"]["cv_pct"], "decode_cv_pct": decode["cv_pct"],
            "decode_ci_low": decode["ci95"][0], "decode_ci_high": decode["ci95"][1],
            "warnings": "\n".join(self.warnings) or None,
            **{k: self.roofline[k] for k in ("bandwidth_gb_s", "decode_bandwidth_share", "cache_resident",
                                             "prefill_gflop_s")},
        }

    def memory_figures(self) -> dict:
        """The memory split at the end of the decode, in MB (None where the runner could not read it)."""
        split = self.report.memory_at("decode")
        parts = {"mem_model_file_mb": "model_file_kb", "mem_weight_cache_mb": "weight_cache_kb",
                 "mem_anonymous_mb": "anonymous_kb", "mem_pss_mb": "pss_kb", "mem_swap_mb": "swap_kb"}
        return {name: None if split is None else getattr(split, kb) / 1024 for name, kb in parts.items()}

    def to_json(self) -> dict:
        """The whole measurement as JSON: what `harness bench --json` prints and the store keeps beside a row."""
        return {**self.figures(), "cpus": self.cpus, "warnings": self.warnings, "spread": self.spread,
                "roofline": self.roofline, "runner": self.report.to_json(), "samples": self.report.to_json()[
                    "samples"], "command": self.command, "device_state": self.device_state,
                "provenance": self.provenance, "weight_cache_cold_run": self.cold_run and self.cold_run.to_json()}


def bench(device: Device, runner: RunnerBuild, model: Path, workload: Workload, timeout: float = 600.0,
          compute: dict | None = None, cv_limit_pct: float = stats.CV_LIMIT_PCT) -> Measurement:
    """Run the native runner once (warmup + reps inside): its report, summarized, with context."""
    check_abi(device, runner)
    # RUNPATH $ORIGIN: the library sits next to the binary (the iOS app holds its own: runtime_lib is None)
    binary, *lib = device.transport.stage_together([runner.binary, *filter(None, [runner.runtime_lib])])
    result = run_benchmark(device, [binary], model, workload, timeout, compute, cv_limit_pct)
    result.provenance["sha256"] |= {"runner": device.transport.sha256(binary),
                                    **({"runtime_lib": device.transport.sha256(lib[0])} if lib else {})}
    return result


def check_abi(device: Device, runner: RunnerBuild) -> None:
    """A runner built for another ABI fails on the device with an obscure loader error: say what is wrong first."""
    wanted, found = runner_abi(runner.target), abi_name(device.facts.abi)
    if found and found != wanted:
        raise RuntimeError(f"{device.name} reports ABI {found}, but its profile '{device.profile.name}' runs the "
                           f"{runner.target} runner, built for {wanted}")


def bench_inprocess(device: Device, model: Path, workload: Workload, timeout: float = 600.0,
                    compute: dict | None = None) -> Measurement:
    """The yardstick: the same workload in LiteRT's Python CompiledModel loop (KV in place), host only."""
    if device.transport.kind != "host":
        raise ValueError(f"the in-process LiteRT loop runs on the host only, not on {device.name}")
    program = [sys.executable, "-m", "device_runners.runners.inprocess"]
    # LiteRT's Python loop runs with XNNPACK's defaults: no weight cache, fp32 arithmetic; it has no profiler.
    plain = dataclasses.replace(workload, bandwidth_probe_mb=0, weight_cache=False, fp16_arithmetic=False,
                                profile=False, energy=False, api=None)
    return run_benchmark(device, program, model, plain, timeout, compute)


def run_benchmark(device: Device, program: list[str], model: Path, workload: Workload, timeout: float,
                  compute: dict | None = None, cv_limit_pct: float = stats.CV_LIMIT_PCT) -> Measurement:
    """Run a program that speaks the runner's command line and prints its JSON, pinned and under a timeout; with
    the weight cache on, its cold run first (harness/measure/weight_cache.py)."""
    if not device.transport.can_fork:  # the probe forks; on iOS it is not run, and the report says so (null)
        workload = dataclasses.replace(workload, bandwidth_probe_mb=0)
    cpus = list(workload.cpus) if workload.cpus else device.cpus_for(device.threads_for(workload.threads))
    threads = min(workload.threads, len(cpus))
    model_on_device = device.transport.stage(model)
    model_sha256 = device.transport.sha256(model_on_device)

    def execute(argv: list) -> tuple[RunnerReport, str]:
        report, result = _run(device, argv, timeout, cpus)
        return report, result.command

    # What every run of the cell shares; the workload's flags follow.
    common = [*program, "--model", model_on_device, "--prefill", workload.prefill_len,
              *(["--api", workload.api] if workload.api else [])]
    arithmetic = ["--fp16-arithmetic"] if workload.fp16_arithmetic else []
    cold = build_cache(device, model_on_device, model_sha256, [*common, "--threads", threads, *arithmetic],
                       execute) if workload.weight_cache else None
    argv = [*common, "--decode", workload.decode_len, "--threads", threads, "--warmup", workload.warmup,
            "--reps", workload.reps, "--depth", workload.depth, "--bandwidth-probe-mb", workload.bandwidth_probe_mb]
    if workload.top_k:
        argv += ["--top-k", workload.top_k]
    if workload.follow_tokens:
        argv += ["--follow-tokens", ",".join(map(str, workload.follow_tokens))]
    argv += arithmetic + (["--weight-cache", cold.path] if cold else []) + (["--profile"] if workload.profile else [])
    # Probed per cell: a phone plugged in since the last one charges, and its battery then says nothing.
    source = energy.find_source(device.transport) if workload.energy else None
    if isinstance(source, energy.PowerSource):
        argv += source.runner_flags(workload.energy_idle_s)
    before = device.transport.state()
    report, result = _run(device, argv, timeout, cpus)
    after = device.transport.state()
    command = shlex.join(str(a) for a in argv)
    if cold is not None and report.weight_cache != "warm":  # the file the cold run had just finished
        raise RunnerError(f"the runner did not read the weight cache its cold run built on {device.name} "
                          f"(weight_cache {report.weight_cache!r}): {command}\nstderr tail:\n{tail(result.stderr)}")
    measured = summarize(device, report, Context(command, result.command, cpus, threads, workload.depth,
                                                 model_sha256, before, after), compute, cv_limit_pct, cold)
    if source is not None:
        measured.energy = energy.figures(report, source)
    if workload.fp16_arithmetic and not report.fp16_arithmetic:
        measured.warnings.append("fp16 arithmetic asked for, but this CPU has none: fp32 arithmetic")
    return measured


@dataclasses.dataclass(frozen=True)
class Context:
    """How a report was measured: the command, where it was pinned, the model's bytes and the device's state
    around the run. Every runtime's measurement is summarized from its report and this."""

    command: str  # as the harness built it
    device_command: str  # as the device ran it: timeout, taskset mask, environment
    cpus: list[int]
    threads: int
    depth: int
    model_sha256: str
    before: DeviceState
    after: DeviceState


def summarize(device: Device, report: RunnerReport, context: Context, compute: dict | None = None,
              cv_limit_pct: float = stats.CV_LIMIT_PCT, cold: ColdRun | None = None) -> Measurement:
    """A runner's report with medians, spread, stability, roofline, the device's state and provenance."""
    spread = {name: stats.summarize(report.values(name), cv_limit_pct) for name in SAMPLED}
    stable = all(spread[n]["stable"] for n in ("prefill_tok_s", "decode_tok_s"))
    warnings = changes(context.before, context.after, context.cpus) + [
        f"{name}: unstable ({spread[name]['verdict']})"
        for name in ("prefill_tok_s", "decode_tok_s") if not spread[name]["stable"]]
    prefill_s = stats.summarize(report.values("prefill_s"))["median"]
    return Measurement(
        report=report, spread=spread,
        roofline=roofline(report, spread["decode_tok_s"]["median"], prefill_s, compute),
        command=context.command, cpus=context.cpus, threads=context.threads, depth=context.depth, stable=stable,
        warnings=warnings,
        device_state={"before": dataclasses.asdict(context.before), "after": dataclasses.asdict(context.after)},
        provenance={
            "device": dataclasses.asdict(device.facts),
            "runtime": report.runtime, "runtime_version": report.runtime_version,
            "runner_version": report.runner_version,
            "harness_version": HARNESS_VERSION, "harness_git_commit": git_commit(),
            "sha256": {"model": context.model_sha256},
            "command": context.command,
            "device_command": context.device_command,
            **({"weight_cache": cold.path} if cold else {}),
        },
        cold_run=cold,
    )


def _run(device: Device, argv: list, timeout: float, cpus: list[int]) -> tuple[RunnerReport, RunResult]:
    """One runner process on the device: its report, or RunnerError with its stderr tail."""
    result = device.transport.run(argv, timeout=timeout, cpus=cpus)
    command = shlex.join(str(a) for a in argv)
    if result.timed_out:
        raise RunnerError(f"runner timed out after {timeout:g} s on {device.name}: {command}\n"
                          f"stderr tail:\n{tail(result.stderr)}")
    if result.exit_code != 0:
        raise RunnerError(f"runner exited with code {result.exit_code} on {device.name}: {command}\n"
                          f"stderr tail:\n{tail(result.stderr)}", result.exit_code, result.stderr)
    try:
        return RunnerReport.from_json(json.loads(result.stdout)), result
    except (json.JSONDecodeError, ReportError) as e:
        raise RunnerError(f"runner printed no valid result ({e}) on {device.name}\n"
                          f"stdout tail:\n{tail(result.stdout)}\nstderr tail:\n{tail(result.stderr)}") from None


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
