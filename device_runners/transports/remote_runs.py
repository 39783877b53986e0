"""How a run lives on a device reached through a POSIX shell (adb, SSH): the shell line that starts a runner in
a process group of its own and records the group's id, the line that kills such groups, and what an earlier
session left behind that a clean may remove. One copy for every shell transport, so they keep the same
guarantees.

A run's shell line (`run_line`): the connection's end (adbd's SIGHUP to the shell, a dropped SSH channel)
must not be what stops the program, so it runs in a session of its own (setsid), whose id, its process
group's, it writes to N.pgid before it starts: the transport's kill reads it there. The shell removes N.pgid
once the program has ended, so a N.pgid names a group that may still be running. setsid is a background job,
a child and never a process group leader, so it needs no fork (a setsid that forks returns before the program
ends, unless given -w, which old toyboxes lack). N.cancel, written by the kill before it reads N.pgid, stops
a program that had not written its N.pgid yet: the program writes N.pgid before it looks for N.cancel, so one
of the two sees the other.
"""

from __future__ import annotations

import os
import posixpath
import re
import shlex
import socket
from collections.abc import Callable, Sequence

from device_runners.transports.base import Job, cpu_mask

STALE_PART_S = 600  # a .part untouched this long is a push that was cut off
STALE_RUN_S = 86400  # a working folder of another machine untouched this long belongs to no live session


def run_line(workdir: str, job: Job, launcher: Sequence[str] = (), echo_output: bool = False) -> str:
    """The shell line of a run in `workdir`: under the device's `timeout -s KILL`, pinned with taskset, in a
    process group of its own; stdout and stderr go to N.stdout and N.stderr there (and are printed after the
    run ends with `echo_output`, so a runner never blocks on a slow channel)."""
    n = job.number
    # `timeout` signals only its child, so it sits right above the program (taskset execs it).
    command = ["timeout", "-s", "KILL", f"{job.timeout:g}", *(["taskset", cpu_mask(job.cpus)] if job.cpus else []),
               *launcher, *job.argv]
    # The program's libraries are staged next to it; LD_LIBRARY_PATH names that folder for linkers that ignore
    # RUNPATH $ORIGIN.
    program = job.argv[0]
    env = f"LD_LIBRARY_PATH={shlex.quote(posixpath.dirname(program))} " if "/" in program else ""
    start = f'echo $$ >{n}.pgid; [ -e {n}.cancel ] && exit 137; exec "$@"'
    echo = f"cat {n}.stdout; cat {n}.stderr >&2; " if echo_output else ""
    return (f"cd {shlex.quote(workdir)} || exit; {env}setsid sh -c {shlex.quote(start)} sh {shlex.join(command)} "
            f">{n}.stdout 2>{n}.stderr & wait $!; status=$?; rm -f {n}.pgid; {echo}exit $status")


def run_folder_name(stamp: str, token: str) -> str:
    """A session's working folder: its time, this machine and process (so a clean can tell whether the session
    is gone), and a random token."""
    return f"run-{stamp}-{this_host()}-{os.getpid()}-{token}"


def stop_runs(folder: str, runs: str) -> str:
    """Shell, in a subshell: SIGKILL the process group of each run in `folder` matching `runs` (a run's number,
    or "*"). A run's group id is in N.pgid while it may be going (run_line). A group whose leader works in
    another folder has taken the id of a run of ours that ended long ago, and is left alone (where /proc does
    not tell, the kill goes ahead: kill itself refuses other users' processes). One run is also marked
    cancelled, so that it does not start after this looked for its id."""
    if runs != "*" and not runs.isdigit():
        raise ValueError(f"not a run number: {runs!r}")
    cancel = f"touch {runs}.cancel; " if runs != "*" else ""
    return (f"(cd {shlex.quote(folder)} 2>/dev/null || exit 0; here=$(pwd -P); {cancel}"
            f'for f in {runs}.pgid; do pg=$(cat "$f" 2>/dev/null); case "$pg" in ""|*[!0-9]*) continue;; esac; '
            'cwd=$(readlink /proc/$pg/cwd 2>/dev/null); '
            'if [ -z "$cwd" ] || [ "$cwd" = "$here" ]; then kill -9 -$pg 2>/dev/null; fi; rm -f "$f"; done; true)')


RUN_FOLDER = re.compile(r"run-\d{8}-\d{6}-(?P<host>[A-Za-z0-9_.]+)-(?P<pid>\d+)-[0-9a-f]{6}")


def plan_clean(root: str, now: int, entries: Sequence[tuple[int, str]], keep: int | None,
               older_than_days: float | None, this_host: str, alive: Callable[[int], bool]) -> dict[str, list[str]]:
    """Which of `entries` ((mtime, path) under `root`, `now` on the device's clock) a clean removes, by kind:
    working folders of sessions that are gone, pushes cut off, and cache folders past `keep` (most recently
    staged first) or not staged for `older_than_days`."""
    runs, parts, cache = [], [], []
    for mtime, path in entries:
        folder, name = posixpath.split(path)
        if folder == root and name.startswith("run-"):
            if session_gone(name, now - mtime, this_host, alive):
                runs.append(path)
        elif name.endswith(".part"):
            if now - mtime > STALE_PART_S:
                parts.append(path)
        elif folder == f"{root}/cache":
            cache.append((mtime, path))
    cache.sort(reverse=True)
    trimmed = [path for rank, (mtime, path) in enumerate(cache)
               if (keep is not None and rank >= keep)
               or (older_than_days is not None and now - mtime > older_than_days * 86400)]
    return {"runs": sorted(runs), "parts": sorted(parts), "cache": sorted(trimmed)}


def session_gone(folder_name: str, age_s: float, this_host: str, alive: Callable[[int], bool]) -> bool:
    """A working folder of this machine belongs to a session that is gone when its process is; one of another
    machine (or named before folders named their owner), when nothing in it has changed for STALE_RUN_S."""
    owner = RUN_FOLDER.fullmatch(folder_name)
    if owner and owner["host"] == this_host:
        return not alive(int(owner["pid"]))
    return age_s > STALE_RUN_S


def this_host() -> str:
    """This machine's name as a working folder spells it: no "-", which separates the name's fields."""
    return re.sub(r"[^A-Za-z0-9.]", "_", socket.gethostname()) or "host"


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True


def mib(n: int) -> str:
    """A size in messages about pushes and free space."""
    return f"{n / 2**20:.1f} MiB"
