"""Energy per token: the meters a device's files name, the counters' arithmetic, and, on the adb test device whose
battery serves a current and voltage trace this test writes, J/token equal to the trace's own integral over the
decode windows the runner reports (±2 %); a device without a meter says `unavailable`, never 0."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest

from device_runners.runners.report import PowerTrace, PowerWindow, RunnerReport
from harness.measure import energy
from tests.conftest import run_cli

BATTERY = "/sys/class/power_supply/battery"


def test_a_discharging_battery_is_sampled_and_a_charging_one_refused():
    files = {f"{BATTERY}/type": "Battery", f"{BATTERY}/status": "Discharging", f"{BATTERY}/current_now": "-512000",
             f"{BATTERY}/voltage_now": "3870000", "/sys/class/power_supply/usb/type": "USB"}
    source = energy.source_from_files(files)
    assert source.kind == "battery" and source.files == (f"{BATTERY}/current_now", f"{BATTERY}/voltage_now")
    assert source.runner_flags(2.5) == ["--power-file", f"{BATTERY}/current_now", "--power-file",
                                        f"{BATTERY}/voltage_now", "--power-hz", "50", "--power-idle-ms", "2500"]
    for status in ("Charging", "Full", "Not charging"):
        refused = energy.source_from_files(files | {f"{BATTERY}/status": status})
        assert isinstance(refused, energy.Unavailable)
        assert status in refused.reason and "Wi-Fi" in refused.reason


def test_other_meters_and_why_there_is_none():
    hwmon = "/sys/class/hwmon/hwmon3"
    jetson = {f"{hwmon}/name": "ina3221", f"{hwmon}/in1_label": "VDD_IN", f"{hwmon}/in1_input": "5080",
              f"{hwmon}/curr1_input": "1210", f"{hwmon}/in2_label": "VDD_CPU_GPU_CV", f"{hwmon}/in2_input": "5080",
              f"{hwmon}/curr2_input": "400"}
    source = energy.source_from_files(jetson)
    assert source.kind == "ina3221" and source.files == (f"{hwmon}/in1_input", f"{hwmon}/curr1_input")  # VDD_IN only

    rapl = {"/sys/class/powercap/intel-rapl:0/name": "package-0", "/sys/class/powercap/intel-rapl:0:0/name": "core",
            "/sys/class/powercap/intel-rapl:0/max_energy_range_uj": "262143328850"}
    refused = energy.source_from_files(rapl)
    assert isinstance(refused, energy.Unavailable) and "root only" in refused.reason
    source = energy.source_from_files(rapl | {"/sys/class/powercap/intel-rapl:0/energy_uj": "1000",
                                              "/sys/class/powercap/intel-rapl:0:0/energy_uj": "500"})
    assert source.kind == "rapl" and source.counters == ("/sys/class/powercap/intel-rapl:0/energy_uj",)  # no subzone
    assert source.wraps == (262143328850,)

    none = energy.source_from_files({})
    assert isinstance(none, energy.Unavailable) and none.reason.startswith("no meter")


def _window(phase: str, start_s: float, end_s: float, start: list[str], end: list[str], rep: int = 0) -> PowerWindow:
    return PowerWindow(phase, rep, round(start_s * 1e9), round(end_s * 1e9), start, end)


def test_counters_wrap_and_rails_add_up():
    rapl = energy.PowerSource("rapl", "RAPL package-0", counters=("/x/energy_uj",), wraps=(1_000_000,))
    assert energy.counter_joules(rapl, _window("decode", 0, 1, ["400000"], ["700000"])) == pytest.approx(0.3)
    # Past the wrap at max_energy_range_uj: 999,000 → 1,000,000 → 0 → 500 is 1,501 µJ.
    assert energy.counter_joules(rapl, _window("decode", 0, 1, ["999000"], ["500"])) == pytest.approx(1.501e-3)
    odpm = energy.PowerSource("odpm", "power monitor", counters=("/x/energy_value",))
    before = "t=1000\nCH0(T=1000)[S10M_VDD_TPU], 2000000\nCH1(T=1000)[VSYS_PWR_MODEM], 5000000\n"
    after = "t=2000\nCH0(T=2000)[S10M_VDD_TPU], 2600000\nCH1(T=2000)[VSYS_PWR_MODEM], 5150000\n"
    assert energy.counter_joules(odpm, _window("decode", 0, 1, [before], [after])) == pytest.approx(0.75)


def _report(trace: PowerTrace, prefill_len: int = 32, decode_len: int = 16) -> RunnerReport:
    return RunnerReport("llm_runner", "0", "compiled_model", "LiteRT", "x", "m.tflite", 1, 2, prefill_len,
                        decode_len, 0, 128, 2048, 2, 0, None, 0, 1.0, None, [], [], [], None, None, None, True,
                        power=trace)


def test_counter_figures_subtract_the_idle_draw():
    rapl = energy.PowerSource("rapl", "RAPL package-0", counters=("/x",), wraps=(2**40,))
    # Idle 2 s at 1.5 W; two decodes of 0.5 s at 9.5 W (16 tokens each); two prefills of 0.1 s at 11.5 W.
    windows = [_window("idle", 0, 2, ["0"], ["3000000"], rep=-1)]
    clock, counter = 2.0, 3_000_000
    for rep in range(2):
        for phase, seconds, watts in (("prefill", 0.1, 11.5), ("decode", 0.5, 9.5)):
            end = counter + round(seconds * watts * 1e6)
            windows.append(_window(phase, clock, clock + seconds, [str(counter)], [str(end)], rep))
            clock, counter = clock + seconds, end
    got = energy.figures(_report(PowerTrace(50, [], ["/x"], [], windows)), rapl)
    assert got["idle_w"] == pytest.approx(1.5) and got["decode_w"] == pytest.approx(9.5)
    assert got["decode_j_tok"] == pytest.approx((9.5 - 1.5) * 0.5 / 16)
    assert got["prefill_j_tok"] == pytest.approx((11.5 - 1.5) * 0.1 / 32)
    assert got["energy_hz"] is None and "RAPL package-0" in got["energy"]

    # A counter the runner could not read at an edge (an empty file): unavailable, naming it, not a figure.
    windows[3] = dataclasses.replace(windows[3], end_text=[""])
    got = energy.figures(_report(PowerTrace(50, [], ["/x"], [], windows)), rapl)
    assert got["decode_j_tok"] is None and got["idle_w"] is None
    assert got["energy"] == "unavailable: /x held '8900000' and '' at the prefill window's edges, not two numbers"


def test_a_phase_too_short_to_integrate_is_unavailable_not_zero():
    battery = energy.PowerSource("battery", "battery", files=("/c", "/v"))
    samples = [[round(t * 1e9), -500_000, 3_900_000] for t in np.arange(0, 3.0, 0.02)]
    windows = [_window("idle", 0, 2, [], [], rep=-1), _window("prefill", 2.001, 2.003, [], []),
               _window("decode", 2.003, 2.9, [], [])]
    got = energy.figures(_report(PowerTrace(50, ["/c", "/v"], [], samples, windows)), battery)
    assert got["prefill_j_tok"] is None and got["prefill_w"] is None
    assert "prefill unavailable: its 1 windows (2 ms in all) held 0 readings" in got["energy"]
    assert got["decode_w"] == pytest.approx(0.5 * 3.9) and got["decode_j_tok"] == pytest.approx(0, abs=1e-9)
    assert "µA × µV, discharge negative" in got["energy"] and got["energy_hz"] == pytest.approx(50, rel=0.01)

    # Every read failed (the runner writes null): no figure, and the count says why.
    failed = [[t, None, v] for t, _, v in samples]
    got = energy.figures(_report(PowerTrace(50, ["/c", "/v"], [], failed, windows)), battery)
    assert got["energy"] == f"unavailable: {len(samples)} readings of battery, 0 usable" and got["idle_w"] is None


# Two vendors' spellings of one physical trace: a triangle wave of current (0.2 A → 2 A → 0.2 A over 2 s) on a
# voltage sagging 4.2 V → 3.7 V and back over 3 s, so the idle window and the decodes see different draws.
# A Pixel writes µA with a discharge negative; some vendors write mA with a discharge positive.
VENDORS = {
    "uA-negative": (lambda amps: -amps * 1e6, lambda volts: volts * 1e6),
    "mA-positive": (lambda amps: amps * 1e3, lambda volts: volts * 1e6),
}


def _physical(t: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Amps and volts at these CLOCK_MONOTONIC seconds."""
    amps = np.interp(np.mod(t, 2.0), [0, 1, 2], [0.2, 2.0, 0.2])
    volts = np.interp(np.mod(t, 3.0), [0, 1.5, 3], [4.2, 3.7, 4.2])
    return amps, volts


