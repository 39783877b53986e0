"""LiteRT-LM's own engine as a runner: greedy generation on a `.litertlm` or `.task` bundle
(harness/artifacts/bundle.py builds them) through litert-lm-api's `litert_lm.Engine`, in a child process, to
compare with the native runner's tokens.

The engine reads a bundle's context length from the KV cache's third dimension, which only litert-torch's
*transposed* layout puts there: with the default layout ([1, kv_len, heads, head_dim]) it reads the number of
KV heads and refuses any prompt longer than that. So a bundle the engine runs is built from an artifact
converted with `Recipe(kv_layout="transposed")`.

Its own benchmark (`litert_lm.Benchmark`) as a runtime measured beside ours: `engine_benchmark` runs it
warmup + reps times in one child process and reads what it says into the one `RunnerReport`
(device_runners/runners/report.py).

    python -m device_runners.runners.litert_lm generate --model M.litertlm --prompt TEXT --max-tokens 16
    python -m device_runners.runners.litert_lm benchmark --model M.litertlm --prefill 32 --decode 16 --threads 2
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import importlib.metadata
import json
import math
import os
import resource
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from device_runners.runners.report import RunnerReport, Sample
from harness.common.signals import signals_deferred
from harness.common.text import tail

RUNNER = "litert_lm.Benchmark"
PACKAGE = "litert-lm-api"
# The child ends itself (SIGALRM) this long after the parent's timeout: a backstop should the parent die first.
_CHILD_GRACE_S = 30
_POLL_S = 0.05


class EngineError(RuntimeError):
    """LiteRT-LM's engine failed; `reason` is its own error line (e.g. the context length it refused)."""

    def __init__(self, message: str, reason: str, stderr: str):
        super().__init__(message)
        self.reason = reason
        self.stderr = stderr


class EngineTimeout(EngineError):
    """LiteRT-LM's engine did not finish within the timeout; its process group was killed."""


class EngineLengthError(RuntimeError):
    """The engine ran other prefill or decode lengths than asked (it cuts decode short at max_num_tokens)."""


@dataclasses.dataclass(frozen=True)
class EngineRun:
    chunks: list[str]  # the text of each decode step, as the engine streamed it
    prompt_tokens: list[int]  # the engine's tokenization of the prompt, without its start token
    start_token: int | None  # prepended to the prompt by the engine
    stop_tokens: list[list[int]]
    seconds: float

    @property
    def text(self) -> str:
        return "".join(self.chunks)


