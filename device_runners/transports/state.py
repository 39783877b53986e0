"""The state of a device's CPUs and thermals at one moment, parsed from sysfs/procfs text.

Transports only gather the files (the host reads them, a phone cats them in one shell command); parsing lives
here so every transport reads them the same way. Absent files (a VM has no cpufreq or thermal zones) give
empty fields, never invented values.
"""

from __future__ import annotations

import dataclasses
import re

# What a snapshot reads, as globs. Transports return {path: text} for every file that exists.
STATE_GLOBS = (
    "/sys/devices/system/cpu/cpu*/cpufreq/scaling_cur_freq",
    "/sys/devices/system/cpu/cpu*/cpufreq/scaling_max_freq",  # lowered by thermal throttling
    "/sys/devices/system/cpu/cpu*/cpufreq/scaling_governor",
    "/sys/class/thermal/thermal_zone*/type",
    "/sys/class/thermal/thermal_zone*/temp",
    "/sys/devices/system/cpu/cpu*/thermal_throttle/core_throttle_count",
    "/proc/cpuinfo",  # "cpu MHz" where cpufreq is absent (x86 VMs)
)

_CPU = re.compile(r"/cpu(\d+)/")
_ZONE = re.compile(r"/thermal_zone(\d+)/")


@dataclasses.dataclass
class DeviceState:
    cpu_cur_khz: dict[int, int] = dataclasses.field(default_factory=dict)
    cpu_cap_khz: dict[int, int] = dataclasses.field(default_factory=dict)  # scaling_max_freq
    governors: dict[int, str] = dataclasses.field(default_factory=dict)
    temps_c: dict[str, float] = dataclasses.field(default_factory=dict)  # thermal zone type → °C
    throttle_counts: dict[int, int] = dataclasses.field(default_factory=dict)

    def max_temp_c(self) -> float | None:
        return max(self.temps_c.values()) if self.temps_c else None


def parse_state(files: dict[str, str]) -> DeviceState:
    state = DeviceState()
    zone_types: dict[str, str] = {}
    zone_temps: dict[str, float] = {}
    for path, text in files.items():
        text = text.strip()
        if path == "/proc/cpuinfo":
            if not any("scaling_cur_freq" in p for p in files):
                state.cpu_cur_khz = _cpuinfo_mhz(text)
            continue
        cpu = _CPU.search(path)
        zone = _ZONE.search(path)
        if cpu and path.endswith("scaling_cur_freq") and text.isdigit():
            state.cpu_cur_khz[int(cpu[1])] = int(text)
        elif cpu and path.endswith("scaling_max_freq") and text.isdigit():
            state.cpu_cap_khz[int(cpu[1])] = int(text)
        elif cpu and path.endswith("scaling_governor"):
            state.governors[int(cpu[1])] = text
        elif cpu and path.endswith("core_throttle_count") and text.isdigit():
            state.throttle_counts[int(cpu[1])] = int(text)
        elif zone and path.endswith("/type"):
            zone_types[zone[1]] = text
        elif zone and path.endswith("/temp") and re.fullmatch(r"-?\d+", text):
            # Millidegrees on Linux and most phones; a few report whole degrees.
            value = int(text)
            zone_temps[zone[1]] = value / 1000 if abs(value) > 200 else float(value)
    for zone_id, temp in sorted(zone_temps.items(), key=lambda kv: int(kv[0])):
        name = zone_types.get(zone_id, f"zone{zone_id}")
        state.temps_c[name if name not in state.temps_c else f"{name}#{zone_id}"] = temp
    return state


def _cpuinfo_mhz(text: str) -> dict[int, int]:
    out, cpu = {}, None
    for line in text.splitlines():
        key, _, value = line.partition(":")
        key, value = key.strip(), value.strip()
        if key == "processor" and value.isdigit():
            cpu = int(value)
        elif key == "cpu MHz" and cpu is not None:
            out[cpu] = round(float(value) * 1000)
    return out


def changes(before: DeviceState, after: DeviceState, cpus: list[int], temp_rise_c: float = 10.0) -> list[str]:
    """Warnings about what changed during a measurement on the cores it ran on."""
    warnings = []
    for cpu in cpus:
        cap0, cap1 = before.cpu_cap_khz.get(cpu), after.cpu_cap_khz.get(cpu)
        if cap0 and cap1 and cap1 < cap0:
            warnings.append(f"cpu{cpu} frequency cap dropped {cap0 // 1000} → {cap1 // 1000} MHz (throttled)")
        t0, t1 = before.throttle_counts.get(cpu), after.throttle_counts.get(cpu)
        if t0 is not None and t1 is not None and t1 > t0:
            warnings.append(f"cpu{cpu} was throttled {t1 - t0} time(s) during the run")
    hot0, hot1 = before.max_temp_c(), after.max_temp_c()
    if hot0 is not None and hot1 is not None and hot1 - hot0 > temp_rise_c:
        warnings.append(f"hottest zone rose {hot0:.1f} → {hot1:.1f} °C")
    return warnings
