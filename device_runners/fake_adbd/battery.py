"""The test device's battery: `/sys/class/power_supply/battery/` serving a current and voltage trace a test wrote.

A phone's fuel gauge is read through sysfs, whose `current_now` and `voltage_now` give the value of the moment
they are read. Here a thread rewrites both files every UPDATE_S from the trace, each by an atomic rename, so a
reader always finds a whole number (sample-and-hold, as a fuel gauge's registers are). The trace is keyed on this
host's CLOCK_MONOTONIC, the clock the runner stamps its readings and windows with, so a test can integrate its own
trace over the windows the runner reports and compare.

Trace file (JSON): {"period_s": P, "points": [[t_s, current, voltage], ...], "status": "Discharging"}: the raw
numbers the files hold (whatever units and sign the test plays a vendor with), linear between the points, the
whole trace repeating every P seconds of CLOCK_MONOTONIC (t mod P; the last point joins the first).
"""

from __future__ import annotations

import json
import os
import threading
import time
from pathlib import Path

import numpy as np

UPDATE_S = 0.002


class BatteryTrace:
    def __init__(self, trace: dict):
        self.period_s = float(trace["period_s"])
        points = np.array(trace["points"], dtype=np.float64)
        # Closed over the period: the value at P is the value at 0.
        self.t = np.concatenate((points[:, 0], [self.period_s]))
        self.current = np.concatenate((points[:, 1], points[:1, 1]))
        self.voltage = np.concatenate((points[:, 2], points[:1, 2]))
        self.status = trace.get("status", "Discharging")

    @classmethod
    def load(cls, path: Path) -> BatteryTrace:
        return cls(json.loads(Path(path).read_text()))

    def at(self, monotonic_s: float | np.ndarray) -> tuple:
        """The raw (current, voltage) the files hold at these CLOCK_MONOTONIC seconds."""
        phase = np.mod(monotonic_s, self.period_s)
        return np.interp(phase, self.t, self.current), np.interp(phase, self.t, self.voltage)


class Battery:
    """Keeps `folder`'s current_now and voltage_now on the trace until the process exits (a daemon thread)."""

    def __init__(self, folder: Path, trace: BatteryTrace):
        self.folder, self.trace = folder, trace
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "type").write_text("Battery\n")
        (folder / "status").write_text(f"{trace.status}\n")
        self._write()
        threading.Thread(target=self._run, name="battery", daemon=True).start()

    def _write(self) -> None:
        current, voltage = self.trace.at(time.monotonic())
        for name, value in (("current_now", current), ("voltage_now", voltage)):
            part = self.folder / f".{name}.part"
            part.write_text(f"{round(float(value))}\n")
            os.replace(part, self.folder / name)

    def _run(self) -> None:
        while True:
            time.sleep(UPDATE_S)
            self._write()
