"""HTML reports, each one self-contained file: inline CSS and SVG charts, no scripts, no external requests
(the page's Content-Security-Policy forbids them). Autoescaped: model and device names and device properties
are untrusted text.

- the comparison report of one run, optionally against a baseline run (what `pytest suites/` writes);
- the regression dashboard over every run in the store.
"""

from __future__ import annotations

import datetime as dt
import os
import tempfile
from collections import defaultdict
from pathlib import Path

import jinja2
import pandas as pd

from harness.gate import judge as gate
from harness.gate.accuracy import cell_figures
from harness.gate.config import METRICS, GateConfig
from harness.gate.verdicts import accuracy_verdicts, run_verdicts
from harness.measure import stats
from harness.store.store import Store
from reports import charts, runtimes
from reports import profile as profiles

_ENV = jinja2.Environment(
    loader=jinja2.PackageLoader("reports", "templates"),
    autoescape=True,  # model and device names and device properties are untrusted text
    undefined=jinja2.StrictUndefined,
)
# The figures with a delta against the baseline, in table order.
COMPARED = [m for m, spec in METRICS.items() if spec.compared]
SPEED = {"prefill_tok_s": "prefill tok/s", "decode_tok_s": "decode tok/s"}


def _fmt(value, digits: int = 1) -> str:
    return "–" if gate.missing(value) else f"{value:,.{digits}f}"


def _when(value) -> str:
    """A stored time in UTC: SQLite gives it back naive (stored as UTC), PostgreSQL in the server's zone."""
    if gate.missing(value) or value is pd.NaT:
        return "–"
    ts = pd.Timestamp(value)
    return (ts.tz_convert("UTC") if ts.tzinfo else ts).strftime("%Y-%m-%d %H:%M:%S UTC")


_ENV.filters["num"] = _fmt
_ENV.filters["when"] = _when


def _records(frame: pd.DataFrame) -> list[dict]:
    """Rows as dicts with None where pandas has NaN (an unlabelled run must not read "nan")."""
    return frame.astype(object).where(frame.notna(), None).to_dict("records")


def _spread(rec: dict, metric: str) -> tuple[float, float, float] | None:
    """(median, low, high): the bootstrap 95 % CI of the median where stored, else min–max, else no spread."""
    if gate.missing(rec.get(metric)):
        return None
    spread = gate.stored_data(rec).get("spread", {}).get(metric, {})
    low, high = spread.get("ci95") or (spread.get("min"), spread.get("max"))
    value = float(rec[metric])
    return (value, value, value) if low is None or high is None else (value, float(low), float(high))


def _delta_view(result) -> dict | None:
    if result is None:
        return None
    p = "no test (one value per run)" if result.p_value is None else f"Mann–Whitney p = {result.p_value:.3g}"
    return {"text": f"{result.delta_pct:+.1f} %", "cls": result.verdict,
            "title": f"baseline median {stats.figure(result.baseline_median)}; {p}; {result.verdict}"}


# Graph pages (reports/graph.py) sit in this folder beside the run report, named by their artifact's sha256.
GRAPHS_FOLDER = "graphs"


def graph_page_name(sha256: str) -> str:
    return f"{GRAPHS_FOLDER}/{sha256[:16]}.html"


def _graph_href(rec: dict, report: Path) -> str | None:
    """The cell's artifact's graph page, where one was written beside this report."""
    sha = rec.get("artifact_sha256")
    if not sha or rec.get("runtime") not in (None, "litert"):
        return None
    return graph_page_name(sha) if (report.parent / graph_page_name(sha)).is_file() else None


def _cell_view(rec: dict, verdict: gate.CellVerdict, base: dict | None, checks: list[dict]) -> dict:
    """A speed cell for the template; `checks` are the accuracy rows of its run and its baseline's."""
    data = gate.stored_data(rec)
    spread = data.get("spread", {})
    figures = cell_figures(checks, rec["run_id"], rec["model"], rec["quant"])
    old_accuracy = cell_figures(checks, base["run_id"], base["model"], base["quant"]) if base else {}
    return {
        **rec,
        "name": verdict.cell,
        "decode_range": (spread.get("decode_tok_s", {}).get("min"), spread.get("decode_tok_s", {}).get("max")),
        "prefill_range": (spread.get("prefill_tok_s", {}).get("min"), spread.get("prefill_tok_s", {}).get("max")),
        "ttft_range": (spread.get("ttft_ms", {}).get("min"), spread.get("ttft_ms", {}).get("max")),
        "reps": spread.get("decode_tok_s", {}).get("n"),
        "command": data.get("command", ""),
        "runtime": gate.runtime_of(rec),
        "kv_cache_mb": (data.get("runner", {}).get("kv_cache_bytes") or 0) / 2**20 or None,
        "runtime_version": data.get("runner", {}).get("runtime_version", ""),
        "sha256": data.get("provenance", {}).get("sha256", {}),
        "delta": {m: _delta_view(verdict.comparison(m)) for m in COMPARED},
        "accuracy": {k: (v, v - old_accuracy[k] if k in old_accuracy else None) for k, v in figures.items()},
        "gate_passed": verdict.passed,
        "gate_failures": [c.detail for c in verdict.failures],
        "gate_failed": sorted({METRICS[c.metric].label if c.metric in METRICS else c.metric
                               for c in verdict.failures}),
        "gate_note": verdict.note,
    }


