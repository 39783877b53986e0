"""The local machine as a device: files are used in place, the runner is a pinned subprocess."""

from __future__ import annotations

import contextlib
import glob
import os
import platform
import shlex
import signal
import subprocess
import time
from collections.abc import Sequence
from pathlib import Path

from device_runners.transports.base import DeviceFacts, Job, RunResult, Transport, cpu_mask
from harness.common.files import local_sha256
from harness.common.signals import signals_deferred

# Grace between the device-side timeout (coreutils `timeout`) and our own kill of the process group.
_BACKSTOP_S = 15


class HostTransport(Transport):
    kind = "host"

    def stage(self, local: Path) -> str:
        if not Path(local).is_file():
            raise FileNotFoundError(f"no such file: {local}")
        return str(Path(local).resolve())

    def _execute(self, job: Job) -> RunResult:
        # Same shape as on a phone: `timeout` kills the runner on the device side even if we are gone.
        cmd = ["timeout", "-k", "5", f"{job.timeout:g}"]
        if job.cpus:
            cmd += ["taskset", cpu_mask(job.cpus)]
        cmd += job.argv
        start = time.monotonic()
        with signals_deferred():  # a Ctrl-C between the fork and the bookkeeping would leave an unknown group
            # A session of its own: its process group (id = its pid) holds all the runner starts, and no
            # Ctrl-C at the terminal reaches it except through _kill.
            proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True,
                                    env=_runner_env())
            job.pgid, job.handle = proc.pid, proc
        try:
            out, err = proc.communicate(timeout=job.timeout + _BACKSTOP_S)
        except subprocess.TimeoutExpired:
            self._kill(job)
            out, err = proc.communicate()
        seconds = time.monotonic() - start
        # coreutils timeout exits 124 when it had to stop the command (137 when it needed SIGKILL).
        timed_out = proc.returncode in (124, 137) or seconds >= job.timeout + _BACKSTOP_S
        # Bytes that are not UTF-8 must not cost the runner's error message.
        return RunResult(proc.returncode, _text(out), _text(err), seconds, timed_out, shlex.join(cmd))

    def _kill(self, job: Job) -> None:
        if job.pgid is None:
            return
        with contextlib.suppress(ProcessLookupError):  # the whole group has ended already
            os.killpg(job.pgid, signal.SIGKILL)
        job.handle.wait()  # reaped: no zombie

    def read_files(self, globs: Sequence[str]) -> dict[str, str]:
        out = {}
        for pattern in globs:
            for path in sorted(glob.glob(pattern)):
                if (text := _read(path)) is not None:
                    out[path] = text
        return out

    def sha256(self, device_path: str) -> str:
        return local_sha256(Path(device_path))

    def file_size(self, device_path: str) -> int | None:
        try:
            return os.stat(device_path).st_size
        except FileNotFoundError:
            return None

    def replace(self, source: str, target: str) -> None:
        os.replace(source, target)

    def remove_file(self, device_path: str) -> None:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(device_path)

    def facts(self) -> DeviceFacts:
        cpus = sorted(os.sched_getaffinity(0))
        return DeviceFacts(
            name="host",
            model=_read("/sys/devices/virtual/dmi/id/product_name") or platform.node(),
            os=platform.system(),
            os_version=_os_release(),
            kernel=platform.release(),
            abi=platform.machine(),
            cpus=cpus,
            cpu_max_khz={c: int(v) for c in cpus
                         if (v := _read(f"/sys/devices/system/cpu/cpu{c}/cpufreq/cpuinfo_max_freq"))},
            mem_total_mb=_mem_total_mb(),
        )


def _runner_env() -> dict[str, str]:
    # PyTorch/OpenMP settings of the parent must not leak into the runner's timing.
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OMP_", "KMP_", "MKL_"))}
    return env


def _text(data: bytes) -> str:
    return data.decode("utf-8", "replace")


def _read(path: str) -> str | None:
    try:
        return Path(path).read_text().strip() or None
    except OSError:
        return None


def _os_release() -> str:
    text = _read("/etc/os-release") or ""
    for line in text.splitlines():
        if line.startswith("PRETTY_NAME="):
            return line.split("=", 1)[1].strip('"')
    return platform.version()


def _mem_total_mb() -> int | None:
    for line in (_read("/proc/meminfo") or "").splitlines():
        if line.startswith("MemTotal:"):
            return int(line.split()[1]) // 1024
    return None
