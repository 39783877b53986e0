"""The seam between the harness and a device. A transport knows nothing about models: it stages files,
runs an argv under a device-side timeout, and reports facts about the device. Adding one = one file."""

from __future__ import annotations

import abc
import dataclasses
from collections.abc import Sequence
from pathlib import Path

from device_runners.transports.state import STATE_GLOBS, DeviceState, parse_state


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


class Transport(abc.ABC):
    kind: str

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

    @abc.abstractmethod
    def run(self, argv: Sequence[str], timeout: float, cpus: Sequence[int] = ()) -> RunResult:
        """Run argv on the device, pinned to `cpus` when given, killed on the device after `timeout` s."""

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

    def close(self) -> None:  # noqa: B027 - optional hook: transports with remote state clean up here
        pass


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

