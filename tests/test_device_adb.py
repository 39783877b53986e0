"""The adb transport against the protocol-level test device, through the real adb server: facts, pinning, exit
codes, quoting, the device-side timeout, the content-addressed cache, verified pushes, full storage, a device
that disappears, forwards, `python -m harness devices` and `devices --clean`, $ANDROID_SERIAL against a profile,
and a push cut off by Ctrl-C."""

import json
import os
import posixpath
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from device_runners.device import PROFILES, Device, open_device
from device_runners.runners.native import RunnerBuild
from device_runners.transports.adb import AdbAddress, AdbDeviceError, AdbTransport, DeviceLost, StorageFull
from harness.common.files import sha256_file
from harness.measure.bench import check_abi
from tests.conftest import REPO, run_cli
from tests.processes import ctrl_c_raises, gone, running


@pytest.fixture
def device(fake_adb_device):
    test_device = fake_adb_device()
    opened = open_device(test_device.name)
    yield test_device, opened
    opened.transport.close()


def test_adb_names():
    assert AdbAddress.parse("adb:R5CX10ABC") == AdbAddress("R5CX10ABC")
    assert AdbAddress.parse("adb:127.0.0.1:5555") == AdbAddress("127.0.0.1:5555")
    assert AdbAddress.parse("adb:R5CX10ABC@lab-host:5037") == AdbAddress("R5CX10ABC", ("lab-host", 5037))
    for bad in ("adb:", "R5CX10ABC", "adb:X@host", "adb:X@host:port"):
        with pytest.raises(ValueError, match="adb:SERIAL or adb:SERIAL@HOST:PORT"):
            AdbAddress.parse(bad)


def test_facts_topology_and_state(device):
    test_device, opened = device
    assert opened.profile.name == "adb-test-device" and opened.profile.runner_target == "host"
    facts = opened.facts
    assert facts.model == "litert-bench test device" and facts.os == "Android" and facts.os_version.startswith("14")
    assert facts.cpus == list(range(9)) and facts.cpu_max_khz[8] == 2914000 and facts.mem_total_mb
    assert facts.clusters() == ["4×1704 MHz (cpu0-3)", "4×2367 MHz (cpu4-7)", "1×2914 MHz (cpu8)"]
    assert opened.cpus_for(opened.threads_for(2)) == [4, 8]  # the X3, then the first A715
    state = opened.transport.state()
    assert state.cpu_cap_khz[4] == 2367000 and state.temps_c["BIG"] == 38.0
    assert set(state.governors.values()) == {"sched_pixel"}
    # read_files and facts each take one shell command
    assert sum(line.startswith("OPEN shell") for line in test_device.log()) == 3  # model, facts, state


def test_run_is_pinned_quoted_and_reports_exit_codes(device, tmp_path):
    test_device, opened = device
    hostile = "$(touch pwned); `touch pwned2` ; rm -rf / #'\""
    res = opened.transport.run(["sh", "-c", 'echo "$1"; echo to-stderr >&2; exit 7', "sh", hostile],
                               timeout=30, cpus=[4, 8])
    assert res.exit_code == 7 and not res.timed_out
    assert res.stdout == hostile + "\n" and res.stderr == "to-stderr\n"
    assert "timeout -s KILL 30 taskset 110 sh -c" in res.command
    assert not list(test_device.root.rglob("pwned*"))


def test_hanging_command_is_killed_by_the_device_side_timeout(device):
    _, opened = device
    marker = f"hang-{os.getpid()}-{time.monotonic_ns()}"
    start = time.monotonic()
    res = opened.transport.run([sys.executable, "-c", "import time; time.sleep(300)", marker], timeout=2)
    elapsed = time.monotonic() - start
    assert res.timed_out and res.exit_code == 137
    assert elapsed < 15  # the device's `timeout`, not the host's 30 s backstop, ended it
    assert subprocess.run(["pgrep", "-f", marker], capture_output=True).stdout == b""


def test_second_session_pushes_nothing_already_on_the_device(device, tmp_path):
    test_device, opened = device
    runner, lib = tmp_path / "llm_runner", tmp_path / "liblitert-lm.so"
    runner.write_bytes(os.urandom(300_000))
    lib.write_bytes(os.urandom(200_000))
    paths = opened.transport.stage_together([runner, lib])
    assert [posixpath.basename(p) for p in paths] == ["llm_runner", "liblitert-lm.so"]
    assert len({posixpath.dirname(p) for p in paths}) == 1  # one folder: RUNPATH $ORIGIN finds the library
    assert paths[0].startswith("/data/local/tmp/litert-bench/cache/")
    assert len(test_device.pushed()) == 2

    again = AdbTransport(test_device.name, AdbAddress(test_device.serial))  # a new session
    assert again.stage_together([runner, lib]) == paths
    assert len(test_device.pushed()) == 2
    assert again.sha256(paths[0]) == sha256_file(runner)

    runner.write_bytes(os.urandom(300_000))  # a rebuilt runner goes to a folder of its own
    assert again.stage_together([runner, lib])[0] != paths[0]


