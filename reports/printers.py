"""Exports of stored results, one schema in three formats (llama-bench's printers: one interface, one class per
format). CSV and JSON carry every field of FIELDS; Markdown shows the terminal table's columns (table.COLUMNS,
all of them fields of FIELDS) with untrusted text escaped. A fourth format, pytest-benchmark's JSON document
(reports/pytest_benchmark.py), maps the same rows, with their stored samples, onto that tool's schema."""

from __future__ import annotations

import abc
import csv
import io
import json
from collections import Counter
from typing import TextIO

import pandas as pd

from harness.gate.accuracy import cell_figures
from harness.gate.judge import missing
from harness.measure import metrics
from harness.measure.metrics import python_type
from reports import pytest_benchmark, table

# (name, type) of every exported field, in order: the run's, then every field of the cell result
# (harness/measure/metrics.py), then the accuracy figures. Types: int, float, bool, str, time (ISO 8601), json.
FIELDS: list[tuple[str, str]] = [
    ("run_id", "int"), ("label", "str"), ("git_commit", "str"), ("run_started_at", "time"), ("result_id", "int"),
    *((f.name, python_type(f).__name__) for f in metrics.FIELDS),
    ("accuracy", "json"),
]
_CAST = {"int": int, "float": float, "bool": bool, "str": str, "json": lambda v: v,
         "time": lambda v: pd.Timestamp(v).isoformat()}


def record(rec: dict, checks: list[dict] = ()) -> dict:
    """A stored result row (results_frame) as the export schema: plain Python values, None where missing; its
    accuracy figures come from `checks`, the accuracy rows of its run (accuracy_frame)."""
    figures = cell_figures(list(checks), rec["run_id"], rec["model"], rec["quant"]) if checks else {}
    rec = rec | {"result_id": rec.get("id"), "accuracy": figures or None}
    out = {}
    for name, kind in FIELDS:
        value = rec.get(name)
        out[name] = None if missing(value) or value is pd.NaT else _CAST[kind](value)
    return out


class Printer(abc.ABC):
    """Writes records of the export schema to a text stream: header, one call per row, footer. `row` gets the
    record and the row as stored (with its `data` JSON: samples, device facts), for formats that need more."""

    def __init__(self, out: TextIO):
        self.out = out

    def header(self) -> None:  # noqa: B027 (formats without a header keep this no-op)
        pass

    @abc.abstractmethod
    def row(self, rec: dict, stored: dict) -> None: ...

    def footer(self) -> None:  # noqa: B027
        pass

    def notes(self) -> list[str]:
        """What the user should know about this export (rows left out, and why); none for most formats."""
        return []


class CsvPrinter(Printer):
    def header(self) -> None:
        self._write(name for name, _ in FIELDS)

    def row(self, rec: dict, stored: dict) -> None:
        self._write(_inert("" if rec[n] is None else json.dumps(rec[n]) if k == "json" else rec[n]) for n, k in FIELDS)

    def _write(self, cells) -> None:
        """One line ending in \n. The csv module quotes a field holding any character of its line terminator, so
        it writes with \r\n, which quotes a lone \r too (with \n alone, "a\rb" goes out bare and splits the row
        for every reader), and the terminator is swapped after."""
        line = io.StringIO()
        csv.writer(line, lineterminator="\r\n").writerow(cells)
        self.out.write(line.getvalue()[:-2] + "\n")


# A spreadsheet opening the CSV runs a cell that starts with one of these as a formula (=HYPERLINK(...),
# @SUM(...)); model names, labels and errors are untrusted text. OWASP's advice: prefix such a cell with a single
# quote, which the spreadsheet shows as text. Numbers are written as numbers (-3.5 stays a number).
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def _inert(value):
    return "'" + value if isinstance(value, str) and value.startswith(_FORMULA_START) else value


class JsonPrinter(Printer):
    """A JSON array of objects, one per result, written as the rows come."""

    def __init__(self, out: TextIO):
        super().__init__(out)
        self.first = True

    def header(self) -> None:
        self.out.write("[")

    def row(self, rec: dict, stored: dict) -> None:
        self.out.write(("\n  " if self.first else ",\n  ") + json.dumps(rec))
        self.first = False

    def footer(self) -> None:
        self.out.write("\n]\n" if not self.first else "]\n")


class MarkdownPrinter(Printer):
    def header(self) -> None:
        self.out.write(table.md_row([h for h, _, _ in table.COLUMNS]) + "\n")
        self.out.write(table.md_rule(len(table.COLUMNS), table.NUMERIC) + "\n")

    def row(self, rec: dict, stored: dict) -> None:
        self.out.write(table.md_row([table.shown(rec, col, fmt) for _, col, fmt in table.COLUMNS]) + "\n")


class PytestBenchmarkPrinter(Printer):
    """One pytest-benchmark JSON document (reports/pytest_benchmark.py), written once every row is in."""

    def __init__(self, out: TextIO):
        super().__init__(out)
        self.cells: list[pytest_benchmark.Cell] = []
        self.skipped: Counter[str] = Counter()

    def row(self, rec: dict, stored: dict) -> None:
        why = pytest_benchmark.left_out(rec)
        if why:
            self.skipped[why] += 1
        else:
            self.cells.append(pytest_benchmark.cell_of(rec, stored))

    def footer(self) -> None:
        self.out.write(pytest_benchmark.dumps(pytest_benchmark.document(self.cells)))

    def notes(self) -> list[str]:
        why = {"failed": "failed (no figures)", "emulated": "emulated (an emulator's speed is not measured)"}
        return [f"pytest-benchmark export: left out {n} {why[k]} cell{'s' if n != 1 else ''}"
                for k, n in sorted(self.skipped.items())]


PRINTERS: dict[str, type[Printer]] = {"csv": CsvPrinter, "json": JsonPrinter, "md": MarkdownPrinter,
                                      "pytest-benchmark": PytestBenchmarkPrinter}


def export(frame: pd.DataFrame, fmt: str, out: TextIO, accuracy: pd.DataFrame | None = None) -> list[str]:
    """Write result rows in one format; `accuracy` (the same runs' accuracy rows) fills each row's accuracy.
    Returns the printer's notes for the user (rows a format left out)."""
    if fmt not in PRINTERS:
        raise ValueError(f"unknown export format {fmt!r}; valid: {', '.join(PRINTERS)}")
    checks = [] if accuracy is None else accuracy.to_dict("records")
    printer = PRINTERS[fmt](out)
    printer.header()
    for stored in frame.to_dict("records"):
        printer.row(record(stored, checks), stored)
    printer.footer()
    return printer.notes()
