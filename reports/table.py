"""Tables as text: the fixed-width table printed at the end of a session (and by the CLI), and Markdown
tables for exports and CI summaries. COLUMNS is the one column list both show for result rows."""

from __future__ import annotations

import html
import math
import re
from collections.abc import Container, Sequence

import pandas as pd

from harness.measure.metrics import FIELD

# The cell-result fields the terminal table shows, in order; header and format come from each field's metadata
# (harness/measure/metrics.py), with a shorter header where the table is narrow.
SHOWN = ("model", "quant", "device", "runtime", "prefill_len", "decode_len", "threads", "prefill_tok_s", "decode_tok_s",
         "decode_cv_pct", "decode_bandwidth_share", "ttft_ms", "init_ms", "peak_rss_mb", "status", "stable")
_SHORT = {"ttft_ms": "ttft ms", "init_ms": "init ms", "peak_rss_mb": "peak MB"}
COLUMNS = [(_SHORT.get(name, FIELD[name].metadata["label"]), name, FIELD[name].metadata["fmt"]) for name in SHOWN]
NUMERIC = range(4, len(COLUMNS))  # right-aligned; model, quant, device and runtime are text


def cell(value, fmt: str) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    if fmt == "bool":
        return "yes" if value else "NO"
    return fmt.format(value)


def shown(rec: dict, col: str, fmt: str) -> str:
    """A result field as the tables show it."""
    if col == "runtime" and cell(rec.get(col), fmt) == "-":
        return "litert"  # rows stored before runtimes were a dimension: our runner's
    if col == "decode_bandwidth_share" and rec.get("cache_resident") is True:
        return "cache"  # decode outran the memory probe: no share of memory bandwidth to show
    return cell(rec.get(col), fmt)


def result_rows(frame: pd.DataFrame) -> list[list[str]]:
    return [[shown(rec, col, fmt) for _, col, fmt in COLUMNS] for rec in frame.to_dict("records")]


def fixed_width(headers: Sequence[str], rows: Sequence[Sequence[str]], numeric: Container[int]) -> str:
    """Columns padded to their widest value; the `numeric` ones (indexes) right-aligned, the others left."""
    table = [list(headers), *map(list, rows)]
    widths = [max(len(r[i]) for r in table) for i in range(len(headers))]
    lines = ["  ".join(v.rjust(w) if i in numeric else v.ljust(w)
                       for i, (v, w) in enumerate(zip(r, widths, strict=True))) for r in table]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def format_table(frame: pd.DataFrame) -> str:
    """A fixed-width table of the cells in `frame` (the store's results columns)."""
    return fixed_width([h for h, _, _ in COLUMNS], result_rows(frame), NUMERIC)


# Characters Markdown gives a meaning to inside a table cell; GitHub also renders inline HTML, hence <, >, &.
_MD_SPECIAL = re.compile(r"([\\`*_\[\]|~])")


def md_escape(text: str) -> str:
    """Untrusted text as one Markdown table cell: one line, no HTML, no emphasis/links/code, no cell breaks."""
    return _MD_SPECIAL.sub(r"\\\1", html.escape(" ".join(str(text).split()), quote=False))


def md_row(values: Sequence[str]) -> str:
    return "| " + " | ".join(md_escape(v) for v in values) + " |"


def md_rule(n: int, numeric: Container[int]) -> str:
    return "|" + "|".join("---:" if i in numeric else "---" for i in range(n)) + "|"


def markdown_table(headers: Sequence[str], rows: Sequence[Sequence[str]], numeric: Container[int]) -> str:
    return "\n".join([md_row(headers), md_rule(len(headers), numeric), *(md_row(r) for r in rows)])


ACCURACY_COLUMNS = [
    # (header, metric in the check's figures, format); a check shows the metrics it has, "-" for the others
    ("prefill Δmax", "prefill_max_diff", "{:.2g}"),
    ("decode Δmax", "decode_max_diff", "{:.2g}"),
    ("greedy", "greedy_identical", "bool"),
    ("top1", "top1_agreement", "{:.3f}"),
    ("mean KL", "mean_kl", "{:.2g}"),
    ("logit Δmax", "max_abs_logit_diff", "{:.2g}"),
    ("size ratio", "size_ratio", "{:.3f}"),
]


def accuracy_rows(frame: pd.DataFrame) -> list[list[str]]:
    import json

    rows = []
    for rec in frame.to_dict("records"):
        metrics = json.loads(rec.get("metrics") or "{}")
        rows.append([str(rec["model"]), str(rec["check"]), str(rec["quant"]),
                     *(cell(metrics.get(key), fmt) for _, key, fmt in ACCURACY_COLUMNS),
                     "pass" if rec["passed"] else "FAIL"])
    return rows


def format_accuracy(frame: pd.DataFrame) -> str:
    """A fixed-width table of accuracy rows (the store's accuracy table)."""
    headers = ["model", "check", "quant", *(h for h, _, _ in ACCURACY_COLUMNS), "verdict"]
    return fixed_width(headers, accuracy_rows(frame), range(3, 3 + len(ACCURACY_COLUMNS)))