def test_a_short_push_is_caught_on_the_device(device, tmp_path, monkeypatch):
    """sync's sizes are 32-bit (a file over 4 GiB looks short or wraps): the device's stat and sha256 decide."""
    test_device, opened = device
    model = tmp_path / "model.tflite"
    model.write_bytes(os.urandom(500_000))
    truncated = tmp_path / "truncated"
    truncated.write_bytes(model.read_bytes()[:100_000])
    send = AdbTransport._send
    monkeypatch.setattr(AdbTransport, "_send", lambda self, local, remote, size: send(self, truncated, remote, size))
    with pytest.raises(AdbDeviceError, match=r"the push of .*model.tflite is incomplete: the device holds 100000 "
                                             r"bytes .* sent 500000"):
        opened.transport.stage(model)
    assert not list((test_device.root / "data/local/tmp/litert-bench/cache").rglob("model.tflite*"))


def test_full_storage_is_a_clear_error(fake_adb_device, tmp_path, monkeypatch):
    test_device = fake_adb_device("small", quota_bytes=1_000_000)
    transport = open_device(test_device.name).transport
    model = tmp_path / "model.tflite"
    model.write_bytes(os.urandom(3_000_000))
    with pytest.raises(StorageFull, match=rf"{test_device.name}: pushing model.tflite \(2.9 MiB\) to "
                                          r"/data/local/tmp/litert-bench/cache/.* failed: write failed: "
                                          r"No space left on device"):
        transport.stage(model)
    assert not list(test_device.root.rglob("model.tflite*"))  # no partial file left behind

    # Where df already tells, the push is refused before it starts.
    monkeypatch.setattr(AdbTransport, "free_bytes", lambda self, folder="/data/local/tmp": 1_048_576)
    sends = len(test_device.pushed())
    with pytest.raises(StorageFull, match=r"no room for model.tflite \(2.9 MiB\): 1.0 MiB free"):
        transport.stage(model)
    assert len(test_device.pushed()) == sends


def test_missing_output_is_an_error_not_empty_text(device):
    _, opened = device
    with pytest.raises(AdbDeviceError, match="cannot read /data/local/tmp/nope.json: open failed: No such file"):
        opened.transport.pull_text("/data/local/tmp/nope.json")


def test_device_that_disappears_mid_command_is_reported_at_once(device):
    test_device, opened = device
    threading.Timer(1.0, test_device.kill).start()
    start = time.monotonic()
    with pytest.raises(DeviceLost, match=rf"lost the device {test_device.name} while running sleep 20"):
        opened.transport.run(["sleep", "20"], timeout=20)
    assert time.monotonic() - start < 15


def test_unknown_serial_lists_the_online_devices(fake_adb_device):
    test_device = fake_adb_device()
    with pytest.raises(AdbDeviceError, match=rf"adb:no-such-phone: .*not found.*; online devices: .*"
                                             rf"{test_device.serial}"):
        open_device("adb:no-such-phone")


def test_device_behind_a_named_adb_server(fake_adb_device, adb_server, monkeypatch):
    test_device = fake_adb_device()
    monkeypatch.setenv("ANDROID_ADB_SERVER_PORT", "1")  # nothing there: only the named server can answer
    remote = open_device(f"{test_device.name}@127.0.0.1:{adb_server.port}")
    assert remote.transport.identity == f"adb-{test_device.serial}@127.0.0.1:{adb_server.port}"
    assert remote.transport.run(["echo", "hi"], timeout=10).stdout == "hi\n"
    remote.transport.close()


def test_profile_finds_its_phone_by_model(fake_adb_device):
    test_device = fake_adb_device()
    found = open_device("adb-test-device")  # the profile's `models` picks the attached device
    assert found.transport.serial == test_device.serial and found.name == "adb-test-device"
    with pytest.raises(AdbDeviceError, match=rf"pixel8 \(Google Pixel 8\): no attached device matches; online "
                                             rf"devices: {test_device.serial} \(litert_bench_test_device\)"):
        open_device("pixel8")


