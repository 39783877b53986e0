"""The runtime as a dimension of the matrix: cells, the store, the gate's pairing, the report's side-by-side
table and the exports. No engine runs here (tests/test_runtimes_e2e.py runs all three on a tiny model)."""

from __future__ import annotations

import json

import pytest
import sqlalchemy as sa

from harness.gate import judge as gate
from harness.gate.config import GateConfig
from harness.gate.verdicts import run_verdicts
from harness.run.settings import Settings
from harness.store.store import Store
from reports import runtimes
from reports.pytest_benchmark import cell_id
from reports.render import render_run_report
from reports.table import format_table
from tests.fake_results import CELLS, add_run


def test_cells_put_the_runtimes_of_one_workload_next_to_each_other():
    s = Settings(models=("tinyllama",), quants=("none", "dynamic_int8"), prefill=(32,), decode=(16,), threads=(2,),
                 runtimes=("litert", "llama.cpp"))
    cells = s.cells()
    assert [(c.quant, c.runtime) for c in cells] == [
        ("none", "litert"), ("none", "llama.cpp"), ("dynamic_int8", "litert"), ("dynamic_int8", "llama.cpp")]
    # Our runner's ids are those of earlier runs; other runtimes' say which they are.
    assert cells[0].id == "tinyllama-tiny-none-host-p32-d16-t2"
    assert cells[1].id == "tinyllama-tiny-none-host-p32-d16-t2-llama.cpp"


def _store(tmp_path) -> Store:
    return Store(str(tmp_path / "r.db"))


def test_the_gate_pairs_each_runtime_with_its_own_baseline(tmp_path):
    store = _store(tmp_path)
    base_ours = add_run(store, "base", runtime="litert", seed=1)
    add_run(store, "base-llama", runtime="llama.cpp", scale=0.2, seed=2)  # a slower runtime, other run
    baseline = store.results_frame().to_dict("records")  # both runtimes' cells as one baseline pool
    new_llama = add_run(store, "new", runtime="llama.cpp", scale=0.2, seed=3)
    for rec in store.results_frame(new_llama).to_dict("records"):
        base, note = gate.pair(rec, baseline)
        assert base is not None and gate.runtime_of(base) == "llama.cpp", note
    # Compared with our runner's cells instead, llama.cpp at a fifth of the speed would be a regression.
    ours = store.results_frame(base_ours).to_dict("records")
    rec = store.results_frame(new_llama).to_dict("records")[0]
    assert gate.pair(rec, ours) == (None, "no baseline cell of this workload")


def test_rows_stored_before_runtimes_existed_are_our_runners(tmp_path):
    store = _store(tmp_path)
    old = add_run(store, "old")  # no runtime column value
    new = add_run(store, "new", runtime="litert", seed=5)
    rec = store.results_frame(new).to_dict("records")[0]
    base, _ = gate.pair(rec, store.results_frame(old).to_dict("records"))
    assert base is not None
    assert gate.runtime_of(store.results_frame(old).to_dict("records")[0]) == "litert"
    assert "litert" in format_table(store.results_frame(old))


def _two_runtimes(store: Store, scale: float) -> int:
    """One run holding our runner's cells and llama.cpp's at `scale` × our speed."""
    run = add_run(store, "mixed", runtime="litert", seed=7)
    other = add_run(store, "other", runtime="llama.cpp", scale=scale, seed=8)
    with store.engine.begin() as conn:  # one run, as `--runtime litert,llama.cpp` stores it
        conn.execute(sa.text("UPDATE results SET run_id = :run WHERE run_id = :other"), {"run": run, "other": other})
    return run


def test_side_by_side_says_which_runtime_is_faster_only_beyond_the_noise(tmp_path):
    store = _store(tmp_path)
    run = _two_runtimes(store, scale=0.5)
    groups = runtimes.side_by_side(store.results_frame(run).to_dict("records"))
    assert len(groups) == len(CELLS)
    for g in groups:
        ours, theirs = g["rows"]
        assert ours["runtime"] == "litert" and theirs["runtime"] == "llama.cpp"
        assert theirs["ratio"]["decode_tok_s"] == pytest.approx(0.5, rel=0.05)
        assert theirs["verdict"]["decode_tok_s"].startswith("decode tok/s: slower than litert")

    same = _store(tmp_path / "same")
    run = _two_runtimes(same, scale=1.0)
    for g in runtimes.side_by_side(same.results_frame(run).to_dict("records")):
        assert "within the noise" in g["rows"][1]["verdict"]["decode_tok_s"]


def test_report_shows_runtimes_side_by_side_with_ratios(tmp_path):
    store = _store(tmp_path)
    run = _two_runtimes(store, scale=2.0)
    html = render_run_report(store, run, tmp_path / "run.html").read_text()
    assert "Runtimes side by side" in html and 'id="runtime-chart"' in html
    assert html.count('class="runtimes"') == len(CELLS)
    assert "2.00×" in html or "1.9" in html  # llama.cpp's ratio to ours
    assert "faster than litert" in html
    # A run of one runtime has no such section.
    single = add_run(store, "single", runtime="litert", seed=11)
    assert "Runtimes side by side" not in render_run_report(store, single, tmp_path / "one.html").read_text()


def test_every_cell_of_a_mixed_run_gets_its_own_verdict_and_name(tmp_path):
    store = _store(tmp_path)
    run = _two_runtimes(store, scale=0.5)
    names = [v.cell for v in run_verdicts(store, run, None, GateConfig())]
    assert len(names) == len(set(names)) == 2 * len(CELLS)
    assert sum(n.endswith("· llama.cpp") for n in names) == len(CELLS)


def test_exports_name_the_runtime(tmp_path):
    store = _store(tmp_path)
    run = _two_runtimes(store, scale=0.5)
    recs = store.results_frame(run).to_dict("records")
    ids = {cell_id(r) for r in recs}
    assert len(ids) == len(recs) and sum(i.endswith("-llama.cpp") for i in ids) == len(CELLS)
    assert json.dumps([r["runtime"] for r in recs]).count("llama.cpp") == len(CELLS)


def test_gate_rules_can_pick_runtimes(tmp_path):
    from harness.gate.config import load_config

    path = tmp_path / "gate.toml"
    path.write_text('[[rule]]\nmodel = "*-tiny"\nmax_peak_rss_mb = 1\n\n'
                    '[[rule]]\nruntime = "llama.cpp"\nmin_decode_tok_s = 1e9\n')
    config = load_config(path)
    assert config.settings_for({"model": "m-tiny", "runtime": "llama.cpp"})["min_decode_tok_s"] == 1e9
    assert "min_decode_tok_s" not in config.settings_for({"model": "m-tiny", "runtime": "litert"})
    assert "min_decode_tok_s" not in config.settings_for({"model": "m-tiny", "runtime": float("nan")})  # old rows
    assert config.settings_for({"model": "m-tiny", "runtime": "llama.cpp"})["max_peak_rss_mb"] == 1
