"""The short table printed at the end of a session (and by the CLI): one row per cell."""

from __future__ import annotations

import math

import pandas as pd

COLUMNS = [
    # (header, column, format)
    ("model", "model", "{}"),
    ("quant", "quant", "{}"),
    ("device", "device", "{}"),
    ("p", "prefill_len", "{:.0f}"),
    ("d", "decode_len", "{:.0f}"),
    ("thr", "threads", "{:.0f}"),
    ("prefill tok/s", "prefill_tok_s", "{:.1f}"),
    ("decode tok/s", "decode_tok_s", "{:.1f}"),
    ("decode cv%", "decode_cv_pct", "{:.1f}"),
    ("bw share", "decode_bandwidth_share", "{:.0%}"),
    ("ttft ms", "ttft_ms", "{:.1f}"),
    ("init ms", "init_ms", "{:.0f}"),
    ("peak MB", "peak_rss_mb", "{:.0f}"),
    ("status", "status", "{}"),
    ("stable", "stable", "bool"),
]


def _cell(value, fmt: str) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    if fmt == "bool":
        return "yes" if value else "NO"
    return fmt.format(value)


def format_table(frame: pd.DataFrame) -> str:
    """A fixed-width table of the cells in `frame` (the store's results columns)."""
    rows = [[h for h, _, _ in COLUMNS]]
    for rec in frame.to_dict("records"):
        rows.append([_cell(rec.get(col), fmt) for _, col, fmt in COLUMNS])
    widths = [max(len(r[i]) for r in rows) for i in range(len(COLUMNS))]
    lines = ["  ".join(v.rjust(w) if i >= 3 else v.ljust(w) for i, (v, w) in enumerate(zip(r, widths, strict=True)))
             for r in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)
