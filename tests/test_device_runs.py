"""What every transport promises about a run, on the host and on the adb test device (through the real adb
server): the runner runs in a process group of its own, and Ctrl-C, a host-side timeout and close() kill that
whole group on the device; output that is not UTF-8 keeps the runner's message.

The test device hangs up a shell as adbd does (SIGHUP to the shell process only), so a runner that nothing
kills outlives the connection here as it does on a phone."""

import os
import signal
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from device_runners.device import open_device
from device_runners.transports import adb, host
from device_runners.transports.base import Job, Transport
from device_runners.transports.host import HostTransport
from tests.processes import ctrl_c_raises, gone, running


@pytest.fixture(params=["host", "adb"])
def transport(request: pytest.FixtureRequest) -> Iterator[Transport]:
    if request.param == "host":
        opened: Transport = HostTransport()
    else:
        opened = open_device(request.getfixturevalue("fake_adb_device")().name).transport
    yield opened
    opened.close()


def sleeper(tmp_path: Path, marker: str) -> tuple[list[str], Path]:
    """A runner that starts a child (only a kill of its whole process group ends both), says it has started,
    and hangs; its argv and the file it touches once started."""
    started = tmp_path / "started"
    code = ("import pathlib, subprocess, sys, time; "
            "subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(300)', sys.argv[1]]); "
            "pathlib.Path(sys.argv[2]).touch(); time.sleep(300)")
    return [sys.executable, "-c", code, marker, str(started)], started


def signal_once_started(started: Path, signum: int) -> None:
    """Send this process `signum` once the runner has started: Ctrl-C in the middle of a run."""
    def send() -> None:
        deadline = time.monotonic() + 60
        while not started.exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        os.kill(os.getpid(), signum)

    threading.Thread(target=send, daemon=True).start()


def test_ctrl_c_during_a_run_kills_its_whole_process_group(transport, tmp_path, marker):
    argv, started = sleeper(tmp_path, marker)
    with ctrl_c_raises(), pytest.raises(KeyboardInterrupt):
        signal_once_started(started, signal.SIGINT)
        transport.run(argv, timeout=120)
    assert gone(marker), "the runner (or its child) was left running on the device"


def test_host_side_timeout_kills_the_whole_process_group(transport, tmp_path, marker, monkeypatch):
    # The host gives up 3 s in, long before the device's own 60 s timeout: a device that stopped answering.
    if isinstance(transport, HostTransport):
        monkeypatch.setattr(host, "_BACKSTOP_S", -57)
    else:
        monkeypatch.setattr(adb, "BACKSTOP_S", -57)
        monkeypatch.setattr(adb, "STOP_TIMEOUT_S", 77)  # the kill that follows keeps its 20 s
    argv, _ = sleeper(tmp_path, marker)
    result = transport.run(argv, timeout=60)
    assert result.timed_out and result.seconds < 30
    assert gone(marker), "the runner was left running after the host gave up on it"


def test_output_that_is_not_utf8_keeps_the_runners_message(transport):
    code = "import sys; sys.stderr.buffer.write(b'cannot load \\xff\\xfe model: bad magic\\n'); sys.exit(3)"
    result = transport.run([sys.executable, "-c", code], timeout=60)
    assert result.exit_code == 3 and not result.timed_out
    assert "model: bad magic" in result.stderr and "\ufffd" in result.stderr


def test_close_kills_a_run_whose_connection_was_dropped(fake_adb_device, tmp_path, marker):
    """A run whose shell adbd hung up (the host's connection dropped, and no kill reached the device): close()
    kills it before it removes the working folder."""
    device = fake_adb_device()
    transport = open_device(device.name).transport
    argv, started = sleeper(tmp_path, marker)
    line = transport._run_line(Job(1, argv, 120, []))
    connection = transport._device.shell(line, stream=True)
    deadline = time.monotonic() + 60
    while not started.exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    connection.close()  # adbd: SIGHUP to the shell only
    time.sleep(1)
    assert running(marker), "the test device killed more than the shell (adbd does not)"
    workdir = device.root / transport._workdir.lstrip("/")
    assert (workdir / "1.pgid").is_file()

    transport.close()
    assert gone(marker), "close() left the run going"
    assert not workdir.exists()


def test_a_hung_up_shell_gets_sighup_and_its_background_jobs_outlive_it(fake_adb_device, marker):
    """The test device as adbd: when the host closes a shell, SIGHUP goes to the shell process only, not to its
    process group, so a job the shell started in the background keeps running."""
    device = fake_adb_device()
    transport = open_device(device.name).transport
    job = f"{sys.executable} -c 'import time; time.sleep(300)' {marker}"
    connection = transport._device.shell(f"{job} & echo started; wait", stream=True)
    assert connection.read_exact(len(b"started\n")) == b"started\n"
    time.sleep(0.5)
    assert running(marker)
    connection.close()
    time.sleep(1)
    assert running(marker), "the test device hung up the whole process group"
