"""Exports of stored results, one schema in three formats (llama-bench's printers: one interface, one class per
format). CSV and JSON carry every field of FIELDS; Markdown shows the terminal table's columns (table.COLUMNS,
all of them fields of FIELDS) with untrusted text escaped."""

from __future__ import annotations

import abc
import csv
import io
import json
from typing import TextIO

import pandas as pd

from harness.gate.accuracy import cell_figures
from harness.gate.judge import missing
from harness.measure import metrics
from harness.measure.metrics import python_type
from reports import table

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
    """Writes records of the export schema to a text stream: header, one call per row, footer."""

    def __init__(self, out: TextIO):
        self.out = out

    def header(self) -> None:  # noqa: B027 (formats without a header keep this no-op)
        pass

    @abc.abstractmethod
    def row(self, rec: dict) -> None: ...

    def footer(self) -> None:  # noqa: B027
        pass


class CsvPrinter(Printer):
    def header(self) -> None:
        self._write(name for name, _ in FIELDS)

    def row(self, rec: dict) -> None:
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

    def row(self, rec: dict) -> None:
        self.out.write(("\n  " if self.first else ",\n  ") + json.dumps(rec))
        self.first = False

    def footer(self) -> None:
        self.out.write("\n]\n" if not self.first else "]\n")


class MarkdownPrinter(Printer):
    def header(self) -> None:
        self.out.write(table.md_row([h for h, _, _ in table.COLUMNS]) + "\n")
        self.out.write(table.md_rule(len(table.COLUMNS), table.NUMERIC) + "\n")

    def row(self, rec: dict) -> None:
        self.out.write(table.md_row([table.shown(rec, col, fmt) for _, col, fmt in table.COLUMNS]) + "\n")


PRINTERS: dict[str, type[Printer]] = {"csv": CsvPrinter, "json": JsonPrinter, "md": MarkdownPrinter}


def export(frame: pd.DataFrame, fmt: str, out: TextIO, accuracy: pd.DataFrame | None = None) -> None:
    """Write result rows in one format; `accuracy` (the same runs' accuracy rows) fills each row's accuracy."""
    if fmt not in PRINTERS:
        raise ValueError(f"unknown export format {fmt!r}; valid: {', '.join(PRINTERS)}")
    checks = [] if accuracy is None else accuracy.to_dict("records")
    printer = PRINTERS[fmt](out)
    printer.header()
    for rec in frame.to_dict("records"):
        printer.row(record(rec, checks))
    printer.footer()
