"""Spill files: a measured cell that the results database would not take (locked past every retry, server
down, disk full) is written to a JSON file instead of being dropped, and imported into the database later (the
next `pytest suites/` session does it at its start, or `python -m harness store import`).

Where: a SQLite database's spill files lie beside it, in `<file>.spill/`; a server database's under the cache
root (`spill/<digest of its URL>/`), since there is no file to put them beside. One file per cell, written to a
temporary name and renamed, so a reader never sees half of one and concurrent writers never share one.

Each file carries a `spill_id`, stored with the row it becomes: an import that stopped between inserting a row
and deleting its file (a crash, a kill) finds the row already there on the next try and only deletes the file.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
import tempfile
import uuid
from pathlib import Path

import filelock
import sqlalchemy as sa

from harness.common.files import cache_root

FORMAT = "litert-bench spill 1"


class SpillError(Exception):
    """A spill file that cannot be imported (unreadable, or for a run this database does not have)."""


def spill_dir(url: sa.URL) -> Path:
    """Where the spill files of the database at `url` go."""
    if url.get_backend_name() == "sqlite" and url.database not in (None, "", ":memory:"):
        path = Path(url.database)
        return path.with_name(path.name + ".spill")
    shown = url.render_as_string(hide_password=True)  # the digest must not change with the password
    return cache_root() / "spill" / hashlib.sha256(shown.encode()).hexdigest()[:16]


def pending(folder: Path) -> list[Path]:
    """The spill files waiting in `folder`, oldest first (their names start with the time they were written)."""
    return sorted(folder.glob("*.json")) if folder.is_dir() else []


def write(folder: Path, table: str, run: dict, values: dict, error: BaseException, default=str) -> Path:
    """Save one row that could not be inserted into `table`; returns the file. `run` names the run it belongs to
    ({"id", "hostname", "pid"}, the last two where known) so an import cannot attach it to another run;
    `default` writes what json cannot."""
    spill_id = uuid.uuid4().hex
    doc = {"format": FORMAT, "spill_id": spill_id, "table": table, "run": run,
           "values": {k: v.isoformat() if isinstance(v, dt.datetime) else v for k, v in values.items()},
           "error": f"{type(error).__name__}: {error}".splitlines()[0]}
    folder.mkdir(parents=True, exist_ok=True)
    stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%S%f")
    path = folder / f"{stamp}-run{run['id']}-{table}-{spill_id[:8]}.json"
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=".", suffix=".tmp")  # same folder: os.replace stays atomic
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump(doc, f, indent=1, default=default)
            f.flush()
            os.fsync(f.fileno())  # the figures must survive the crash that may follow
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def read(path: Path) -> dict:
    try:
        doc = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise SpillError(f"{path}: not a readable spill file: {e}") from None
    if not isinstance(doc, dict) or doc.get("format") != FORMAT:
        raise SpillError(f"{path}: not a spill file of this harness (no format {FORMAT!r})")
    return doc


def lock(folder: Path) -> filelock.FileLock:
    """Held while importing, so two sessions starting at once do not both import the same files."""
    folder.mkdir(parents=True, exist_ok=True)
    return filelock.FileLock(str(folder / ".import.lock"))


def row_values(doc: dict) -> dict:
    """The spilled row as insert values: times back to datetimes, the spill id added."""
    values = dict(doc["values"])
    values["created_at"] = dt.datetime.fromisoformat(values["created_at"])
    return values | {"spill_id": doc["spill_id"]}
