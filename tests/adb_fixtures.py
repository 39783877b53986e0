"""The protocol-level test device (device_runners.fake_adbd) behind the REAL adb server, as fixtures.

`adb_server`: an adb server of this test session's own, on a free port ($ANDROID_ADB_SERVER_PORT, inherited by
the pytest and CLI subprocesses the tests start), so a developer's adb server and phones are left alone; killed
at the end. `fake_adb_device(name)`: starts a test device on a free loopback port, `adb connect`s it and returns
it; disconnected and stopped after the test.
"""

from __future__ import annotations

import dataclasses
import os
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import adbutils
import pytest

REPO = Path(__file__).resolve().parent.parent


@dataclasses.dataclass
class FakeDevice:
    serial: str  # 127.0.0.1:PORT, as `adb devices` lists it
    root: Path  # the device's files: ROOT/data/local/tmp is its /data/local/tmp
    proc: subprocess.Popen

    @property
    def name(self) -> str:
        return f"adb:{self.serial}"

    def log(self) -> list[str]:
        """What the host asked of the device: "OPEN service", "SEND path,mode", "RECV path", ..."""
        path = self.root / "adbd.log"
        return [line.split(" ", 1)[1] for line in path.read_text().splitlines()] if path.exists() else []

    def pushed(self) -> list[str]:
        return [line.split()[1].rsplit(",", 1)[0] for line in self.log() if line.startswith("SEND ")]

    def kill(self) -> None:
        """The device disappears: no goodbye on the wire (unplugged, or adbd killed)."""
        self.proc.kill()
        self.proc.wait()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def adb_server() -> Iterator[adbutils.AdbClient]:
    adb, port = adbutils.adb_path(), _free_port()
    old = os.environ.get("ANDROID_ADB_SERVER_PORT")
    os.environ["ANDROID_ADB_SERVER_PORT"] = str(port)
    # The server daemonizes; with our pipes open it would hold `run` until it exits.
    subprocess.run([adb, "-P", str(port), "start-server"], check=True, timeout=60,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        yield adbutils.AdbClient(port=port)
    finally:
        subprocess.run([adb, "-P", str(port), "kill-server"], timeout=60,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        if old is None:
            os.environ.pop("ANDROID_ADB_SERVER_PORT", None)
        else:
            os.environ["ANDROID_ADB_SERVER_PORT"] = old


@pytest.fixture
def fake_adb_device(adb_server: adbutils.AdbClient, tmp_path: Path) -> Iterator[Callable[..., FakeDevice]]:
    started: list[FakeDevice] = []

    def start(name: str = "device", quota_bytes: int | None = None, battery_trace: Path | None = None
              ) -> FakeDevice:
        root = tmp_path / name
        cmd = [sys.executable, "-m", "device_runners.fake_adbd", "--port", "0", "--root", str(root)]
        if quota_bytes is not None:
            cmd += ["--quota-bytes", str(quota_bytes)]
        if battery_trace is not None:
            cmd += ["--battery-trace", str(battery_trace)]
        proc = subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.PIPE, text=True)
        line = proc.stdout.readline()  # "listening on 127.0.0.1:PORT", or "" if it died
        if not line.startswith("listening on "):
            proc.kill()
            raise RuntimeError(f"the test device did not start: {line!r}")
        device = FakeDevice(line.split()[-1], root, proc)
        started.append(device)
        answer = adb_server.connect(device.serial, timeout=10)
        assert answer.startswith("connected to"), answer
        deadline = time.monotonic() + 20
        while (state := _state(adb_server, device.serial)) != "device":
            assert time.monotonic() < deadline, f"{device.serial} did not come online: {state}"
            time.sleep(0.1)
        return device

    yield start
    for device in started:
        adb_server.disconnect(device.serial)
        if device.proc.poll() is None:
            device.proc.terminate()
            device.proc.wait(timeout=30)
        device.proc.stdout.close()


def _state(client: adbutils.AdbClient, serial: str) -> str:
    return next((d.state for d in client.list() if d.serial == serial), "absent")
