"""One field list, one option registry: the cell result's fields are the store's columns, every export's
fields and the gate's metrics; the option registry's defaults are the settings', the workload's and every
runner's own, the native runner included."""

from __future__ import annotations

import dataclasses
import re
import subprocess

import pytest

from harness.common.options import OPTIONS, OptionError, first_default
from harness.gate.config import METRICS
from harness.measure.bench import Workload
from harness.measure.metrics import FIELDS, CellResult
from harness.run.settings import Settings
from harness.store.schema import results
from reports.printers import FIELDS as EXPORTED
from reports.table import COLUMNS


def test_every_result_field_is_a_column_and_an_exported_field():
    names = [f.name for f in FIELDS]
    assert set(names) <= {c.name for c in results.columns}
    assert [n for n, _ in EXPORTED if n in names] == names  # same order
    assert {col for _, col, _ in COLUMNS} <= set(names)


def test_gate_metrics_are_the_fields_with_a_direction():
    memory = {"mem_model_file_mb", "mem_weight_cache_mb", "mem_anonymous_mb", "mem_pss_mb", "mem_swap_mb"}
    energy = {"prefill_j_tok", "decode_j_tok"}
    assert set(METRICS) == {"prefill_tok_s", "decode_tok_s", "ttft_ms", "init_ms", "peak_rss_mb"} | memory | energy
    assert METRICS["decode_tok_s"].higher_is_better and not METRICS["ttft_ms"].higher_is_better
    assert not METRICS["init_ms"].compared and METRICS["prefill_tok_s"].sampled
    # The memory split takes limits only: its file-backed parts move with the page cache between runs.
    assert not any(METRICS[m].compared or METRICS[m].higher_is_better for m in memory)
    # Energy too: one value per cell, no repetitions for a test to tell a change from noise with.
    assert not any(METRICS[m].compared or METRICS[m].higher_is_better or METRICS[m].sampled for m in energy)


def test_unknown_result_field_is_refused():
    with pytest.raises(ValueError, match=r"unknown result columns: \['tok'\]"):
        CellResult.from_row({"model": "m", "tok": 1})


def test_settings_and_workload_defaults_are_the_registrys():
    settings, workload = Settings(), Workload()
    for dest, attr in [("device", "devices"), ("quant", "quants"), ("prefill", "prefill"), ("decode", "decode"),
                       ("threads", "threads"), ("reps", "reps"), ("warmup", "warmup"), ("cv_limit", "cv_limit_pct"),
                       ("bandwidth_probe_mb", "bandwidth_probe_mb"), ("runner_timeout", "runner_timeout"),
                       ("cooldown", "cooldown_s"), ("seed", "seed"), ("weight_cache", "weight_cache"),
                       ("energy", "energy"), ("energy_idle", "energy_idle_s")]:
        assert getattr(settings, attr) == OPTIONS[dest].default, dest
    assert dataclasses.astuple(workload)[:5] == tuple(first_default(d) for d in
                                                      ("prefill", "decode", "threads", "warmup", "reps"))
    assert workload.bandwidth_probe_mb == OPTIONS["bandwidth_probe_mb"].default
    assert workload.weight_cache == OPTIONS["weight_cache"].default is True  # apps ship the cache: so do cells
    assert (workload.energy, workload.energy_idle_s) == (OPTIONS["energy"].default, OPTIONS["energy_idle"].default)


def _defaults_in_help(text: str) -> dict[str, int]:
    """'--decode N  ... (default 128)' → {'decode': 128}, from a runner's usage text."""
    found, flag = {}, None
    for line in text.splitlines():
        if m := re.match(r"\s+--([a-z-]+)", line):
            flag = m.group(1)
        if flag and (m := re.search(r"default:? (\d+)", line)):
            found.setdefault(flag.replace("-", "_"), int(m.group(1)))
    return found


def test_native_runner_defaults_are_the_registrys():
    from device_runners.runners.native import build_runner

    out = subprocess.run([str(build_runner("host").binary), "--help"], capture_output=True, text=True, timeout=30)
    defaults = _defaults_in_help(out.stdout)
    for dest in ("decode", "threads", "warmup", "reps", "bandwidth_probe_mb"):
        assert defaults.get(dest) == first_default(dest), (dest, defaults)


def test_inprocess_runner_defaults_are_the_registrys():
    from device_runners.runners import inprocess

    assert inprocess.run_inprocess.__defaults__[1:5] == tuple(
        first_default(d) for d in ("decode", "threads", "warmup", "reps"))
    args = inprocess.parser().parse_args(["--model", "m.tflite"])
    assert (args.decode, args.threads, args.warmup, args.reps, args.bandwidth_probe_mb) == tuple(
        first_default(d) for d in ("decode", "threads", "warmup", "reps", "bandwidth_probe_mb"))


def test_bad_option_values_name_the_option():
    with pytest.raises(OptionError, match=r"--reps must be >= 1"):
        OPTIONS["reps"].parse("0")
    with pytest.raises(OptionError, match=r"--prefill takes comma-separated whole numbers"):
        OPTIONS["prefill"].parse("128,x")
    with pytest.raises(OptionError, match=r"--runner-timeout must be >= 1"):
        OPTIONS["runner_timeout"].parse("0")  # 0 would mean no timeout at all
    assert OPTIONS["prefill"].parse("128, 512") == (128, 512)
    with pytest.raises(OptionError, match=r"--weight-cache takes on or off, got 'yes'"):
        OPTIONS["weight_cache"].parse("yes")
    assert OPTIONS["weight_cache"].parse("off") is False and OPTIONS["weight_cache"].format(True) == "on"