def engine_generate(model: Path, prompt: str, max_tokens: int, threads: int = 1, timeout: float = 300) -> EngineRun:
    """Greedy generation in LiteRT-LM's engine on the host, in a child process (the engine's native library,
    its log output and a possible crash stay out of this one): the prompt as text, no prompt template, at most
    `max_tokens` decode steps. Raises EngineError with the engine's own error line when it fails."""
    cmd = [sys.executable, "-m", "device_runners.runners.litert_lm", "generate", "--model", str(model),
           "--prompt", prompt, "--max-tokens", str(max_tokens), "--threads", str(threads)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    if proc.returncode != 0:
        reason = _engine_reason(proc.stderr)
        raise EngineError(f"LiteRT-LM's engine failed on {model} (exit {proc.returncode}): {reason}", reason,
                          proc.stderr)
    out = json.loads(proc.stdout)
    return EngineRun(out["chunks"], out["prompt_tokens"], out["start_token"], out["stop_tokens"], out["seconds"])


def _engine_reason(stderr: str) -> str:
    """The engine's own error lines (absl's E-prefixed log lines, then a Python exception), without the noise."""
    lines = stderr.strip().splitlines()
    # absl's log prefix: severity letter, then date or 0000, e.g. "E0000 00:00:1795574806.290158 2900 engine.cc:1004]"
    errors = [line.split("] ", 1)[-1] for line in lines if line[:1] == "E" and line[1:5].isdigit()]
    # The engine only warns where it takes its context length from the model rather than the bundle.
    limits = [line.split("] ", 1)[-1] for line in lines if "static model supports" in line]
    exceptions = [line for line in lines if line.split(":", 1)[0].endswith(("Error", "Exception"))]
    return " | ".join(dict.fromkeys([*limits[:1], *errors, *exceptions[-1:]])) or tail(stderr, 5)


def step_candidates(chunks: list[str], tokenizer: Path) -> list[tuple[int, ...]]:
    """For each streamed step, the token ids whose SentencePiece piece prints as that step's text.

    The engine's Python API gives text, not ids. Every piece is a distinct string and the engine streams one
    chunk per decode step (a piece's word-start marker ▁ printed as a space), so a chunk names one id, with one
    exception: SentencePiece drops the word-start marker of the first piece it decodes, so the first chunk "x"
    is either the piece "x" or "▁x". Control pieces print as "" and the Python API drops empty chunks.
    """
    import sentencepiece as spm

    sp = spm.SentencePieceProcessor(model_file=str(tokenizer))
    by_text: dict[str, list[int]] = {}
    for i in range(sp.get_piece_size()):
        if not (sp.is_control(i) or sp.is_unknown(i)):
            by_text.setdefault(sp.id_to_piece(i).replace("\u2581", " "), []).append(i)
    by_text.setdefault(sp.decode([sp.unk_id()]), []).append(sp.unk_id())
    steps = []
    for index, chunk in enumerate(chunks):
        ids = list(by_text.get(chunk, []))
        if index == 0:
            ids += by_text.get(" " + chunk, [])
        steps.append(tuple(sorted(ids)))
    return steps


def agrees(tokens: list[int], candidates: list[tuple[int, ...]], stop_tokens: list[list[int]]) -> bool:
    """Whether the engine's steps are the runner's greedy tokens: the same number of steps up to the first stop
    token (which the engine stops at and does not print), each step's token among that step's candidates."""
    stops = {ids[0] for ids in stop_tokens if len(ids) == 1}
    expected = []
    for token in tokens:
        if token in stops:
            break
        expected.append(token)
    return len(expected) == len(candidates) and all(t in c for t, c in zip(expected, candidates, strict=True))


# ---------------------------------------------------------------------------------------------------- benchmark


@dataclasses.dataclass(frozen=True)
class _ChildExit:
    stdout: str
    stderr: str
    returncode: int
    maxrss_kb: int  # the child's peak resident set, from wait4


def engine_benchmark(bundle: Path, prefill: int, decode: int, threads: int, reps: int, warmup: int = 1,
                     cpus: list[int] | None = None, timeout: float = 600,
                     max_num_tokens: int | None = None) -> RunnerReport:
    """LiteRT-LM's own benchmark (`litert_lm.Benchmark`) on a `.litertlm` bundle, warmup + reps runs in one child
    process pinned to `cpus`, read into a RunnerReport: one sample per measured run, the engine's own figures.

    A child process for the same reasons as engine_generate, and so that its peak memory is the engine's alone
    (the parent's wait4). Each run creates and deletes the engine, so each has an init: the first run's is
    `init_ms`, the second's `init_warm_ms`; the engine keeps an XNNPACK weight cache beside the bundle, which the
    first run finds (warm) or writes (cold). `max_num_tokens` (the engine's token budget, reported as kv_len)
    defaults to prefill + decode: the engine cuts decode short at that budget, which the child refuses.
    Raises EngineError with the engine's own reason; EngineTimeout after `timeout` seconds, the child killed.
    """
    budget = max_num_tokens or prefill + decode
    alarm_s = math.ceil(timeout) + _CHILD_GRACE_S
    cmd = [sys.executable, "-m", "device_runners.runners.litert_lm", "benchmark", "--model", str(bundle),
           "--prefill", str(prefill), "--decode", str(decode), "--threads", str(threads), "--reps", str(reps),
           "--warmup", str(warmup), "--max-num-tokens", str(budget), "--alarm-s", str(alarm_s)]
    if cpus:
        cmd += ["--cpus", ",".join(map(str, cpus))]
    child = _run_child(cmd, timeout, bundle)
    if child.returncode != 0:
        reason = _engine_reason(child.stderr)
        raise EngineError(f"LiteRT-LM's benchmark failed on {bundle} (exit {child.returncode}): {reason}", reason,
                          child.stderr)
    report = _read_report(child, bundle)
    # The engine's Python process, interpreter and litert_lm's ctypes library included, not the engine alone; and
    # at least this process's own peak (see _wait4). RunnerReport.peak_kb reads the child's VmHWM first.
    return dataclasses.replace(report, peak_rss_kb=child.maxrss_kb)


def _read_report(child: _ChildExit, bundle: Path) -> RunnerReport:
    """The report the child printed last (the engine's library writes its logs to stderr, but not promised)."""
    lines = child.stdout.strip().splitlines()
    try:
        return RunnerReport.from_json(json.loads(lines[-1]))
    except (IndexError, ValueError) as e:  # ReportError is a ValueError
        reason = f"no report on stdout ({e})"
        raise EngineError(f"LiteRT-LM's benchmark on {bundle}: {reason}", reason, child.stderr) from None


def _run_child(cmd: list[str], timeout: float, bundle: Path) -> _ChildExit:
    """Run `cmd` in a session of its own and wait for it with os.wait4, which gives its resource usage (the
    peak RSS) with its exit status; on timeout or Ctrl-C kill its process group, reap it, and raise.
    Output goes to files: a pipe left unread would block a chatty child (the engine logs every load)."""
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        with signals_deferred():  # a Ctrl-C between the fork and the bookkeeping would leave an unknown group
            proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=out, stderr=err, start_new_session=True)
        try:
            returncode, maxrss_kb = _wait4(proc, timeout)
        except TimeoutError:
            with signals_deferred():  # a second Ctrl-C must not cut the kill short
                _kill_group(proc)
            reason = f"no result within {timeout:g} s; killed"
            raise EngineTimeout(f"LiteRT-LM's benchmark on {bundle}: {reason}", reason, _text(err)) from None
        except BaseException:  # Ctrl-C, or SIGTERM/SIGHUP as KeyboardInterrupt (harness/common/signals.py)
            with signals_deferred():
                _kill_group(proc)
            raise
        return _ChildExit(_text(out), _text(err), returncode, maxrss_kb)


