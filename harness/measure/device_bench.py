"""One device's bench for a session: the device, its runner build, its lock, its cooldown and its timeout.

The session asks a DeviceBench to measure an artifact under a workload; the bench takes the device's lock (one
process per device at a time), waits for the device to cool back to where it started, stages the runner and
the model (skipped when the device already holds the same bytes) and runs them. `close()` removes what the
session left on the device; the device's file cache stays.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING, TextIO

from harness.measure import stats
from harness.measure.bench import Measurement, Workload, bench, bench_inprocess, cooldown
from harness.measure.device_lock import device_lock

if TYPE_CHECKING:
    from device_runners.device import Device
    from device_runners.runners.native import RunnerBuild


class DeviceBench:
    def __init__(self, device: Device, runner: RunnerBuild, *, timeout: float, cooldown_s: float,
                 cv_limit_pct: float = stats.CV_LIMIT_PCT, log: TextIO = sys.stderr):
        self.device = device
        self.runner = runner
        self.timeout = timeout
        self.cooldown_s = cooldown_s
        self.cv_limit_pct = cv_limit_pct
        self.log = log
        # The temperature the device starts the session at: later cells wait until it is back near it.
        self.start_temp_c = device.transport.state().max_temp_c()
        self.waited_s = 0.0  # the last cell's cooldown

    def measure(self, model: Path, workload: Workload, compute: dict | None = None) -> Measurement:
        with device_lock(self.device.transport.identity, self.log):
            self.waited_s = cooldown(self.device, self.start_temp_c, max_wait_s=self.cooldown_s)
            return bench(self.device, self.runner, model, workload, self.timeout, compute, self.cv_limit_pct)

    def measure_runtime(self, runtime: str, model: Path, workload: Workload, compute: dict | None = None
                        ) -> Measurement:
        """The same workload run by another runtime (harness/measure/runtimes.py), under the same lock and cooldown."""
        from harness.measure.runtimes import bench_runtime

        with device_lock(self.device.transport.identity, self.log):
            self.waited_s = cooldown(self.device, self.start_temp_c, max_wait_s=self.cooldown_s)
            return bench_runtime(runtime, self.device, model, workload, self.timeout, compute, self.cv_limit_pct)

    def measure_inprocess(self, model: Path, workload: Workload, compute: dict | None = None) -> Measurement:
        """The yardstick (LiteRT's in-process loop, host only) under the same lock and cooldown."""
        with device_lock(self.device.transport.identity, self.log):
            self.waited_s = cooldown(self.device, self.start_temp_c, max_wait_s=self.cooldown_s)
            return bench_inprocess(self.device, model, workload, self.timeout, compute)

    def close(self) -> None:
        self.device.transport.close()
