"""The results store (real SQLite) and the run report (Jinja, autoescaped)."""

import json

import pytest

from harness.store import Store
from reports.render import render_run_report
from reports.table import format_table


def _ok_row(**extra):
    return {"model": "tinyllama-tiny", "quant": "dynamic_int8", "device": "host", "prefill_len": 32,
            "decode_len": 16, "threads": 2, "status": "ok", "prefill_tok_s": 900.5, "decode_tok_s": 123.4,
            "ttft_ms": 40.0, "init_ms": 12.0, "peak_rss_mb": 55.0, "decode_cv_pct": 1.2,
            "decode_ci_low": 120.0, "decode_ci_high": 125.0} | extra


def test_each_cell_is_committed_when_added(tmp_path):
    db = tmp_path / "r.db"
    writer = Store(str(db))
    run = writer.start_run("label", ["pytest", "suites/"])
    writer.add_result(run, _ok_row(), {"spread": {}})
    # A second connection (another process in real life) already sees the row: nothing waits for the end.
    frame = Store(str(db)).results_frame(run)
    assert list(frame["decode_tok_s"]) == [123.4] and list(frame["label"]) == ["label"]


def test_unknown_column_is_refused(tmp_path):
    store = Store(str(tmp_path / "r.db"))
    with pytest.raises(ValueError, match="unknown result columns"):
        store.add_result(store.start_run(), {"model": "m", "quant": "q", "device": "d", "status": "ok", "tok": 1})


def test_report_and_table_show_every_cell_and_escape_hostile_names(tmp_path):
    store = Store(str(tmp_path / "r.db"))
    run = store.start_run("<b>label</b>")
    hostile = '<script>alert("x")</script>'
    store.add_result(run, _ok_row(model=hostile), {"device_facts": {"model": "<img src=x onerror=alert(1)>"},
                                                  "spread": {"decode_tok_s": {"min": 120.0, "max": 125.0, "n": 5}}})
    store.add_result(run, _ok_row(status="failed", error="runner exited with code -11\nSegmentation fault",
                                  decode_tok_s=None))
    html = render_run_report(store, run, tmp_path / "out" / "run.html").read_text()
    assert "<script>" not in html and "<img" not in html and "<b>label" not in html
    assert "&lt;script&gt;" in html and "123.4" in html and "120.0–125.0" in html
    assert "Segmentation fault" in html and html.count('class="failed"') == 1
    table = format_table(store.results_frame(run))
    assert "123.4" in table and "failed" in table and len(table.splitlines()) == 4


def test_result_data_keeps_every_sample(tmp_path):
    store = Store(str(tmp_path / "r.db"))
    run = store.start_run()
    samples = [{"decode_tok_s": v} for v in (1.0, 2.0, 3.0)]
    store.add_result(run, _ok_row(), {"runner": {"samples": samples}})
    assert json.loads(store.results_frame(run)["data"][0])["runner"]["samples"] == samples


def test_database_from_an_older_harness_gains_the_new_columns(tmp_path):
    import sqlite3

    db = tmp_path / "old.db"
    conn = sqlite3.connect(db)
    conn.execute("CREATE TABLE results (id INTEGER PRIMARY KEY, run_id INTEGER, created_at TIMESTAMP, "
                 "model VARCHAR, quant VARCHAR, device VARCHAR, status VARCHAR, data TEXT)")
    conn.execute("INSERT INTO results (run_id, created_at, model, quant, device, status) "
                 "VALUES (1, '2026-01-01', 'old', 'none', 'host', 'ok')")
    conn.commit()
    conn.close()
    store = Store(str(db))
    store.add_result(store.start_run(), _ok_row(depth=64, stable=False, warnings="cpu4 throttled"))
    frame = store.results_frame().set_index("model")
    assert frame.loc["tinyllama-tiny", "depth"] == 64 and not frame.loc["tinyllama-tiny", "stable"]
    assert set(Store(str(db)).results_frame()["model"]) == {"old", "tinyllama-tiny"}  # the old row is kept
