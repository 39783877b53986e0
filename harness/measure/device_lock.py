"""One process at a time on a device: pytest-xdist workers, or two sessions started side by side, never
measure on the same phone (or host) together. A file lock per device under the cache root; for a device behind
a remote adb server it guards this machine's processes only."""

from __future__ import annotations

import contextlib
import re
import sys
from collections.abc import Iterator
from typing import TextIO

import filelock

from harness.common.files import cache_root


@contextlib.contextmanager
def device_lock(identity: str, log: TextIO = sys.stderr) -> Iterator[None]:
    path = cache_root() / "locks" / f"{re.sub(r'[^A-Za-z0-9_.-]', '_', identity)}.lock"
    path.parent.mkdir(parents=True, exist_ok=True)
    lock = filelock.FileLock(path)
    try:
        lock.acquire(timeout=0)
    except filelock.Timeout:
        print(f"waiting for {identity}: another process is measuring on it (lock {path})", file=log, flush=True)
        lock.acquire()
    try:
        yield
    finally:
        lock.release()
