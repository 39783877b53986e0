"""`pytest suites/` stopped in the middle of a cell, by Ctrl-C (SIGINT) or by a cancelled CI job (SIGTERM), on
the host and on the adb test device behind the real adb server: no runner is left running on the device, the
run gets its finish time, the cells measured before are in the database and the cell in flight is stored as
failed, and the device keeps no working folder."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from harness.store.store import Store
from tests.conftest import REPO
from tests.processes import default_signals, gone

CELLS = ["-k", "test_prefill_and_decode", "--models", "tinyllama", "--quant", "dynamic_int8", "--prefill", "32",
         "--decode", "16", "--reps", "2", "--threads", "1,2", "--cooldown", "0"]


def hanging_runner(tmp_path: Path, marker: str) -> tuple[Path, Path]:
    """The real runner for the --threads 1 cell; for the --threads 2 cell, one that starts a child, says it has
    started and hangs. The wrapper and the file it touches once hanging."""
    from device_runners.runners.native import build_runner

    real, started = build_runner("host").binary, tmp_path / "started"
    sleep = f"{sys.executable} -c 'import time; time.sleep(300)' {marker}"
    script = tmp_path / "llm_runner"
    script.write_text(f'#!/bin/bash\ncase "$*" in *"--threads 2 "*) {sleep} & touch {started}; exec {sleep} ;; esac\n'
                      f'exec {real} "$@"\n')
    script.chmod(0o755)
    return script, started


def stop_suites_mid_cell(tmp_path: Path, device: str, runner: Path, started: Path, signum: int) -> int:
    """Run the two cells in a child pytest, send it `signum` once the second cell's runner hangs; its exit code."""
    args = [sys.executable, "-m", "pytest", "suites/", "-p", "no:cacheprovider", *CELLS, "--device", device,
            "--runner-bin", str(runner), "--results-db", str(tmp_path / "results.db"),
            "--report", str(tmp_path / "report")]
    env = os.environ | {"GITHUB_STEP_SUMMARY": str(tmp_path / "step-summary.md")}
    log = tmp_path / "pytest.log"
    with log.open("w") as out:
        proc = subprocess.Popen(args, cwd=REPO, stdout=out, stderr=subprocess.STDOUT, env=env,
                                preexec_fn=default_signals)
        try:
            deadline = time.monotonic() + 900  # a first conversion and runner build take minutes
            while not started.exists() and proc.poll() is None and time.monotonic() < deadline:
                time.sleep(0.2)
            assert started.exists(), f"the hanging cell never started:\n{log.read_text()[-3000:]}"
            proc.send_signal(signum)
            code = proc.wait(timeout=180)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    print(log.read_text()[-3000:])  # shown when the test fails
    return code


def check_the_run(tmp_path: Path, marker: str, signal_name: str) -> None:
    assert gone(marker), "the hanging runner (or its child) was left running on the device"
    store = Store(str(tmp_path / "results.db"))
    runs = store.runs_frame()
    assert len(runs) == 1 and runs["finished_at"].notna().all(), "the run has no finish time"
    cells = store.results_frame()
    assert sorted(cells["status"]) == ["failed", "ok"]
    measured, stopped = cells[cells["status"] == "ok"].iloc[0], cells[cells["status"] == "failed"].iloc[0]
    assert measured["threads"] == 1 and measured["decode_tok_s"] > 0  # the cell measured before: kept
    assert stopped["error"].startswith("KeyboardInterrupt") and signal_name in stopped["error"]
    store.close()


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_stopped_session_on_the_host(tmp_path, marker, signum):
    runner, started = hanging_runner(tmp_path, marker)
    code = stop_suites_mid_cell(tmp_path, "host", runner, started, signum)
    assert code == pytest.ExitCode.INTERRUPTED
    check_the_run(tmp_path, marker, "" if signum == signal.SIGINT else "stopped by SIGTERM")


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_stopped_session_on_an_adb_device(fake_adb_device, tmp_path, marker, signum):
    device = fake_adb_device()
    runner, started = hanging_runner(tmp_path, marker)
    code = stop_suites_mid_cell(tmp_path, device.name, runner, started, signum)
    assert code == pytest.ExitCode.INTERRUPTED
    check_the_run(tmp_path, marker, "" if signum == signal.SIGINT else "stopped by SIGTERM")
    litert = device.root / "data/local/tmp/litert-bench"
    assert not list(litert.glob("run-*")), "the session's working folder was left on the device"