def _devices(recs: list[dict]) -> dict[str, dict]:
    """Per device: what it reported about itself, and what ran on it (runtime, runner, harness, with hashes)."""
    devices: dict[str, dict] = {}
    for rec in recs:
        data = gate.stored_data(rec)
        entry = devices.setdefault(rec["device"], {"facts": data.get("device_facts", {}), "ran": defaultdict(set)})
        prov, runner = data.get("provenance", {}), data.get("runner", {})
        sha = prov.get("sha256", {})
        for key, value in (("runtime", prov.get("runtime_version") or runner.get("runtime_version")),
                           ("runner", prov.get("runner_version") or runner.get("runner_version")),
                           ("runner sha256", sha.get("runner")), ("runtime library sha256", sha.get("runtime_lib")),
                           ("harness", prov.get("harness_version")), ("commit", prov.get("harness_git_commit"))):
            if value:
                entry["ran"][key].add(str(value))
    return {name: {"facts": d["facts"], "ran": {k: sorted(v) for k, v in d["ran"].items()}}
            for name, d in devices.items()}


def _emulated(rec: dict) -> bool:
    """Measured on an emulator (NULL in rows stored before the field existed; numpy's bools compare equal)."""
    return rec.get("emulated") == True  # noqa: E712


def _speed_chart(cells: list[dict], base_by_id: dict[int, dict]) -> str:
    ok = [c for c in cells if c["status"] == "ok" and not _emulated(c)]  # an emulator's speed measures nothing
    if not ok:
        return ""
    bases = [base_by_id.get(c["baseline_id"]) for c in ok]
    panels = {title: ([_spread(c, m) for c in ok], [b and _spread(b, m) for b in bases] if any(bases) else None)
              for m, title in SPEED.items()}
    return charts.speed_bars([c["name"] for c in ok], panels)


def _memory_chart(cells: list[dict]) -> str:
    points = [{"x": c["peak_rss_mb"], "y": c["decode_tok_s"], "quant": c["quant"], "device": c["device"],
               "text": f"{c['model']} · {c['quant']} · p{c['prefill_len']:.0f}"}
              for c in cells if c["status"] == "ok" and not _emulated(c) and not gate.missing(c["peak_rss_mb"])
              and not gate.missing(c["decode_tok_s"])]
    return charts.memory_vs_speed(points) if points else ""


class ReportError(RuntimeError):
    """A report that cannot be written; the message names the file, its folder and why."""


def _write(out: Path, template: str, **context) -> Path:
    html = _ENV.get_template(template).render(
        generated=dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC"), **context)
    out = Path(out)
    try:
        write_whole(out, html)
    except OSError as e:
        raise ReportError(f"cannot write the report {out.name} in folder {out.parent}: {_why(out.parent, e)}") from None
    return out


def _why(folder: Path, error: OSError) -> str:
    """The reason in words; the usual one is a file where a folder must be (`--out` under a file)."""
    existing = folder.absolute()
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    return f"{existing} is a file, not a folder" if not existing.is_dir() else error.strerror or str(error)


def write_whole(out: Path, text: str) -> None:
    """Write `out` whole or not at all: a temporary file in the same folder, renamed over it. A reader (a
    browser, a CI artifact upload) never sees half a report, and a failed write keeps the previous one."""
    out.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=out.parent, prefix=f".{out.name}.", suffix=".tmp")
    try:
        os.fchmod(fd, 0o666 & ~_UMASK)  # mkstemp makes it owner-only; a report is as readable as any file
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
        os.replace(tmp, out)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _umask() -> int:
    mask = os.umask(0)  # the only way to read it is to set it
    os.umask(mask)
    return mask


_UMASK = _umask()


