"""Crash reports: what ReportCrash writes when an app dies by a signal, crashreportmover, and where
crashreportcopymobile (AFC, in server.py) finds them.

A report is an .ips file named `EXECUTABLE-YYYY-MM-DD-HHMMSS.ips`, as iOS 15+ writes them: one JSON line of
metadata (bug_type 309, app_name, bundleID, os_version, incident_id, ...), then the report's JSON body (the
exception type and signal, the termination reason, the process, its threads), which pycrashreport and
pymobiledevice3's `crash` commands parse. It is written into OSAnalytics' folder and shows up in
/var/mobile/Library/Logs/CrashReporter (crashreportcopymobile's root) once a host runs crashreportmover, which
moves the reports and then answers "ping\\0", as the real one does.
"""

from __future__ import annotations

import datetime
import json
import os
import signal
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

from device_runners.fake_ios.identity import Identity
from device_runners.fake_ios.layout import Layout
from device_runners.fake_ios.wire import Conn

MOVER_ACK = b"ping\0"
# Darwin's signal numbers, which a report shows (the host's differ for some: SIGBUS is 7 on Linux, 10 on Darwin).
_DARWIN_SIGNALS = {"SIGHUP": 1, "SIGINT": 2, "SIGQUIT": 3, "SIGILL": 4, "SIGTRAP": 5, "SIGABRT": 6, "SIGFPE": 8,
                   "SIGKILL": 9, "SIGBUS": 10, "SIGSEGV": 11, "SIGSYS": 12, "SIGPIPE": 13, "SIGALRM": 14,
                   "SIGTERM": 15, "SIGUSR1": 30, "SIGUSR2": 31}
_EXCEPTIONS = {"SIGSEGV": "EXC_BAD_ACCESS", "SIGBUS": "EXC_BAD_ACCESS", "SIGILL": "EXC_BAD_INSTRUCTION",
               "SIGFPE": "EXC_ARITHMETIC", "SIGTRAP": "EXC_BREAKPOINT"}  # else EXC_CRASH (abort, kill, ...)
_INDICATORS = {"SIGABRT": "Abort trap", "SIGSEGV": "Segmentation fault", "SIGBUS": "Bus error",
               "SIGILL": "Illegal instruction", "SIGFPE": "Floating point exception", "SIGTRAP": "Trace/BPT trap",
               "SIGKILL": "Killed", "SIGTERM": "Terminated"}


def write_report(layout: Layout, identity: Identity, app_info: dict[str, Any], executable: str, bundle_path: str,
                 pid: int, signum: int, started: float) -> Path:
    """The report of `executable` (pid) dying by signal `signum`, in the folder crashreportmover empties."""
    now = datetime.datetime.now(datetime.UTC)
    name = signal_name(signum)
    darwin_number = _DARWIN_SIGNALS.get(name, signum)
    incident = str(uuid.uuid4()).upper()
    os_version = f"iPhone OS {identity.ios_version} ({identity.build_version})"
    metadata = {
        "app_name": executable, "timestamp": now.strftime("%Y-%m-%d %H:%M:%S.%f")[:-4] + " +0000",
        "app_version": app_info.get("CFBundleShortVersionString", ""), "slice_uuid": str(uuid.uuid4()),
        "build_version": app_info.get("CFBundleVersion", ""), "platform": 2,
        "bundleID": app_info.get("CFBundleIdentifier", ""), "share_with_app_devs": 0, "is_first_party": 0,
        "bug_type": "309", "os_version": os_version, "roots_installed": 0, "name": executable,
        "incident_id": incident,
    }
    body: dict[str, Any] = {
        "uptime": 100000, "procRole": "Foreground", "version": 2, "userID": 501, "deployVersion": 210,
        "modelCode": identity.product.product_type, "coalitionID": 1000,
        "osVersion": {"train": f"iPhone OS {identity.ios_version}", "build": identity.build_version,
                      "releaseType": "User"},
        "captureTime": now.strftime("%Y-%m-%d %H:%M:%S.%f")[:-2] + " +0000", "incident": incident, "pid": pid,
        "procLaunch": datetime.datetime.fromtimestamp(started, datetime.UTC).strftime(
            "%Y-%m-%d %H:%M:%S.%f")[:-2] + " +0000",
        "procName": executable, "procPath": f"{bundle_path}/{executable}",
        "bundleInfo": {"CFBundleShortVersionString": app_info.get("CFBundleShortVersionString", ""),
                       "CFBundleVersion": app_info.get("CFBundleVersion", ""),
                       "CFBundleIdentifier": app_info.get("CFBundleIdentifier", "")},
        "parentProc": "launchd", "parentPid": 1, "cpuType": "ARM-64",
        "exception": {"codes": "0x0000000000000000, 0x0000000000000000", "rawCodes": [0, 0],
                      "type": _EXCEPTIONS.get(name, "EXC_CRASH"), "signal": name},
        "termination": {"flags": 0, "code": darwin_number, "namespace": "SIGNAL",
                        "indicator": f"{_INDICATORS.get(name, name)}: {darwin_number}", "byProc": executable,
                        "byPid": pid},
        "faultingThread": 0,
        "threads": [{"triggered": True, "id": pid * 10, "queue": "com.apple.main-thread", "frames": []}],
        "usedImages": [],
    }
    if name == "SIGABRT":
        body["asi"] = {"libsystem_c.dylib": ["abort() called"]}
    stem = f"{executable}-{now:%Y-%m-%d-%H%M%S}"
    path = layout.crash_pending / f"{stem}.ips"
    for n in range(1, 1000):  # two crashes in one second: ReportCrash numbers the second
        if not (path.exists() or (layout.crash_reports / path.name).exists()):
            break
        path = layout.crash_pending / f"{stem}-{n}.ips"
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(metadata) + "\n" + json.dumps(body, indent=2) + "\n")
    os.replace(tmp, path)
    return path


def signal_name(signum: int) -> str:
    try:
        return signal.Signals(signum).name
    except ValueError:
        return f"SIG{signum}"


def move_pending(layout: Layout) -> list[str]:
    """What crashreportmover does: the reports waiting in OSAnalytics' folder into CrashReporter."""
    moved = []
    for path in sorted(layout.crash_pending.iterdir()):
        if path.is_file() and not path.name.startswith("."):
            os.replace(path, layout.crash_reports / path.name)
            moved.append(path.name)
    return moved


def serve_mover(conn: Conn, layout: Layout, log: Callable[[str], None]) -> None:
    moved = move_pending(layout)
    log(f"crashreportmover moved {len(moved)}: {' '.join(moved)}".rstrip(": "))
    conn.send(MOVER_ACK)
