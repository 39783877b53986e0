"""The test device's file system and command runner: Android paths mapped into a folder of this host.

No chroot: every command runs through /bin/sh on the host (so `timeout`, `taskset`, `sha256sum`, `stat` are the
host's), with the device paths in its command line rewritten to their folder under the root and the root
stripped from what it prints. What the harness reads about a phone lives under the root with Pixel-8-like
values: getprop's properties, cpufreq (1×2.91 GHz, 4×2.37 GHz, 4×1.70 GHz) and thermal zones; a battery only
when started with a trace to serve (battery.py), else no power meter at all. `taskset` is a
shim that parses the mask as toybox does and maps the device's cores onto the host's, which are fewer.
"""

from __future__ import annotations

import contextlib
import errno
import os
import platform
import posixpath
import re
import signal
import subprocess
import sys
import threading
from pathlib import Path

from device_runners.fake_adbd.battery import Battery, BatteryTrace

# Device paths that live under the root; everything else (/proc, /bin, ...) is the host's own. The power meters'
# folders are the device's too, so that this host's own (a laptop's battery, RAPL) never pass for the phone's.
MAPPED = ("/data/", "/sdcard/", "/sys/devices/system/cpu", "/sys/class/thermal", "/sys/class/power_supply",
          "/sys/class/hwmon", "/sys/class/powercap", "/sys/bus/iio")
# A path starts after a delimiter (start, space, quote, =, :, >, <), never inside another path or word.
_DEVICE_PATH = re.compile(r"(?<![\w./-])(?=" + "|".join(map(re.escape, MAPPED)) + ")")

# Tensor G3: cpu0-3 Cortex-A510, cpu4-7 Cortex-A715, cpu8 Cortex-X3 (kHz).
PIXEL8_MAX_KHZ = {**dict.fromkeys(range(4), 1704000), **dict.fromkeys(range(4, 8), 2367000), 8: 2914000}
MODEL = "litert-bench test device"


def default_props() -> dict[str, str]:
    machine = platform.machine()
    return {
        "ro.product.model": MODEL,
        "ro.product.manufacturer": "litert-bench",
        "ro.product.name": "fake_adbd",
        "ro.product.device": "fake_adbd",
        "ro.build.version.release": "14",
        "ro.build.version.sdk": "34",
        "ro.build.fingerprint": "litert-bench/fake_adbd/fake_adbd:14/TEST/1:userdebug/test-keys",
        # It runs this host's binaries, so it reports this host's ABI in Android's spelling.
        "ro.product.cpu.abi": {"aarch64": "arm64-v8a"}.get(machine, machine),
        "ro.soc.model": "Pixel-8-like test topology",
    }


