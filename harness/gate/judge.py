"""The release gate's judgement of one stored cell: its status, its limits and, against a baseline run's
cell of the same workload, a comparison on the repetitions' samples (harness.measure.stats.compare: a
Mann–Whitney U test plus a minimum effect size), so run-to-run noise does not fire it.

A verdict is computed once (harness/gate/verdicts.py stores it); summaries, reports and `harness gate` read it.
"""

from __future__ import annotations

import dataclasses
import json
import math

from harness.gate.config import METRICS, GateConfig
from harness.measure import stats


@dataclasses.dataclass(frozen=True)
class Check:
    metric: str
    kind: str  # status | limit | baseline | accuracy
    passed: bool
    detail: str  # the figures, e.g. "decode tok/s 812 < min 1,000"
    comparison: stats.Comparison | None = None


@dataclasses.dataclass(frozen=True)
class CellVerdict:
    rec: dict
    checks: tuple[Check, ...]
    baseline_id: int | None = None  # the baseline's result row it was compared with
    note: str = ""  # how the pairing went: no baseline cell, different thread counts

    @property
    def cell(self) -> str:
        return cell_name(self.rec)

    @property
    def passed(self) -> bool:
        return all(c.passed for c in self.checks)

    @property
    def failures(self) -> list[Check]:
        return [c for c in self.checks if not c.passed]

    def comparison(self, metric: str) -> stats.Comparison | None:
        return next((c.comparison for c in self.checks if c.kind == "baseline" and c.metric == metric), None)

    def checks_json(self) -> list[dict]:
        """The checks as stored with the verdict (harness/store: verdicts.checks)."""
        return [dataclasses.asdict(c) for c in self.checks]

    @classmethod
    def from_stored(cls, rec: dict, stored: dict) -> CellVerdict:
        """A verdict read back from the store: the cell's row and the verdict's row."""
        checks = tuple(Check(**{**c, "comparison": c["comparison"] and stats.Comparison(**c["comparison"])})
                       for c in json.loads(stored["checks"]))
        base = stored.get("baseline_result_id")
        return cls(rec, checks, None if missing(base) else int(base), stored.get("note") or "")

    def message(self) -> str:
        lines = [f"gate: {self.cell} failed {len(self.failures)} check(s):"]
        lines += [f"  {c.detail}" for c in self.failures]
        return "\n".join(lines + ([f"  ({self.note})"] if self.note else []))


def missing(value) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


def _int(value) -> int | None:
    return None if missing(value) else int(value)


def workload_name(rec: dict) -> str:
    """Lengths and threads of a cell: p128 d128 t4 (depth N when decode starts deeper)."""
    depth, threads = _int(rec.get("depth")), _int(rec.get("threads"))
    name = f"p{_int(rec.get('prefill_len'))} d{_int(rec.get('decode_len'))}" + (f" depth {depth}" if depth else "")
    return name + ("" if threads is None else f" t{threads}")


def cell_name(rec: dict) -> str:
    """model · quant · device · workload, the way people name a cell (the store's rows carry no id); an
    accuracy row: model · quant · check."""
    if "check" in rec:
        return f"{rec['model']} · {rec['quant']} · {rec['check']}"
    runtime = runtime_of(rec)
    return f"{rec['model']} · {rec['quant']} · {rec['device']} · {workload_name(rec)}" + (
        "" if runtime == "litert" else f" · {runtime}")


def runtime_of(rec: dict) -> str:
    """The runtime that measured a cell; rows stored before runtimes were a dimension were our runner's."""
    runtime = rec.get("runtime")
    return "litert" if missing(runtime) else runtime


def workload(rec: dict) -> tuple:
    """What a cell measured; a run's cell is compared with the baseline's cell of the same workload and runtime
    (llama.cpp's cell with llama.cpp's). Threads are left out: a run measured with fewer threads is slower at the
    same work, which the gate should see."""
    return (rec["model"], rec["quant"], rec["device"], _int(rec.get("prefill_len")), _int(rec.get("decode_len")),
            _int(rec.get("depth")) or 0,  # rows stored before depth existed measured at depth 0
            runtime_of(rec))


def stored_data(rec: dict) -> dict:
    """The JSON document stored with a result: samples, spread, runner output, device facts, provenance."""
    return json.loads(rec.get("data") or "{}")


def samples(rec: dict, metric: str) -> list[float]:
    """A metric's values in one cell: every repetition's for sampled metrics, else the one stored figure."""
    if METRICS[metric].sampled:
        reps = [s[metric] for s in stored_data(rec).get("runner", {}).get("samples", []) if metric in s]
        if reps:
            return reps
    return [] if missing(rec.get(metric)) else [float(rec[metric])]


