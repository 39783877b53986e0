"""The results database's tables. The `results` columns come from the cell result's field list
(harness/measure/metrics.py): a new field there is a new column here, added in place to older databases."""

from __future__ import annotations

import sqlalchemy as sa

from harness.measure.metrics import FIELDS, python_type

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
    # The session's process on `hostname`: a run with no finish time whose process is gone was interrupted
    # (harness/store/liveness.py), one whose process lives is still running.
    sa.Column("pid", sa.Integer),
)

_SQL_TYPES = {str: sa.Text, int: sa.BigInteger, float: sa.Float, bool: sa.Boolean}
_REQUIRED = {"model", "quant", "device", "status"}  # a row without these could not be named or judged


def _result_column(field) -> sa.Column:
    return sa.Column(field.name, _SQL_TYPES[python_type(field)], nullable=field.name not in _REQUIRED)


results = sa.Table(
    "results", metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("run_id", sa.Integer, sa.ForeignKey("runs.id"), nullable=False, index=True),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    *(_result_column(f) for f in FIELDS),
    sa.Column("data", sa.Text),  # JSON: every sample, the runner's report, device facts, command
    sa.Column("spill_id", sa.String(32)),  # set when imported from a spill file (harness/store/spill.py)
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
    sa.Column("check", sa.String(200), nullable=False),  # drift | reauthoring | conversion | agreement:DEVICE
    sa.Column("passed", sa.Boolean, nullable=False),
    sa.Column("failures", sa.Text),  # newline-separated broken bounds; empty when passed
    sa.Column("metrics", sa.Text),  # JSON: the check's figures
    sa.Column("spill_id", sa.String(32)),  # set when imported from a spill file
)

_COLUMNS = {c.name for c in results.columns} - {"id", "run_id", "created_at", "data", "spill_id"}



# The release gate's verdict on a stored cell, computed once when the cell is judged and read by every summary,
# report and `harness gate` after it. One cell can be judged against several baselines or threshold files: the
# (cell, baseline run, thresholds digest) triple names one verdict.
verdicts = sa.Table(
    "verdicts", metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("result_id", sa.Integer, sa.ForeignKey("results.id"), index=True),  # a speed cell's verdict,
    sa.Column("accuracy_id", sa.Integer, sa.ForeignKey("accuracy.id"), index=True),  # or an accuracy row's
    sa.Column("baseline_run", sa.Integer),  # None: judged on limits alone
    sa.Column("thresholds", sa.String(64), nullable=False),  # digest of the gate's rules
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("passed", sa.Boolean, nullable=False),
    sa.Column("baseline_result_id", sa.Integer),
    sa.Column("note", sa.Text),
    sa.Column("checks", sa.Text),  # JSON: every check with its figures and comparison
)
