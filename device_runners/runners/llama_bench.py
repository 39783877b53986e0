"""llama.cpp's `llama-bench` as a runner: its figures on a device, read into our one report type (RunnerReport).

The workload is our native runner's: a timed prefill of P tokens from an empty cache, and D timed decode steps
that follow a prefill of P tokens. llama-bench's depth option (`-d`) applies to every test of an invocation, so
one invocation cannot hold both a prefill at depth 0 and a decode at depth P; two invocations do:

    llama-bench -m GGUF -p P -n 0 -r REPS -t T -ngl 0 -o json         # pp: P prompt tokens, empty cache
    llama-bench -m GGUF -p 0 -n D -d P -r REPS -t T -ngl 0 -o json    # tg: D tokens after P in the cache

Each warms up the way llama-bench does by default (one untimed run of its test: the whole prompt, or one decode
step), and fills the depth untimed, as our runner's --depth does. Repetition i of the report pairs the prefill's
i-th sample with the decode's i-th. The transport pins both to the same CPUs (taskset) under a device-side
timeout; llama-bench's own --cpu-mask is left at its default (no mask of its own).

What llama-bench does not tell (its load time, the KV cache's bytes, the tokens, memory high-water marks) is None
or empty in the report. Its `model_size` is the bytes of the model's tensors at their stored types: weight_bytes.
"""

from __future__ import annotations

import dataclasses
import json
import shlex
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from device_runners.device import Device, abi_name, runner_abi
from device_runners.runners.report import RunnerReport, Sample
from harness.artifacts.llama_cpp import LlamaCppBuild
from harness.common.text import tail

RUNNER = "llama-bench"
# llama-bench warms each test up once (no --no-warmup): an untimed run of the prompt, or of one decode step.
LLAMA_BENCH_WARMUP = 1


class LlamaBenchError(RuntimeError):
    """llama-bench failed, timed out or printed no usable JSON; the message quotes its stderr's end."""

    def __init__(self, message: str, stderr: str = "", exit_code: int | None = None):
        super().__init__(message)
        self.stderr = stderr
        self.exit_code = exit_code


@dataclasses.dataclass(frozen=True)
class LlamaBenchRun:
    """A measurement and how it was taken: what provenance records beside the report."""

    report: RunnerReport
    command: str  # the two invocations as the harness built them, "; " between them
    device_command: str  # as the device ran them: timeout, taskset mask, environment


def run_llama_bench(device: Device, build: LlamaCppBuild, gguf: Path, prefill: int, decode: int, threads: int,
                    reps: int, cpus: Sequence[int], timeout: float) -> RunnerReport:
    """llama-bench's prefill and decode of `gguf` on `device`, `reps` repetitions each, as one RunnerReport.

    `timeout` bounds both invocations together; each is killed on the device when what is left runs out."""
    return llama_bench_run(device, build, gguf, prefill, decode, threads, reps, cpus, timeout).report


def llama_bench_run(device: Device, build: LlamaCppBuild, gguf: Path, prefill: int, decode: int, threads: int,
                    reps: int, cpus: Sequence[int], timeout: float) -> LlamaBenchRun:
    """run_llama_bench's report, with the command lines that measured it."""
    _check_abi(device, build)
    if prefill < 1 or decode < 1 or reps < 1 or threads < 1:
        raise ValueError(f"prefill, decode, reps and threads must be positive: {prefill}, {decode}, {reps}, "
                         f"{threads}")
    bench, model = device.transport.stage(build.bench), device.transport.stage(gguf)  # llama-bench links statically
    common = [bench, "-m", model, "-r", str(reps), "-t", str(threads), "-ngl", "0", "-o", "json"]
    prefill_argv = [*common, "-p", str(prefill), "-n", "0"]
    decode_argv = [*common, "-p", "0", "-n", str(decode), "-d", str(prefill)]
    deadline = time.monotonic() + timeout
    pp, pp_ran = _one_test(device, prefill_argv, deadline, cpus, prefill, 0, 0, reps)
    tg, tg_ran = _one_test(device, decode_argv, deadline, cpus, 0, decode, prefill, reps)
    report = to_report(pp, tg, build, model, Path(gguf).stat().st_size, threads)
    return LlamaBenchRun(report, f"{shlex.join(prefill_argv)}; {shlex.join(decode_argv)}", f"{pp_ran}; {tg_ran}")


