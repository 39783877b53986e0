"""The gate's verdicts as a summary: a fixed-width table for the terminal and Markdown for CI job pages."""

from __future__ import annotations

import os

from harness.gate.config import METRICS
from harness.gate.judge import CellVerdict, missing
from harness.measure.stats import figure
from reports.table import fixed_width, markdown_table, md_escape


def _rows(verdicts: list[CellVerdict]) -> tuple[list[str], list[list[str]]]:
    """(headers, rows) of the end-of-session summary: one row per cell with its figures and what failed."""
    compared = [m for m, spec in METRICS.items() if spec.compared]
    headers = ["cell", "gate", *(METRICS[m].label for m in compared), "failed checks"]
    rows = []
    for v in verdicts:
        figures = []
        for m in compared:
            value, result = v.rec.get(m), v.comparison(m)
            shown = "-" if missing(value) else figure(value)
            if result is not None:
                p = "" if result.p_value is None else f", p={result.p_value:.2g}"
                shown += f" ({result.delta_pct:+.1f} %{p})"
            figures.append(shown)
        why = "; ".join(c.detail for c in v.failures) or v.note
        rows.append([v.cell, "pass" if v.passed else "FAIL", *figures, why])
    return headers, rows


def _figure_columns(headers: list[str]) -> range:
    return range(2, len(headers) - 1)  # between the cell and its verdict, and the failed checks


def _headline(verdicts: list[CellVerdict], baseline_run: int | None, source: str) -> str:
    failed = sum(not v.passed for v in verdicts)
    verdict = f"FAIL: {failed} of {len(verdicts)} cells" if failed else f"PASS: {len(verdicts)} cells"
    against = f"baseline run {baseline_run}" if baseline_run is not None else "no baseline"
    return f"{verdict} (limits: {source}; {against})"


def summary_text(verdicts: list[CellVerdict], baseline_run: int | None, source: str) -> str:
    headers, rows = _rows(verdicts)
    return fixed_width(headers, rows, _figure_columns(headers)) + "\n" + _headline(verdicts, baseline_run, source)


def summary_markdown(verdicts: list[CellVerdict], run_id: int, baseline_run: int | None, source: str) -> str:
    headers, rows = _rows(verdicts)
    title = f"### litert-bench run {run_id}: release gate {md_escape(_headline(verdicts, baseline_run, source))}"
    return f"{title}\n\n{markdown_table(headers, rows, _figure_columns(headers))}\n\n"


def publish(verdicts: list[CellVerdict], run_id: int, baseline_run: int | None, source: str) -> str:
    """The summary for the terminal; also appended as Markdown to $GITHUB_STEP_SUMMARY when CI sets it
    (GitHub Actions and compatible CIs show that file on the job's page)."""
    path = os.environ.get("GITHUB_STEP_SUMMARY")
    if path:
        with open(path, "a", encoding="utf-8") as f:
            f.write(summary_markdown(verdicts, run_id, baseline_run, source))
    return summary_text(verdicts, baseline_run, source)
