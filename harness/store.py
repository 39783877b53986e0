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

metadata = sa.MetaData()

runs = sa.Table(
    "runs", metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("finished_at", sa.DateTime(timezone=True)),
    sa.Column("label", sa.String(200)),
    sa.Column("git_commit", sa.String(64)),
    sa.Column("harness_version", sa.String(32)),
    sa.Column("hostname", sa.String(200)),
    sa.Column("argv", sa.Text),
)

results = sa.Table(
    "results", metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("run_id", sa.Integer, sa.ForeignKey("runs.id"), nullable=False, index=True),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("model", sa.String(200), nullable=False),
    sa.Column("quant", sa.String(64), nullable=False),
    sa.Column("device", sa.String(200), nullable=False),
    sa.Column("prefill_len", sa.Integer),
    sa.Column("decode_len", sa.Integer),
    sa.Column("depth", sa.Integer),
    sa.Column("threads", sa.Integer),
    sa.Column("cpus", sa.String(200)),
    sa.Column("status", sa.String(16), nullable=False),  # ok | failed
    sa.Column("error", sa.Text),
    sa.Column("prefill_tok_s", sa.Float),
    sa.Column("decode_tok_s", sa.Float),
    sa.Column("ttft_ms", sa.Float),
    sa.Column("init_ms", sa.Float),
    sa.Column("init_warm_ms", sa.Float),
    sa.Column("peak_rss_mb", sa.Float),
    sa.Column("prefill_cv_pct", sa.Float),
    sa.Column("decode_cv_pct", sa.Float),
    sa.Column("decode_ci_low", sa.Float),
    sa.Column("decode_ci_high", sa.Float),
    sa.Column("stable", sa.Boolean),
    sa.Column("warnings", sa.Text),  # newline-separated: throttling, frequency drops, wide spread
    sa.Column("bandwidth_gb_s", sa.Float),
    sa.Column("decode_bandwidth_share", sa.Float),
    sa.Column("prefill_gflop_s", sa.Float),
    sa.Column("artifact_sha256", sa.String(64)),
    sa.Column("artifact_bytes", sa.BigInteger),
    sa.Column("data", sa.Text),  # JSON: every sample, the runner's document, device facts, command
)

baselines = sa.Table(
    "baselines", metadata,
    sa.Column("name", sa.String(200), primary_key=True),
    sa.Column("run_id", sa.Integer, sa.ForeignKey("runs.id"), nullable=False),
    sa.Column("set_at", sa.DateTime(timezone=True), nullable=False),
)

# Accuracy checks (quantization drift, reauthoring, conversion): one row per (model, quant, check) cell, its
# figures as JSON since each check has its own. Beside `results`, not in it: these cells have no device or
# lengths, and a speed cell's columns would all be empty here.
accuracy = sa.Table(
    "accuracy", metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("run_id", sa.Integer, sa.ForeignKey("runs.id"), nullable=False, index=True),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("model", sa.String(200), nullable=False),
    sa.Column("quant", sa.String(64), nullable=False),
    sa.Column("check", sa.String(64), nullable=False),  # drift | reauthoring | conversion | ...
    sa.Column("passed", sa.Boolean, nullable=False),
    sa.Column("failures", sa.Text),  # newline-separated broken bounds; empty when passed
    sa.Column("metrics", sa.Text),  # JSON: the check's figures
)

_COLUMNS = {c.name for c in results.columns} - {"id", "run_id", "created_at", "data"}


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
        for table in (runs, results, accuracy):
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

    def add_result(self, run_id: int, row: dict, data: dict | None = None) -> int:
        unknown = set(row) - _COLUMNS
        if unknown:
            raise ValueError(f"unknown result columns: {sorted(unknown)}")
        with self.engine.begin() as conn:  # one transaction per cell: committed as soon as it is measured
            return conn.execute(results.insert().values(
                run_id=run_id, created_at=_now(), data=json.dumps(data or {}, default=str), **row,
            )).inserted_primary_key[0]

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
