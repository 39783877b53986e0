"""The run report: one self-contained HTML file (inline CSS, no scripts, no external requests)."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import jinja2
import pandas as pd

from harness.store import Store

_ENV = jinja2.Environment(
    loader=jinja2.PackageLoader("reports", "templates"),
    autoescape=True,  # model and device names and device properties are untrusted text
    undefined=jinja2.StrictUndefined,
)


def _fmt(value, digits: int = 1) -> str:
    if value is None or (isinstance(value, float) and pd.isna(value)):
        return "–"
    return f"{value:,.{digits}f}"


_ENV.filters["num"] = _fmt


def _cell_view(rec: dict) -> dict:
    data = json.loads(rec.get("data") or "{}")
    spread = data.get("spread", {})
    return {
        **rec,
        "decode_range": (spread.get("decode_tok_s", {}).get("min"), spread.get("decode_tok_s", {}).get("max")),
        "prefill_range": (spread.get("prefill_tok_s", {}).get("min"), spread.get("prefill_tok_s", {}).get("max")),
        "reps": spread.get("decode_tok_s", {}).get("n"),
        "device_facts": data.get("device_facts", {}),
        "command": data.get("command", ""),
        "runtime_version": data.get("runner", {}).get("runtime_version", ""),
        "sha256": data.get("provenance", {}).get("sha256", {}),
    }


def render_run_report(store: Store, run_id: int, out: Path) -> Path:
    frame = store.results_frame(run_id)
    run = store.runs_frame().set_index("id").loc[run_id].to_dict()
    cells = [_cell_view(rec) for rec in frame.to_dict("records")]
    devices = {}
    for cell in cells:
        devices.setdefault(cell["device"], cell["device_facts"])
    html = _ENV.get_template("run.html.j2").render(
        run=run, run_id=run_id, cells=cells, devices=devices,
        generated=dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        n_ok=sum(c["status"] == "ok" for c in cells), n_failed=sum(c["status"] != "ok" for c in cells),
    )
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(html, encoding="utf-8")
    return out