def _text(file) -> str:
    file.seek(0)
    return file.read().decode("utf-8", "replace")


def _wait4(proc: subprocess.Popen, timeout: float) -> tuple[int, int]:
    """Exit code and peak RSS (KiB) of the child once it ends; TimeoutError after `timeout` seconds.

    os.wait4 rather than proc.wait(), which reaps the child and drops its rusage. Polled: a blocking wait4
    cannot time out, and the check costs nothing next to an engine run.
    """
    deadline = time.monotonic() + timeout
    while True:
        pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
        if pid:
            proc.returncode = os.waitstatus_to_exitcode(status)  # reaped here: Popen must not wait for it again
            # ru_maxrss: KiB on Linux, bytes on macOS. Linux keeps it across exec, so it is at least the high-water
            # mark of the process that forked the child, this one (measured: a parent holding 1.5 GiB gave 1.5 GiB
            # for an engine whose VmHWM was 80 MiB); the child's own VmHWM (vmhwm_kb) starts afresh at exec.
            return proc.returncode, usage.ru_maxrss // (1024 if sys.platform == "darwin" else 1)
        if time.monotonic() >= deadline:
            raise TimeoutError
        time.sleep(_POLL_S)


def _kill_group(proc: subprocess.Popen) -> None:
    """SIGKILL the child's process group (the child leads it: start_new_session) and reap the child."""
    with contextlib.suppress(ProcessLookupError):  # ended and reaped already, with the whole group
        os.killpg(proc.pid, signal.SIGKILL)
    if proc.returncode is None:
        with contextlib.suppress(ChildProcessError):
            _, status, _ = os.wait4(proc.pid, 0)
            proc.returncode = os.waitstatus_to_exitcode(status)