def compare(rec: dict, base: dict, settings: dict[str, float], metric: str) -> stats.Comparison | None:
    """The cell's metric against its baseline cell's, or None when either side has no value."""
    new, old = samples(rec, metric), samples(base, metric)
    if not new or not old:
        return None
    tested = len(new) > 1 and len(old) > 1
    effect = settings["min_effect_pct"] if tested else settings["single_value_effect_pct"]
    return stats.compare(old, new, METRICS[metric].higher_is_better, effect, settings["alpha"])


def _limit_checks(rec: dict, settings: dict[str, float]) -> list[Check]:
    checks = []
    for name, metric in METRICS.items():
        value = rec.get(name)
        for side in ("min", "max"):
            bound = settings.get(f"{side}_{name}")
            if bound is None:
                continue
            if missing(value):
                checks.append(Check(name, "limit", False,
                                    f"{metric.label}: no value to hold to {side} {stats.figure(bound)}"))
                continue
            ok = value >= bound if side == "min" else value <= bound
            sign = (">=" if ok else "<") if side == "min" else ("<=" if ok else ">")
            checks.append(Check(name, "limit", ok, f"{metric.label} {stats.figure(value)}{metric.unit} {sign} "
                                                   f"{side} {stats.figure(bound)}{metric.unit}"))
    return checks


def _baseline_checks(rec: dict, base: dict, settings: dict[str, float]) -> list[Check]:
    checks = []
    for name, metric in METRICS.items():
        result = compare(rec, base, settings, name) if metric.compared else None
        if result is not None:
            checks.append(Check(name, "baseline", not result.fails,
                                f"{metric.label} {result.describe(metric.unit)}", result))
    return checks


def pair(rec: dict, baseline: list[dict]) -> tuple[dict | None, str]:
    """The baseline cell of the same workload: the only one, else the one with the same thread count."""
    same = [b for b in baseline if b["status"] == "ok" and workload(b) == workload(rec)]
    if len(same) > 1:
        same = [b for b in same if _int(b.get("threads")) == _int(rec.get("threads"))]
    if len(same) != 1:
        return None, "no baseline cell of this workload" if not same else "several baseline cells match"
    base = same[0]
    theirs, ours = _int(base.get("threads")), _int(rec.get("threads"))
    notes = [] if theirs == ours else [f"baseline ran with {theirs} threads, this run with {ours}"]
    return base, "; ".join(notes + _setting_notes(rec, base))


def _setting_notes(rec: dict, base: dict) -> list[str]:
    """How the runtime ran either cell, where the two differ: the weight cache moves init and peak memory, fp16
    arithmetic moves speed. Rows stored before these settings ran without either."""
    notes = []
    theirs, ours = (r.get("weight_cache") if not missing(r.get("weight_cache")) else "off" for r in (base, rec))
    if theirs != ours:
        notes.append(f"baseline ran with the weight cache {theirs}, this run {ours}")
    theirs, ours = (r.get("fp16_arithmetic") == True for r in (base, rec))  # noqa: E712 - numpy bools, NULL
    if theirs != ours:
        notes.append(f"baseline computed in {'fp16' if theirs else 'fp32'}, this run in {'fp16' if ours else 'fp32'}")
    return notes


def evaluate_cell(rec: dict, baseline: list[dict] | None, config: GateConfig) -> CellVerdict:
    """Every check of one stored cell: its status, its limits and, with a baseline run, the comparison."""
    if rec["status"] != "ok":
        error = (rec.get("error") or "").strip().splitlines()
        return CellVerdict(rec, (Check("status", "status", False, f"cell {rec['status']}: "
                                                                   f"{error[0] if error else 'no error text'}"),))
    if rec.get("emulated") == True:  # noqa: E712 - numpy bools too. An emulator's speed measures nothing
        return CellVerdict(rec, (Check("emulated", "status", True, "emulated device: speed not judged"),),
                           note="emulated: not compared")
    settings = config.settings_for(rec)
    checks = _limit_checks(rec, settings)
    if baseline is None:
        return CellVerdict(rec, tuple(checks))
    base, note = pair(rec, baseline)
    if base is None:
        return CellVerdict(rec, tuple(checks), note=note)
    return CellVerdict(rec, tuple(checks + _baseline_checks(rec, base, settings)), int(base["id"]), note)
