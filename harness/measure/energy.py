"""Energy per token: which power meter a device has, what the runner read from it, and joules per token.

The runner reads and stamps (native/src/power_sampler.h); this module decides what to read and what the numbers
mean. Meters, found through the transport's `read_files` (one round trip; nothing from the user reaches a shell):

- battery: `/sys/class/power_supply/<name>/` of type Battery with `current_now` and `voltage_now` (Android
  phones, laptops), sampled. The kernel's ABI says µA and µV; vendors deviate, so the units are read off the
  values (a current whose median magnitude is under 10,000 is in mA; a voltage under 100,000 in mV) and the
  sign is set so that the run's median draw is positive (some report a discharge as negative, some positive).
  A battery on its charger (status Charging, Full or Not charging) says nothing about the device's draw: unavailable.
- ina3221: `/sys/class/hwmon/hwmon*/` named ina3221 (Jetson, JetPack 5+), sampled: each rail's `inN_input` (mV)
  times `currN_input` (mA); the rail labelled VDD_IN (the board's input) where there is one, else every rail.
- rapl: `/sys/class/powercap/intel-rapl:N/energy_uj` (the CPU packages of an x86 Linux host), counters read at
  each window's edges, wrapping at `max_energy_range_uj`. Readable by root only since Linux 5.10.
- odpm: `/sys/bus/iio/devices/iio:deviceN/energy_value` (Pixel 6 and later: the on-device power monitor the power
  stats HAL reads; lines `CHn(T=ms)[RAIL], µWs`), counters read at each window's edges, every rail added.

Figures, over the measured repetitions' windows: average W of the idle window (the loaded model, nothing
running), of the prefills and of the decodes; J/token of each phase with the idle draw subtracted. Where the
device has no meter, or a phase's windows hold too few readings to integrate, the figure is None and `energy`
says `unavailable: <why>`, never 0.
"""

from __future__ import annotations

import dataclasses
import re
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from device_runners.runners.report import PowerTrace, PowerWindow, RunnerReport
    from device_runners.transports.base import Transport

HZ = 50  # the runner's sampling rate; fuel gauges update slower, INA3221 about this fast
MIN_SAMPLES = 5  # readings inside a phase's windows below which its integral is not worth a figure

# The transport's read_files takes path characters only (no ':'), so the meters' folders are matched by prefix
# and told apart here.
PROBE_GLOBS = (
    "/sys/class/power_supply/*/type", "/sys/class/power_supply/*/status",
    "/sys/class/power_supply/*/current_now", "/sys/class/power_supply/*/voltage_now",
    "/sys/class/hwmon/hwmon*/name", "/sys/class/hwmon/hwmon*/in*_label", "/sys/class/hwmon/hwmon*/in*_input",
    "/sys/class/hwmon/hwmon*/curr*_input",
    "/sys/class/powercap/intel-rapl*/name", "/sys/class/powercap/intel-rapl*/energy_uj",
    "/sys/class/powercap/intel-rapl*/max_energy_range_uj",
    "/sys/bus/iio/devices/iio*/energy_value",
)
_RAPL_PACKAGE = re.compile(r"/sys/class/powercap/intel-rapl:(\d+)$")
_ODPM_RAIL = re.compile(r"CH\d+\(T=\d+\)\[([^\]]+)\],\s*(\d+)")


@dataclasses.dataclass(frozen=True)
class PowerSource:
    """A meter and the runner flags that read it."""

    kind: str  # battery | ina3221 | rapl | odpm
    description: str  # which one, for the report
    files: tuple[str, ...] = ()  # sampled every 1/HZ s (--power-file)
    counters: tuple[str, ...] = ()  # read at window edges (--power-counter)
    wraps: tuple[int, ...] = ()  # rapl: each counter's max_energy_range_uj

    def runner_flags(self, idle_s: float) -> list[str]:
        flags = [f for path in self.files for f in ("--power-file", path)]
        flags += [f for path in self.counters for f in ("--power-counter", path)]
        return [*flags, "--power-hz", str(HZ), "--power-idle-ms", str(round(idle_s * 1000))]


@dataclasses.dataclass(frozen=True)
class Unavailable:
    reason: str


def find_source(transport: Transport) -> PowerSource | Unavailable:
    """The device's meter, first found of battery, INA3221, Pixel power monitor, RAPL; or why there is none."""
    if transport.kind == "ios":
        return Unavailable("iOS gives apps no battery current or power rails; use Xcode's energy gauge")
    if transport.kind == "qemu":
        return Unavailable("an emulator's draw is the host's, whatever it emulates")
    return source_from_files(transport.read_files(PROBE_GLOBS))


