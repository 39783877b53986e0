"""The apps the test iPhone runs: any installed app, launched through DVT, is the iOS runner app of
ios_contract.py played by this host's build of the native runner.

A launch reads Documents/request.json ({"id": RUN_ID, "argv": [...]}) and runs `RUNNER ARGV...` with Documents as
its working folder (the argv's paths are relative to it), its stdout going to Documents/result.json and its
stderr to Documents/stderr.txt; when it exits, Documents/done gets `CODE RUN_ID`, as the app writes it last. An
app that dies by a signal the host did not send gets a crash report (crash_reports.py) and no `done`. A request
the app cannot read ends the launch as a usage error would: stderr.txt says why, `done` has code 2.

ROOT/faults.json, read at each launch, makes the app misbehave: {"app": "crash"} aborts it shortly after it
starts (a crash report follows), {"app": "hang"} makes it sleep until it is killed.

The pid a launch returns is the child's real pid. Each app runs in a session (process group) of its own, which
killPid and signals reach as a whole; the fake's death kills it (PR_SET_PDEATHSIG, set from one long-lived
thread, because Linux ties that signal to the thread that forked), and the fake's SIGTERM kills every app first.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import ctypes
import dataclasses
import functools
import json
import os
import resource
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from device_runners.fake_ios import crash_reports
from device_runners.fake_ios.identity import Identity
from device_runners.fake_ios.installation import App, InstalledApps
from device_runners.fake_ios.layout import Layout
from device_runners.transports import ios_contract

FAULTS = ("crash", "hang")
_PR_SET_PDEATHSIG = 1
_CRASH_AFTER_S = 0.2  # the crash fault lets the app start (stdout/stderr exist) before it aborts
try:
    _prctl: Any = ctypes.CDLL(None, use_errno=True).prctl  # looked up now: the forked child only calls it
except (OSError, AttributeError):  # not Linux: the fake's SIGTERM still kills its apps, its SIGKILL does not
    _prctl = None


class LaunchError(Exception):
    """What DVT answers a failed launch with (an NSError's description)."""


@dataclasses.dataclass
class RunningApp:
    app: App
    pid: int
    proc: subprocess.Popen[bytes]
    started: float
    killed_by_host: bool = False  # killPid/sendSignal/KillExisting/uninstall: no crash report, as on iOS


class AppRunner:
    def __init__(self, runner: Path, apps: InstalledApps, layout: Layout, identity: Identity,
                 log: Callable[[str], None]):
        self.runner, self.apps, self.layout, self.identity, self._log = Path(runner), apps, layout, identity, log
        self._running: dict[int, RunningApp] = {}
        self._lock = threading.Lock()
        # Every app is forked from this one thread, which lives as long as the fake: a PR_SET_PDEATHSIG child is
        # killed when the thread that forked it ends, not the process.
        self._spawner = concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="app-spawner")
        apps.before_change = self.terminate_bundle

    # what DVT asks
    def launch(self, bundle_id: str, environment: dict[str, Any], options: dict[str, Any]) -> int:
        app = self.apps.get(bundle_id)
        if app is None:
            raise LaunchError(f"The operation couldn't be completed. Application info provider (FBSApplicationLibrary)"
                              f" returned nil for \"{bundle_id}\"")
        fault = self._fault()
        if options.get("KillExisting", True):
            self.terminate_bundle(bundle_id)
        documents = app.documents
        documents.mkdir(parents=True, exist_ok=True)
        (app.container / "tmp").mkdir(exist_ok=True)
        run_id, command = self._command(app, fault)
        if options.get("StartSuspendedKey"):
            # Stopped before the app's first instruction, as a process launched suspended waits for resumePid:.
            command = ["/bin/sh", "-c", 'kill -STOP $$; exec "$@"', "sh", *command]
        env = {"HOME": str(app.container), "CFFIXED_USER_HOME": str(app.container),
               "TMPDIR": f"{app.container}/tmp/", "PATH": "/usr/bin:/bin", "LANG": "C.UTF-8",
               "LD_LIBRARY_PATH": str(self.runner.parent),  # liblitert-lm.so sits beside the runner
               **{str(k): str(v) for k, v in environment.items()}}
        with open(documents / Path(ios_contract.RESULT).name, "wb") as stdout, \
                open(documents / Path(ios_contract.STDERR).name, "wb") as stderr:
            proc = self._spawner.submit(
                subprocess.Popen, command, cwd=documents, env=env, stdin=subprocess.DEVNULL, stdout=stdout,
                stderr=stderr, start_new_session=True, preexec_fn=functools.partial(_child_setup, os.getpid()),
            ).result()
        running = RunningApp(app, proc.pid, proc, time.time())
        with self._lock:
            self._running[proc.pid] = running
        self._log(f"launch {bundle_id} pid {proc.pid}" + (f" fault {fault}" if fault else ""))
        threading.Thread(target=self._watch, args=(running, run_id), daemon=True, name=f"app-{proc.pid}").start()
        return proc.pid

    def send_signal(self, pid: int, signum: int) -> None:
        """A signal to an app's whole process group; ProcessLookupError for a pid that is no app of this device."""
        with self._lock:
            running = self._running.get(pid)
        if running is None:
            raise ProcessLookupError(pid)
        if signum in (signal.SIGKILL, signal.SIGTERM):
            running.killed_by_host = True
        self._log(f"signal {crash_reports.signal_name(signum)} pid {pid}")
        with contextlib.suppress(ProcessLookupError):  # it exited meanwhile
            os.killpg(pid, signum)

    def terminate_bundle(self, bundle_id: str) -> None:
        """Kill every running instance of an app (KillExisting, reinstall, uninstall) and wait until it is gone."""
        for running in self.running():
            if running.app.bundle_id == bundle_id:
                with contextlib.suppress(ProcessLookupError):  # it ended meanwhile
                    self.send_signal(running.pid, signal.SIGKILL)
                with contextlib.suppress(subprocess.TimeoutExpired):
                    running.proc.wait(timeout=10)

    def running(self) -> list[RunningApp]:
        with self._lock:
            return list(self._running.values())

    def pid_for_bundle(self, bundle_id: str) -> int:
        return next((r.pid for r in self.running() if r.app.bundle_id == bundle_id), 0)

    def is_running(self, pid: int) -> bool:
        with self._lock:
            return pid in self._running

    def shutdown(self) -> None:
        """The device powers off: every app ends."""
        for running in self.running():
            running.killed_by_host = True
            with contextlib.suppress(ProcessLookupError):
                os.killpg(running.pid, signal.SIGKILL)

    # internals
    def _fault(self) -> str | None:
        try:
            faults = json.loads(self.layout.faults.read_text())
        except FileNotFoundError:
            return None
        except (OSError, ValueError) as e:
            raise LaunchError(f"{self.layout.faults}: {e}") from e
        fault = faults.get("app") if isinstance(faults, dict) else faults
        if fault is not None and fault not in FAULTS:
            raise LaunchError(f"{self.layout.faults}: unknown app fault {fault!r}; known: {', '.join(FAULTS)}")
        return fault

    def _command(self, app: App, fault: str | None) -> tuple[str, list[str]]:
        """(run id, the command the app's process runs)."""
        try:
            request = json.loads((app.documents / Path(ios_contract.REQUEST).name).read_text())
            run_id, argv = str(request["id"]), request["argv"]
            if not isinstance(argv, list) or not all(isinstance(a, str) for a in argv):
                raise ValueError("argv is not a list of strings")
        except (OSError, ValueError, KeyError, TypeError) as e:
            if fault is None:
                message = f"{app.executable}: cannot read {ios_contract.REQUEST}: {type(e).__name__}: {e}\n"
                return "", [sys.executable, "-c", "import sys; sys.stderr.write(sys.argv[1]); sys.exit(2)", message]
            run_id, argv = "", []
        if fault == "crash":
            return run_id, [sys.executable, "-c", f"import os, time; time.sleep({_CRASH_AFTER_S}); os.abort()"]
        if fault == "hang":
            return run_id, [sys.executable, "-c", "import time\nwhile True: time.sleep(3600)"]
        return run_id, [str(self.runner), *argv]

    def _watch(self, running: RunningApp, run_id: str) -> None:
        code = running.proc.wait()
        with self._lock:
            self._running.pop(running.pid, None)  # gone from runningProcesses before `done` appears
        app = running.app
        if code >= 0:
            self._log(f"exit {app.bundle_id} pid {running.pid} code {code}")
            done = app.documents / Path(ios_contract.DONE).name
            tmp = done.with_name(f".{done.name}.tmp")
            with contextlib.suppress(FileNotFoundError):  # uninstalled meanwhile: no container to write into
                tmp.write_text(ios_contract.done_text(code, run_id))
                os.replace(tmp, done)  # whole or absent: the host polls for it
            return
        signum = -code
        self._log(f"died {app.bundle_id} pid {running.pid} signal {crash_reports.signal_name(signum)}"
                  + (" (host)" if running.killed_by_host else ""))
        if not running.killed_by_host:
            crash_reports.write_report(self.layout, self.identity, app.info, app.executable,
                                       self.layout.device_path(app.bundle), running.pid, signum, running.started)


def _child_setup(parent_pid: int) -> None:
    """In the forked app, before exec: die with the fake, and leave no core file in Documents."""
    if _prctl is not None:
        _prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
        if os.getppid() != parent_pid:  # the fake died before the line above took effect
            os._exit(1)
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