def to_report(pp: dict[str, Any], tg: dict[str, Any], build: LlamaCppBuild, model: str, model_bytes: int,
              threads: int) -> RunnerReport:
    """One RunnerReport from llama-bench's prefill test (pp) and decode test (tg), paired repetition by
    repetition."""
    samples = [
        # The first token is sampled from the prefill's logits, so the time to it is the prefill's time
        # (llama-bench samples nothing: this is the forward pass that a first token waits for).
        Sample(prefill_s=p_ns / 1e9, prefill_tok_s=float(p_ts), decode_s=d_ns / 1e9, decode_tok_s=float(d_ts),
               ttft_ms=p_ns / 1e6)
        for p_ns, p_ts, d_ns, d_ts in zip(pp["samples_ns"], pp["samples_ts"], tg["samples_ns"], tg["samples_ts"],
                                          strict=True)
    ]
    return RunnerReport(
        runner=RUNNER, runner_version=build.version, api="llama.cpp", runtime="llama.cpp",
        runtime_version=f"{tg['build_number']} ({tg['build_commit']})",
        model=model, model_bytes=model_bytes, threads=int(tg.get("n_threads", threads)),
        prefill_len=int(pp["n_prompt"]), decode_len=int(tg["n_gen"]), depth=0,
        # The decode test's context: the P tokens it follows and its own D (llama-bench sizes n_ctx to exactly that).
        kv_len=int(tg["n_depth"]) + int(tg["n_gen"]),
        vocab=None, num_layers=None, kv_cache_bytes=None, weight_bytes=int(tg["model_size"]),
        warmup=LLAMA_BENCH_WARMUP, init_ms=None, init_warm_ms=None, samples=samples, tokens=[], top_logits=[],
        peak_rss_kb=None, vmhwm_kb=None, bandwidth=None, xnnpack=None,
    )


def parse_tests(stdout: str) -> list[dict[str, Any]]:
    """llama-bench's `-o json` document: a list of tests, each with its fields and its samples."""
    doc = json.loads(stdout)
    if not isinstance(doc, list) or not all(isinstance(t, dict) for t in doc):
        raise ValueError("not a list of test objects")
    return doc


def _one_test(device: Device, argv: list[str], deadline: float, cpus: Sequence[int], n_prompt: int, n_gen: int,
              n_depth: int, reps: int) -> tuple[dict[str, Any], str]:
    """Run one llama-bench invocation holding one test; that test, checked to be the one asked for, and the
    command as the device ran it."""
    command = shlex.join(argv)
    left = deadline - time.monotonic()
    if left <= 0:
        raise LlamaBenchError(f"no time left for {command} on {device.name}")
    result = device.transport.run(argv, timeout=left, cpus=list(cpus))
    if result.timed_out:
        raise LlamaBenchError(f"llama-bench timed out after {left:.0f} s on {device.name}: {command}\n"
                              f"stderr tail:\n{tail(result.stderr)}", result.stderr, result.exit_code)
    if result.exit_code != 0:
        raise LlamaBenchError(f"llama-bench exited with code {result.exit_code} on {device.name}: {command}\n"
                              f"stderr tail:\n{tail(result.stderr)}", result.stderr, result.exit_code)
    try:
        tests = parse_tests(result.stdout)
        (test,) = tests
        got = (int(test["n_prompt"]), int(test["n_gen"]), int(test["n_depth"]), len(test["samples_ns"]),
               len(test["samples_ts"]))
    except (ValueError, KeyError, TypeError) as e:
        raise LlamaBenchError(f"llama-bench printed no usable JSON ({e!r}) on {device.name}: {command}\n"
                              f"stdout tail:\n{tail(result.stdout)}\nstderr tail:\n{tail(result.stderr)}",
                              result.stderr, result.exit_code) from None
    if got != (n_prompt, n_gen, n_depth, reps, reps):
        raise LlamaBenchError(f"llama-bench measured n_prompt, n_gen, n_depth, samples = {got[:4]}, asked "
                              f"{(n_prompt, n_gen, n_depth, reps)}: {command}", result.stderr, result.exit_code)
    return test, result.command


def _check_abi(device: Device, build: LlamaCppBuild) -> None:
    """A binary for another ABI fails with an obscure loader error on the device: say what is wrong first."""
    wanted, found = runner_abi(build.target), abi_name(device.facts.abi)
    if found and found != wanted:
        raise LlamaBenchError(f"{device.name} reports ABI {found}, but this llama-bench is built for {build.target} "
                              f"({wanted})")
