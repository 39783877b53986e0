"""The results store, on real SQLite and (with $LITERT_BENCH_PG_URL) a real PostgreSQL server, and the run
report (Jinja, autoescaped)."""

import json

import pytest
import sqlalchemy as sa

from harness.measure.metrics import CellResult
from harness.store.store import Store, url_for
from reports.render import render_run_report
from reports.table import format_table


def _ok_row(**extra) -> CellResult:
    return CellResult.from_row({"model": "tinyllama-tiny", "quant": "dynamic_int8", "device": "host", "prefill_len": 32,
            "decode_len": 16, "threads": 2, "status": "ok", "prefill_tok_s": 900.5, "decode_tok_s": 123.4,
            "ttft_ms": 40.0, "init_ms": 12.0, "peak_rss_mb": 55.0, "decode_cv_pct": 1.2,
            "decode_ci_low": 120.0, "decode_ci_high": 125.0} | extra)


def test_each_cell_is_committed_when_added(results_url):
    writer = Store(results_url)
    run = writer.start_run("label", ["pytest", "suites/"])
    writer.add_result(run, _ok_row(), {"spread": {}})
    # A second connection (another process in real life) already sees the row: nothing waits for the end.
    frame = Store(results_url).results_frame(run)
    assert list(frame["decode_tok_s"]) == [123.4] and list(frame["label"]) == ["label"]


def test_unknown_column_is_refused(results_url):
    store = Store(results_url)
    with pytest.raises(ValueError, match="unknown result columns"):
        store.add_result(store.start_run(), CellResult.from_row({"model": "m", "quant": "q", "device": "d",
                                                                 "status": "ok", "tok": 1}))


def test_types_round_trip(results_url):
    """Booleans, 64-bit integers, long text and time zones come back as they went in, on every database."""
    store = Store(results_url)
    run = store.start_run("types", git_commit="f" * 40, harness_version="0.1.0")
    warnings = "cpu0: frequency cap dropped\n" * 200
    store.add_result(run, _ok_row(stable=False, artifact_bytes=5_000_000_000, warnings=warnings))
    store.add_result(run, _ok_row(stable=True, quant="none"))
    store.finish_run(run)
    rec = store.results_frame(run).set_index("quant")
    assert not rec.loc["dynamic_int8", "stable"] and rec.loc["none", "stable"]
    assert int(rec.loc["dynamic_int8", "artifact_bytes"]) == 5_000_000_000
    assert rec.loc["dynamic_int8", "warnings"] == warnings
    runs = store.runs_frame().set_index("id")
    assert runs.loc[run, "finished_at"] >= runs.loc[run, "started_at"]
    assert runs.loc[run, "git_commit"] == "f" * 40


def test_runs_are_found_by_id_label_or_baseline_name(results_url):
    store = Store(results_url)
    first, second = store.start_run("nightly"), store.start_run("nightly")
    other = store.start_run("<b>x</b>")
    assert store.resolve_run(str(first)) == first and store.resolve_run(other) == other
    assert store.resolve_run("nightly") == second  # a label names its latest run
    store.set_baseline("release-1.0", first)
    store.set_baseline("release-1.0", second)  # moving a baseline replaces it
    assert store.resolve_run("release-1.0") == second
    assert store.baselines_frame()[["name", "run_id"]].values.tolist() == [["release-1.0", second]]
    with pytest.raises(LookupError, match=r"no run 'nope'.*baselines: release-1.0; labels: <b>x</b>, nightly"):
        store.resolve_run("nope")
    with pytest.raises(LookupError, match="no run '99'"):
        store.resolve_run(99)
    assert store.latest_run() == other


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


def test_result_data_keeps_every_sample(results_url):
    store = Store(results_url)
    run = store.start_run()
    samples = [{"decode_tok_s": v} for v in (1.0, 2.0, 3.0)]
    store.add_result(run, _ok_row(), {"runner": {"samples": samples}})
    assert json.loads(store.results_frame(run)["data"][0])["runner"]["samples"] == samples


def test_database_from_an_older_harness_gains_the_new_columns(results_url):
    engine = sa.create_engine(url_for(results_url))
    serial = "SERIAL" if engine.dialect.name == "postgresql" else "INTEGER"  # an auto-numbered key either way
    with engine.begin() as conn:  # the first harness's results table: no depth, stable, warnings, ...
        conn.execute(sa.text(f"CREATE TABLE results (id {serial} PRIMARY KEY, run_id INTEGER, created_at TIMESTAMP, "
                             "model VARCHAR(200), quant VARCHAR(64), device VARCHAR(200), status VARCHAR(16), "
                             "data TEXT)"))
        conn.execute(sa.text("INSERT INTO results (run_id, created_at, model, quant, device, status) "
                             "VALUES (1, '2026-01-01', 'old', 'none', 'host', 'ok')"))
    engine.dispose()
    store = Store(results_url)
    store.add_result(store.start_run(), _ok_row(depth=64, stable=False, warnings="cpu4 throttled",
                                                artifact_bytes=5_000_000_000))
    frame = store.results_frame().set_index("model")
    assert frame.loc["tinyllama-tiny", "depth"] == 64 and not frame.loc["tinyllama-tiny", "stable"]
    assert int(frame.loc["tinyllama-tiny", "artifact_bytes"]) == 5_000_000_000
    assert set(Store(results_url).results_frame()["model"]) == {"old", "tinyllama-tiny"}  # the old row is kept
