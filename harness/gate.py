"""The release gate: does a run pass its limits, and is it worse than its baseline?

Limits and the comparison's statistics come from one TOML file (gate.toml at the repository root): a list of
[[rule]] tables whose shell-wildcard patterns (device, model, quant) pick the cells they apply to. Matching
rules merge in file order, a later rule's value replacing an earlier one's, so a general rule comes first and
specific ones refine it. A baseline comparison runs on the repetitions' samples (harness.stats.compare: a
Mann–Whitney U test plus a minimum effect size), so run-to-run noise does not fire it.

The suites (the `gate` fixture), `python -m harness gate` and the reports' coloured deltas all use this module.
"""

from __future__ import annotations

import dataclasses
import fnmatch
import json
import math
import tomllib
from pathlib import Path
from typing import TYPE_CHECKING

import pandas as pd

from harness import stats

if TYPE_CHECKING:
    from harness.store import Store


@dataclasses.dataclass(frozen=True)
class Metric:
    label: str
    unit: str
    higher_is_better: bool
    sampled: bool  # one value per repetition in data["runner"]["samples"]; else one value per run
    compared: bool = True  # judged against the baseline (cold init is too noisy for that)


METRICS = {
    "prefill_tok_s": Metric("prefill tok/s", " tok/s", True, True),
    "decode_tok_s": Metric("decode tok/s", " tok/s", True, True),
    "ttft_ms": Metric("TTFT", " ms", False, True),
    "init_ms": Metric("init", " ms", False, False, compared=False),
    "peak_rss_mb": Metric("peak RSS", " MB", False, False),
}
_PATTERNS = ("device", "model", "quant")
_STATS_KEYS = {"alpha": stats.ALPHA, "min_effect_pct": stats.MIN_EFFECT_PCT,
               # one value per run (peak memory) or a single repetition: no test, the effect size alone decides
               "single_value_effect_pct": 10.0}
_BOUND_KEYS = {f"{side}_{name}" for name in METRICS for side in ("min", "max")} | {"max_accuracy_drift"}
# The repository's thresholds, used when no other file is named.
DEFAULT_FILE = Path(__file__).resolve().parent.parent / "gate.toml"


class GateConfigError(ValueError):
    """The thresholds file is unreadable or names an unknown setting."""


@dataclasses.dataclass(frozen=True)
class Rule:
    patterns: dict[str, str]
    settings: dict[str, float]

    def matches(self, rec: dict) -> bool:
        return all(fnmatch.fnmatchcase(str(rec.get(k, "")), self.patterns.get(k, "*")) for k in _PATTERNS)


@dataclasses.dataclass(frozen=True)
class GateConfig:
    rules: tuple[Rule, ...] = ()
    source: str = "built-in defaults"

    def settings_for(self, rec: dict) -> dict[str, float]:
        """Every setting that applies to this cell: the statistics' defaults, then matching rules in order."""
        merged = dict(_STATS_KEYS)
        for rule in self.rules:
            if rule.matches(rec):
                merged |= rule.settings
        return merged


def load_config(path: Path | str) -> GateConfig:
    path = Path(path)
    try:
        doc = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, tomllib.TOMLDecodeError) as e:
        raise GateConfigError(f"gate thresholds {path}: {e}") from None
    unknown_tables = set(doc) - {"rule"}
    raw_rules = doc.get("rule", [])
    if unknown_tables or not isinstance(raw_rules, list):
        found = f", not {', '.join(sorted(unknown_tables))}" if unknown_tables else ""
        raise GateConfigError(f"gate thresholds {path}: holds [[rule]] tables only{found}")
    rules = []
    for i, raw in enumerate(raw_rules, 1):
        patterns = {k: raw[k] for k in _PATTERNS if k in raw}
        settings = {k: v for k, v in raw.items() if k not in _PATTERNS}
        bad = [k for k in settings if k not in _BOUND_KEYS | set(_STATS_KEYS)]
        bad += [k for k, v in settings.items() if not isinstance(v, int | float) or isinstance(v, bool)]
        bad += [k for k, v in patterns.items() if not isinstance(v, str)]
        if bad:
            raise GateConfigError(f"gate thresholds {path}, rule {i}: bad setting(s) {sorted(set(bad))}; valid: "
                                  f"{', '.join(_PATTERNS)} (patterns), {', '.join(sorted(_BOUND_KEYS))}, "
                                  f"{', '.join(_STATS_KEYS)} (numbers)")
        rules.append(Rule(patterns, {k: float(v) for k, v in settings.items()}))
    return GateConfig(tuple(rules), str(path))