def test_runner_for_another_abi_is_refused_before_anything_is_pushed(device, tmp_path):
    test_device, opened = device
    phone = Device(PROFILES["pixel8"], opened.transport, opened.name)
    arm_runner = RunnerBuild(tmp_path / "llm_runner", tmp_path / "liblitert-lm.so", "android-arm64")
    with pytest.raises(RuntimeError, match=r"reports ABI x86_64, but its profile 'pixel8' runs the android-arm64 "
                                           r"runner, built for arm64-v8a"):
        check_abi(phone, arm_runner)
    check_abi(opened, RunnerBuild(Path("x"), Path("y"), "host"))  # the test device runs host builds


def test_forward_reaches_a_port_on_the_device(device, adb_server):
    test_device, _ = device
    with socket.create_server(("127.0.0.1", 0)) as server:
        def echo() -> None:
            conn, _ = server.accept()
            with conn:
                conn.sendall(conn.recv(100).upper())

        threading.Thread(target=echo, daemon=True).start()
        local = adb_server.device(test_device.serial).forward_port(server.getsockname()[1])
        with socket.create_connection(("127.0.0.1", local), timeout=10) as sock:
            sock.sendall(b"ping")
            assert sock.recv(100) == b"PING"


def test_devices_command_lists_attached_devices(fake_adb_device):
    test_device = fake_adb_device()
    out = run_cli("devices", timeout=120)
    assert out.returncode == 0, out.stderr
    rows = {row["device"]: row for row in map(json.loads, out.stdout.splitlines())}
    assert "host" in rows
    row = rows[test_device.name]
    assert row["state"] == "device" and row["profile"] == "adb-test-device"
    assert row["model"] == "litert-bench test device" and row["abi"] == "x86_64"
    assert row["clusters"] == ["4×1704 MHz (cpu0-3)", "4×2367 MHz (cpu4-7)", "1×2914 MHz (cpu8)"]
    assert row["storage_free_mb"] > 0


def test_android_serial_must_name_a_phone_of_the_profile(fake_adb_device, monkeypatch):
    """--device pixel8 labels the figures "pixel8": $ANDROID_SERIAL naming another phone must not run under it."""
    test_device = fake_adb_device()
    monkeypatch.setenv("ANDROID_SERIAL", test_device.serial)
    with pytest.raises(AdbDeviceError, match=rf"pixel8 \(Google Pixel 8\): \$ANDROID_SERIAL is {test_device.serial}, "
                                             r"a litert_bench_test_device, not one of: Pixel 8; name it with "
                                             rf"--device adb:{test_device.serial}"):
        open_device("pixel8")
    assert open_device("adb-test-device").transport.serial == test_device.serial  # its own profile: fine
    assert open_device("android").transport.serial == test_device.serial  # the generic profile takes any phone


def test_an_interrupted_push_leaves_no_part_file(device, tmp_path):
    test_device, opened = device
    model = tmp_path / "model.tflite"
    model.write_bytes(os.urandom(128 << 20))  # long enough to be cut off in the middle
    cache = test_device.root / "data/local/tmp/litert-bench/cache"

    def ctrl_c_mid_push() -> None:
        deadline = time.monotonic() + 120
        while not list(cache.rglob("*.part")) and time.monotonic() < deadline:
            time.sleep(0.005)
        os.kill(os.getpid(), signal.SIGINT)

    with ctrl_c_raises(), pytest.raises(KeyboardInterrupt):
        threading.Thread(target=ctrl_c_mid_push, daemon=True).start()
        opened.transport.stage(model)
    assert not list(cache.rglob("model.tflite*"))


