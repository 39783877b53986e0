"""The gate on the accuracy checks (the store's `accuracy` table): a check that broke its own bounds fails, and a
figure that got worse than the baseline run's same check (model · quant · check) by more than
`max_accuracy_drift` (gate.toml) fails.

The figures compared are the ones with a known better direction: the drift bounds' figures (accuracy.toml)
and the reauthoring/conversion logit differences. The run report and the exports show the same figures.
"""

from __future__ import annotations

import json

from harness.accuracy.thresholds import BOUNDS
from harness.gate.config import GateConfig
from harness.gate.judge import CellVerdict, Check, missing

# figure → higher is better
FIGURES: dict[str, bool] = {
    **{figure: side == "min" for figure, side in BOUNDS.values()},
    "prefill_max_diff": False, "decode_max_diff": False,
}


def figures(rec: dict) -> dict[str, float]:
    """The comparable figures of one stored accuracy row."""
    metrics = rec.get("metrics")
    metrics = json.loads(metrics or "{}") if isinstance(metrics, str | None) else metrics
    return {k: float(v) for k, v in metrics.items()
            if k in FIGURES and isinstance(v, int | float) and not isinstance(v, bool)}


def cell_figures(accuracy_recs: list[dict], run_id: int, model: str, quant: str) -> dict[str, float]:
    """A speed cell's accuracy: the figures of its run's checks of the same model and quant."""
    found: dict[str, float] = {}
    for rec in accuracy_recs:
        if int(rec["run_id"]) == int(run_id) and rec["model"] == model and rec["quant"] == quant:
            found |= figures(rec)
    return found


def _key(rec: dict) -> tuple:
    return rec["model"], rec["quant"], rec["check"]


def evaluate_accuracy(rec: dict, baseline: list[dict] | None, config: GateConfig) -> CellVerdict:
    """One accuracy row: its own bounds, then each figure against the baseline run's same check."""
    checks = []
    if not rec["passed"]:
        failures = [f for f in (rec.get("failures") or "").split("\n") if f]
        checks.append(Check("status", "status", False,
                            f"{rec['check']} check failed: {failures[0] if failures else 'no failure text'}"))
    else:
        checks.append(Check("status", "status", True, f"{rec['check']} check passed its bounds"))
    base = next((b for b in baseline or [] if _key(b) == _key(rec)), None)
    if base is None:
        note = "" if baseline is None else "no baseline row of this check"
        return CellVerdict(rec, tuple(checks), note=note)
    limit = config.settings_for(rec).get("max_accuracy_drift")
    old = figures(base)
    for name, value in figures(rec).items():
        if name not in old or missing(old[name]):
            continue
        drift = round(abs(value - old[name]), 12)  # 0.96 - 0.94 is 0.0200000000000000018 in floats
        worse_by = (old[name] - value) if FIGURES[name] else (value - old[name])
        ok = limit is None or round(worse_by, 12) <= limit
        shown = "" if limit is None else f" {'<=' if ok else '>'} {limit:g}"
        checks.append(Check(name, "accuracy", ok,
                            f"accuracy {name} {value:.4g} vs baseline {old[name]:.4g} (drift {drift:.4g}{shown})"))
    return CellVerdict(rec, tuple(checks), int(base["id"]))
