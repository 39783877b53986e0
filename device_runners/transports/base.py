"""The seam between the harness and a device. A transport knows nothing about models: it stages files,
runs an argv under a device-side timeout, and reports facts about the device. Adding one = one file."""

from __future__ import annotations

import abc
import contextlib
import dataclasses
import itertools
import posixpath
import sys
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from device_runners.transports.state import STATE_GLOBS, DeviceState, parse_state
from harness.common.signals import signals_deferred

# The weight cache beside a model: `<sha256 of the model>.xnnpack_cache` (Transport.weight_cache_path).
WEIGHT_CACHE_SUFFIX = ".xnnpack_cache"


@dataclasses.dataclass
class RunResult:
    exit_code: int
    stdout: str
    stderr: str
    seconds: float
    timed_out: bool = False
    command: str = ""  # the command line as the device ran it (timeout, pinning, environment)


@dataclasses.dataclass
class DeviceFacts:
    name: str
    model: str  # marketing or DMI name, as the device reports it
    os: str
    os_version: str
    kernel: str
    abi: str  # e.g. x86_64, arm64-v8a
    cpus: list[int]  # CPUs this process may run on
    cpu_max_khz: dict[int, int]  # cpu → cpuinfo_max_freq; empty where the device hides it
    mem_total_mb: int | None

    def fastest_cpus(self, n: int) -> list[int]:
        """The n CPUs with the highest max frequency (ties: lower index first; numeric, so cpu10 > cpu2)."""
        ranked = sorted(self.cpus, key=lambda c: (-self.cpu_max_khz.get(c, 0), c))
        return sorted(ranked[:n])

    def clusters(self) -> list[str]:
        """CPUs grouped by max frequency, slowest first: ["4×1704 MHz (cpu0-3)", ...]; [] without cpufreq."""
        groups: dict[int, list[int]] = {}
        for cpu in self.cpus:
            if cpu in self.cpu_max_khz:
                groups.setdefault(self.cpu_max_khz[cpu], []).append(cpu)
        return [f"{len(cpus)}×{khz // 1000} MHz (cpu{format_cpu_list(cpus)})" for khz, cpus in sorted(groups.items())]


@dataclasses.dataclass
class Job:
    """One run of a program on a device, tracked until its process group is known to be gone."""

    number: int  # 1, 2, ... in this transport's session: names the run's files on the device
    argv: list[str]
    timeout: float
    cpus: list[int]
    pgid: int | None = None  # where the host itself knows it (the host transport); adb records it on the device
    handle: Any = None  # the transport's own handle of the running program (the host's Popen)