def config_from(path: Path | str | None) -> GateConfig:
    """The thresholds file given, else the repository's gate.toml, else the built-in statistics and no limits."""
    if path is None and not DEFAULT_FILE.is_file():
        return GateConfig()
    return load_config(path or DEFAULT_FILE)


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
    """model · quant · device · workload, the way people name a cell (the store's rows carry no id)."""
    return f"{rec['model']} · {rec['quant']} · {rec['device']} · {workload_name(rec)}"


def workload(rec: dict) -> tuple:
    """What a cell measured; a run's cell is compared with the baseline's cell of the same workload.
    Threads are left out: a run measured with fewer threads is slower at the same work, which the gate should see."""
    return (rec["model"], rec["quant"], rec["device"], _int(rec.get("prefill_len")), _int(rec.get("decode_len")),
            _int(rec.get("depth")) or 0)  # rows stored before depth existed measured at depth 0


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


def accuracy(rec: dict) -> dict[str, float]:
    """Accuracy figures a cell carries (data["accuracy"]: name → value), when an accuracy suite stored them."""
    return {k: float(v) for k, v in stored_data(rec).get("accuracy", {}).items()}


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
            checks.append(Check(name, "baseline", result.verdict != "regression",
                                f"{metric.label} {result.describe(metric.unit)}", result))
    drift_limit = settings.get("max_accuracy_drift")
    old = accuracy(base)
    for name, value in accuracy(rec).items():
        if name in old:
            drift = round(abs(value - old[name]), 12)  # 0.96 - 0.94 is 0.0200000000000000018 in floats
            ok = drift_limit is None or drift <= drift_limit
            limit = "" if drift_limit is None else f" {'<=' if ok else '>'} {drift_limit:g}"
            checks.append(Check(name, "accuracy", ok,
                                f"accuracy {name} {value:.4g} vs baseline {old[name]:.4g} (drift {drift:.4g}{limit})"))
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
    return base, "" if theirs == ours else f"baseline ran with {theirs} threads, this run with {ours}"


def evaluate_cell(rec: dict, baseline: list[dict] | None, config: GateConfig) -> CellVerdict:
    """Every check of one stored cell: its status, its limits and, with a baseline run, the comparison."""
    if rec["status"] != "ok":
        error = (rec.get("error") or "").strip().splitlines()
        return CellVerdict(rec, (Check("status", "status", False, f"cell {rec['status']}: "
                                                                   f"{error[0] if error else 'no error text'}"),))
    settings = config.settings_for(rec)
    checks = _limit_checks(rec, settings)
    if baseline is None:
        return CellVerdict(rec, tuple(checks))
    base, note = pair(rec, baseline)
    if base is None:
        return CellVerdict(rec, tuple(checks), note=note)
    return CellVerdict(rec, tuple(checks + _baseline_checks(rec, base, settings)), int(base["id"]), note)


def evaluate(frame: pd.DataFrame, baseline: pd.DataFrame | None, config: GateConfig) -> list[CellVerdict]:
    base = None if baseline is None else baseline.to_dict("records")
    return [evaluate_cell(rec, base, config) for rec in frame.to_dict("records")]


def evaluate_run(store: Store, run_id: int, baseline_run: int | None, config: GateConfig) -> list[CellVerdict]:
    """Every cell of a stored run, judged against the baseline run's cells."""
    baseline = None if baseline_run is None else store.results_frame(baseline_run)
    return evaluate(store.results_frame(run_id), baseline, config)