def source_from_files(files: dict[str, str]) -> PowerSource | Unavailable:
    """The meter among the probe's {path: text}; split from find_source so that any device's files can be tested."""
    def folder(path: str) -> str:
        return path.rsplit("/", 1)[0]

    charging = []
    for type_path, kind in sorted(files.items()):
        if not type_path.startswith("/sys/class/power_supply/") or not type_path.endswith("/type"):
            continue
        base = folder(type_path)
        if kind.strip() != "Battery" or f"{base}/current_now" not in files or f"{base}/voltage_now" not in files:
            continue
        status = files.get(f"{base}/status", "").strip()
        if status in ("Charging", "Full", "Not charging"):  # "Not charging": on the charger, held full
            charging.append(f"{base} reports {status}")
            continue
        return PowerSource("battery", f"battery {base} current_now × voltage_now" + (f" ({status})" if status else ""),
                           files=(f"{base}/current_now", f"{base}/voltage_now"))
    for name_path, name in sorted(files.items()):
        hwmon = name_path.startswith("/sys/class/hwmon/") and name_path.endswith("/name")
        if hwmon and name.strip() == "ina3221" and (source := _ina3221(folder(name_path), files)):
            return source
    odpm = sorted(p for p, text in files.items() if p.endswith("/energy_value") and _ODPM_RAIL.search(text))
    if odpm:
        return PowerSource("odpm", f"on-device power monitor {', '.join(map(folder, odpm))} (every rail)",
                           counters=tuple(odpm))
    packages = sorted(folder(p) for p in files if p.endswith("/name") and _RAPL_PACKAGE.match(folder(p)))
    readable = [p for p in packages if f"{p}/energy_uj" in files]
    if readable:
        return PowerSource("rapl", f"RAPL {', '.join(files[f'{p}/name'].strip() for p in readable)}",
                           counters=tuple(f"{p}/energy_uj" for p in readable),
                           wraps=tuple(int(files.get(f"{p}/max_energy_range_uj", "0") or 0) for p in readable))
    if charging:
        return Unavailable(f"{'; '.join(charging)}: a charging battery's current is the charger's surplus, not the "
                           "device's draw; unplug it and connect over Wi-Fi (README: energy on battery)")
    if packages:
        return Unavailable(f"RAPL is there ({', '.join(packages)}) but energy_uj is readable by root only (Linux "
                           "5.10 and later); run as root or make it readable")
    return Unavailable("no meter: no battery with current_now and voltage_now under /sys/class/power_supply, no "
                       "INA3221 in /sys/class/hwmon, no power monitor in /sys/bus/iio, no RAPL in /sys/class/powercap")


def _ina3221(base: str, files: dict[str, str]) -> PowerSource | None:
    rail = re.compile(re.escape(base) + r"/curr(\d+)_input")
    channels = sorted(int(m.group(1)) for p in files
                      if (m := rail.fullmatch(p)) and f"{base}/in{m.group(1)}_input" in files)
    labelled = [c for c in channels if files.get(f"{base}/in{c}_label", "").strip() == "VDD_IN"]
    used = labelled or channels
    if not used:
        return None
    rails = ", ".join(files.get(f"{base}/in{c}_label", f"channel {c}").strip() for c in used)
    return PowerSource("ina3221", f"INA3221 {base} ({rails})",
                       files=tuple(f for c in used for f in (f"{base}/in{c}_input", f"{base}/curr{c}_input")))


def watts(source: PowerSource, trace: PowerTrace) -> tuple[np.ndarray, np.ndarray, str]:
    """The sampled meter as (seconds, watts) and how its units were read; samples with a failed read dropped."""
    rows = [s for s in trace.samples if None not in s]
    t = np.array([s[0] for s in rows], dtype=np.float64) / 1e9
    values = np.array([s[1:] for s in rows], dtype=np.float64).reshape(len(rows), len(trace.files))
    if len(rows) < 2:  # nothing to read units off; figures() says so
        return t, np.zeros(len(rows)), ""
    if source.kind == "ina3221":  # mV × mA per rail
        return t, (values[:, 0::2] * values[:, 1::2]).sum(axis=1) * 1e-6, "mV × mA"
    current, voltage = values[:, 0], values[:, 1]
    amps, current_unit = (1e-3, "mA") if np.median(np.abs(current)) < 10_000 else (1e-6, "µA")
    volts, voltage_unit = (1e-3, "mV") if np.median(np.abs(voltage)) < 100_000 else (1e-6, "µV")
    power = current * amps * voltage * volts
    flipped = bool(np.median(power) < 0)
    units = f"{current_unit} × {voltage_unit}" + (", discharge negative" if flipped else "")
    return t, -power if flipped else power, units


