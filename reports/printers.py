"""Exports of stored results, one schema in three formats (llama-bench's printers: one interface, one class per
format). CSV and JSON carry every field of FIELDS; Markdown shows the terminal table's columns (table.COLUMNS,
all of them fields of FIELDS) with untrusted text escaped."""

from __future__ import annotations

import abc
import csv
import json
from typing import TextIO

import pandas as pd

from harness.gate.judge import accuracy, missing
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


def record(rec: dict) -> dict:
    """A stored result row (results_frame) as the export schema: plain Python values, None where missing."""
    rec = rec | {"result_id": rec.get("id"), "accuracy": accuracy(rec) or None}
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
    def __init__(self, out: TextIO):
        super().__init__(out)
        self.writer = csv.writer(out, lineterminator="\n")

    def header(self) -> None:
        self.writer.writerow(name for name, _ in FIELDS)

    def row(self, rec: dict) -> None:
        self.writer.writerow("" if rec[n] is None else json.dumps(rec[n]) if k == "json" else rec[n] for n, k in FIELDS)


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
        self.out.write(table.md_row([table.cell(rec[col], fmt) for _, col, fmt in table.COLUMNS]) + "\n")


PRINTERS: dict[str, type[Printer]] = {"csv": CsvPrinter, "json": JsonPrinter, "md": MarkdownPrinter}


def export(frame: pd.DataFrame, fmt: str, out: TextIO) -> None:
    if fmt not in PRINTERS:
        raise ValueError(f"unknown export format {fmt!r}; valid: {', '.join(PRINTERS)}")
    printer = PRINTERS[fmt](out)
    printer.header()
    for rec in frame.to_dict("records"):
        printer.row(record(rec))
    printer.footer()