class Transport(abc.ABC):
    """A device. `run` and `close` are fixed here, so that every transport stops what it started: a transport
    implements `_execute` (start the program in a process group of its own and wait for it) and `_kill` (kill
    that group on the device), and `_cleanup` when it leaves files there."""

    kind: str
    # The runner's bandwidth probe forks helper processes; an iOS app may not fork, so there it is not run.
    can_fork: bool = True

    def __init__(self) -> None:
        self._numbers = itertools.count(1)
        self._unfinished: dict[int, Job] = {}  # started, and not yet known to have ended with their group

    @property
    def identity(self) -> str:
        """Names the physical device, for the lock that keeps two processes from measuring on it at once."""
        return self.kind

    @abc.abstractmethod
    def stage(self, local: Path) -> str:
        """Make a local file available on the device (skipping it when already there); its device path."""

    def stage_together(self, files: Sequence[Path]) -> list[str]:
        """Stage files into one folder on the device: a program next to its libraries (RUNPATH $ORIGIN)."""
        return [self.stage(f) for f in files]  # right for transports that use files in place

    def run(self, argv: Sequence[str], timeout: float, cpus: Sequence[int] = ()) -> RunResult:
        """Run argv on the device, pinned to `cpus` when given, killed on the device after `timeout` s.

        Whatever ends the wait early (a host-side timeout, Ctrl-C, SIGTERM, which suites/plugin turns into
        KeyboardInterrupt, a lost device), the program's process group is killed on the device before this
        returns or raises, so nothing is deleted or unlocked under a program that still runs."""
        job = Job(next(self._numbers), [str(a) for a in argv], timeout, list(cpus))
        self._unfinished[job.number] = job
        try:
            result = self._execute(job)
        except BaseException:
            self._stop(job)
            raise
        if result.timed_out:  # a device's `timeout` signals the program only, not what the program started
            self._stop(job)
        else:
            self._unfinished.pop(job.number, None)
        return result

    @abc.abstractmethod
    def _execute(self, job: Job) -> RunResult:
        """Start job.argv in a process group of its own (recording its id where `_kill` finds it), wait for it."""

    @abc.abstractmethod
    def _kill(self, job: Job) -> None:
        """SIGKILL the job's process group on the device (nothing when it never started or is gone); raise when
        the device cannot be told."""

    def _stop(self, job: Job) -> None:
        """Kill a job's group, with Ctrl-C and SIGTERM held until it is done. A device that cannot be told keeps
        the job on the list, for close() to try again."""
        with signals_deferred():
            try:
                self._kill(job)
            except Exception as e:  # the caller's own exception, if any, is what the user needs to see first
                print(f"could not stop run {job.number} ({job.argv[0]}) on {self.identity}: {e}; it may still be "
                      "running there (`python -m harness devices --clean` stops it once the device answers)",
                      file=sys.stderr, flush=True)
                return
        self._unfinished.pop(job.number, None)

    # XNNPACK's weight cache (harness/measure/weight_cache.py): a file the runner writes on the device.
    def weight_cache_path(self, model: str, digest: str) -> str:
        """Where the weight cache of a staged model goes: beside it, named by the model's sha256. XNNPACK matches
        cached weights by their place in the model file, not their values, so a cache named by anything less than
        the content could feed a changed model another model's weights."""
        return posixpath.join(posixpath.dirname(model), f"{digest}{WEIGHT_CACHE_SUFFIX}")

    def file_size(self, device_path: str) -> int | None:
        """Bytes of a file on the device; None when there is none."""
        raise NotImplementedError(f"the {self.kind} transport keeps no files for the runner")

    def replace(self, source: str, target: str) -> None:
        """Rename a file on the device over `target`, in one step: a reader sees the old file or the new one."""
        raise NotImplementedError(f"the {self.kind} transport keeps no files for the runner")

    def remove_file(self, device_path: str) -> None:
        """Remove one file this session created on the device (nothing when it is gone already)."""
        raise NotImplementedError(f"the {self.kind} transport keeps no files for the runner")

    @abc.abstractmethod
    def facts(self) -> DeviceFacts: ...

    @abc.abstractmethod
    def read_files(self, globs: Sequence[str]) -> dict[str, str]:
        """{path: text} of every existing, readable file matching the globs (device state, facts)."""

    @abc.abstractmethod
    def sha256(self, device_path: str) -> str:
        """sha256 of a file as it is on the device: provenance names the bytes that actually ran."""

    def state(self) -> DeviceState:
        return parse_state(self.read_files(STATE_GLOBS))

    def close(self) -> None:
        """Stop every run that may still be going, then remove what this session left on the device."""
        with signals_deferred():
            for job in list(self._unfinished.values()):
                self._stop(job)
            self._cleanup()

    def _cleanup(self) -> None:  # noqa: B027 - optional hook: transports with remote state clean up here
        pass


@contextlib.contextmanager
def push_progress(name: str, size: int, device: str, min_bytes: int = 16 << 20) -> Iterator[None]:
    """A line before and after a push that takes a while (a model: hundreds of MB over USB), with its rate."""
    if size < min_bytes:
        yield
        return
    print(f"pushing {name} ({size / 2**20:.0f} MiB) to {device} ...", file=sys.stderr, flush=True)
    start = time.monotonic()
    yield
    seconds = time.monotonic() - start
    print(f"pushed {name} to {device} in {seconds:.1f} s ({size / 1e6 / max(seconds, 1e-6):.0f} MB/s)",
          file=sys.stderr, flush=True)


def cpu_mask(cpus: Sequence[int]) -> str:
    """Hex affinity mask as `taskset` takes it: bare hex digits, since Android's toybox rejects a "0x" prefix
    ("bad mask") while util-linux takes either."""
    return f"{sum(1 << c for c in cpus):x}"


def parse_cpu_list(text: str) -> list[int]:
    """sysfs CPU lists such as "0-3,5" → [0, 1, 2, 3, 5]; [] for empty or malformed text."""
    cpus: set[int] = set()
    for part in text.strip().split(","):
        low, _, high = part.partition("-")
        if not low.isdigit() or not (high or low).isdigit():
            return []
        cpus.update(range(int(low), int(high or low) + 1))
    return sorted(cpus)


def format_cpu_list(cpus: Sequence[int]) -> str:
    """[0, 1, 2, 3, 5] → "0-3,5"."""
    runs: list[list[int]] = []
    for cpu in sorted(cpus):
        if runs and cpu == runs[-1][-1] + 1:
            runs[-1].append(cpu)
        else:
            runs.append([cpu])
    return ",".join(f"{r[0]}-{r[-1]}" if len(r) > 1 else f"{r[0]}" for r in runs)

