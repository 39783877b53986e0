"""The results database: the only writer of results. SQLite file by default, any SQLAlchemy URL works
(tested on SQLite and PostgreSQL).

Each cell is committed the moment it finishes, so an interrupted session keeps everything measured so far.
A run is identified by its time, git commit, harness version and label; a baseline is a name given to a run.
Readers (reports, gates, exports) get pandas frames.

A cell is measured for minutes, so storing it must not give up early: SQLite runs in WAL mode (readers never
block the writer) with a long busy timeout, PostgreSQL with a lock timeout of the same length, and a write that
still fails is retried. A cell the database refuses after all that is saved in a spill file
(harness/store/spill.py) and imported later; the error says where. $LITERT_BENCH_STORE_WAIT_S sets the wait
(seconds, per try).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import functools
import json
import os
import socket
import sys
import time
from pathlib import Path

import filelock
import pandas as pd
import sqlalchemy as sa

from harness.measure.metrics import CellResult
from harness.store import liveness, spill
from harness.store.schema import accuracy, baselines, metadata, results, runs, verdicts

WAIT_ENV = "LITERT_BENCH_STORE_WAIT_S"
WAIT_S = 60.0  # one try's wait for a locked database: SQLite's busy timeout, PostgreSQL's lock_timeout
ATTEMPTS = 3  # tries of a write before it fails (a cell's row: before it is spilled)
_SCHEMA_LOCK_KEY = 0x6C697465  # PostgreSQL advisory lock held while creating or upgrading the tables


class StoreError(RuntimeError):
    """The results database cannot be opened or written; the message names it and says what to do."""


class SpilledError(StoreError):
    """A row the database would not take, saved in a spill file instead (`path`, named in the message)."""

    def __init__(self, message: str, path: Path):
        super().__init__(message)
        self.path = path


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def _span(ids: list[int]) -> str:
    return "none" if not ids else f"{ids[0]}" if len(ids) == 1 else f"{ids[0]}–{ids[-1]}"


def url_for(target: str, create: bool = True) -> str:
    """A SQLAlchemy URL, or a plain file path taken as a SQLite database (its folder made unless not `create`)."""
    if "://" in target:
        return target
    path = Path(target).expanduser().resolve()
    if create:
        path.parent.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{path}"


def _wait_s() -> float:
    raw = os.environ.get(WAIT_ENV)
    try:
        return WAIT_S if not raw else float(raw)
    except ValueError:
        raise StoreError(f"${WAIT_ENV}={raw!r} is not a number of seconds") from None


def _engine(url: str, wait_s: float) -> sa.Engine:
    backend = sa.make_url(url).get_backend_name()
    if backend == "sqlite":  # pysqlite's timeout is SQLite's busy timeout: how long a write waits for a lock
        return sa.create_engine(url, connect_args={"timeout": wait_s})
    if backend == "postgresql":  # without lock_timeout an insert behind a stuck lock would wait forever
        return sa.create_engine(url, pool_pre_ping=True,
                                connect_args={"options": f"-c lock_timeout={int(wait_s * 1000)}"})
    return sa.create_engine(url, pool_pre_ping=True)


def _reason(error: BaseException) -> str:
    """The database's own words, one line (SQLAlchemy appends the statement and a link)."""
    orig = getattr(error, "orig", None) or error
    return (str(orig).strip().splitlines() or [type(orig).__name__])[0]


def _retried(method):
    """Retry a write that failed on a locked, busy or unreachable database (OperationalError); each try
    already waited the busy/lock timeout."""

    @functools.wraps(method)
    def retry(self, *args, **kwargs):
        for attempt in range(1, ATTEMPTS + 1):
            try:
                return method(self, *args, **kwargs)
            except sa.exc.OperationalError as e:
                if attempt == ATTEMPTS:
                    raise
                print(f"results database {self.url}: {_reason(e)}; try {attempt + 1} of {ATTEMPTS}",
                      file=sys.stderr)
                time.sleep(attempt)

    return retry


def _plain(value):
    """JSON for a value json cannot write: numpy scalars as Python numbers, the rest as text."""
    return value.item() if hasattr(value, "item") else str(value)


