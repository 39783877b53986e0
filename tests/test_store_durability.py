"""A measured cell is never lost to the database: a lock held by another process is waited out, a database
that still refuses the cell gets it in a spill file (imported later, once), sessions opening a fresh database at
once do not collide on its tables, and a run whose session died is told apart from one still running.

Real SQLite files and (with $LITERT_BENCH_PG_URL) a real PostgreSQL server; the lock is held by another process.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import re
import shutil
import sqlite3
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from harness.measure.metrics import CellResult
from harness.store.schema import runs
from harness.store.store import SpilledError, Store, pending_spills
from reports.render import render_dashboard, render_run_report
from tests.conftest import REPO
from tests.fake_results import add_run

_LOCKER = textwrap.dedent("""
    import sys, time
    url, seconds = sys.argv[1], float(sys.argv[2])
    if "://" not in url:  # SQLite: BEGIN EXCLUSIVE, as another writer (or a stuck tool) holds it
        import sqlite3
        conn = sqlite3.connect(url, isolation_level=None)
        conn.execute("BEGIN EXCLUSIVE")
    else:  # PostgreSQL: the table locked against every write
        import sqlalchemy as sa
        conn = sa.create_engine(url).connect()
        conn.execute(sa.text("LOCK TABLE results, accuracy IN ACCESS EXCLUSIVE MODE"))
    print("locked", flush=True)
    time.sleep(seconds)
""")


def _cell(**extra) -> CellResult:
    return CellResult(**({"model": "tinyllama-tiny", "quant": "dynamic_int8", "device": "host", "status": "ok",
                          "prefill_len": 32, "decode_len": 16, "decode_tok_s": 123.4} | extra))


def _hold_lock(url: str, seconds: float) -> subprocess.Popen:
    """Another process holding the database's write lock for `seconds`; returns once it holds it."""
    locker = subprocess.Popen([sys.executable, "-c", _LOCKER, url, str(seconds)], stdout=subprocess.PIPE, text=True)
    assert locker.stdout.readline().strip() == "locked"
    return locker


def test_cells_stored_while_another_process_holds_the_lock_for_20_s_are_kept(results_url):
    store = Store(results_url)
    run = store.start_run("locked")
    locker = _hold_lock(results_url, 20)
    start = time.monotonic()
    try:
        ids = [store.add_result(run, _cell(quant=q)) for q in ("none", "dynamic_int8")]
    finally:
        locker.wait(timeout=60)
    assert time.monotonic() - start > 15  # they did wait for the lock, and then went in
    frame = Store(results_url).results_frame(run)
    assert list(frame["id"]) == ids and list(frame["quant"]) == ["none", "dynamic_int8"]


def test_a_cell_the_database_refuses_is_spilled_then_imported_once(results_url):
    store = Store(results_url, wait_s=0.5)  # gives up within seconds, where a session waits minutes
    run = store.start_run("spilled")
    locker = _hold_lock(results_url, 60)
    try:
        with pytest.raises(SpilledError) as caught:
            store.add_result(run, _cell(), {"runner": {"samples": [{"decode_tok_s": 123.4}]}})
        with pytest.raises(SpilledError):
            store.add_accuracy(run, "tinyllama-tiny", "dynamic_int8", "drift", {"top1_agreement": 0.97}, [])
    finally:
        locker.kill()
        locker.wait()
    path = caught.value.path
    assert str(path) in str(caught.value) and "store import" in str(caught.value)
    assert json.loads(path.read_text())["values"]["decode_tok_s"] == 123.4
    assert len(pending_spills(results_url)) == 2

    backup = path.with_suffix(".bak")
    shutil.copy(path, backup)
    imported, problems = Store(results_url).import_spilled()
    assert len(imported) == 2 and problems == [] and pending_spills(results_url) == []
    shutil.copy(backup, path)  # as if an import had stopped between inserting the row and deleting the file
    assert Store(results_url).import_spilled()[0] == [path] and not path.exists()

    frame = store.results_frame(run)
    assert list(frame["decode_tok_s"]) == [123.4]  # once, not twice
    assert json.loads(frame["data"][0])["runner"]["samples"] == [{"decode_tok_s": 123.4}]
    assert list(store.accuracy_frame(run)["check"]) == ["drift"]