def test_devices_clean_stops_and_removes_what_dead_sessions_left(fake_adb_device, tmp_path, marker):
    test_device = fake_adb_device()

    def device_path(path: Path) -> str:
        return "/" + str(path.relative_to(test_device.root))

    litert = test_device.root / "data/local/tmp/litert-bench"
    transport = open_device(test_device.name).transport

    # The file cache: three folders, staged on three days, the oldest staged again just now; in two of them a
    # push was cut off: an hour ago (stale), and one still being written (fresh).
    staged = {}
    for name in ["a.bin", "b.bin", "c.bin"]:
        (tmp_path / name).write_bytes(os.urandom(1000))
        staged[name] = (test_device.root / transport.stage(tmp_path / name).lstrip("/")).parent
    (staged["b.bin"] / "old.tflite.part").write_bytes(b"x")
    os.utime(staged["b.bin"] / "old.tflite.part", (time.time() - 3600,) * 2)
    (staged["c.bin"] / "fresh.tflite.part").write_bytes(b"x")
    for days_ago, name in [(3, "a.bin"), (2, "b.bin"), (1, "c.bin")]:
        os.utime(staged[name], (time.time() - days_ago * 86400,) * 2)
    transport.stage(tmp_path / "a.bin")

    # A session killed in the middle of a run (SIGKILL: nothing of it ran), its runner still going on the device.
    started = tmp_path / "started"
    session = subprocess.Popen([sys.executable, "-c", (
        "import sys; from device_runners.device import open_device; "
        "open_device(sys.argv[1]).transport.run([sys.executable, '-c', "
        "'import pathlib, sys, time; pathlib.Path(sys.argv[1]).touch(); time.sleep(300)', sys.argv[2], sys.argv[3]], "
        "timeout=300)"), test_device.name, str(started), marker], cwd=REPO)
    deadline = time.monotonic() + 60
    while not started.exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    session.kill()
    session.wait()
    [dead] = [f for f in litert.glob(f"run-*-{session.pid}-*")]
    time.sleep(1)
    assert running(marker), "the killed session's runner should still be going: it is what --clean stops"
    # A process group id in the dead session's folder that now names a process of another folder: left alone.
    bystander = subprocess.Popen(["sleep", "300"], cwd=tmp_path, start_new_session=True)
    (dead / "9.pgid").write_text(f"{bystander.pid}\n")
    # This live session's folder, and two of another machine's sessions: one active, one silent for two days.
    assert transport.run(["true"], timeout=30).exit_code == 0
    [live] = [f for f in litert.glob(f"run-*-{os.getpid()}-*")]
    other_active = litert / "run-20250101-000000-lab_pc-17-abcdef"
    other_silent = litert / "run-20250101-000000-lab_pc-18-abcdef"
    other_active.mkdir()
    other_silent.mkdir()
    os.utime(other_silent, (time.time() - 2 * 86400,) * 2)

    try:
        out = run_cli("devices", "--clean", "--keep", "2", timeout=120)
        assert out.returncode == 0, out.stderr
        row = json.loads(out.stdout)
        assert row["device"] == test_device.name and row["removed"] == {
            "runs": sorted([device_path(dead), device_path(other_silent)]),
            "parts": [device_path(staged["b.bin"] / "old.tflite.part")],
            "cache": [device_path(staged["b.bin"])],
        }
        assert gone(marker), "--clean left the dead session's runner going"
        assert bystander.poll() is None, "--clean killed a process group that was not the session's"
        assert not dead.exists() and not other_silent.exists() and live.is_dir() and other_active.is_dir()
        assert sorted(f.name for f in (litert / "cache").iterdir()) == sorted([staged["a.bin"].name,
                                                                              staged["c.bin"].name])
        assert (staged["c.bin"] / "fresh.tflite.part").exists()
    finally:
        bystander.kill()
        bystander.wait()
        transport.close()

    for name in ("a.bin", "c.bin"):
        os.utime(staged[name], (time.time() - 3600,) * 2)
    out = run_cli("devices", "--clean", "--older-than", "0.01", timeout=120)  # 14 minutes
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["removed"]["cache"] == sorted(device_path(staged[n]) for n in ("a.bin", "c.bin"))
    assert not list((litert / "cache").iterdir())


@pytest.mark.parametrize(("args", "message"), [
    (["--keep", "2"], "--keep and --older-than trim the device cache: they go with --clean"),
    (["--clean", "--keep", "2", "--older-than", "3"], "argument --older-than: not allowed with argument --keep"),
    (["--clean", "--keep", "-1"], "argument --keep: takes a number >= 0, got '-1'"),
])
def test_devices_clean_usage_errors(args, message, capsys):
    from harness.cli import main

    try:
        code = main(["devices", *args])
    except SystemExit as e:  # argparse's own errors
        code = e.code
    assert code == 2 and message in capsys.readouterr().err


def test_profile_command_profiles_on_the_device(fake_adb_device, tiny_artifact):
    """`harness profile` through adb: the runner and the model pushed, the profiled repetition run on the device,
    its rows adding up to each phase's wall time there."""
    test_device = fake_adb_device()
    model = tiny_artifact("dynamic_int8").path
    out = run_cli("profile", str(model), "--device", test_device.name, "--threads", "2", "--decode", "8", "--json")
    assert out.returncode == 0, out.stderr[-2000:]
    profile = json.loads(out.stdout)
    assert profile["profiler"] == "litert"
    for phase in ("prefill", "decode"):
        total = sum(row["us"] for row in profile[phase]["ops"])
        assert total == pytest.approx(profile[phase]["wall_us"], rel=0.10), phase
    names = {p.rsplit("/", 1)[1] for p in test_device.pushed()}
    assert {"llm_runner.part", "liblitert-lm.so.part"} <= names and any(n.endswith(".tflite.part") for n in names)
    assert any(line.startswith("OPEN shell") and "--profile" in line for line in test_device.log())