def weight_cache_path(bundle: Path) -> Path:
    """Where LiteRT-LM's engine keeps the bundle's XNNPACK weight cache when given no cache_dir: beside it, named
    after the bundle's name, mtime (seconds) and size, so a rebuilt bundle gets a new cache file (as observed with
    litert-lm-api 0.18.1: `m.litertlm_1796170356_3197872.xnnpack_cache`)."""
    st = bundle.stat()
    return bundle.with_name(f"{bundle.name}_{int(st.st_mtime)}_{st.st_size}.xnnpack_cache")


def _generate_main(args: argparse.Namespace) -> None:
    import litert_lm

    start = time.monotonic()
    with tempfile.TemporaryDirectory() as cache:  # the engine's XNNPACK cache, not next to the bundle
        # float32 activations, like the native runner: the engine's default for the text decoder is fp16,
        # which would round differently on CPUs that have fp16 arithmetic.
        engine = litert_lm.Engine(str(args.model), backend=litert_lm.Backend.CPU(thread_count=args.threads),
                                  cache_dir=cache, activation_data_type=litert_lm.ActivationDataType.FLOAT32)
        session = engine.create_session(apply_prompt_template=False, max_output_tokens=args.max_tokens)
        try:
            session.run_prefill([args.prompt])
            chunks = [response.texts[0] for response in session.run_decode_async()]
            result = {"chunks": chunks, "prompt_tokens": engine.tokenize(args.prompt),
                      "start_token": engine.bos_token_id, "stop_tokens": engine.eos_token_ids,
                      "seconds": round(time.monotonic() - start, 3)}
        finally:
            session.close()  # before the engine, which otherwise logs that a session outlived it
            engine.close()
    json.dump(result, sys.stdout)


def _benchmark_main(args: argparse.Namespace) -> None:
    """The child of engine_benchmark: pin, run the engine's benchmark warmup + reps times, print the report."""
    if args.cpus:  # here rather than in a preexec_fn (unsafe in a threaded parent): before any engine thread exists
        os.sched_setaffinity(0, args.cpus)
    if args.alarm_s:
        signal.alarm(args.alarm_s)  # SIGALRM's default action ends the process, native code or not
    import litert_lm

    bundle = Path(args.model)
    cache = weight_cache_path(bundle) if bundle.is_file() else None
    cache_found = cache is not None and cache.is_file()
    runs = []
    for _ in range(args.warmup + args.reps):
        info = litert_lm.Benchmark(
            model_path=str(bundle), backend=litert_lm.interfaces.CPU(thread_count=args.threads),
            prefill_tokens=args.prefill, decode_tokens=args.decode, max_num_tokens=args.max_num_tokens,
            # float32 activations, as our native runner computes by default: the engine's default for the text
            # decoder is fp16, which CPUs with fp16 arithmetic would run in fp16.
            activation_data_type=litert_lm.ActivationDataType.FLOAT32).run()
        _check_lengths(info, args)
        runs.append(info)
    report = _benchmark_report(args, runs, cache, cache_found)
    print(json.dumps(report.to_json()))


def _check_lengths(info, args: argparse.Namespace) -> None:
    """The engine ran what was asked: it silently decodes fewer tokens once max_num_tokens is reached."""
    ran = (info.last_prefill_token_count, info.last_decode_token_count)
    if ran != (args.prefill, args.decode):
        raise EngineLengthError(f"the engine ran prefill {ran[0]}, decode {ran[1]} tokens where {args.prefill}, "
                                f"{args.decode} were asked (max_num_tokens {args.max_num_tokens})")