def sampled_joules(t: np.ndarray, w: np.ndarray, window: PowerWindow) -> tuple[float, int]:
    """∫ of the readings, linear between them, over the window (held flat past the first and last); and how many
    readings fell inside it."""
    a, b = window.start_ns / 1e9, window.end_ns / 1e9
    inside = (t > a) & (t < b)
    grid = np.concatenate(([a], t[inside], [b]))
    return float(np.trapezoid(np.interp(grid, t, w), grid)), int(inside.sum())


class CounterError(ValueError):
    """A counter read at a window's edge held no value (the runner read an empty file, or other text)."""


def counter_joules(source: PowerSource, window: PowerWindow) -> float:
    """The counters' advance over the window: RAPL's µJ (past a wrap), the power monitor's rails' µWs."""
    total = 0.0
    for i, (start, end) in enumerate(zip(window.start_text, window.end_text, strict=True)):
        if source.kind == "odpm":
            before, after = _odpm_rails(start), _odpm_rails(end)
            if not before or before.keys() != after.keys():
                raise CounterError(f"{source.counters[i]} held no rails or other rails at the {window.phase} "
                                   f"window's edges")
            total += sum(after[rail] - before[rail] for rail in after)
        else:
            try:
                delta = int(end) - int(start)
            except ValueError:
                raise CounterError(f"{source.counters[i]} held {start.strip()!r} and {end.strip()!r} at the "
                                   f"{window.phase} window's edges, not two numbers") from None
            total += delta + (source.wraps[i] + 1 if delta < 0 and source.wraps[i] else 0)
    return total * 1e-6


def _odpm_rails(text: str) -> dict[str, int]:
    return {rail: int(value) for rail, value in _ODPM_RAIL.findall(text)}


def figures(report: RunnerReport, source: PowerSource | Unavailable) -> dict:
    """The CellResult's energy fields from the runner's trace."""
    empty = {"idle_w": None, "prefill_w": None, "decode_w": None, "prefill_j_tok": None, "decode_j_tok": None,
             "energy_hz": None}
    if isinstance(source, Unavailable):
        return {**empty, "energy": f"unavailable: {source.reason}"}
    trace = report.power
    if trace is None:
        return {**empty, "energy": "unavailable: the runner returned no power readings"}
    if source.files:
        t, w, units = watts(source, trace)
        if len(t) < 2:
            return {**empty, "energy": f"unavailable: {len(trace.samples)} readings of {source.description}, "
                                       f"{len(t)} usable"}
        hz = (len(t) - 1) / (t[-1] - t[0])
        described = f"{source.description} ({units}) at {hz:.0f} Hz"

        def joules(window: PowerWindow) -> tuple[float, int | None]:
            return sampled_joules(t, w, window)
    else:
        hz, described = None, f"{source.description}, read at each window's edges"

        def joules(window: PowerWindow) -> tuple[float, int | None]:
            return counter_joules(source, window), None  # exact at the edges: no readings to count

    phases = {name: [w for w in trace.windows if w.phase == name] for name in ("idle", "prefill", "decode")}
    if not phases["idle"]:
        return {**empty, "energy": "unavailable: the runner recorded no idle window"}
    try:
        return _phase_figures(report, phases, joules, hz, described)
    except CounterError as e:
        return {**empty, "energy": f"unavailable: {e}"}


def _phase_figures(report: RunnerReport, phases: dict[str, list[PowerWindow]], joules, hz: float | None,
                   described: str) -> dict:
    """Average W of each phase's windows and J/token net of the idle window's draw."""
    idle_j, _ = joules(phases["idle"][0])
    idle_w = idle_j / phases["idle"][0].seconds
    out = {"idle_w": idle_w, "prefill_w": None, "decode_w": None, "prefill_j_tok": None, "decode_j_tok": None,
           "energy_hz": hz}
    notes = []
    tokens = {"prefill": report.prefill_len, "decode": report.decode_len}
    for name in ("prefill", "decode"):
        windows = phases[name]
        seconds = sum(w.seconds for w in windows)
        parts = [joules(w) for w in windows]
        sampled = [n for _, n in parts if n is not None]
        readings = sum(sampled)
        if not windows or (sampled and readings < MIN_SAMPLES):
            notes.append(f"{name} unavailable: its {len(windows)} windows ({seconds * 1000:.0f} ms in all) held "
                         f"{readings} readings; at least {MIN_SAMPLES} are needed (more --reps, a longer workload)")
            continue
        total = sum(j for j, _ in parts)
        out[f"{name}_w"] = total / seconds
        out[f"{name}_j_tok"] = (total - idle_w * seconds) / (tokens[name] * len(windows))
    out["energy"] = "; ".join([described, *notes])
    return out

