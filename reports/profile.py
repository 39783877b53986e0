"""The run report's "Where the time goes": each cell measured with --profile, its op types' shares per phase
(prefill, one decode step) as stacked bars and a table, and, where the baseline's cell has a profile too, the
op types whose share moved most (harness/measure/profile.py summarizes and compares)."""

from __future__ import annotations

from typing import Any

from harness.gate import judge as gate
from harness.measure.profile import PHASES, PhaseSummary, compare_profiles, fc_share, summarize
from reports import charts

SHOWN_TYPES = 6  # op types per phase in the table; the rest are summed
CHART_TYPES = 11  # op types with a colour of their own in the chart; the rest are "other"


def profile_of(rec: dict | None) -> dict[str, Any] | None:
    """The runner's profile stored with a cell (data["runner"]["profile"]), or None."""
    return None if rec is None else gate.stored_data(rec).get("runner", {}).get("profile")


def _phase_view(summary: PhaseSummary) -> dict:
    shown, rest = summary.op_types[:SHOWN_TYPES], summary.op_types[SHOWN_TYPES:]
    return {
        "phase": summary.phase, "wall_us": summary.wall_us, "total_us": summary.total_us,
        "coverage": summary.coverage, "delegate_share": summary.delegate_share,
        "runtime_share": summary.runtime_share, "fc_share": fc_share(summary),
        "types": [{"name": t.name, "us": t.us, "share": t.share, "delegate": t.delegate} for t in shown],
        "rest": {"count": len(rest), "us": sum(t.us for t in rest), "share": sum(t.share for t in rest)},
        "top": [{"name": o.name, "where": o.where, "us": o.us} for o in summary.top[:3]],
    }


def _cell_view(cell: dict, profile: dict[str, Any], base: dict | None) -> dict:
    summaries = summarize(profile)
    base_profile = profile_of(base)
    moves = compare_profiles(base_profile, profile) if base_profile else None
    return {"name": cell["name"], "profiler": profile.get("profiler", ""),
            "phases": [_phase_view(summaries[p]) for p in PHASES],
            "moves": None if moves is None else [m.describe() for p in PHASES for m in moves[p]],
            "summaries": summaries}


def _chart(cells: list[dict]) -> str:
    """One bar per cell · phase; the op types largest anywhere get colours, the rest are 'other'."""
    bars = [(f"{c['name']} · {p}", c["summaries"][p]) for c in cells for p in PHASES]
    largest: dict[str, float] = {}
    for _, s in bars:
        for t in s.op_types:
            largest[t.name] = max(largest.get(t.name, 0.0), t.share)
    named = sorted(largest, key=lambda n: -largest[n])[:CHART_TYPES]
    shares = {name: [s.share(name) for _, s in bars] for name in named}
    other = [max(0.0, 1.0 - sum(s.share(n) for n in named)) for _, s in bars]
    if any(v > 0.0005 for v in other):
        shares["other"] = other
    return charts.op_share_bars([b for b, _ in bars], shares)


def view(cells: list[dict], base_by_id: dict[int, dict]) -> dict | None:
    """The section's context: {cells, chart, compared}; None when no cell of the run has a profile."""
    profiled = [(c, p) for c in cells if c["status"] == "ok" and (p := profile_of(c))]
    if not profiled:
        return None
    views = [_cell_view(c, p, base_by_id.get(c.get("baseline_id"))) for c, p in profiled]
    chart = _chart(views)
    for v in views:
        del v["summaries"]  # the template needs the views only
    return {"cells": views, "chart": chart, "compared": any(v["moves"] is not None for v in views)}