def test_a_spill_file_of_another_database_is_refused_and_kept(tmp_path):
    source = Store(str(tmp_path / "a.db"), wait_s=0.2)
    run = source.start_run()
    locker = _hold_lock(str(tmp_path / "a.db"), 30)
    try:
        with pytest.raises(SpilledError) as caught:
            source.add_result(run, _cell())
    finally:
        locker.kill()
        locker.wait()
    other = Store(str(tmp_path / "b.db"))
    imported, problems = other.import_spilled([caught.value.path])
    assert imported == [] and problems == [f"{caught.value.path}: run {run} is not in {other.url}; import it into "
                                           f"the database it was measured for"]
    _set_run(other, other.start_run(), pid=1)  # b.db's run 1: another session's, with another process id
    assert "is another run" in other.import_spilled([caught.value.path])[1][0]
    assert caught.value.path.exists()


def _open_at_once(url: str, n: int) -> list[subprocess.CompletedProcess]:
    """n processes that open the database (creating its tables) and start a run at the same instant."""
    at = time.time() + 8  # after every interpreter has imported SQLAlchemy and pandas
    code = ("import sys, time; from harness.store.store import Store; "
            "time.sleep(max(0, float(sys.argv[2]) - time.time())); print(Store(sys.argv[1]).start_run())")
    procs = [subprocess.Popen([sys.executable, "-c", code, url, str(at)], cwd=REPO, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for _ in range(n)]
    outputs = [p.communicate(timeout=120) for p in procs]
    return [subprocess.CompletedProcess(p.args, p.returncode, *out) for p, out in zip(procs, outputs, strict=True)]


def test_sessions_opening_a_fresh_database_at_once_do_not_collide(results_url, tmp_path):
    urls = [results_url] if "://" in results_url else [str(tmp_path / f"fresh{i}.db") for i in range(3)]
    for url in urls:
        done = _open_at_once(url, 5)
        errors = [re.findall(r"^\S+(?:Error|Exception): .*$", p.stderr, re.M)[-1:] for p in done if p.returncode]
        assert errors == []
        assert sorted(int(p.stdout) for p in done) == [1, 2, 3, 4, 5]


def _set_run(store: Store, run_id: int, **values) -> None:
    """What a session that died would have left (its process id), or another host's session."""
    with store.engine.begin() as conn:
        conn.execute(runs.update().where(runs.c.id == run_id).values(**values))


def test_unfinished_runs_are_told_running_or_incomplete(results_url, tmp_path):
    store = Store(results_url)
    finished = add_run(store, "done")
    running = store.start_run("now")  # this process: alive
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    interrupted = add_run(store, "killed")
    _set_run(store, interrupted, finished_at=None, pid=int(dead.stdout))
    elsewhere = store.start_run("other host")
    _set_run(store, elsewhere, hostname="another-host")
    states = store.runs_frame().set_index("id")["state"]
    assert states.to_dict() == {finished: "finished", running: "running", interrupted: "incomplete",
                                elsewhere: "unfinished"}

    html = render_run_report(store, interrupted, tmp_path / "run.html").read_text()
    assert 'id="run-state">Incomplete: this run was interrupted' in html
    assert 'id="run-state"' not in render_run_report(store, finished, tmp_path / "done.html").read_text()
    dashboard = render_dashboard(store, tmp_path / "dashboard.html").read_text()
    shown = re.findall(r'<td class="l(?: bad)?">(\w+)</td></tr>', dashboard.split('<table id="runs">')[1])
    assert shown == ["finished", "running", "incomplete", "unfinished"]


def test_a_reused_process_id_does_not_make_a_dead_run_look_alive(tmp_path):
    store = Store(str(tmp_path / "r.db"))
    run = store.start_run()
    # A run started in 2001 by a process with this id: this process, started now, is not that one.
    _set_run(store, run, pid=os.getpid(), started_at=dt.datetime(2001, 1, 1))
    assert store.runs_frame()["state"].tolist() == ["incomplete"]


def test_read_only_opening_refuses_a_missing_file_and_creates_nothing(tmp_path):
    missing = tmp_path / "typo" / "results.db"
    with pytest.raises(RuntimeError, match=f"no results database at {re.escape(str(missing))}"):
        Store(str(missing), must_exist=True)
    assert not missing.parent.exists()


def test_a_sqlite_database_is_in_wal_mode(tmp_path):
    Store(str(tmp_path / "r.db"))
    assert sqlite3.connect(tmp_path / "r.db").execute("PRAGMA journal_mode").fetchone() == ("wal",)


def test_spill_folder_lies_beside_a_sqlite_file(tmp_path):
    assert Store(str(tmp_path / "r.db")).spill_dir == Path(tmp_path / "r.db.spill")