def _benchmark_report(args: argparse.Namespace, runs: list, cache: Path | None, cache_found: bool) -> RunnerReport:
    """The engine's figures as a RunnerReport; what it does not tell (vocabulary, layers, KV cache and weight
    bytes, tokens, logits, bandwidth) is None or empty. Seconds are derived from the engine's own counts/rates."""
    version = importlib.metadata.version(PACKAGE)
    samples = [Sample(prefill_s=r.last_prefill_token_count / r.last_prefill_tokens_per_second,
                      prefill_tok_s=r.last_prefill_tokens_per_second,
                      decode_s=r.last_decode_token_count / r.last_decode_tokens_per_second,
                      decode_tok_s=r.last_decode_tokens_per_second,
                      ttft_ms=r.time_to_first_token_in_second * 1000) for r in runs[args.warmup:]]
    cache_bytes = cache.stat().st_size if cache is not None and cache.is_file() else None
    return RunnerReport(
        runner=RUNNER, runner_version=version, api="litert-lm", runtime="LiteRT-LM", runtime_version=version,
        model=str(args.model), model_bytes=Path(args.model).stat().st_size, threads=args.threads,
        prefill_len=args.prefill, decode_len=args.decode, depth=0, kv_len=args.max_num_tokens, vocab=None,
        num_layers=None, kv_cache_bytes=None, weight_bytes=None, warmup=args.warmup,
        init_ms=runs[0].init_time_in_second * 1000,
        init_warm_ms=runs[1].init_time_in_second * 1000 if len(runs) > 1 else None,
        samples=samples, tokens=[], top_logits=[],
        peak_rss_kb=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,  # the parent puts wait4's figure here
        vmhwm_kb=_vmhwm_kb(), bandwidth=None, xnnpack=True, fp16_arithmetic=False,
        # The first run's load: it read a cache file that was there, or wrote one; none after it: no cache.
        weight_cache="off" if cache_bytes is None else "warm" if cache_found else "cold",
        weight_cache_bytes=cache_bytes,
    )


def _vmhwm_kb() -> int | None:
    """This process's peak resident set (kB), which unlike ru_maxrss starts afresh at exec."""
    try:
        status = Path("/proc/self/status").read_text()
    except OSError:
        return None
    return next((int(line.split()[1]) for line in status.splitlines() if line.startswith("VmHWM:")), None)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="python -m device_runners.runners.litert_lm")
    sub = ap.add_subparsers(dest="command", required=True)
    g = sub.add_parser("generate", help="greedy generation in LiteRT-LM's engine; prints JSON")
    g.add_argument("--model", type=Path, required=True, help=".litertlm (or .task) bundle")
    g.add_argument("--prompt", required=True, help="prompt text (no prompt template is applied)")
    g.add_argument("--max-tokens", type=int, default=16)
    g.add_argument("--threads", type=int, default=1)
    b = sub.add_parser("benchmark", help="LiteRT-LM's own benchmark, warmup + reps runs; prints a RunnerReport")
    b.add_argument("--model", type=Path, required=True, help=".litertlm bundle")
    b.add_argument("--prefill", type=int, required=True)
    b.add_argument("--decode", type=int, required=True)
    b.add_argument("--threads", type=int, default=1)
    b.add_argument("--reps", type=int, default=3)
    b.add_argument("--warmup", type=int, default=1)
    b.add_argument("--max-num-tokens", type=int, help="the engine's token budget (default: prefill + decode)")
    b.add_argument("--cpus", type=_cpu_list, help="pin to these cores, e.g. 0,1")
    b.add_argument("--alarm-s", type=int, help="end this process after so many seconds (SIGALRM)")
    args = ap.parse_args(argv)
    if args.command == "benchmark":
        args.max_num_tokens = args.max_num_tokens or args.prefill + args.decode
        _benchmark_main(args)
    else:
        _generate_main(args)


def _cpu_list(text: str) -> list[int]:
    return [int(c) for c in text.split(",") if c.strip()]


if __name__ == "__main__":
    main()
