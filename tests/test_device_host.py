"""The host transport: pinning, device-side timeout, exit codes, facts; core selection on any topology."""

import subprocess
import sys
import time

import pytest

from device_runners.device import open_device
from device_runners.transports.base import DeviceFacts, cpu_mask
from device_runners.transports.host import HostTransport


def _facts(freqs: dict[int, int]) -> DeviceFacts:
    return DeviceFacts("d", "m", "Android", "14", "6.1", "arm64-v8a", sorted(freqs), freqs, 8000)


def test_fastest_cpus_pick_the_big_cores_in_numeric_order():
    # Pixel 8 (Tensor G3): cpu0-3 A510 1.70 GHz, cpu4-7 A715 2.37 GHz, cpu8 X3 2.91 GHz.
    pixel8 = _facts({**dict.fromkeys(range(4), 1704000), **dict.fromkeys(range(4, 8), 2367000), 8: 2914000})
    assert pixel8.fastest_cpus(4) == [4, 5, 6, 8]  # X3 first, then A715s by index
    twelve = _facts({c: (3000000 if c >= 10 else 1000000) for c in range(12)})
    assert twelve.fastest_cpus(2) == [10, 11]  # cpu10/11, not cpu2 (a string sort's mistake)


def test_without_frequencies_every_core_ranks_equal():
    assert _facts(dict.fromkeys(range(4), 0)).fastest_cpus(2) == [0, 1]


def test_cpu_mask():
    assert cpu_mask([0]) == "1" and cpu_mask([4, 5, 6, 8]) == "170" and cpu_mask([10]) == "400"


def test_run_is_pinned_and_reports_exit_codes():
    t = HostTransport()
    res = t.run([sys.executable, "-c", "import os,sys; print(sorted(os.sched_getaffinity(0))); sys.exit(3)"],
                timeout=60, cpus=[0])
    assert res.exit_code == 3 and res.stdout.strip() == "[0]" and not res.timed_out


def test_device_side_timeout_kills_the_command():
    start = time.monotonic()
    res = HostTransport().run(["sleep", "30"], timeout=1)
    assert res.timed_out and time.monotonic() - start < 10
    assert subprocess.run(["pgrep", "-x", "-f", "sleep 30"], capture_output=True).returncode == 1


def test_arguments_are_passed_verbatim_without_a_shell(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # the child inherits this cwd: a shell would create files here
    hostile = "$(touch pwned); `touch pwned2` ; rm -rf / #"
    res = HostTransport().run(["echo", hostile], timeout=10)
    assert res.stdout.strip() == hostile and not list(tmp_path.iterdir())


def test_host_facts_and_threads():
    device = open_device("host")
    facts = device.facts
    assert facts.cpus and facts.abi and facts.mem_total_mb and facts.kernel
    assert device.threads_for(4) == min(4, len(facts.cpus))
    assert device.threads_for(1) == 1
    assert len(device.cpus_for(device.threads_for(4))) == device.threads_for(4)


def test_unknown_device_lists_the_known_ones():
    with pytest.raises(ValueError, match=r"unknown device 'pixel99'; known devices: .*host, ios, ipad-m2, iphone13, "
                                         r"iphone15pro, iphone16, jetson-orin-nano, oneplus12, orangepi5, pixel7, "
                                         r"pixel8, qemu-arm64, rpi5, adb:SERIAL\[@HOST:PORT\], ios:UDID, "
                                         r"ssh:USER@HOST\[:PORT\], BOARD@\[USER@\]HOST\[:PORT\]"):
        open_device("pixel99")


def test_stage_of_a_missing_file_is_an_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="no such file"):
        HostTransport().stage(tmp_path / "missing.tflite")
