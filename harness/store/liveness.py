"""Whether a run that has no finish time is still running or was interrupted (killed, crashed, power lost).

A session finishes its run when it ends; one killed with SIGKILL never does. The run row keeps the host and
process id of the session that started it, so a reader on the same host can ask whether that process is still
alive. A process id can be reused: on Linux the process's start time must also not be later than the run's.
"""

from __future__ import annotations

import os
import socket
from pathlib import Path

import pandas as pd

FINISHED, RUNNING, INCOMPLETE, UNKNOWN = "finished", "running", "incomplete", "unfinished"
_CLOCK_SLACK_S = 5.0  # the run row is written a moment after the process started; clocks round


def _missing(value) -> bool:
    return value is None or value is pd.NaT or (isinstance(value, float) and value != value)


def _epoch(value) -> float:
    """A stored time as seconds since the epoch: SQLite gives it back naive (stored as UTC)."""
    ts = pd.Timestamp(value)
    return (ts if ts.tzinfo else ts.tz_localize("UTC")).timestamp()


def _process_start(pid: int) -> float | None:
    """When process `pid` started (seconds since the epoch), from /proc; None where /proc cannot tell."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        boot = next(float(line.split()[1]) for line in Path("/proc/stat").read_text().splitlines()
                    if line.startswith("btime "))
    except (OSError, StopIteration, IndexError, ValueError):
        return None
    return boot + int(fields[19]) / os.sysconf("SC_CLK_TCK")  # field 22 of stat; two are before the ")"


def alive(pid: int, started_at) -> bool:
    """Whether process `pid` of this host is the one that started a run at `started_at`."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process: it exists
        pass
    start = _process_start(pid)
    return start is None or start <= _epoch(started_at) + _CLOCK_SLACK_S


def run_state(run: dict, host: str | None = None) -> str:
    """finished, running, incomplete (its session is gone), or unfinished (another host's, or a run stored by
    a harness that did not record its process: cannot tell running from interrupted)."""
    if not _missing(run.get("finished_at")):
        return FINISHED
    pid = run.get("pid")
    if _missing(pid) or run.get("hostname") != (host or socket.gethostname()):
        return UNKNOWN
    return RUNNING if alive(int(pid), run["started_at"]) else INCOMPLETE
