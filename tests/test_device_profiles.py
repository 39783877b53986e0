"""Device profiles (devices.toml), core choice where a phone hides its frequencies, the Android runner's
missing-toolchain error and the per-device lock."""

import io
import threading
import time
from collections.abc import Sequence
from pathlib import Path

import pytest

from device_runners.device import PROFILES, Device, profile_for_model
from device_runners.runners.native import build_runner
from device_runners.transports.base import DeviceFacts, Job, RunResult, Transport
from harness.measure.device_lock import device_lock


class FactsOnly(Transport):
    """A device known only by its facts."""

    kind = "stub"

    def __init__(self, facts: DeviceFacts):
        super().__init__()
        self._facts = facts

    def facts(self) -> DeviceFacts:
        return self._facts

    def stage(self, local: Path) -> str:
        raise NotImplementedError

    def _execute(self, job: Job) -> RunResult:
        raise NotImplementedError

    def _kill(self, job: Job) -> None:
        raise NotImplementedError

    def read_files(self, globs: Sequence[str]) -> dict[str, str]:
        return {}

    def sha256(self, device_path: str) -> str:
        raise NotImplementedError


def test_phone_profiles():
    pixel8 = PROFILES["pixel8"]
    assert (pixel8.transport, pixel8.runner_target, pixel8.abi) == ("adb", "android-arm64", "arm64-v8a")
    assert pixel8.soc == "Google Tensor G3" and pixel8.big_cores == (8, 4, 5, 6, 7) and pixel8.max_threads == 5
    assert "1×Cortex-X3 2.91 GHz (cpu8)" in pixel8.clusters
    phones = [p for p in PROFILES.values() if p.transport == "adb" and p.name != "adb-test-device"]
    assert {"pixel7", "galaxy-s24", "oneplus12", "android"} <= {p.name for p in phones}
    assert all(p.runner_target == "android-arm64" for p in phones)
    assert PROFILES["adb-test-device"].runner_target == "host"  # it runs this host's binaries
    assert PROFILES["host"].transport == "host"


def test_adb_devices_get_their_profile_by_model():
    assert profile_for_model("Pixel 8").name == "pixel8"
    assert profile_for_model("SM-S921B").name == "galaxy-s24"
    assert profile_for_model("Some Tablet").name == "android"


def test_big_cores_from_the_profile_when_frequencies_are_hidden():
    hidden = DeviceFacts("pixel8", "Pixel 8", "Android", "14", "5.15", "arm64-v8a", list(range(9)), {}, 7800)
    device = Device(PROFILES["pixel8"], FactsOnly(hidden))
    assert device.threads_for(4) == 4 and device.cpus_for(4) == [4, 5, 6, 8]
    assert device.threads_for(8) == 5  # the X3 and the four A715s, never the little cores
    android = Device(PROFILES["android"], FactsOnly(hidden))
    assert android.cpus_for(2) == [0, 1]  # nothing known: every core ranks the same


def test_android_runner_without_ndk_or_runner_bin_names_both(monkeypatch, tmp_path):
    monkeypatch.delenv("ANDROID_NDK_HOME", raising=False)
    with pytest.raises(RuntimeError, match=r"ANDROID_NDK_HOME is not set.*or pass --runner-bin"):
        build_runner("android-arm64", tmp_path)


def test_one_process_at_a_time_per_device():
    events: list[str] = []
    log = io.StringIO()

    def second() -> None:
        with device_lock("adb-R5CX10ABC", log):
            events.append("second")

    with device_lock("adb-R5CX10ABC", log):
        thread = threading.Thread(target=second)
        thread.start()
        time.sleep(0.5)
        events.append("first done")
    thread.join(10)
    assert events == ["first done", "second"]
    assert "waiting for adb-R5CX10ABC: another process is measuring on it" in log.getvalue()
    with device_lock("host", log), device_lock("adb-other", log):  # other devices do not wait
        pass
