"""The protocol-level test iPhone (device_runners.fake_ios) as a fixture, for tests that drive it with unmodified
pymobiledevice3.

`fake_ios`: starts the fake on a unix socket of its own and yields a FakeIPhone, which unpacks as
(udid, socket, root) and also offers restart(), kill() (the device disappears: SIGKILL, no goodbye),
set_fault() and log(). While the test runs:

- USBMUXD_SOCKET_ADDRESS names the fake's socket, which pymobiledevice3 reads for every usbmuxd connection
  (in this process, and in the pytest/CLI subprocesses a test starts, which inherit the environment);
- pymobiledevice3's home folder (~/.pymobiledevice3, where it keeps pair records it made and caches) is a folder
  of the test's (`pymobiledevice3_home`, usable alone): HOME is set for subprocesses, and
  pymobiledevice3.common._HOMEFOLDER for this process, which computed it at import. Pair records come from the
  fake's usbmuxd (ReadPairRecord), which pymobiledevice3 asks first, so nothing needs to be in that folder.

A test module loads these fixtures with `pytest_plugins = ["tests.ios_fixtures"]`.

The app the fake launches runs the host build of the native runner (`ios_runner`, built once per session).
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent


@dataclasses.dataclass
class FakeIPhone:
    udid: str
    socket: str  # USBMUXD_SOCKET_ADDRESS
    root: Path  # the device's files: ROOT/private/var/mobile/Media is AFC's root
    runner: Path
    proc: subprocess.Popen[str] | None = None

    def __iter__(self) -> Iterator[object]:  # udid, socket, root = fake_ios
        return iter((self.udid, self.socket, self.root))

    def start(self) -> None:
        cmd = [sys.executable, "-m", "device_runners.fake_ios", "--socket", self.socket, "--root", str(self.root),
               "--runner", str(self.runner), "--udid", self.udid]
        self.proc = subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.PIPE, text=True)
        line = self.proc.stdout.readline()  # "listening on PATH", or "" if it died
        if not line.startswith("listening on "):
            self.proc.kill()
            raise RuntimeError(f"the test iPhone did not start: {line!r}")

    def stop(self) -> None:
        """Power off: SIGTERM, which kills the apps it runs."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(timeout=30)
        if self.proc is not None and self.proc.stdout:
            self.proc.stdout.close()

    def restart(self) -> None:
        """Off and on again, with the same files (installed apps, pairing, crash reports)."""
        self.stop()
        self.start()

    def kill(self) -> None:
        """The device disappears: no goodbye on the wire (unplugged, or the fake SIGKILLed)."""
        assert self.proc is not None
        self.proc.kill()
        self.proc.wait()

    def set_fault(self, app: str | None) -> None:
        """{"app": "crash"} or {"app": "hang"} for the next launches; None clears it."""
        path = self.root / "faults.json"
        if app is None:
            path.unlink(missing_ok=True)
        else:
            path.write_text(json.dumps({"app": app}))

    def log(self) -> list[str]:
        """What the host asked of the device: "install BUNDLE ...", "launch BUNDLE pid N", "signal SIGKILL pid N"."""
        path = self.root / "fake_ios.log"
        return [line.split(" ", 1)[1] for line in path.read_text().splitlines()] if path.exists() else []


@pytest.fixture(scope="session")
def ios_runner() -> Path:
    """The host build of the native runner (built once; a minute the first time)."""
    from device_runners.runners.native import build_runner

    return build_runner("host").binary


@pytest.fixture
def pymobiledevice3_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A home folder of the test's for pymobiledevice3, here and in the subprocesses the test starts."""
    import pymobiledevice3.common

    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setattr(pymobiledevice3.common, "_HOMEFOLDER", home / ".pymobiledevice3")
    return home


@pytest.fixture
def fake_ios(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, ios_runner: Path,
             pymobiledevice3_home: Path) -> Iterator[FakeIPhone]:
    # A unix socket's path must fit in 108 bytes; pytest's tmp_path can be longer.
    socket_dir = Path(tempfile.mkdtemp(prefix="fake-ios-"))
    device = FakeIPhone("00008120-001A2B3C4D5E6F70", str(socket_dir / "usbmuxd.sock"), tmp_path / "iphone",
                        ios_runner)
    device.start()
    monkeypatch.setenv("USBMUXD_SOCKET_ADDRESS", device.socket)
    try:
        yield device
    finally:
        with contextlib.suppress(OSError, subprocess.TimeoutExpired):
            device.stop()
        shutil.rmtree(socket_dir, ignore_errors=True)
