"""Stored device cells as a pytest-benchmark JSON document (`harness export --format pytest-benchmark`), so
`pytest-benchmark compare` and github-action-benchmark read them like any pytest-benchmark run.

The schema is the one pytest-benchmark writes with --benchmark-json (pytest_benchmark.plugin's
pytest_benchmark_generate_json, Metadata.as_dict and stats.Stats): `machine_info`, `commit_info`, `benchmarks`,
`datetime`, `version`. pytest-benchmark's figures are times where lower is better, and each round's time is
divided by the round's `iterations`. A cell becomes one benchmark per phase it has a figure for:

- `prefill` and `decode`: seconds per token; a round is one repetition, its iterations the tokens it processed
  (prefill_len, decode_len), so `ops` (rounds / total) is tokens per second over the repetitions;
- `ttft`: time to first token in seconds, one round per repetition;
- `init`: the cold load in seconds: the runner loads once per process, so one round.

Rounds are the repetitions the cell stored (data["runner"]["samples"]). A cell stored without samples has its
one stored figure (the median) as one round, and its extra_info says so: nothing is made up to fill the
spread. Tokens/s, peak memory and the rest of the row go in `extra_info`; what the cell is (model, quant,
device, runtime, lengths, threads) in `params`. Failed cells (no figures) and emulated ones (an emulator's speed
measures nothing; the gate and the dashboard skip them too) are left out, and the export says so.

The benchmark's `fullname` (what `pytest-benchmark compare --between` and github-action-benchmark match on) is
the same for the same cell in every run, so exports of two runs compare cell by cell; a document spanning
several runs (`--all`) puts the run in the name.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import statistics
import unicodedata
from bisect import bisect_left, bisect_right
from collections import Counter
from typing import Any

import pandas as pd

from harness.gate.judge import missing, stored_data

# The pytest-benchmark release whose schema this writes (its `version` field); the dev extra pins the same one
# and tests/test_pytest_benchmark_export.py reads these documents back with it.
SCHEMA_VERSION = "5.3.1"
PROJECT = "litert-bench"


@dataclasses.dataclass(frozen=True)
class Phase:
    name: str  # the benchmark's name before the cell id
    group: str
    metric: str  # the CellResult field (and sample key) it comes from
    per_token: bool  # the figure is a rate (tok/s): seconds per token is 1 / it; else milliseconds
    tokens_field: str | None  # the length whose tokens one repetition processed (its iterations)
    sampled: bool  # one value per repetition; else one per process
    unit: str


PHASES = (
    Phase("prefill", "prefill (seconds per token)", "prefill_tok_s", True, "prefill_len", True, "seconds per token"),
    Phase("decode", "decode (seconds per token)", "decode_tok_s", True, "decode_len", True, "seconds per token"),
    Phase("ttft", "time to first token (seconds)", "ttft_ms", False, None, True, "seconds"),
    Phase("init", "init, cold load (seconds)", "init_ms", False, None, False, "seconds"),
)


def seconds(phase: Phase, value: Any) -> float | None:
    """One figure of the phase as pytest-benchmark's time: seconds per token for rates, seconds for ms; None
    where there is no usable value."""
    if value is None or missing(value) or isinstance(value, bool):
        return None
    value = float(value)
    if phase.per_token:
        return 1.0 / value if value > 0 and value != float("inf") else None
    return value / 1000.0 if value >= 0 and value != float("inf") else None


def stats(data: list[float], iterations: int) -> dict[str, Any]:
    """pytest-benchmark's `stats` object of these per-iteration times (pytest_benchmark.stats.Stats: the same
    quartile methods, Tukey fences and outlier counts), with `data` and `iterations` as --benchmark-json has."""
    if not data:
        raise ValueError("no data for pytest-benchmark stats")
    ordered = sorted(data)
    rounds, total = len(data), sum(data)
    mean = statistics.mean(data)
    stddev = statistics.stdev(data) if rounds > 1 else 0
    q1, q3 = _quartiles(ordered)
    iqr = q3 - q1
    if rounds == 1:
        ld15iqr = hd15iqr = data[0]
    else:
        ld15iqr = ordered[bisect_left(ordered, q1 - 1.5 * iqr)]
        hd15iqr = ordered[bisect_right(ordered, q3 + 1.5 * iqr) - 1]
    stddev_outliers = sum(1 for x in data if x < mean - stddev or x > mean + stddev)
    iqr_outliers = sum(1 for x in data if x < q1 - 1.5 * iqr or x > q3 + 1.5 * iqr)
    return {
        "min": ordered[0], "max": ordered[-1], "mean": mean, "stddev": stddev, "rounds": rounds,
        "median": statistics.median(data), "iqr": iqr, "q1": q1, "q3": q3, "iqr_outliers": iqr_outliers,
        "stddev_outliers": stddev_outliers, "outliers": f"{stddev_outliers};{iqr_outliers}",
        "ld15iqr": ld15iqr, "hd15iqr": hd15iqr, "ops": rounds / total if total else 0, "total": total,
        "data": list(data), "iterations": iterations,
    }


def _quartiles(data: list[float]) -> tuple[float, float]:
    """Q1 and Q3 the way pytest-benchmark computes them (Wikipedia's methods 3 for odd, 2 for even counts)."""
    rounds = len(data)
    if rounds == 1:
        return data[0], data[0]
    if rounds % 2:
        n, q = rounds // 4, rounds % 4
        if q == 1:
            return 0.25 * data[n - 1] + 0.75 * data[n], 0.75 * data[3 * n] + 0.25 * data[3 * n + 1]
        return 0.75 * data[n] + 0.25 * data[n + 1], 0.25 * data[3 * n + 1] + 0.75 * data[3 * n + 2]
    return statistics.median(data[: rounds // 2]), statistics.median(data[rounds // 2:])


def _printable(text: str) -> str:
    """A name for a terminal: control characters (a model name is untrusted text) written as escapes."""
    return "".join(c if unicodedata.category(c)[0] != "C" else c.encode("unicode_escape").decode() for c in text)


def cell_id(rec: dict) -> str:
    """model-quant-device-pLEN-dLEN[-depthN]-tTHREADS[-RUNTIME], pytest's way of naming a parametrized case (the
    suite's cell ids: our runner's cells carry no runtime, so their names stay those of earlier exports)."""
    parts = [rec["model"], rec["quant"], rec["device"], f"p{rec['prefill_len']}", f"d{rec['decode_len']}"]
    if rec.get("depth"):
        parts.append(f"depth{rec['depth']}")
    if rec.get("threads") is not None:
        parts.append(f"t{rec['threads']}")
    if rec.get("runtime") not in (None, "litert"):
        parts.append(rec["runtime"])
    return _printable("-".join(str(p) for p in parts))


# How the runtime ran the cell (fields of CellResult where this harness has them): params, beside what it is.
_SETTINGS = ("weight_cache", "fp16_arithmetic")
# The same in every exported cell (failed and emulated cells are left out): not repeated in extra_info.
_CONSTANT = {"status", "error", "emulated"}


@dataclasses.dataclass
class Cell:
    """One stored cell: its export record (plain values, reports/printers.record) and its stored data."""

    rec: dict
    data: dict
    created_at: Any


def _samples(cell: Cell, phase: Phase) -> list[float] | None:
    """The phase's per-repetition times, or None where the cell stored no samples of it."""
    if not phase.sampled:
        return None
    reps = cell.data.get("runner", {}).get("samples") or cell.data.get("samples") or []
    values = [seconds(phase, s.get(phase.metric)) for s in reps if isinstance(s, dict)]
    values = [v for v in values if v is not None]
    return values or None


def _how_sampled(cell: Cell, phase: Phase, samples: list[float] | None) -> str:
    if samples is not None:
        return f"one round per measured repetition ({len(samples)})"
    if not phase.sampled:
        return "one value per process: the runner loads the model once"
    n = cell.data.get("spread", {}).get(phase.metric, {}).get("n")
    return (f"per-repetition samples not stored: one round holding the stored figure (the median of {n} "
            f"repetitions); stddev, IQR and outliers are unknown, not zero" if n else
            "per-repetition samples not stored: one round holding the stored figure; its spread is unknown")


def benchmarks(cell: Cell, with_run: bool) -> list[dict]:
    """The cell's benchmarks, one per phase it has a figure for."""
    rec, runner = cell.rec, cell.data.get("runner", {})
    ident = (f"run{rec['run_id']}-" if with_run else "") + cell_id(rec)
    runtime = runner.get("runtime")
    params = {"model": rec["model"], "quant": rec["quant"], "device": rec["device"],
              "runtime": f"{runtime} {runner.get('runtime_version', '')}".strip() if runtime else
              runner.get("runtime_version"), "api": runner.get("api"),
              **{name: rec.get(name) for name in _SETTINGS if name in rec},
              "prefill_len": rec["prefill_len"], "decode_len": rec["decode_len"], "depth": rec["depth"],
              "threads": rec["threads"]}
    if with_run:
        params["run_id"] = rec["run_id"]
    # The rest of the export schema's record (reports/printers.FIELDS: every figure of the cell, its run and
    # accuracy figures), as the CSV and JSON exports carry it, and which runner measured it.
    common = {**{k: v for k, v in rec.items() if k not in params and k not in _CONSTANT},
              "runner": runner.get("runner"), "runner_version": runner.get("runner_version")}
    warmup = runner.get("warmup")  # discarded repetitions before the measured ones; None: not stored
    options = {"timer": f"{runner.get('runner') or 'runner'} (on the device)",
               "warmup": None if warmup is None else warmup > 0, "warmup_rounds": warmup, "disable_gc": False}
    out = []
    for phase in PHASES:
        samples = _samples(cell, phase)
        figure = seconds(phase, rec.get(phase.metric))
        if samples is None and figure is None:
            continue
        iterations = int(rec[phase.tokens_field]) if phase.tokens_field and rec.get(phase.tokens_field) else 1
        extra = {"unit": phase.unit, "figure": phase.metric, "rounds_are": _how_sampled(cell, phase, samples),
                 **({"tokens_per_round": iterations} if phase.per_token else {}), **common}
        name = f"{phase.name}[{ident}]"
        out.append({"group": phase.group, "name": name, "fullname": f"{PROJECT}::{name}", "params": params,
                    "param": ident, "extra_info": extra, "options": options,
                    "stats": stats(samples if samples is not None else [figure], iterations)})
    return out


def _utc(value: Any) -> dt.datetime | None:
    """A stored time as an aware UTC datetime (SQLite gives it back naive, stored as UTC)."""
    if value is None or value is pd.NaT or missing(value):
        return None
    ts = pd.Timestamp(value)
    return (ts.tz_convert("UTC") if ts.tzinfo else ts.tz_localize("UTC")).to_pydatetime()


def machine_info(cells: list[Cell]) -> dict:
    """pytest-benchmark's machine_info for the devices that ran the cells (not the machine exporting them): its
    keys where a device's facts give them, and every device's facts under `devices`."""
    facts = {c.rec["device"]: c.data.get("device_facts") or {} for c in cells}
    info: dict[str, Any] = {"node": ", ".join(sorted(facts))}
    if len(facts) == 1:
        (one,) = facts.values()
        cpus = one.get("cpus")
        info |= {"processor": one.get("model"), "machine": one.get("abi"), "system": one.get("os"),
                 "release": one.get("os_version") or one.get("kernel"),
                 "cpu": {"count": len(cpus) if isinstance(cpus, list) else None, "brand_raw": one.get("model"),
                         "arch": one.get("abi")}}
    info["devices"] = facts
    return info


def commit_info(cells: list[Cell]) -> dict:
    """pytest-benchmark's commit_info: the harness commit the runs were measured with (runs.git_commit)."""
    commits = {c.rec["git_commit"] for c in cells if c.rec["git_commit"]}
    commit = commits.pop() if len(commits) == 1 else None
    return {"id": commit.removesuffix("-dirty") if commit else "unknown", "time": None, "author_time": None,
            "dirty": bool(commit and commit.endswith("-dirty")), "project": PROJECT, "branch": "(unknown)"}


def document(cells: list[Cell]) -> dict:
    """The pytest-benchmark document of these cells; `datetime` is when the last of them was stored."""
    with_run = len({c.rec["run_id"] for c in cells}) > 1
    benches = [b for c in cells for b in benchmarks(c, with_run)]
    repeated = Counter(b["fullname"] for b in benches)  # the same cell twice in a run: tell them apart
    for b in benches:
        if repeated[b["fullname"]] > 1:
            suffix = f"-result{b['extra_info']['result_id']}"
            b["param"] += suffix
            b["name"] = b["name"][:-1] + suffix + "]"
            b["fullname"] = f"{PROJECT}::{b['name']}"
    times = [t for t in (_utc(c.created_at) for c in cells) if t is not None]
    return {"machine_info": machine_info(cells), "commit_info": commit_info(cells), "benchmarks": benches,
            "datetime": max(times).isoformat() if times else None, "version": SCHEMA_VERSION}


def left_out(rec: dict) -> str | None:
    """Why a stored cell gets no benchmark: failed (no figures), or emulated (its speed measures nothing)."""
    if rec["status"] != "ok":
        return "failed"
    if rec.get("emulated"):
        return "emulated"
    return None


def dumps(doc: dict) -> str:
    """As pytest-benchmark writes it (indent 4, ASCII)."""
    return json.dumps(doc, ensure_ascii=True, indent=4, default=str) + "\n"


def cell_of(rec: dict, stored: dict) -> Cell:
    return Cell(rec, stored_data(stored), stored.get("created_at"))
