"""The seam between the harness and a device. A transport knows nothing about models: it stages files,
runs an argv under a device-side timeout, and reports facts about the device. Adding one = one file."""

from __future__ import annotations

import abc
import dataclasses
import hashlib
from collections.abc import Sequence
from pathlib import Path

from device_runners.device_state import STATE_GLOBS, DeviceState, parse_state


@dataclasses.dataclass
class RunResult:
    exit_code: int
    stdout: str
    stderr: str
    seconds: float
    timed_out: bool = False


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


class Transport(abc.ABC):
    kind: str

    @abc.abstractmethod
    def stage(self, local: Path) -> str:
        """Make a local file available on the device (skipping it when already there); its device path."""

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
    """Hex affinity mask as `taskset` takes it (util-linux and Android's toybox both accept this form)."""
    return hex(sum(1 << c for c in cpus))


def tail(text: str, lines: int = 15) -> str:
    return "\n".join(text.strip().splitlines()[-lines:])


def sha256_file(path: Path, chunk: int = 1 << 22) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()
