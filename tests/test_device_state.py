"""Device state from sysfs text (as a phone or board reports it), the warnings it raises, and the cooldown."""

from pathlib import Path

from device_runners.device import Device, Profile
from device_runners.transports.host import HostTransport
from device_runners.transports.state import DeviceState, changes, parse_state
from harness.measure.bench import cooldown

CPU = "/sys/devices/system/cpu/cpu{}/cpufreq/{}"
ZONE = "/sys/class/thermal/thermal_zone{}/{}"


def _phone(cap_khz: int, temp_mc: int, throttles: int = 0) -> dict[str, str]:
    files = {ZONE.format(0, "type"): "BIG", ZONE.format(0, "temp"): str(temp_mc),
             ZONE.format(1, "type"): "battery", ZONE.format(1, "temp"): "31"}  # whole degrees on some zones
    for cpu in range(4, 8):
        files |= {CPU.format(cpu, "scaling_cur_freq"): "2367000", CPU.format(cpu, "scaling_max_freq"): str(cap_khz),
                  CPU.format(cpu, "scaling_governor"): "schedutil",
                  f"/sys/devices/system/cpu/cpu{cpu}/thermal_throttle/core_throttle_count": str(throttles)}
    return files


def test_parse_phone_like_sysfs():
    state = parse_state(_phone(2367000, 45250))
    assert state.cpu_cap_khz[4] == 2367000 and state.governors[7] == "schedutil"
    assert state.temps_c == {"BIG": 45.25, "battery": 31.0} and state.max_temp_c() == 45.25


def test_cpuinfo_mhz_is_used_where_cpufreq_is_absent():
    cpuinfo = "processor\t: 0\ncpu MHz\t\t: 2596.124\n\nprocessor\t: 1\ncpu MHz\t\t: 1800.000\n"
    assert parse_state({"/proc/cpuinfo": cpuinfo}).cpu_cur_khz == {0: 2596124, 1: 1800000}


def test_throttling_and_heat_become_warnings():
    before, after = parse_state(_phone(2367000, 40000)), parse_state(_phone(1800000, 55000, throttles=3))
    warnings = changes(before, after, cpus=[4, 5])
    assert any("cpu4 frequency cap dropped 2367 → 1800 MHz" in w for w in warnings)
    assert any("cpu5 was throttled 3 time(s)" in w for w in warnings)
    assert any("40.0 → 55.0 °C" in w for w in warnings)
    assert changes(before, parse_state(_phone(2367000, 41000)), cpus=[4, 5]) == []


def test_host_state_reads_what_this_machine_has():
    state = HostTransport().state()
    assert state.cpu_cur_khz  # cpufreq or /proc/cpuinfo: every Linux host reports a current frequency


class _CoolingTransport(HostTransport):
    """The host, except its thermal zone reads from a scripted sequence (this VM has no thermal zones)."""

    def __init__(self, temps: list[float]):
        super().__init__()
        self.temps = temps

    def state(self) -> DeviceState:
        temp = self.temps.pop(0) if len(self.temps) > 1 else self.temps[0]
        return DeviceState(temps_c={"cpu": temp})


def _device(transport) -> Device:
    return Device(Profile("scripted", "host", "host"), transport)


def test_cooldown_waits_until_back_near_the_baseline():
    transport = _CoolingTransport([50.0, 47.0, 44.0, 41.5, 41.0])
    waited = cooldown(_device(transport), baseline_c=40.0, tolerance_c=2.0, max_wait_s=30, poll_s=0.01)
    assert transport.temps == [41.0] and waited < 5  # stopped at 41.5 (within 2 °C), not before


def test_cooldown_is_capped():
    waited = cooldown(_device(_CoolingTransport([80.0])), baseline_c=40.0, max_wait_s=0.2, poll_s=0.01)
    assert 0.2 <= waited < 2


def test_no_thermal_zones_means_no_wait(tmp_path: Path):
    assert cooldown(_device(HostTransport()), baseline_c=None, max_wait_s=30) < 0.5
