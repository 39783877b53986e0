"""Verdicts computed once and stored: a cell (or an accuracy row) is judged when it is measured, and every later
reader (the end-of-session summary, the run report, `harness gate`) reads the stored verdict. A question no
stored verdict answers yet (another baseline, another thresholds file) is judged then, once, and stored in
its turn."""

from __future__ import annotations

from collections.abc import Callable

from harness.gate.accuracy import evaluate_accuracy
from harness.gate.config import GateConfig
from harness.gate.judge import CellVerdict, evaluate_cell
from harness.store.store import Store


def _store(store: Store, of: str, row_id: int, baseline_run: int | None, config: GateConfig,
           verdict: CellVerdict) -> CellVerdict:
    ids = {"result_id": row_id} if of == "results" else {"accuracy_id": row_id}
    store.add_verdict(baseline_run=baseline_run, thresholds=config.digest, passed=verdict.passed,
                      baseline_id=verdict.baseline_id, note=verdict.note, checks=verdict.checks_json(), **ids)
    return verdict


def judge(store: Store, result_id: int, baseline_run: int | None, config: GateConfig,
          baseline_cells: list[dict] | None = None) -> CellVerdict:
    """Judge one stored speed cell against the limits and the baseline run's cells, and store the verdict."""
    rec = store.results_frame(result_id=result_id).to_dict("records")[0]
    if baseline_cells is None and baseline_run is not None:
        baseline_cells = store.results_frame(baseline_run).to_dict("records")
    return _store(store, "results", result_id, baseline_run, config, evaluate_cell(rec, baseline_cells, config))


def judge_accuracy(store: Store, accuracy_id: int, run_id: int, baseline_run: int | None,
                   config: GateConfig) -> CellVerdict:
    """Judge one stored accuracy row (its bounds, its drift from the baseline run's), and store the verdict."""
    rec = next(r for r in store.accuracy_frame(run_id).to_dict("records") if int(r["id"]) == accuracy_id)
    baseline = None if baseline_run is None else store.accuracy_frame(baseline_run).to_dict("records")
    return _store(store, "accuracy", accuracy_id, baseline_run, config, evaluate_accuracy(rec, baseline, config))


def _read_or_judge(store: Store, of: str, recs: list[dict], run_id: int, baseline_run: int | None,
                   config: GateConfig, evaluate: Callable[[dict, list[dict] | None], CellVerdict]) -> list[CellVerdict]:
    stored = {int(v["result_id" if of == "results" else "accuracy_id"]): v for v in
              store.verdicts_frame(run_id, baseline_run, config.digest, of).to_dict("records")}
    baseline: list[dict] | None = None
    verdicts = []
    for rec in recs:
        found = stored.get(int(rec["id"]))
        if found is not None:
            verdicts.append(CellVerdict.from_stored(rec, found))
            continue
        if baseline is None and baseline_run is not None:
            frame = store.results_frame if of == "results" else store.accuracy_frame
            baseline = frame(baseline_run).to_dict("records")
        verdicts.append(_store(store, of, int(rec["id"]), baseline_run, config, evaluate(rec, baseline)))
    return verdicts


def run_verdicts(store: Store, run_id: int, baseline_run: int | None, config: GateConfig) -> list[CellVerdict]:
    """Every speed cell of a run with its verdict for this question: the stored one, else judged now and stored."""
    return _read_or_judge(store, "results", store.results_frame(run_id).to_dict("records"), run_id, baseline_run,
                          config, lambda rec, base: evaluate_cell(rec, base, config))


def accuracy_verdicts(store: Store, run_id: int, baseline_run: int | None, config: GateConfig) -> list[CellVerdict]:
    """Every accuracy row of a run with its verdict for this question, read back or judged once."""
    return _read_or_judge(store, "accuracy", store.accuracy_frame(run_id).to_dict("records"), run_id, baseline_run,
                          config, lambda rec, base: evaluate_accuracy(rec, base, config))
