"""XNNPACK's weight cache on the device, as apps ship it (LiteRT-LM writes one beside every model it loads).

Without a cache, every load of a model packs its weights into XNNPACK's layout in memory: seconds of init on a
full-size model, and the packed copies on top of the file's pages. With one, the first load writes the packed
weights to a file and later loads map it. Full TinyLlama int8, 2 threads, on a busy 2-vCPU VM: without the cache
init 3.3–5.0 s and 2999 MiB peak; the cold run 2.5–3.7 s and 1181 MiB; with the cache init 55–67 ms and
1112 MiB (LiteRT-LM's own benchmark with its cache: 0.10–0.16 s, 1.15 GB).

A cell with the cache on (`--weight-cache on`, the default) runs the runner twice, pinned and timed out alike:

1. the cold run: the shortest workload there is (no warmup, one repetition of one decode step, no bandwidth
   probe, no second load) with `--weight-cache` naming a file that does not exist yet,
   `<sha256>.xnnpack_cache.<random>.part` beside the model. That load packs the weights and writes the cache:
   its init is the cell's cold init (`init_cache_cold_ms`, an app's first launch) and its peak memory that
   launch's (`peak_rss_cache_cold_mb`). It must report `weight_cache: "cold"`; once it exited 0 the file is
   renamed to `<sha256>.xnnpack_cache` (Transport.weight_cache_path), replacing any earlier one in one step.
2. the measured run, with `--weight-cache <sha256>.xnnpack_cache`. It must report "warm": its init_ms is a
   launch that finds the cache (an app's every later launch), init_warm_ms a reload in the same process, and its
   peak memory, speeds and tokens are those of a process that maps the cache.

Every cell measures its own cold build, so the cold figure never depends on what ran before. The cache is named
by the model's sha256 because XNNPACK matches cached weights by their place in the model file, not their
values: another model's cache of the same shape is used without complaint and computes garbage (measured:
tiny TinyLlama with seed 99 fed the seed-1234 model's cache decoded other tokens than either model). A cache of
other kernels (another CPU; the qemu-arm64 device, which shares the host's files) fails XNNPACK's fingerprint
check and is rebuilt (the runner reports that load cold). Each cell builds its cache right before it measures,
so the measured run reads one of its own kernels; one that reports anything but warm fails the cell.

A cold run that crashes or is killed leaves at most its `.part`, which no run reads (XNNPACK itself writes the
cache's header last, so even a cut-off file at the final name would be rebuilt, not read; the final name only
ever receives caches whose run succeeded). The harness removes its `.part` when the run fails; after a killed
session, `python -m harness devices --clean` removes `.part` files older than ten minutes on adb and iOS devices.
Nothing else is ever removed: the final cache stays beside the model, like the model itself.
"""

from __future__ import annotations

import contextlib
import dataclasses
import secrets
import shlex
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

from device_runners.runners.report import RunnerReport
from harness.common.signals import signals_deferred

if TYPE_CHECKING:
    from device_runners.device import Device

# The cold run's workload: one load and the least work the runner accepts after it.
COLD_RUN_FLAGS = ("--decode", "1", "--warmup", "0", "--reps", "1", "--depth", "0", "--bandwidth-probe-mb", "0",
                  "--no-warm-init")


# Runs a runner command line on the device: its report and the command as the device ran it; raises when the
# runner fails (harness/measure/bench.py).
Execute = Callable[[list], tuple[RunnerReport, str]]


@dataclasses.dataclass(frozen=True)
class ColdRun:
    """The cold run of a cell: where the cache it built lies now, and what that run reported."""

    path: str  # the cache on the device, where the measured run reads it
    report: RunnerReport
    command: str
    device_command: str

    def to_json(self) -> dict:
        return {"path": self.path, "command": self.command, "device_command": self.device_command,
                "runner": self.report.to_json()}


def build_cache(device: Device, model_on_device: str, digest: str, argv: Sequence, execute: Execute) -> ColdRun:
    """The cold run: `argv` (the runner, the model, its prefill length, threads and arithmetic) with the cold
    workload, writing a cache into a fresh `.part` beside the model, which is renamed into place once the run
    succeeded. Anything else leaves the `.part` removed and raises."""
    transport = device.transport
    path = transport.weight_cache_path(model_on_device, digest)
    part = f"{path}.{secrets.token_hex(4)}.part"
    cold_argv = [*argv, *COLD_RUN_FLAGS, "--weight-cache", part]
    done = False
    try:
        report, device_command = execute(cold_argv)
        if report.weight_cache != "cold":  # a new name: there was nothing to read
            raise RuntimeError(f"the weight cache's cold run on {device.name} reported weight_cache "
                               f"{report.weight_cache!r} for the new file {part}")
        transport.replace(part, path)
        done = True
    finally:
        if not done:  # the runner failed or was stopped: its .part is ours to remove
            with signals_deferred(), contextlib.suppress(Exception):
                transport.remove_file(part)
    return ColdRun(path, report, shlex.join(map(str, cold_argv)), device_command)