class Store:
    def __init__(self, target: str, must_exist: bool = False, wait_s: float | None = None):
        """Open (and, unless `must_exist`, create) the database at `target`: a SQLAlchemy URL or a SQLite file.
        Read-only commands pass must_exist, so a mistyped path is an error, not a new empty database."""
        url = url_for(target, create=not must_exist)
        if must_exist:
            _require_file(sa.make_url(url), target)
        self.wait_s = _wait_s() if wait_s is None else wait_s
        self.engine = _engine(url, self.wait_s)
        self.url = self.engine.url.render_as_string(hide_password=True)  # for messages and logs: no password
        self.spill_dir = spill.spill_dir(self.engine.url)
        self._runs: dict[int, dict] = {}  # the runs started here: who they are, recorded in a spill file
        try:
            self._create_schema()
        except (sa.exc.DBAPIError, filelock.Timeout) as e:  # a corrupt file, a server down, a lock never freed
            self.engine.dispose()
            raise StoreError(f"cannot open the results database {self.url}: {_reason(e)}") from None

    @property
    def _sqlite_file(self) -> Path | None:
        db = self.engine.url.database
        return Path(db) if self.engine.dialect.name == "sqlite" and db not in (None, "", ":memory:") else None

    @_retried
    def _create_schema(self) -> None:
        """Tables, new columns and WAL mode, made under a lock: sessions opening a fresh database at the same
        moment otherwise collide on CREATE TABLE ("table runs already exists")."""
        if self._schema_current():
            return
        with self._schema_lock(), self.engine.begin() as conn:
            if self.engine.dialect.name == "postgresql":  # held until this transaction ends
                conn.execute(sa.text("SELECT pg_advisory_xact_lock(:key)"), {"key": _SCHEMA_LOCK_KEY})
            metadata.create_all(conn)
            self._add_missing_columns(conn)
            if self._sqlite_file:
                # Persistent in the file. WAL: readers (reports, the dashboard) never block a cell being stored,
                # and a committed cell survives a killed process.
                conn.exec_driver_sql("PRAGMA journal_mode=WAL")

    def _schema_current(self) -> bool:
        """Every table and column there (and SQLite in WAL mode): nothing to create, no lock to take."""
        with self.engine.connect() as conn:
            inspector = sa.inspect(conn)
            for table in metadata.sorted_tables:
                if not inspector.has_table(table.name):
                    return False
                if {c.name for c in table.columns} - {c["name"] for c in inspector.get_columns(table.name)}:
                    return False
            return not self._sqlite_file or conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"

    def _schema_lock(self):
        """A file lock beside a SQLite file; PostgreSQL's advisory lock is taken in the transaction instead."""
        if self._sqlite_file is None:
            return contextlib.nullcontext()
        return filelock.FileLock(f"{self._sqlite_file}.lock", timeout=self.wait_s * ATTEMPTS)

    def _add_missing_columns(self, conn: sa.Connection) -> None:
        """Bring a database made by an older harness up to date: new columns are nullable, added in place."""
        inspector = sa.inspect(conn)
        quote = self.engine.dialect.identifier_preparer  # quotes the way this database does (MySQL: backticks)
        for table in (runs, results, accuracy, verdicts):
            present = {c["name"] for c in inspector.get_columns(table.name)}
            for column in table.columns:
                if column.name not in present:
                    kind = column.type.compile(dialect=self.engine.dialect)
                    conn.execute(sa.text(f"ALTER TABLE {quote.format_table(table)} "
                                         f"ADD COLUMN {quote.format_column(column)} {kind}"))

    @_retried
    def start_run(self, label: str | None = None, argv: list[str] | None = None,
                  git_commit: str | None = None, harness_version: str | None = None) -> int:
        who = {"hostname": socket.gethostname(), "pid": os.getpid()}  # tells running from interrupted
        with self.engine.begin() as conn:
            run_id = conn.execute(runs.insert().values(
                started_at=_now(), label=label, git_commit=git_commit, harness_version=harness_version,
                argv=json.dumps(argv or []), **who,
            )).inserted_primary_key[0]
        self._runs[run_id] = {"id": run_id, **who}
        return run_id

    @_retried
    def finish_run(self, run_id: int) -> None:
        with self.engine.begin() as conn:
            conn.execute(runs.update().where(runs.c.id == run_id).values(finished_at=_now()))

    def add_result(self, run_id: int, result: CellResult, data: dict | None = None) -> int:
        """Store one cell, committed at once; raises SpilledError when it had to go to a spill file."""
        return self._insert_or_spill(results, dict(
            run_id=run_id, created_at=_now(), data=json.dumps(data or {}, default=_plain), **result.row()))

    def _insert_or_spill(self, table: sa.Table, values: dict) -> int:
        """Insert one row; a row the database still refuses after every try is saved in a spill file, and
        SpilledError says where."""
        try:
            return self._insert(table, values)
        except sa.exc.DBAPIError as e:
            run = self._runs.get(values["run_id"], {"id": values["run_id"]})
            try:
                path = spill.write(self.spill_dir, table.name, run, values, e, default=_plain)
            except OSError as lost:
                raise StoreError(f"could not store a {table.name} row of run {values['run_id']} in {self.url} "
                                 f"({_reason(e)}), nor save it in {self.spill_dir} ({lost})") from e
            raise SpilledError(
                f"could not store this cell in {self.url} ({_reason(e)}); its figures are saved in {path}: the "
                f"next `pytest suites/` on this database imports them, or `python -m harness store import "
                f"--results-db {self._target_hint()}`", path) from e

    def _target_hint(self) -> str:
        return str(self._sqlite_file) if self._sqlite_file else "URL"

    @_retried
    def _insert(self, table: sa.Table, values: dict) -> int:
        with self.engine.begin() as conn:  # one transaction per row: committed as soon as it is measured
            return conn.execute(table.insert().values(**values)).inserted_primary_key[0]

    def import_spilled(self, paths: list[Path] | None = None) -> tuple[list[Path], list[str]]:
        """Insert the rows of spill files (every one waiting for this database unless `paths`), deleting each
        file once its row is in. Returns the files imported and one line per file that was not."""
        imported, problems = [], []
        try:
            with spill.lock(self.spill_dir):
                for path in spill.pending(self.spill_dir) if paths is None else paths:
                    try:
                        self._import_one(Path(path))
                    except spill.SpillError as e:
                        problems.append(str(e))
                    else:
                        imported.append(Path(path))
        except sa.exc.DBAPIError as e:
            raise StoreError(f"cannot import spilled cells into {self.url}: {_reason(e)}; {len(imported)} "
                             f"imported, the rest stay in {self.spill_dir}") from None
        return imported, problems

    @_retried
    def _import_one(self, path: Path) -> None:
        doc = spill.read(path)
        table = {"results": results, "accuracy": accuracy}.get(doc.get("table"))
        values = spill.row_values(doc)
        unknown = set(values) - {c.name for c in table.columns} if table is not None else set()
        if table is None or unknown:
            raise spill.SpillError(f"{path}: a row this harness cannot store (table {doc.get('table')!r}, "
                                   f"unknown columns: {', '.join(sorted(unknown)) or 'none'})")
        with self.engine.begin() as conn:
            self._check_run(conn, doc["run"], path)
            if conn.execute(sa.select(table.c.id).where(table.c.spill_id == doc["spill_id"])).first() is None:
                conn.execute(table.insert().values(**values))
        path.unlink()  # only now: an import stopped before this finds the row in and just deletes the file

    def _check_run(self, conn: sa.Connection, run: dict, path: Path) -> None:
        """The spilled row's run must be here, and be the same run (host and process, where the spill knows)."""
        row = conn.execute(sa.select(runs.c.hostname, runs.c.pid).where(runs.c.id == run["id"])).first()
        if row is None:
            raise spill.SpillError(f"{path}: run {run['id']} is not in {self.url}; import it into the database "
                                   f"it was measured for")
        if run.get("pid") is not None and (row.hostname, row.pid) != (run.get("hostname"), run["pid"]):
            raise spill.SpillError(f"{path}: run {run['id']} of {self.url} is another run (host {row.hostname}, "
                                   f"process {row.pid}; the spilled cell's: {run.get('hostname')}, {run['pid']})")

    @_retried
    def add_verdict(self, *, baseline_run: int | None, thresholds: str, passed: bool, baseline_id: int | None,
                    note: str, checks: list[dict], result_id: int | None = None,
                    accuracy_id: int | None = None) -> int:
        """Store the verdict on a speed cell (result_id) or an accuracy row (accuracy_id)."""
        with self.engine.begin() as conn:
            return conn.execute(verdicts.insert().values(
                result_id=result_id, accuracy_id=accuracy_id, baseline_run=baseline_run, thresholds=thresholds,
                created_at=_now(), passed=passed, baseline_result_id=baseline_id, note=note,
                checks=json.dumps(checks),
            )).inserted_primary_key[0]

    def verdicts_frame(self, run_id: int, baseline_run: int | None, thresholds: str,
                       of: str = "results") -> pd.DataFrame:
        """The stored verdicts on a run's speed cells (of="results") or accuracy rows (of="accuracy") for one
        (baseline, thresholds) question, the latest per cell."""
        table, key = (results, verdicts.c.result_id) if of == "results" else (accuracy, verdicts.c.accuracy_id)
        base = verdicts.c.baseline_run.is_(None) if baseline_run is None else verdicts.c.baseline_run == baseline_run
        query = (sa.select(verdicts).join(table, key == table.c.id)
                 .where(table.c.run_id == run_id, base, verdicts.c.thresholds == thresholds)
                 .order_by(verdicts.c.id))
        with self.engine.connect() as conn:
            frame = pd.read_sql(query, conn)
        return frame.drop_duplicates(key.name, keep="last")

    def add_accuracy(self, run_id: int, model: str, quant: str, check: str, metrics: dict,
                     failures: list[str]) -> int:
        """Store one accuracy cell (passed when `failures` is empty), committed at once like a result (and
        spilled like one when the database refuses it)."""
        return self._insert_or_spill(accuracy, dict(
            run_id=run_id, created_at=_now(), model=model, quant=quant, check=check, passed=not failures,
            failures="\n".join(failures), metrics=json.dumps(metrics, default=_plain)))

    def accuracy_frame(self, run_id: int | None = None) -> pd.DataFrame:
        """Accuracy rows (all runs or one) with their run's label, commit and start time; `metrics` stays JSON
        text (json.loads it), since each check has its own figures."""
        query = sa.select(accuracy, runs.c.label, runs.c.git_commit, runs.c.started_at.label("run_started_at"))
        query = query.join(runs)
        if run_id is not None:
            query = query.where(accuracy.c.run_id == run_id)
        with self.engine.connect() as conn:
            return pd.read_sql(query.order_by(accuracy.c.id), conn)

    def results_frame(self, run_id: int | None = None, result_id: int | None = None) -> pd.DataFrame:
        """Result rows (all runs, one run or one result) with their run's label, commit and start time."""
        query = sa.select(results, runs.c.label, runs.c.git_commit, runs.c.started_at.label("run_started_at"))
        query = query.join(runs)
        if run_id is not None:
            query = query.where(results.c.run_id == run_id)
        if result_id is not None:
            query = query.where(results.c.id == result_id)
        with self.engine.connect() as conn:
            return pd.read_sql(query.order_by(results.c.id), conn)

    def runs_frame(self) -> pd.DataFrame:
        """Every run, with its `state`: finished, running, incomplete (interrupted) or unfinished (liveness.py)."""
        with self.engine.connect() as conn:
            frame = pd.read_sql(sa.select(runs).order_by(runs.c.id), conn)
        frame["state"] = [liveness.run_state(r) for r in frame.to_dict("records")]
        return frame

    def latest_run(self) -> int:
        with self.engine.connect() as conn:
            run_id = conn.execute(sa.select(sa.func.max(runs.c.id))).scalar()
        if run_id is None:
            raise LookupError(f"no runs in {self.url}")
        return run_id

    @_retried
    def set_baseline(self, name: str, run_id: int) -> None:
        """Name run_id as baseline `name` (replacing what the name pointed at before)."""
        self.resolve_run(run_id)
        with self.engine.begin() as conn:  # delete + insert: an upsert every SQL database speaks
            conn.execute(baselines.delete().where(baselines.c.name == name))
            conn.execute(baselines.insert().values(name=name, run_id=run_id, set_at=_now()))

    def baselines_frame(self) -> pd.DataFrame:
        with self.engine.connect() as conn:
            return pd.read_sql(sa.select(baselines).order_by(baselines.c.name), conn)

    def resolve_run(self, ref: str | int) -> int:
        """A run id from a reference: a run id, a baseline's name, or a label (its latest run)."""
        with self.engine.connect() as conn:
            if isinstance(ref, int) or str(ref).isdigit():
                if conn.execute(sa.select(runs.c.id).where(runs.c.id == int(ref))).scalar() is not None:
                    return int(ref)
            else:
                found = conn.execute(sa.select(baselines.c.run_id).where(baselines.c.name == ref)).scalar()
                if found is None:
                    found = conn.execute(sa.select(sa.func.max(runs.c.id)).where(runs.c.label == ref)).scalar()
                if found is not None:
                    return found
            names = conn.execute(sa.select(baselines.c.name).order_by(baselines.c.name)).scalars().all()
            labels = conn.execute(sa.select(runs.c.label).distinct().where(runs.c.label.is_not(None))
                                  .order_by(runs.c.label)).scalars().all()
            ids = conn.execute(sa.select(runs.c.id).order_by(runs.c.id)).scalars().all()
        raise LookupError(f"no run {str(ref)!r} in {self.url}; baselines: {', '.join(names) or 'none'}; "
                          f"labels: {', '.join(labels) or 'none'}; run ids: {_span(ids)}")

    def close(self) -> None:
        self.engine.dispose()


def pending_spills(target: str) -> list[Path]:
    """The spill files waiting for the database at `target`, found without opening (or creating) it."""
    return spill.pending(spill.spill_dir(sa.make_url(url_for(target, create=False))))


def _require_file(url: sa.URL, target: str) -> None:
    """A SQLite database that must already exist: reading a mistyped path must not create an empty one."""
    file = url.database if url.get_backend_name() == "sqlite" and url.database != ":memory:" else None
    if file and not Path(file).is_file():
        given = "" if target == file else f" (from {target!r})"
        raise StoreError(f"no results database at {file}{given}: give --results-db the file `pytest suites/` "
                         f"wrote, or a SQLAlchemy URL")
