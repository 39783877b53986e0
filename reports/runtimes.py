"""The runtimes of one run side by side: per model · quant · device · workload, each runtime's figures, its
ratio to `litert` (our runner) and, where the two differ by more than the noise, which one is faster.

"More than the noise" is the gate's own test (harness.measure.stats.compare: Mann–Whitney U on the repetitions
plus a minimum effect), applied to the two runtimes' samples of the same run instead of a run and its baseline.
"""

from __future__ import annotations

from collections import defaultdict

from harness.gate import judge as gate
from harness.gate.config import METRICS, GateConfig

REFERENCE = "litert"
# The figures shown per runtime; the ones in RATIOS get a ratio to the reference and a faster/slower verdict.
FIGURES = ("prefill_tok_s", "decode_tok_s", "ttft_ms", "init_ms", "peak_rss_mb")
RATIOS = ("prefill_tok_s", "decode_tok_s")


def group_key(rec: dict) -> tuple:
    """What a runtime's cell is compared on: everything of the workload but the runtime."""
    return gate.workload(rec)[:-1]


def group_name(rec: dict) -> str:
    return f"{rec['model']} · {rec['quant']} · {rec['device']} · {gate.workload_name(rec)}"


def side_by_side(recs: list[dict], config: GateConfig | None = None) -> list[dict]:
    """Groups of the run's ok cells measured by more than one runtime: {name, rows: [{runtime, figures,
    ratio, verdict}]}, the reference runtime first."""
    config = config or GateConfig()
    groups: dict[tuple, list[dict]] = defaultdict(list)
    for rec in recs:
        if rec["status"] == "ok":
            groups[group_key(rec)].append(rec)
    out = []
    for cells in groups.values():
        if len({gate.runtime_of(c) for c in cells}) < 2:
            continue
        cells.sort(key=lambda c: (gate.runtime_of(c) != REFERENCE, gate.runtime_of(c)))
        reference = cells[0] if gate.runtime_of(cells[0]) == REFERENCE else None
        rows = [_row(c, reference, config) for c in cells]
        out.append({"name": group_name(cells[0]), "rows": rows})
    return sorted(out, key=lambda g: g["name"])


def _row(rec: dict, reference: dict | None, config: GateConfig) -> dict:
    row = {"runtime": gate.runtime_of(rec), "runtime_version": _version(rec),
           "figures": {m: None if gate.missing(rec.get(m)) else float(rec[m]) for m in FIGURES},
           "ratio": {}, "verdict": {}}
    if reference is None or rec is reference:
        return row
    for metric in RATIOS:
        ours, theirs = reference.get(metric), rec.get(metric)
        if gate.missing(ours) or gate.missing(theirs) or not ours:
            continue
        row["ratio"][metric] = float(theirs) / float(ours)
        row["verdict"][metric] = _verdict(rec, reference, metric, config)
    return row


def _verdict(rec: dict, reference: dict, metric: str, config: GateConfig) -> str:
    """'3.1× faster than litert', 'slower than litert (-35 %)' or 'within the noise of litert'."""
    settings = config.settings_for(rec)
    result = gate.compare(rec, reference, settings, metric)
    if result is None:
        return ""
    label = METRICS[metric].label
    if result.verdict in ("unchanged", "inconclusive"):
        return f"{label}: within the noise of {REFERENCE} ({result.delta_pct:+.1f} %, {result.verdict})"
    faster = result.verdict == "improvement"  # higher tok/s is better: an improvement over ours is faster
    p = "" if result.p_value is None else f", p={result.p_value:.3g}"
    return f"{label}: {'faster' if faster else 'slower'} than {REFERENCE} ({result.delta_pct:+.1f} %{p})"


def _version(rec: dict) -> str:
    runner = gate.stored_data(rec).get("runner", {})
    return " ".join(filter(None, (runner.get("runtime"), runner.get("runtime_version"))))


def bars(groups: list[dict]) -> tuple[list[str], list[str], dict[str, dict[str, list]]]:
    """For charts.runtime_bars: group names, runtimes, and per metric per runtime a bar (median) per group."""
    names = [g["name"] for g in groups]
    runtimes = sorted({r["runtime"] for g in groups for r in g["rows"]}, key=lambda r: (r != REFERENCE, r))
    panels: dict[str, dict[str, list]] = {}
    for metric in RATIOS:
        panels[METRICS[metric].label] = {
            runtime: [next((r["figures"][metric] for r in g["rows"] if r["runtime"] == runtime), None)
                      for g in groups] for runtime in runtimes}
    return names, runtimes, panels

