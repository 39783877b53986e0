"""Verdicts computed once and stored: a cell is judged when it is measured, and every later reader (the end-
of-session summary, the run report, `harness gate`) reads the stored verdict. A question no stored verdict
answers yet (another baseline, another thresholds file) is judged then, once, and stored in its turn."""

from __future__ import annotations

from harness.gate.config import GateConfig
from harness.gate.judge import CellVerdict, evaluate_cell
from harness.store.store import Store


def judge(store: Store, result_id: int, baseline_run: int | None, config: GateConfig,
          baseline_cells: list[dict] | None = None) -> CellVerdict:
    """Judge one stored cell against the limits and the baseline run's cells, and store the verdict."""
    rec = store.results_frame(result_id=result_id).to_dict("records")[0]
    if baseline_cells is None and baseline_run is not None:
        baseline_cells = store.results_frame(baseline_run).to_dict("records")
    verdict = evaluate_cell(rec, baseline_cells, config)
    store.add_verdict(result_id, baseline_run, config.digest, verdict.passed, verdict.baseline_id, verdict.note,
                      verdict.checks_json())
    return verdict


def run_verdicts(store: Store, run_id: int, baseline_run: int | None, config: GateConfig) -> list[CellVerdict]:
    """Every cell of a run with its verdict for this question: the stored one, else judged now and stored."""
    cells = store.results_frame(run_id).to_dict("records")
    stored = {int(v["result_id"]): v for v in
              store.verdicts_frame(run_id, baseline_run, config.digest).to_dict("records")}
    baseline_cells = None
    verdicts = []
    for rec in cells:
        found = stored.get(int(rec["id"]))
        if found is not None:
            verdicts.append(CellVerdict.from_stored(rec, found))
            continue
        if baseline_cells is None and baseline_run is not None:
            baseline_cells = store.results_frame(baseline_run).to_dict("records")
        verdicts.append(judge(store, int(rec["id"]), baseline_run, config, baseline_cells))
    return verdicts
