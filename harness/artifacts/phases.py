"""Where a conversion child spends its time and memory: one line per phase, and the same figures for meta.json.

A sampler thread reads /proc/self/status every 50 ms and charges each reading to every phase open at that
moment, so a phase's peak includes its sub-phases. Two figures per phase, because they mean different things on a
machine that is short of memory:
- `peak_rss_mb`: everything resident, as `ru_maxrss` counts it, including pages of files mapped read/write
  (weights mapped from disk, models/weights_file.py), which the kernel can write back and drop;
- `peak_anon_mb`: anonymous memory, which it cannot drop (no swap here): what runs a machine out of memory.

The same sampler enforces a ceiling on anonymous memory (LITERT_BENCH_CONVERT_MEMORY_LIMIT_GB, default 90 % of
the machine's memory): a conversion that would otherwise push the whole machine into the OOM killer stops with a
message that names the phase it was in.

litert-torch marks its own phases with `litert_torch.progress.task`; `follow_litert_phases` routes those through
here, so its phases ("Torch Export: prefill", "Quantize Model", ...) appear in the same lines.
"""

from __future__ import annotations

import contextlib
import os
import sys
import threading
import time
from collections.abc import Iterator
from typing import TextIO

_MIB = 1024 * 1024
_QUIET_BELOW_S = 5.0  # sub-phases shorter than this get no line (a tiny model's conversion: three lines)


def read_memory_kb() -> dict[str, int]:
    """VmRSS, RssAnon, RssFile and RssShmem of this process in KiB (Linux)."""
    wanted = {"VmRSS", "RssAnon", "RssFile", "RssShmem"}
    out: dict[str, int] = {}
    with open("/proc/self/status") as status:
        for line in status:
            key, _, rest = line.partition(":")
            if key in wanted:
                out[key] = int(rest.split()[0])
    return out


def machine_memory_kb() -> int:
    with open("/proc/meminfo") as meminfo:
        for line in meminfo:
            if line.startswith("MemTotal:"):
                return int(line.split()[1])
    raise RuntimeError("/proc/meminfo has no MemTotal")


def memory_limit_kb() -> int:
    setting = os.environ.get("LITERT_BENCH_CONVERT_MEMORY_LIMIT_GB")
    if setting is None:
        return int(machine_memory_kb() * 0.9)
    try:
        return int(float(setting) * 1024 * 1024)
    except ValueError:
        raise SystemExit(f"LITERT_BENCH_CONVERT_MEMORY_LIMIT_GB must be a number of GiB, got {setting!r}") from None


class PhaseLog:
    """Phases, nested, each with its elapsed time and peak memory; prints a line as each top-level phase ends,
    and as each sub-phase that took 5 s or more does."""

    def __init__(self, label: str, out: TextIO = sys.stderr, interval_s: float = 0.05) -> None:
        self.label = label
        self.out = out
        self.interval_s = interval_s
        self.limit_kb = memory_limit_kb()
        self.phases: list[dict] = []  # finished phases, in the order they ended
        self._open: list[dict] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._sampler = threading.Thread(target=self._sample, name="phase-memory", daemon=True)
        self._start = time.monotonic()

    def __enter__(self) -> PhaseLog:
        self._sampler.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._sampler.join()

    @contextlib.contextmanager
    def phase(self, name: str) -> Iterator[None]:
        path = " > ".join([p["name"] for p in self._open] + [name])
        record = {"name": name, "phase": path, "start": time.monotonic(), "rss": 0, "anon": 0}
        with self._lock:
            self._open.append(record)
        self._charge(read_memory_kb())
        try:
            yield
        finally:
            self._charge(read_memory_kb())
            with self._lock:
                self._open.remove(record)
            seconds = time.monotonic() - record["start"]
            finished = {"phase": path, "seconds": round(seconds, 2),
                        "peak_rss_mb": round(record["rss"] / 1024, 1),
                        "peak_anon_mb": round(record["anon"] / 1024, 1)}
            self.phases.append(finished)
            if " > " not in path or seconds >= _QUIET_BELOW_S:  # a short sub-phase: in meta.json, no line
                print(f"  [{self.label}] {path}: {seconds:.1f} s, peak RSS {record['rss'] / _MIB:.2f} GiB "
                      f"(anonymous {record['anon'] / _MIB:.2f} GiB)", file=self.out, flush=True)

    def _charge(self, memory: dict[str, int]) -> None:
        with self._lock:
            for record in self._open:
                record["rss"] = max(record["rss"], memory.get("VmRSS", 0))
                record["anon"] = max(record["anon"], memory.get("RssAnon", 0))
            over = memory.get("RssAnon", 0) > self.limit_kb
            where = self._open[-1]["phase"] if self._open else "start-up"
        if over:
            print(f"[{self.label}] stopped in phase '{where}': anonymous memory "
                  f"{memory['RssAnon'] / _MIB:.1f} GiB is over the limit of {self.limit_kb / _MIB:.1f} GiB. "
                  "Convert on a machine with more memory, or raise LITERT_BENCH_CONVERT_MEMORY_LIMIT_GB if this "
                  "one has room the limit does not know of.", file=self.out, flush=True)
            os._exit(3)  # from the sampler thread: the main thread is inside native code and cannot be raised into

    def _sample(self) -> None:
        while not self._stop.wait(self.interval_s):
            self._charge(read_memory_kb())


def follow_litert_phases(log: PhaseLog) -> None:
    """Route litert-torch's `progress.task` phases through `log` (and silence its own rich console lines)."""
    from litert_torch import progress

    progress.task = log.phase
    progress.config.show_progress = False  # for the phases bound before this (decorators): no second console
