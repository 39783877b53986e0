"""The results database: the only writer of results. SQLite file by default, any SQLAlchemy URL works
(tested on SQLite and PostgreSQL).

Each cell is committed the moment it finishes, so an interrupted session keeps everything measured so far.
A run is identified by its time, git commit, harness version and label; a baseline is a name given to a run.
Readers (reports, gates, exports) get pandas frames.
"""

from __future__ import annotations

import datetime as dt
import json
import socket
from pathlib import Path

import pandas as pd
import sqlalchemy as sa

from harness.measure.metrics import CellResult
from harness.store.schema import accuracy, baselines, metadata, results, runs, verdicts


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def _span(ids: list[int]) -> str:
    return "none" if not ids else f"{ids[0]}" if len(ids) == 1 else f"{ids[0]}–{ids[-1]}"


def url_for(target: str) -> str:
    """A SQLAlchemy URL, or a plain file path taken as a SQLite database."""
    if "://" in target:
        return target
    path = Path(target).expanduser().resolve()
    path.parent.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{path}"


class Store:
    def __init__(self, target: str):
        self.engine = sa.create_engine(url_for(target))
        self.url = self.engine.url.render_as_string(hide_password=True)  # for messages and logs: no password
        metadata.create_all(self.engine)
        self._add_missing_columns()

    def _add_missing_columns(self) -> None:
        """Bring a database made by an older harness up to date: new columns are nullable, added in place."""
        inspector = sa.inspect(self.engine)
        quote = self.engine.dialect.identifier_preparer  # quotes the way this database does (MySQL: backticks)
        for table in (runs, results, accuracy, verdicts):
            present = {c["name"] for c in inspector.get_columns(table.name)}
            with self.engine.begin() as conn:
                for column in table.columns:
                    if column.name not in present:
                        kind = column.type.compile(dialect=self.engine.dialect)
                        conn.execute(sa.text(f"ALTER TABLE {quote.format_table(table)} "
                                             f"ADD COLUMN {quote.format_column(column)} {kind}"))

    def start_run(self, label: str | None = None, argv: list[str] | None = None,
                  git_commit: str | None = None, harness_version: str | None = None) -> int:
        with self.engine.begin() as conn:
            return conn.execute(runs.insert().values(
                started_at=_now(), label=label, git_commit=git_commit, harness_version=harness_version,
                hostname=socket.gethostname(), argv=json.dumps(argv or []),
            )).inserted_primary_key[0]

    def finish_run(self, run_id: int) -> None:
        with self.engine.begin() as conn:
            conn.execute(runs.update().where(runs.c.id == run_id).values(finished_at=_now()))

    def add_result(self, run_id: int, result: CellResult, data: dict | None = None) -> int:
        with self.engine.begin() as conn:  # one transaction per cell: committed as soon as it is measured
            return conn.execute(results.insert().values(
                run_id=run_id, created_at=_now(), data=json.dumps(data or {}, default=str), **result.row(),
            )).inserted_primary_key[0]

    def add_verdict(self, result_id: int, baseline_run: int | None, thresholds: str, passed: bool,
                    baseline_result_id: int | None, note: str, checks: list[dict]) -> int:
        with self.engine.begin() as conn:
            return conn.execute(verdicts.insert().values(
                result_id=result_id, baseline_run=baseline_run, thresholds=thresholds, created_at=_now(),
                passed=passed, baseline_result_id=baseline_result_id, note=note, checks=json.dumps(checks),
            )).inserted_primary_key[0]

    def verdicts_frame(self, run_id: int, baseline_run: int | None, thresholds: str) -> pd.DataFrame:
        """The stored verdicts on a run's cells for one (baseline, thresholds) question, the latest per cell."""
        base = verdicts.c.baseline_run.is_(None) if baseline_run is None else verdicts.c.baseline_run == baseline_run
        query = (sa.select(verdicts).join(results, verdicts.c.result_id == results.c.id)
                 .where(results.c.run_id == run_id, base, verdicts.c.thresholds == thresholds)
                 .order_by(verdicts.c.id))
        with self.engine.connect() as conn:
            frame = pd.read_sql(query, conn)
        return frame.drop_duplicates("result_id", keep="last")

    def add_accuracy(self, run_id: int, model: str, quant: str, check: str, metrics: dict,
                     failures: list[str]) -> int:
        """Store one accuracy cell (passed when `failures` is empty), committed at once like a result."""
        with self.engine.begin() as conn:
            return conn.execute(accuracy.insert().values(
                run_id=run_id, created_at=_now(), model=model, quant=quant, check=check, passed=not failures,
                failures="\n".join(failures), metrics=json.dumps(metrics, default=str),
            )).inserted_primary_key[0]

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
        with self.engine.connect() as conn:
            return pd.read_sql(sa.select(runs).order_by(runs.c.id), conn)

    def latest_run(self) -> int:
        with self.engine.connect() as conn:
            run_id = conn.execute(sa.select(sa.func.max(runs.c.id))).scalar()
        if run_id is None:
            raise LookupError(f"no runs in {self.url}")
        return run_id

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