def _write_trace(path: Path, vendor: str) -> None:
    # The fake battery interpolates one periodic table; 6 s holds both periods, at 1 ms a point.
    t = np.arange(0, 6.0, 0.001)
    amps, volts = _physical(t)
    to_current, to_voltage = VENDORS[vendor]
    path.write_text(json.dumps({"period_s": 6.0, "status": "Discharging", "points": [
        [float(a), float(b), float(c)] for a, b, c in zip(t, to_current(amps), to_voltage(volts), strict=True)]}))


def _true_joules(window: dict) -> float:
    """The trace's own integral over a window the runner reported, at 10 µs steps."""
    t = np.linspace(window["start_ns"] / 1e9, window["end_ns"] / 1e9,
                    max(2, round((window["end_ns"] - window["start_ns"]) / 1e4)))
    amps, volts = _physical(t)
    return float(np.trapezoid(amps * volts, t))


@pytest.mark.parametrize("vendor", sorted(VENDORS))
def test_joules_per_token_equal_the_battery_traces_integral(fake_adb_device, tiny_artifact, tmp_path, vendor):
    trace = tmp_path / "trace.json"
    _write_trace(trace, vendor)
    device = fake_adb_device(battery_trace=trace)
    art = tiny_artifact("dynamic_int8")
    # 40 repetitions of 96 decode steps: about a second of decode windows, 50 readings at 50 Hz.
    out = run_cli("bench", str(art.path), "--device", device.name, "--decode", "96", "--threads", "2", "--reps", "40",
                  "--warmup", "1", "--bandwidth-probe-mb", "0", "--weight-cache", "off", "--energy-idle", "1", "--json")
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout)
    power = result["runner"]["power"]
    assert [p.rsplit("/", 1)[-1] for p in power["files"]] == ["current_now", "voltage_now"]
    windows = {phase: [w for w in power["windows"] if w["phase"] == phase] for phase in ("idle", "prefill", "decode")}
    assert len(windows["idle"]) == 1 and len(windows["decode"]) == len(windows["prefill"]) == 40
    # The windows are the timed spans: their lengths add up to the decode seconds the runner reported.
    decode_s = sum(w["end_ns"] - w["start_ns"] for w in windows["decode"]) / 1e9
    assert decode_s == pytest.approx(sum(s["decode_s"] for s in result["samples"]), rel=0.05)

    idle = windows["idle"][0]
    idle_w = _true_joules(idle) / ((idle["end_ns"] - idle["start_ns"]) / 1e9)
    gross = sum(_true_joules(w) for w in windows["decode"])
    tokens = 96 * 40
    assert result["idle_w"] == pytest.approx(idle_w, rel=0.02)
    assert result["decode_w"] == pytest.approx(gross / decode_s, rel=0.02)
    # Net of the idle draw, to within 2 % of the decode's own energy (the net alone can be near zero).
    assert abs(result["decode_j_tok"] - (gross - idle_w * decode_s) / tokens) <= 0.02 * gross / tokens
    assert result["energy_hz"] == pytest.approx(50, rel=0.1)
    expected_units = "µA × µV, discharge negative" if vendor == "uA-negative" else "mA × µV)"
    assert expected_units in result["energy"]
    # 40 prefills of the tiny model last a few ms in all: too short for 50 Hz, and said so rather than 0.
    assert result["prefill_j_tok"] is None and "prefill unavailable" in result["energy"]


def test_a_device_without_a_meter_says_unavailable(fake_adb_device, tiny_artifact):
    device = fake_adb_device()
    art = tiny_artifact("dynamic_int8")
    out = run_cli("bench", str(art.path), "--device", device.name, "--decode", "16", "--threads", "2", "--reps", "2",
                  "--bandwidth-probe-mb", "0", "--weight-cache", "off", "--json")
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout)
    assert result["energy"].startswith("unavailable: no meter: no battery with current_now and voltage_now")
    assert all(result[k] is None for k in ("idle_w", "decode_w", "decode_j_tok", "prefill_j_tok", "energy_hz"))
    assert result["runner"]["power"] is None  # the runner was given nothing to read and ran no idle window
