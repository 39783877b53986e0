"""`pytest suites/` against a database that misbehaves, end to end: real conversion, the real runner (wrapped
to hold a cell or to lock the database while it runs), real SQLite, the reports.

- another process holds the database's write lock for 20 s while a cell is stored: no cell is lost;
- the database refuses a cell past every retry: the cell fails naming its spill file, the next session imports it;
- the session is killed with SIGKILL mid-run: the cells finished before are stored, the run is marked incomplete;
- the report folder cannot be written: one line saying so, the figures stored.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

from harness.store.store import Store, pending_spills
from tests.conftest import REPO, run_cli

SMALL = ["--models", "tinyllama", "--quant", "none,dynamic_int8", "--prefill", "32", "--decode", "16",
         "--threads", "2", "--reps", "2"]

# Holds SQLite's write lock (BEGIN EXCLUSIVE) for SECONDS, or until a spill file appears in UNTIL_DIR; writes
# "locked" when it holds it and "released <epoch>" when it lets go.
LOCKER = """
import pathlib, sqlite3, sys, time
db, seconds, log = sys.argv[1], float(sys.argv[2]), pathlib.Path(sys.argv[3])
until = pathlib.Path(sys.argv[4]) if len(sys.argv) > 4 else None
conn = sqlite3.connect(db, isolation_level=None)
conn.execute("BEGIN EXCLUSIVE")
log.write_text("locked\\n")
end = time.monotonic() + seconds
while time.monotonic() < end and not (until and until.is_dir() and any(until.glob("*.json"))):
    time.sleep(0.1)
conn.execute("ROLLBACK")
with log.open("a") as f:
    f.write(f"released {time.time()}\\n")
"""


def _args(tmp_path: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "pytest", "suites/test_performance.py", "-p", "no:cacheprovider", *SMALL,
            "--results-db", str(tmp_path / "results.db"), "--report", str(tmp_path / "report"), *extra]


def _env(tmp_path: Path, **extra: str) -> dict:
    return os.environ | {"GITHUB_STEP_SUMMARY": str(tmp_path / "step-summary.md")} | extra


def run_suites(tmp_path: Path, *extra: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(_args(tmp_path, *extra), cwd=REPO, capture_output=True, text=True, timeout=1200,
                          env=env or _env(tmp_path))


def _runner(tmp_path: Path, before_int8: str, after_int8: str | None = None) -> Path:
    """The real runner, with `before_int8` run first in the dynamic_int8 cell (and `after_int8` after it)."""
    from device_runners.runners.native import build_runner

    real = build_runner("host").binary
    int8 = before_int8 if after_int8 is None else f'{before_int8}; "{real}" "$@"; rc=$?; {after_int8}; exit $rc'
    script = tmp_path / "llm_runner"
    script.write_text(f'#!/bin/bash\ncase "$*" in *dynamic_int8*) {int8} ;; esac\nexec "{real}" "$@"\n')
    script.chmod(0o755)
    return script


def _lock_first(tmp_path: Path, seconds: float, until: Path | None = None) -> str:
    """Shell for _runner: once per session, start a process holding the database's lock and wait until it
    holds it. Its output goes to a file: the runner's pipes must close when the runner ends."""
    (tmp_path / "locker.py").write_text(LOCKER)
    log = tmp_path / "locker.log"
    args = f'"{tmp_path / "results.db"}" {seconds} "{log}"' + (f' "{until}"' if until else "")
    return (f'if [ ! -e "{log}" ]; then touch "{log}"; "{sys.executable}" "{tmp_path / "locker.py"}" {args} '
            f'</dev/null >"{tmp_path / "locker.out"}" 2>&1 & '
            f'for _ in $(seq 600); do grep -q locked "{log}" && break; sleep 0.1; done; fi')


def _cells(tmp_path: Path) -> dict[str, dict]:
    frame = Store(str(tmp_path / "results.db")).results_frame()
    return {rec["quant"]: rec for rec in frame.to_dict("records")}


def test_a_cell_stored_while_another_process_holds_the_lock_for_20_s_is_kept(tmp_path):
    done = tmp_path / "runner-done"
    runner = _runner(tmp_path, _lock_first(tmp_path, 20), after_int8=f'date +%s.%N > "{done}"')
    out = run_suites(tmp_path, "--runner-bin", str(runner))
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    released = float((tmp_path / "locker.log").read_text().split("released ")[1])
    assert float(done.read_text()) < released  # the cell was measured while the lock was held: it had to wait
    cells = _cells(tmp_path)
    assert sorted(cells) == ["dynamic_int8", "none"] and all(c["status"] == "ok" for c in cells.values())
    assert cells["dynamic_int8"]["decode_tok_s"] > 0


