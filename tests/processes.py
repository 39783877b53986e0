"""Finding the processes a test started on a device (the host, or the adb test device, which runs on this host):
each carries a marker in its command line; the `marker` fixture kills whatever a failing test left behind."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from collections.abc import Iterator

import pytest


def running(marker: str) -> list[int]:
    """Processes whose command line carries the marker."""
    out = subprocess.run(["pgrep", "-f", marker], capture_output=True, text=True).stdout
    return [int(pid) for pid in out.split()]


def gone(marker: str, within_s: float = 5.0) -> bool:
    """Whether every process of the marker has ended within `within_s` (SIGKILL is delivered, not awaited)."""
    deadline = time.monotonic() + within_s
    while running(marker) and time.monotonic() < deadline:
        time.sleep(0.1)
    return not running(marker)


@pytest.fixture
def marker() -> Iterator[str]:
    name = f"litert-bench-test-{os.getpid()}-{time.monotonic_ns()}"
    yield name
    for pid in running(name):  # what a failing test left behind, one process at a time
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


@contextlib.contextmanager
def ctrl_c_raises() -> Iterator[None]:
    """SIGINT raises KeyboardInterrupt in this process, as in a terminal, even where the tests were started
    with it ignored (a background job of a non-interactive shell)."""
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


def default_signals() -> None:
    """preexec_fn of a child that is to be stopped with SIGINT: Python raises KeyboardInterrupt on it only where
    SIGINT was not ignored when it started."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)
