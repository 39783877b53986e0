"""The release gate on real measurements: `pytest suites/` three times on the tiny model (real conversion,
the native runner, real SQLite). A rerun of the same build passes against the first run; a run that shares its
core with a busy loop (an injected slowdown: about half the core) fails its cell with the figures, in pytest and
in `python -m harness gate`.

One thread pinned to core 0 throughout: a 2-thread run on a 2-core VM moves with whatever else the host runs
(31k–71k prefill tok/s across 5 repetitions, against a steady 37k for 1 thread, measured on such a VM), so a
slowdown injected as "1 thread instead of 2" could hide in that scatter; the scheduler's fair share of one core
between the runner and the loop cannot."""

import os
import subprocess
import sys
import time

import pytest

from harness.store.store import Store
from tests.conftest import SERVICES_PROVIDED, run_cli
from tests.test_suites_e2e import run_suites

# One performance cell, long enough to time well (prefill 512: milliseconds, not microseconds), 7 samples a side.
WORKLOAD = ["-k", "prefill_and_decode", "--quant", "none", "--prefill", "512", "--decode", "64", "--reps", "7",
            "--warmup", "2", "--bandwidth-probe-mb", "0", "--threads", "1", "--cpus", "0"]
BUSY_LOOP = "import os\nos.sched_setaffinity(0, {0})\nwhile True:\n    pass\n"


def _cpu_times() -> tuple[int, int]:
    """(busy, total) jiffies of all cores since boot: user nice system idle iowait irq softirq steal."""
    with open("/proc/stat") as f:
        fields = [int(x) for x in f.readline().split()[1:9]]
    return sum(fields) - fields[3] - fields[4], sum(fields)


def _busy_cores(seconds: float = 2.0) -> float:
    """How many cores other processes (or the hypervisor) kept busy over a short window; this test is idle."""
    busy0, total0 = _cpu_times()
    time.sleep(seconds)
    busy1, total1 = _cpu_times()
    return (os.cpu_count() or 1) * (busy1 - busy0) / max(total1 - total0, 1)


def test_gate_passes_an_honest_rerun_and_fails_a_slowdown(tmp_path):
    # "Honest reruns do not fire" holds on an idle host: on a 2-core machine one busy neighbour halves a
    # 2-thread run. CI runs the tests alone; a developer's shared machine may not be idle.
    busy = _busy_cores()
    if busy > 0.3 and not SERVICES_PROVIDED:
        pytest.skip(f"host not idle: other processes kept {busy:.1f} cores busy")
    db = str(tmp_path / "results.db")
    first = run_suites(tmp_path, *WORKLOAD, "--run-label", "base")
    assert first.returncode == 0, first.stdout[-3000:] + first.stderr[-3000:]

    honest = run_suites(tmp_path, *WORKLOAD, "--baseline", "base")
    assert honest.returncode == 0, honest.stdout[-3000:]
    assert "PASS: 1 cells (limits: " in honest.stdout and "baseline run 1" in honest.stdout

    loop = subprocess.Popen([sys.executable, "-c", BUSY_LOOP])
    try:
        slow = run_suites(tmp_path, *WORKLOAD, "--baseline", "base")
    finally:
        loop.kill()
        loop.wait()
    assert slow.returncode == 1, slow.stdout[-3000:]
    out = slow.stdout
    assert "gate: tinyllama-tiny · none · host · p512 d64 t1 failed" in out
    assert "prefill tok/s" in out and " vs baseline " in out and "): regression" in out  # medians, Δ, p
    assert "FAIL: 1 of 1 cells" in out  # the end-of-session summary
    summary = (tmp_path / "step-summary.md").read_text()  # $GITHUB_STEP_SUMMARY, one section per session
    assert summary.count("release gate PASS") == 2 and summary.count("release gate FAIL") == 1

    store = Store(db)
    assert store.runs_frame()["id"].tolist() == [1, 2, 3]
    assert run_cli("gate", "--results-db", db, "--run", "2", "--baseline", "base").returncode == 0
    failing = run_cli("gate", "--results-db", db, "--run", "3", "--baseline", "base")
    assert failing.returncode == 1 and "prefill tok/s" in failing.stderr
    report = (tmp_path / "report" / "run-3.html").read_text()
    assert '<td class="regression"' in report and "compared with baseline run 1" in report
    assert (tmp_path / "report" / "dashboard.html").is_file()