def test_a_cell_the_database_refuses_fails_naming_its_spill_file_and_the_next_session_imports_it(tmp_path):
    spills = tmp_path / "results.db.spill"
    runner = _runner(tmp_path, _lock_first(tmp_path, 300, until=spills))
    out = run_suites(tmp_path, "--runner-bin", str(runner), env=_env(tmp_path, LITERT_BENCH_STORE_WAIT_S="1"))
    assert out.returncode == 1, out.stdout[-3000:] + out.stderr[-3000:]
    [spilled] = pending_spills(str(tmp_path / "results.db"))
    assert f"its figures are saved in {spilled}" in out.stdout
    assert list(_cells(tmp_path)) == ["none"]  # the lock is gone, the cell is not in yet

    again = run_suites(tmp_path, "--quant", "none")
    assert again.returncode == 0, again.stdout[-3000:] + again.stderr[-3000:]
    assert "imported 1 cells spilled by an earlier session" in again.stdout
    cells = Store(str(tmp_path / "results.db")).results_frame(1).set_index("quant")
    assert cells.loc["dynamic_int8", "status"] == "ok" and cells.loc["dynamic_int8", "decode_tok_s"] > 0
    assert pending_spills(str(tmp_path / "results.db")) == []


def _wait_for_a_stored_cell(db: Path, proc: subprocess.Popen, timeout: float = 900) -> None:
    end = time.monotonic() + timeout
    while time.monotonic() < end and proc.poll() is None:
        if db.exists():
            try:
                with contextlib.closing(sqlite3.connect(f"file:{db}?mode=ro", uri=True)) as conn:
                    if conn.execute("SELECT count(*) FROM results").fetchone()[0]:
                        return
            except sqlite3.OperationalError:  # the tables are being made
                pass
        time.sleep(0.5)
    raise AssertionError(f"no cell stored (session exit {proc.poll()}); see {db.parent / 'session.log'}")


def test_kill_9_mid_run_keeps_the_finished_cells_and_marks_the_run_incomplete(tmp_path, marker):
    runner = _runner(tmp_path, f"exec -a {marker} sleep 900")
    with open(tmp_path / "session.log", "w") as log:
        session = subprocess.Popen(_args(tmp_path, "--runner-bin", str(runner)), cwd=REPO, stdout=log,
                                   stderr=subprocess.STDOUT, env=_env(tmp_path), start_new_session=True)
    try:
        _wait_for_a_stored_cell(tmp_path / "results.db", session)
        os.kill(session.pid, signal.SIGKILL)  # the pytest process only, as `kill -9 PID` does
        session.wait()
    finally:
        if session.poll() is None:
            session.kill()
        session.wait()
        with contextlib.suppress(ProcessLookupError):  # its children (a conversion worker), in its own group
            os.killpg(session.pid, signal.SIGKILL)
        # The held runner, in a session of its own, is the `marker` fixture's to kill.

    again = run_suites(tmp_path, "--quant", "none")
    assert again.returncode == 0, again.stdout[-3000:] + again.stderr[-3000:]
    store = Store(str(tmp_path / "results.db"))
    killed = store.results_frame(1)
    assert list(killed["quant"]) == ["none"] and killed["decode_tok_s"][0] > 0  # what finished before the kill
    assert store.runs_frame().set_index("id")["state"].to_dict() == {1: "incomplete", 2: "finished"}
    dashboard = (tmp_path / "report" / "dashboard.html").read_text()
    assert '<td class="l bad">incomplete</td>' in dashboard.split('<table id="runs">')[1]
    out = run_cli("report", "--results-db", str(tmp_path / "results.db"), "--run", "1", "--out", str(tmp_path / "r1"),
                  timeout=300)
    assert out.returncode == 0, out.stderr
    assert "Incomplete: this run was interrupted" in (tmp_path / "r1" / "run-1.html").read_text()


def test_a_report_folder_under_a_file_is_a_usage_error_before_measuring(tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("in the way\n")
    out = run_suites(tmp_path, "--report", str(blocker / "report"))
    assert out.returncode == 4, out.stdout[-3000:] + out.stderr[-3000:]
    assert f"--report {blocker / 'report'}: cannot make the report folder there, {blocker} is a file" in out.stderr
    assert not (tmp_path / "results.db").exists()


def test_a_report_folder_lost_during_the_run_is_one_line_and_the_figures_stay(tmp_path):
    report = tmp_path / "report"
    runner = _runner(tmp_path, f'rm -rf "{report}"; echo "in the way" > "{report}"')  # the folder becomes a file
    out = run_suites(tmp_path, "--runner-bin", str(runner))
    assert out.returncode == 1, out.stdout[-3000:] + out.stderr[-3000:]
    assert "INTERNALERROR" not in out.stdout + out.stderr
    errors = [line for line in out.stdout.splitlines() if line.startswith("error:")]
    assert errors == [f"error: cannot write the report run-1.html in folder {report}: {report} is a file, not a "
                      f"folder; the run's results are stored in sqlite:///{tmp_path / 'results.db'}"]
    cells = _cells(tmp_path)
    assert sorted(cells) == ["dynamic_int8", "none"] and all(c["status"] == "ok" for c in cells.values())
