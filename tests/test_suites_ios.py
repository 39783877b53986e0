"""`pytest suites/ --device ios:UDID` end to end through unmodified pymobiledevice3 and the protocol-level test
iPhone (device_runners/fake_ios): the code path an iPhone takes (install the runner app, push into its
container, launch through DVT, poll, pull, store, report), and a second run that installs and pushes nothing.
The test iPhone runs the host's runner build where the real app would run: this tests the host side to the
wire, not the app."""

import json
import threading
import time
from pathlib import Path

from harness.store.store import Store
from tests.test_device_ios import _gone, _launched, make_ipa
from tests.test_suites_adb import run_suites

pytest_plugins = ["tests.ios_fixtures"]


def test_suite_runs_on_the_iphone_and_a_second_run_installs_and_pushes_nothing(fake_ios, tmp_path: Path):
    name = f"ios:{fake_ios.udid}"
    ipa = make_ipa(tmp_path / "LiteRTBenchRunner.ipa")
    out = run_suites(tmp_path, "--device", name, "--runner-app", str(ipa))
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]

    store = Store(str(tmp_path / "results.db"))
    frame = store.results_frame()
    assert len(frame) == 1
    row = frame.iloc[0]
    assert row["status"] == "ok" and row["device"] == name and row["decode_tok_s"] > 0
    data = json.loads(row["data"])
    assert "no core pinning on iOS" in data["provenance"]["device_command"]
    assert "--bandwidth-probe-mb 0" in data["command"]  # an app may not fork the probe's helpers
    assert data["provenance"]["device"]["os"] == "iOS"
    assert (tmp_path / "report" / f"run-{int(row['run_id'])}.html").is_file()
    agreement = store.accuracy_frame().set_index("check").loc[f"agreement:{name}"]
    assert agreement["passed"], agreement["failures"]

    log = fake_ios.log()
    installs = [line for line in log if line.startswith("install ")]
    writes = [line for line in log if line.startswith("afc write") and ".tflite" in line]
    assert len(installs) == 1 and writes
    again = run_suites(tmp_path, "--device", name)  # the installed app, no --runner-app
    assert again.returncode == 0, again.stdout[-3000:] + again.stderr[-3000:]
    log = fake_ios.log()
    assert [line for line in log if line.startswith("install ")] == installs
    assert [line for line in log if line.startswith("afc write") and ".tflite" in line] == writes
    assert len(Store(str(tmp_path / "results.db")).results_frame()) == 2


def test_an_iphone_that_disappears_fails_its_cell_and_the_hosts_cell_finishes(fake_ios, tmp_path: Path):
    name = f"ios:{fake_ios.udid}"
    fake_ios.set_fault("hang")  # the cell is still running on the iPhone when it goes

    def pull_the_plug() -> None:
        deadline = time.monotonic() + 300
        while not any(line.startswith("launch ") for line in fake_ios.log()) and time.monotonic() < deadline:
            time.sleep(0.2)
        fake_ios.kill()

    threading.Thread(target=pull_the_plug, daemon=True).start()
    start = time.monotonic()
    # -m performance: the device must vanish while a speed cell runs (agreement cells would meet the hang first).
    out = run_suites(tmp_path, "-m", "performance", "--device", f"{name},host",
                     "--runner-app", str(make_ipa(tmp_path / "LiteRTBenchRunner.ipa")))
    assert out.returncode == 1, out.stdout[-3000:] + out.stderr[-3000:]
    assert time.monotonic() - start < 300
    frame = Store(str(tmp_path / "results.db")).results_frame().set_index("device")
    assert frame.loc["host", "status"] == "ok" and frame.loc["host", "decode_tok_s"] > 0
    assert frame.loc[name, "status"] == "failed"
    assert f"lost the device {name}" in frame.loc[name, "error"]
    assert all(_gone(pid) for pid in _launched(fake_ios))  # the hanging app went with the device
