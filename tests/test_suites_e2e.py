"""`pytest suites/` end to end, as a user runs it: real conversion, the real runner, real SQLite, the report.
Also the faults a long session meets: a runner that crashes and one that hangs fail only their own cell."""

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from harness.store.store import Store
from tests.conftest import REPO

SMALL = ["--models", "tinyllama", "--quant", "none,dynamic_int8", "--prefill", "32", "--decode", "16",
         "--threads", "2", "--reps", "2"]


def run_suites(tmp_path: Path, *extra: str, timeout: float = 900) -> subprocess.CompletedProcess:
    """The suites in a child pytest (options given later win); its gate summary goes to a file of the test's,
    not to the CI job's page."""
    args = [sys.executable, "-m", "pytest", "suites/", "-p", "no:cacheprovider", *SMALL,
            "--results-db", str(tmp_path / "results.db"), "--report", str(tmp_path / "report"), *extra]
    env = os.environ | {"GITHUB_STEP_SUMMARY": str(tmp_path / "step-summary.md")}
    return subprocess.run(args, cwd=REPO, capture_output=True, text=True, timeout=timeout, env=env)


def _wrapper(tmp_path: Path, body: str) -> Path:
    """A runner that misbehaves for the dynamic_int8 cell and is the real runner for the others."""
    from device_runners.runners.native import build_runner

    real = build_runner("host").binary
    script = tmp_path / "llm_runner"
    script.write_text(f'#!/bin/bash\ncase "$*" in *dynamic_int8*) {body} ;; esac\nexec {real} "$@"\n')
    script.chmod(0o755)
    return script


def test_default_style_run_stores_every_cell_and_writes_the_report(tmp_path):
    out = run_suites(tmp_path)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    frame = Store(str(tmp_path / "results.db")).results_frame()
    assert sorted(frame["quant"]) == ["dynamic_int8", "none"]
    assert (frame["status"] == "ok").all()
    assert (frame["decode_tok_s"] > 0).all() and (frame["prefill_tok_s"] > 0).all()
    assert (frame["peak_rss_mb"] > 0).all() and (frame["threads"] == 2).all()
    report = (tmp_path / "report" / f"run-{int(frame['run_id'][0])}.html").read_text()
    assert report.count("tinyllama-tiny") >= 2 and "dynamic_int8" in report
    assert "litert-bench run" in out.stdout and "decode tok/s" in out.stdout  # the terminal table

    # A rerun reuses every artifact. -s: the cache's "converting ..." line goes to the session's stderr, which
    # pytest would otherwise capture and show only for a failing test, so the check could never fail.
    again = run_suites(tmp_path, "-s")
    assert again.returncode == 0 and "litert-bench run" in again.stdout
    assert "converting" not in again.stdout + again.stderr


def test_crashing_runner_fails_its_cell_and_the_others_are_stored(tmp_path):
    crash = _wrapper(tmp_path, 'echo "fault injection: about to crash" >&2; kill -SEGV $$')
    out = run_suites(tmp_path, "--runner-bin", str(crash))
    assert out.returncode == 1
    frame = Store(str(tmp_path / "results.db")).results_frame().set_index("quant")
    assert frame.loc["none", "status"] == "ok" and frame.loc["none", "decode_tok_s"] > 0
    assert frame.loc["dynamic_int8", "status"] == "failed"
    assert "fault injection: about to crash" in frame.loc["dynamic_int8", "error"]
    assert "fault injection: about to crash" in out.stdout  # the failing test shows the runner's stderr tail


def test_hanging_runner_is_killed_by_the_device_side_timeout(tmp_path):
    marker = f"hang-{os.getpid()}-{time.monotonic_ns()}"
    hang = _wrapper(tmp_path, f'echo "{marker}" >&2; exec -a {marker} sleep 300')
    start = time.monotonic()
    out = run_suites(tmp_path, "--runner-bin", str(hang), "--runner-timeout", "5")
    assert out.returncode == 1
    assert time.monotonic() - start < 240  # the 300 s sleep did not hold the session
    frame = Store(str(tmp_path / "results.db")).results_frame().set_index("quant")
    assert frame.loc["none", "status"] == "ok"
    assert frame.loc["dynamic_int8", "status"] == "failed"
    assert "timed out after 5 s" in frame.loc["dynamic_int8", "error"]
    leftover = subprocess.run(["pgrep", "-f", marker], capture_output=True, text=True)
    assert leftover.stdout == "", "the hung runner was left running"


@pytest.mark.parametrize(("args", "message"), [
    (["--models", "gpt5"], "--models: unknown 'gpt5'; valid: gemma, gemma3, llama3.2, phi2"),
    (["--quant", "int3"], "--quant: unknown 'int3'; valid: none, fp16"),
    (["--device", "pixel99"], "--device: unknown 'pixel99'; valid: adb-test-device, android, galaxy-s24"),
    (["--prefill", "abc"], "--prefill takes comma-separated whole numbers"),
])
def test_bad_names_are_usage_errors(tmp_path, args, message):
    out = run_suites(tmp_path, *args, timeout=120)
    assert out.returncode == 4  # pytest's usage-error exit code
    assert message in out.stderr