def render_run_report(store: Store, run_id: int, out: Path, baseline_run: int | None = None,
                      config: GateConfig | None = None) -> Path:
    """The comparison report of one run: tables, charts, deltas against baseline_run, devices, provenance."""
    config = config or GateConfig()
    runs = {r["id"]: r for r in _records(store.runs_frame())}
    frame = store.results_frame(run_id)
    base_frame = None if baseline_run is None else store.results_frame(baseline_run)
    verdicts = run_verdicts(store, run_id, baseline_run, config)
    base_by_id = {} if base_frame is None else {int(r["id"]): r for r in base_frame.to_dict("records")}
    checks = store.accuracy_frame(run_id).to_dict("records")
    if baseline_run is not None:
        checks += store.accuracy_frame(baseline_run).to_dict("records")
    cells = []
    for rec, verdict in zip(_records(frame), verdicts, strict=True):
        base = base_by_id.get(verdict.baseline_id)
        cells.append(_cell_view(rec, verdict, base, checks) | {"baseline_id": verdict.baseline_id,
                                                               "graph_href": _graph_href(rec, Path(out))})
    counts = {v: sum(1 for c in cells for d in c["delta"].values() if d and d["cls"] == v)
              for v in ("regression", "improvement")}
    side_by_side = runtimes.side_by_side(_records(frame), config)
    return _write(
        out, "run.html.j2", run=runs[run_id], run_id=run_id, cells=cells,
        baseline=None if baseline_run is None else runs[baseline_run],
        accuracy_names=sorted({k for c in cells for k in c["accuracy"]}),
        devices=_devices(frame.to_dict("records")),
        speed_chart=_speed_chart(cells, base_by_id), memory_chart=_memory_chart(cells),
        profile_view=profiles.view(cells, base_by_id),
        runtime_groups=side_by_side, runtime_chart=charts.runtime_bars(*runtimes.bars(side_by_side))
        if side_by_side else "", several_runtimes=len({c["runtime"] for c in cells}) > 1,
        n_ok=sum(c["status"] == "ok" for c in cells), n_failed=sum(c["status"] != "ok" for c in cells),
        n_gate_failed=sum(not v.passed for v in verdicts), counts=counts, gate_source=config.source,
        **_accuracy_view(store.accuracy_frame(run_id), accuracy_verdicts(store, run_id, baseline_run, config)),
    )


def _accuracy_view(frame, verdicts: list[gate.CellVerdict]) -> dict:
    """The run's accuracy checks as table rows, each with the bounds it broke and, against a baseline, the
    figures that drifted too far."""
    from reports.table import ACCURACY_COLUMNS, accuracy_rows

    failures = [[f for f in (rec.get("failures") or "").split("\n") if f]
                + [c.detail for c in v.failures if c.kind == "accuracy"]
                for rec, v in zip(frame.to_dict("records"), verdicts, strict=True)]
    return {"accuracy_headers": ["model", "check", "quant", *(h for h, _, _ in ACCURACY_COLUMNS), "verdict"],
            "accuracy_rows": list(zip(accuracy_rows(frame), failures, strict=True))}


def render_dashboard(store: Store, out: Path, config: GateConfig | None = None) -> Path:
    """Trends over every run: per model · quant · device one figure, a panel per metric, a line per workload
    with its spread band; a point whose figure is significantly worse than the line's previous point (the
    gate's test) is marked and listed."""
    config = config or GateConfig()
    frame = store.results_frame()
    # Trends of real devices only: an emulator's speed (qemu-arm64) says nothing about a change.
    ok = frame[(frame["status"] == "ok") & (frame["emulated"] != True)]  # noqa: E712 - NULL for older rows
    ok = ok.sort_values(["run_id", "id"]).to_dict("records")
    groups: dict[tuple, dict[str, list[dict]]] = defaultdict(lambda: defaultdict(list))
    for rec in ok:
        runtime = gate.runtime_of(rec)  # a runtime's figures are a line of their own, never joined to ours
        line = gate.workload_name(rec) + ("" if runtime == "litert" else f" · {runtime}")
        groups[(rec["model"], rec["quant"], rec["device"])][line].append(rec)
    figures, regressions = [], []
    for (model, quant, device), lines in sorted(groups.items()):
        panels: dict[str, list[dict]] = {}
        for metric in COMPARED:
            spec = METRICS[metric]
            panel = []
            for name, recs in sorted(lines.items()):
                recs = [r for r in recs if not gate.missing(r.get(metric))]
                if not recs:
                    continue
                line = {"name": name, "x": [], "y": [], "low": [], "high": [], "regressions": []}
                for prev, rec in zip([None, *recs], recs, strict=False):
                    value, low, high = _spread(rec, metric)
                    has_band = low != high
                    result = prev and gate.compare(rec, prev, config.settings_for(rec), metric)
                    bad = bool(result) and result.verdict == "regression"
                    line["x"].append(int(rec["run_id"]))
                    line["y"].append(value)
                    line["low"].append(low if has_band else None)
                    line["high"].append(high if has_band else None)
                    line["regressions"].append(bad)
                    if bad:
                        regressions.append({"run_id": int(rec["run_id"]), "previous_run": int(prev["run_id"]),
                                            "cell": gate.cell_name(rec), "metric": spec.label,
                                            "detail": result.describe(spec.unit)})
                panel.append(line)
            panels[f"{spec.label} ({spec.unit.strip()})"] = panel
        latest = max(r["run_id"] for recs in lines.values() for r in recs)
        figures.append({"title": f"{model} · {quant} · {device}", "latest_run": int(latest),
                        "svg": charts.trends(f"{model} · {quant} · {device}", panels)})
    regressions.sort(key=lambda r: -r["run_id"])  # the latest first
    runs = store.runs_frame()
    counts = frame.groupby("run_id")["status"].agg(ok=lambda s: (s == "ok").sum(), failed=lambda s: (s != "ok").sum())
    run_rows = [r | {"ok": int(counts["ok"].get(r["id"], 0)), "failed": int(counts["failed"].get(r["id"], 0))}
                for r in _records(runs)]
    return _write(out, "dashboard.html.j2", figures=figures, regressions=regressions, runs=run_rows,
                  baselines=_records(store.baselines_frame()), gate_source=config.source)
