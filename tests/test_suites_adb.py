"""`pytest suites/ --device adb:SERIAL` end to end through the real adb server and the protocol-level test
device: the code path a Pixel 8 takes (push, pinned run, pull, store, report), a second run that pushes
nothing, a device that disappears mid-run, and one pytest-xdist worker per device."""

import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

from harness.store.store import Store
from tests.conftest import REPO

SMALL = ["--models", "tinyllama", "--quant", "dynamic_int8", "--prefill", "32", "--decode", "16", "--reps", "2",
         "--threads", "2", "--cooldown", "0"]


def run_suites(tmp_path: Path, *extra: str, timeout: float = 600) -> subprocess.CompletedProcess:
    args = [sys.executable, "-m", "pytest", "suites/", "-p", "no:cacheprovider", *SMALL,
            "--results-db", str(tmp_path / "results.db"), "--report", str(tmp_path / "report"), *extra]
    return subprocess.run(args, cwd=REPO, capture_output=True, text=True, timeout=timeout)


def test_suite_runs_on_the_device_through_adb(fake_adb_device, tmp_path):
    device = fake_adb_device()
    out = run_suites(tmp_path, "--device", device.name)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]

    frame = Store(str(tmp_path / "results.db")).results_frame()
    assert len(frame) == 1
    row = frame.iloc[0]
    assert row["status"] == "ok" and row["device"] == device.name and row["decode_tok_s"] > 0
    assert row["threads"] == 2 and row["cpus"] == "4,8"  # the X3 and an A715 of the Pixel-8-like topology
    data = json.loads(row["data"])
    assert "timeout -s KILL 600 taskset 110 " in data["provenance"]["device_command"]
    assert data["provenance"]["device"]["model"] == "litert-bench test device"
    assert set(data["provenance"]["sha256"]) == {"model", "runner", "runtime_lib"}
    assert (tmp_path / "report" / f"run-{int(row['run_id'])}.html").is_file()
    # Device agreement (issue 13): the device's greedy tokens on the same file equal the host runner's.
    checks = Store(str(tmp_path / "results.db")).accuracy_frame().set_index("check")
    agreement = checks.loc[f"agreement:{device.name}"]
    figures = json.loads(agreement["metrics"])
    assert agreement["passed"] and figures["greedy_identical"] and figures["tokens"] == figures["host_tokens"]
    assert len(figures["tokens"]) == 16 and figures["device"] == device.name

    # Everything went over adb: pushed into the cache, run in the run's folder, output pulled back.
    names = {p.rsplit("/", 1)[1] for p in device.pushed()}
    assert {"llm_runner.part", "liblitert-lm.so.part"} <= names and any(n.endswith(".tflite.part") for n in names)
    log = device.log()
    assert any(line.startswith("RECV /data/local/tmp/litert-bench/run-") for line in log)
    litert = device.root / "data/local/tmp/litert-bench"
    assert not list(litert.glob("run-*"))  # the run's folder is removed; the cache stays
    assert len(list((litert / "cache").rglob("llm_runner"))) == 1

    pushed = len(device.pushed())
    again = run_suites(tmp_path, "--device", device.name)
    assert again.returncode == 0, again.stdout[-3000:]
    assert len(device.pushed()) == pushed  # the second run pushed nothing


def test_device_that_disappears_fails_its_cells_and_the_others_finish(fake_adb_device, tmp_path):
    from device_runners.runners.native import build_runner

    vanishing, steady = fake_adb_device("vanishing"), fake_adb_device("steady")
    marker = f"stuck-{time.monotonic_ns()}"
    # A runner that stalls on the vanishing device (its working folder lies under that device's root) and is the
    # real runner elsewhere.
    wrapper = tmp_path / "llm_runner"
    stall = f"{sys.executable} -c 'import time; time.sleep(120)' {marker}"
    wrapper.write_text(f'#!/bin/sh\ncase "$PWD" in {vanishing.root}/*) touch started; exec {stall} ;; esac\n'
                       f'exec {build_runner("host").binary} "$@"\n')
    wrapper.chmod(0o755)

    def pull_the_plug() -> None:  # once the cell is running on it
        deadline = time.monotonic() + 300
        while not list(vanishing.root.rglob("started")) and time.monotonic() < deadline:
            time.sleep(0.2)
        vanishing.kill()

    threading.Thread(target=pull_the_plug, daemon=True).start()
    start = time.monotonic()
    try:
        # -m performance: the device must vanish while a speed cell's runner runs (the accuracy suite's
        # agreement cells would meet the stalled runner first).
        out = run_suites(tmp_path, "-m", "performance", "--device", f"{vanishing.name},{steady.name}",
                         "--runner-bin", str(wrapper))
    finally:  # the stalled runner, orphaned by the killed device
        for pid in subprocess.run(["pgrep", "-f", marker], capture_output=True, text=True).stdout.split():
            os.kill(int(pid), signal.SIGKILL)
    assert out.returncode == 1, out.stdout[-3000:] + out.stderr[-3000:]
    assert time.monotonic() - start < 300
    frame = Store(str(tmp_path / "results.db")).results_frame().set_index("device")
    assert frame.loc[steady.name, "status"] == "ok" and frame.loc[steady.name, "decode_tok_s"] > 0
    assert frame.loc[vanishing.name, "status"] == "failed"
    assert f"DeviceLost: lost the device {vanishing.name} while running" in frame.loc[vanishing.name, "error"]


def test_one_xdist_worker_per_device_and_one_run(fake_adb_device, tmp_path):
    first, second = fake_adb_device("first"), fake_adb_device("second")
    # Two cells per device (thread counts), one artifact: the time goes to the workers, not to conversions.
    out = run_suites(tmp_path, "-n", "2", "-v", "--device", f"{first.name},{second.name}", "--threads", "1,2",
                     "-k", "test_prefill_and_decode")
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    frame = Store(str(tmp_path / "results.db")).results_frame()
    assert len(frame) == 4 and (frame["status"] == "ok").all()
    assert frame["run_id"].nunique() == 1  # the workers stored under one run, reported once
    run_id = int(frame["run_id"].iloc[0])
    assert (tmp_path / "report" / f"run-{run_id}.html").is_file() and f"litert-bench run {run_id}" in out.stdout
    workers: dict[str, set[str]] = {}
    for worker, test_id in re.findall(r"\[(gw\d+)\] \[\s*\d+%\] PASSED (\S+)", out.stdout):
        device = first.name if first.name in test_id else second.name
        workers.setdefault(device, set()).add(worker)
    assert len(workers[first.name]) == len(workers[second.name]) == 1  # each device's cells on one worker
    assert workers[first.name] != workers[second.name]