class Sandbox:
    def __init__(self, root: Path, quota_bytes: int | None = None, props: dict[str, str] | None = None,
                 battery_trace: Path | None = None):
        self.root = Path(root).resolve()
        self.quota_bytes = quota_bytes
        self.props = props or default_props()
        self._procs: set[subprocess.Popen] = set()
        self._procs_lock = threading.Lock()
        self._layout()
        if battery_trace is not None:
            self.battery = Battery(self.root / "sys/class/power_supply/battery", BatteryTrace.load(battery_trace))

    def _layout(self) -> None:
        for sub in ("data/local/tmp", "sdcard", "system/bin", "sys/class/power_supply"):
            (self.root / sub).mkdir(parents=True, exist_ok=True)
        cpu_dir = self.root / "sys/devices/system/cpu"
        for cpu, khz in PIXEL8_MAX_KHZ.items():
            freq = cpu_dir / f"cpu{cpu}" / "cpufreq"
            freq.mkdir(parents=True, exist_ok=True)
            for name, value in (("cpuinfo_max_freq", khz), ("scaling_max_freq", khz), ("scaling_cur_freq", khz),
                                ("scaling_governor", "sched_pixel")):
                (freq / name).write_text(f"{value}\n")
        last = max(PIXEL8_MAX_KHZ)
        for name in ("present", "possible", "online"):
            (cpu_dir / name).write_text(f"0-{last}\n")
        for zone, (kind, milli_c) in enumerate((("BIG", 38000), ("MID", 36000), ("LITTLE", 35000))):
            (self.root / f"sys/class/thermal/thermal_zone{zone}").mkdir(parents=True, exist_ok=True)
            (self.root / f"sys/class/thermal/thermal_zone{zone}/type").write_text(f"{kind}\n")
            (self.root / f"sys/class/thermal/thermal_zone{zone}/temp").write_text(f"{milli_c}\n")
        props = self.root / "system/build.prop"
        props.write_text("".join(f"{k}={v}\n" for k, v in self.props.items()))
        self._script("getprop", f"""#!/bin/sh
# getprop [NAME [DEFAULT]], from {props}
if [ $# -eq 0 ]; then sed 's/^\\([^=]*\\)=\\(.*\\)$/[\\1]: [\\2]/' '{props}'; exit 0; fi
value=$(grep -F -m1 "$1=" '{props}' | grep "^$1=" | cut -d= -f2-)
echo "${{value:-$2}}"
""")
        self._script("taskset", f"""#!{sys.executable} -IS
# taskset MASK COMMAND...: run on as many host cores as the device mask names (the device has more
# cores than this host), so a 2-thread run on device cores 4 and 8 gets two host cores. The mask is
# parsed as toybox parses it: hex digits only, "0x" is a bad mask.
import os, string, sys
if not sys.argv[1] or set(sys.argv[1]) - set(string.hexdigits):
    sys.exit(f"taskset: bad mask '{{sys.argv[1]}}'")
wanted = bin(int(sys.argv[1], 16)).count("1")
host = sorted(os.sched_getaffinity(0))
os.sched_setaffinity(0, {{host[i % len(host)] for i in range(wanted)}})
os.execvp(sys.argv[2], sys.argv[2:])
""")

    def _script(self, name: str, text: str) -> None:
        path = self.root / "system/bin" / name
        path.write_text(text)
        path.chmod(0o755)

    @property
    def banner(self) -> str:
        props = ";".join(f"{k}={self.props[k].replace(' ', '_')}"
                         for k in ("ro.product.name", "ro.product.model", "ro.product.device"))
        # shell_v2: exit codes and separate stderr; stat_v2: 64-bit sizes for `adb push/pull`;
        # fixed_push_mkdir: a push creates the folders it needs.
        return f"device::{props};features=shell_v2,stat_v2,fixed_push_mkdir"

    # paths
    def host_path(self, device_path: str) -> Path:
        path = posixpath.normpath("/" + device_path.lstrip("/"))  # no way out of the root through ".."
        if not (path + "/").startswith(MAPPED):
            raise PermissionError(errno.EACCES, "outside the test device's storage", device_path)
        return Path(str(self.root) + path)

    def to_host(self, command: str) -> str:
        return _DEVICE_PATH.sub(lambda _: str(self.root), command)

    def to_device(self, text: bytes) -> bytes:
        return text.replace(str(self.root).encode() + b"/", b"/")

    # storage
    def free_bytes(self) -> int | None:
        """What a quota leaves (None: no quota, the host disk's own limit)."""
        if self.quota_bytes is None:
            return None
        used = sum(f.stat().st_size for f in (self.root / "data").rglob("*") if f.is_file())
        return max(0, self.quota_bytes - used)

    # commands
    @property
    def _marker(self) -> str:
        """An environment entry every command of this device inherits, and nothing else has: how kill_all finds
        what they started in sessions of their own."""
        return f"LITERT_BENCH_TEST_DEVICE={self.root}"

    def spawn(self, command: str, merge_stderr: bool) -> subprocess.Popen:
        env = {"PATH": f"{self.root}/system/bin:/usr/local/bin:/usr/bin:/bin", "HOME": f"{self.root}/data/local/tmp",
               "TMPDIR": f"{self.root}/data/local/tmp", "LANG": "C.UTF-8", **dict([self._marker.split("=", 1)])}
        # A session of its own, as adbd gives each shell.
        proc = subprocess.Popen(["/bin/sh", "-c", self.to_host(command)], cwd=self.root, env=env,
                                stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT if merge_stderr else subprocess.PIPE,
                                start_new_session=True)
        with self._procs_lock:
            self._procs.add(proc)
        return proc

    def reap(self, proc: subprocess.Popen) -> int:
        """Wait for a command; its exit status as a shell reports it (128+N when killed by signal N)."""
        code = proc.wait()
        with self._procs_lock:
            self._procs.discard(proc)
        return 128 - code if code < 0 else code

    def hang_up(self, proc: subprocess.Popen) -> None:
        """What adbd does when the host closes a running shell: SIGHUP to the shell process only. What the shell
        started in a process group of its own outlives it, as it does on a phone."""
        proc.send_signal(signal.SIGHUP)  # nothing once the shell has been reaped

    def kill_all(self) -> None:
        """The device powers off: every command it runs ends, the shells' process groups and whatever they
        started in sessions of their own."""
        with self._procs_lock:
            procs = list(self._procs)
        for proc in procs:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
        marker = self._marker.encode()
        for environ in Path("/proc").glob("[0-9]*/environ"):
            with contextlib.suppress(OSError):
                if marker in environ.read_bytes().split(b"\0"):
                    os.kill(int(environ.parent.name), signal.SIGKILL)
