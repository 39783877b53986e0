"""Android over adb: a phone (or device_runners/fake_adbd) behind the adb server, through adbutils.

On the device:
  /data/local/tmp/litert-bench/cache/<sha256 prefix>/NAME  pushed files, kept between runs and named by content,
                                                            so a second run pushes nothing that is already there;
                                                            a folder's mtime is when a session last staged it
  /data/local/tmp/litert-bench/run-<time>-<host>-<pid>-<random>/
                                                            one session's working folder, removed by close():
                                                            N.stdout, N.stderr of run N, and N.pgid while run N
                                                            may still be going (its process group's id)
`python -m harness devices --clean` trims the cache and removes what sessions that died left behind (clean()).

The traps of adbutils and adb this avoids (shared/FIELD_NOTES.md, "Devices"): a shell `timeout=` only bounds a
socket read, so every command runs under the device's own `timeout -s KILL`; exit codes need shell v2; sync's
sizes are 32-bit, so a push is checked with `stat -c %s` and sha256sum on the device rather than with sync's
stat; a pull of a missing path must fail, not make an empty folder (RECV's FAIL is read and raised).
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import posixpath
import re
import shlex
import stat
import struct
import time
from collections.abc import Sequence
from pathlib import Path

import adbutils
from adbutils.errors import AdbTimeout

from device_runners.transports.base import (
    DeviceFacts,
    Job,
    RunResult,
    Transport,
    parse_cpu_list,
)
from device_runners.transports.remote_files import RemoteFiles
from device_runners.transports.remote_runs import (
    mib,
    pid_alive,
    plan_clean,
    run_line,
    stop_runs,
    this_host,
)
from harness.common.signals import signals_deferred

ROOT = "/data/local/tmp/litert-bench"
SYNC_DATA_MAX = 64 * 1024  # the most one sync DATA chunk may carry
# The harness's own commands (hashing a 4 GB model on a phone takes seconds, not minutes).
COMMAND_TIMEOUT_S = 300
# How long past the device-side timeout the host waits for an answer before giving up on the device.
BACKSTOP_S = 30
# Killing a run's process group and removing a failed push: short, since Ctrl-C and SIGTERM wait for them.
STOP_TIMEOUT_S = 20
# `devices --clean`: a .part nobody has written to for this long is a push that was cut off; a working folder of
# another machine's session that has not changed for this long belongs to a session that is gone.


class AdbDeviceError(RuntimeError):
    """An adb operation failed; the message names the device and the operation."""


class DeviceLost(AdbDeviceError):
    """The device went away (unplugged, rebooted, adbd killed) during an operation."""


class StorageFull(AdbDeviceError):
    """The device has no room for a file the run needs."""


@dataclasses.dataclass(frozen=True)
class AdbAddress:
    """`adb:SERIAL` (the local adb server) or `adb:SERIAL@HOST:PORT` (an adb server on another machine)."""

    serial: str
    server: tuple[str, int] | None = None

    @classmethod
    def parse(cls, name: str) -> AdbAddress:
        spec = name.removeprefix("adb:")
        serial, at, server = spec.rpartition("@") if "@" in spec else (spec, "", "")
        host, _, port = server.rpartition(":")
        if not name.startswith("adb:") or not serial or (at and not (host and port.isdigit())):
            raise ValueError(f"not an adb device name: {name!r}; the form is adb:SERIAL or adb:SERIAL@HOST:PORT")
        return cls(serial, (host, int(port)) if at else None)

    def client(self) -> adbutils.AdbClient:
        # No server given: $ANDROID_ADB_SERVER_HOST/PORT or 127.0.0.1:5037, started on first use if not running.
        return adbutils.AdbClient(*self.server) if self.server else adbutils.AdbClient()


def model_tag(model: str) -> str:
    """A model as `adb devices -l` spells it: the adb server turns every character but [A-Za-z0-9] into "_"."""
    return re.sub(r"[^A-Za-z0-9]", "_", model)


def attached(client: adbutils.AdbClient | None = None) -> list[adbutils.AdbDeviceInfo]:
    """What `adb devices -l` lists: serial, state (device, offline, unauthorized, ...) and tags such as model."""
    client = client or adbutils.AdbClient()
    try:
        return client.list(extended=True)
    except adbutils.AdbError as e:
        raise AdbDeviceError(f"cannot list adb devices (adb server {client.host}:{client.port}): {e}") from None


def find_serial(models: Sequence[str], what: str, client: adbutils.AdbClient | None = None) -> str:
    """The serial of the one attached device for a profile (`what` names it): $ANDROID_SERIAL, else the only
    online device whose model is one of `models` (any model when empty). $ANDROID_SERIAL must name a device of
    those models too: a profile's name labels the figures, so another phone must not measure under it."""
    online = [d for d in attached(client) if d.state == "device"]
    wanted = set(map(model_tag, models))
    if serial := os.environ.get("ANDROID_SERIAL"):
        return _check_android_serial(serial, online, models, what)
    matching = [d for d in online if not wanted or d.tags.get("model") in wanted]
    if len(matching) == 1:
        return matching[0].serial
    listing = ", ".join(f"{d.serial} ({d.tags.get('model', '?')})" for d in online) or "none (see `adb devices`)"
    problem = "no attached device matches" if not matching else f"{len(matching)} attached devices match"
    raise AdbDeviceError(f"{what}: {problem}; online devices: {listing}. Name one with --device adb:SERIAL "
                         "or set ANDROID_SERIAL")


def _check_android_serial(serial: str, online: Sequence[adbutils.AdbDeviceInfo], models: Sequence[str],
                          what: str) -> str:
    device = next((d for d in online if d.serial == serial), None)
    if device is None or not models:
        return serial  # not online: opening it says what the adb server makes of it (absent, unauthorized, ...)
    model = device.tags.get("model")
    if model not in set(map(model_tag, models)):
        raise AdbDeviceError(f"{what}: $ANDROID_SERIAL is {serial}, a {model or 'device of unknown model'}, not "
                             f"one of: {', '.join(models)}; name it with --device adb:{serial} (its profile "
                             "follows from its model) or unset ANDROID_SERIAL")
    return serial


class AdbTransport(RemoteFiles, Transport):
    _where, _error = "device", AdbDeviceError  # RemoteFiles's messages
    kind = "adb"

    def __init__(self, name: str, address: AdbAddress):
        super().__init__()
        self.name = name
        self.address = address
        self.serial = address.serial
        self._device = address.client().device(address.serial)
        self._sha256: dict[str, str] = {}  # device path → sha256 of what is there (pushed or checked this session)
        self._workdir: str | None = None
        try:
            state = self._device.get_state()
        except adbutils.AdbError as e:
            raise AdbDeviceError(f"{name}: {e}; online devices: {self._online()}") from None
        if state != "device":
            raise AdbDeviceError(f"{name}: the adb server reports it as {state!r}, not ready (unauthorized: accept "
                                 "the USB debugging prompt on the phone)")

    @property
    def identity(self) -> str:
        server = f"@{self.address.server[0]}:{self.address.server[1]}" if self.address.server else ""
        return f"adb-{self.serial}{server}"

    # commands
    def _shell(self, command: str, read_timeout: float, what: str) -> adbutils.ShellReturn:
        """One shell v2 round trip (exit code and stderr apart); a dropped device becomes DeviceLost."""
        try:
            return self._device.shell2(command, timeout=read_timeout, v2=True)
        except AdbTimeout:
            raise
        except (adbutils.AdbError, EOFError, OSError) as e:
            raise self._failed(e, what) from None

    def _sh(self, script: str, what: str, timeout: float = COMMAND_TIMEOUT_S) -> adbutils.ShellReturn:
        """A short command of the harness's own, killed on the device after `timeout` s."""
        try:
            return self._shell(f"timeout -s KILL {timeout:g} sh -c {shlex.quote(script)}", timeout + BACKSTOP_S,
                               what)
        except AdbTimeout:
            raise AdbDeviceError(f"{self.name}: no answer within {timeout + BACKSTOP_S:g} s while {what}") from None

    def _failed(self, error: BaseException, what: str) -> AdbDeviceError:
        try:
            state = self._device.get_state()
        except adbutils.AdbError as e:
            state = str(e)
        detail = f"{type(error).__name__}: {error}".rstrip(": ")
        if state == "device":
            return AdbDeviceError(f"{self.name}: adb failed while {what} ({detail})")
        return DeviceLost(f"lost the device {self.name} while {what} ({detail}); the adb server now says: {state}")

    def _online(self) -> str:
        devices = [d.serial for d in attached(self.address.client()) if d.state == "device"]
        return ", ".join(devices) or "none"

    def _execute(self, job: Job) -> RunResult:
        line = self._run_line(job)
        workdir = self._workdir
        start = time.monotonic()
        try:
            result = self._shell(line, job.timeout + BACKSTOP_S, f"running {shlex.join(job.argv)}")
        except AdbTimeout:  # run() kills the group: the device may yet be reachable by a new command
            seconds = time.monotonic() - start
            return RunResult(-1, "", f"no answer from {self.name} within {seconds:.0f} s", seconds, True, line)
        seconds = time.monotonic() - start
        try:
            stdout, stderr = (self.pull_text(f"{workdir}/{job.number}.{kind}") for kind in ("stdout", "stderr"))
        except AdbDeviceError as e:
            raise AdbDeviceError(f"{e}\nthe device's shell said: {result.stderr.strip()}") from None
        # coreutils' timeout exits 137 after SIGKILL, toybox's 124; either, once the time is up, is a timeout.
        timed_out = result.returncode in (124, 137) and seconds >= job.timeout
        return RunResult(result.returncode, stdout, stderr + result.stderr, seconds, timed_out, line)

    def _run_line(self, job: Job) -> str:
        # A program's libraries are staged next to it (stage_together). Its RUNPATH says $ORIGIN, which old
        # Android linkers ignore: run_line sets LD_LIBRARY_PATH to that folder too.
        return run_line(self._ensure_workdir(), job)

    def _kill(self, job: Job) -> None:
        if self._workdir is not None:
            self._sh(stop_runs(self._workdir, str(job.number)), f"stopping run {job.number}", STOP_TIMEOUT_S)

    def _cleanup(self) -> None:
        self._remove_workdir()  # a device that is gone keeps it, under ROOT like the cache, for `devices --clean`

    def clean(self, keep: int | None = None, older_than_days: float | None = None) -> dict:
        """What sessions that are gone left here: their working folders (after killing runs still going in them)
        and pushes cut off (.part); with `keep`, all but the `keep` most recently staged cache folders; with
        `older_than_days`, cache folders not staged for that long. What was removed, by kind."""
        now, entries = self._listing()
        plan = plan_clean(ROOT, now, entries, keep, older_than_days, this_host(), pid_alive)
        if any(plan.values()):
            script = [f"{stop_runs(folder, '*')}; rm -rf {shlex.quote(folder)}"
                      for folder in plan["runs"]]
            script += [f"rm -rf {' '.join(map(shlex.quote, plan['parts'] + plan['cache']))}"] if (
                plan["parts"] or plan["cache"]) else []
            script.append(f"rmdir {ROOT}/cache/* 2>/dev/null")  # folders left empty; rmdir keeps the others
            self._sh("; ".join(script) + "; true", "cleaning the cache and old working folders")
        return plan

    def _listing(self) -> tuple[int, list[tuple[int, str]]]:
        """The device's clock and (mtime, path) of every cache folder, .part and working folder."""
        script = (f"date +%s; cd {ROOT} 2>/dev/null || exit 0; "
                  f'for f in cache/* cache/*/*.part run-*; do [ -e "$f" ] && stat -c "%Y {ROOT}/%n" "$f"; done; true')
        lines = self._sh(script, "listing the cache and working folders").stdout.splitlines()
        entries = []
        for line in lines[1:]:
            mtime, _, path = line.partition(" ")
            if mtime.isdigit() and path.startswith(f"{ROOT}/"):
                entries.append((int(mtime), path))
        return int(lines[0]), entries

    # files
    def _root_dir(self) -> str:
        return ROOT

    def free_bytes(self, folder: str = "/data/local/tmp") -> int | None:
        """Bytes free to this user in `folder` (created if missing), from `df -Pk`; None if df says nothing."""
        out = self._sh(f"mkdir -p {shlex.quote(folder)} && df -Pk {shlex.quote(folder)}", "checking free storage")
        fields = out.stdout.strip().splitlines()[-1].split() if out.stdout.strip() else []
        return int(fields[3]) * 1024 if len(fields) >= 4 and fields[3].isdigit() else None

    def _push(self, local: Path, target: str, digest: str) -> None:
        size = local.stat().st_size
        free = self.free_bytes(posixpath.dirname(target))
        if free is not None and size > free:
            raise StorageFull(f"{self.name}: no room for {local.name} ({mib(size)}): {mib(free)} free in "
                              f"{posixpath.dirname(target)}; free some storage on the device")
        part = f"{target}.part"
        try:
            self._send(local, part, size)
            self._check_push(local, part, size, digest)
        except BaseException:  # Ctrl-C, a bad or refused push: no .part left behind while the device answers
            with signals_deferred(), contextlib.suppress(AdbDeviceError):
                self._sh(f"rm -f {shlex.quote(part)}", "removing an unfinished push", STOP_TIMEOUT_S)
            raise
        self._sh(f"mv -f {shlex.quote(part)} {shlex.quote(target)}", "moving a push into place")

    def _check_push(self, local: Path, part: str, size: int, digest: str) -> None:
        out = self._sh(f"stat -c %s {shlex.quote(part)} && sha256sum {shlex.quote(part)}", "checking a push").stdout
        lines = out.split()
        got_size, got_digest = (int(lines[0]), lines[1]) if len(lines) >= 2 and lines[0].isdigit() else (None, None)
        if (got_size, got_digest) != (size, digest):
            raise AdbDeviceError(f"{self.name}: the push of {local} is incomplete: the device holds {got_size} bytes "
                                 f"(sha256 {str(got_digest)[:12]}), sent {size} (sha256 {digest[:12]})")

    def _send(self, local: Path, remote: str, size: int) -> None:
        """sync SEND in 64 KiB chunks, reading adbd's FAIL message when it refuses (adbutils drops it)."""
        what = f"pushing {local.name} ({mib(size)}) to {remote}"
        try:
            with self._device.open_transport(timeout=COMMAND_TIMEOUT_S) as c:
                c.send_command("sync:")
                c.check_okay()
                spec = f"{remote},{stat.S_IFREG | 0o755}".encode()
                try:
                    c.conn.sendall(b"SEND" + struct.pack("<I", len(spec)) + spec)
                    with local.open("rb") as f:
                        while chunk := f.read(SYNC_DATA_MAX):
                            c.conn.sendall(b"DATA" + struct.pack("<I", len(chunk)) + chunk)
                    c.conn.sendall(b"DONE" + struct.pack("<I", int(time.time())))
                except OSError:
                    pass  # adbd may have failed the push and hung up: its answer below says why
                status, length = struct.unpack("<4sI", c.read_exact(8))
                message = c.read_exact(length).decode("utf-8", "replace") if status == b"FAIL" else ""
        except (adbutils.AdbError, EOFError, OSError) as e:
            raise self._failed(e, what) from None
        if status == b"FAIL":
            full = "No space left" in message or "quota" in message.lower()
            raise (StorageFull if full else AdbDeviceError)(f"{self.name}: {what} failed: {message}")
        if status != b"OKAY":
            raise AdbDeviceError(f"{self.name}: {what}: unexpected answer {status!r}")

    def pull_text(self, remote: str) -> str:
        """sync RECV of one file; a missing file is an error, not empty text."""
        what = f"reading {remote}"
        try:
            with self._device.open_transport(timeout=COMMAND_TIMEOUT_S) as c:
                c.send_command("sync:")
                c.check_okay()
                c.conn.sendall(b"RECV" + struct.pack("<I", len(remote.encode())) + remote.encode())
                chunks = []
                while True:
                    kind, length = struct.unpack("<4sI", c.read_exact(8))
                    if kind == b"DONE":
                        break
                    data = c.read_exact(length)
                    if kind == b"FAIL":
                        raise AdbDeviceError(f"{self.name}: cannot read {remote}: {data.decode('utf-8', 'replace')}")
                    chunks.append(data)
        except (adbutils.AdbError, EOFError, OSError) as e:
            raise self._failed(e, what) from None
        return b"".join(chunks).decode("utf-8", "replace")

    # facts
    def read_files(self, globs: Sequence[str]) -> dict[str, str]:
        return {path: text for path, text in self._gather({}, globs).items() if text}

    def facts(self) -> DeviceFacts:
        commands = {"model": "getprop ro.product.model", "release": "getprop ro.build.version.release",
                    "sdk": "getprop ro.build.version.sdk", "fingerprint": "getprop ro.build.fingerprint",
                    "abi": "getprop ro.product.cpu.abi", "kernel": "uname -r",
                    "present": "cat /sys/devices/system/cpu/present", "meminfo": "cat /proc/meminfo"}
        got = self._gather(commands, ["/sys/devices/system/cpu/cpu[0-9]*/cpufreq/cpuinfo_max_freq"])
        max_khz = {int(m[1]): int(text) for path, text in got.items()
                   if (m := re.search(r"/cpu(\d+)/cpufreq/cpuinfo_max_freq$", path)) and text.isdigit()}
        mem = re.search(r"^MemTotal:\s+(\d+)", got.get("meminfo", ""), re.MULTILINE)
        return DeviceFacts(
            name=self.name, model=got.get("model", ""), os="Android",
            os_version=f"{got.get('release', '?')} (SDK {got.get('sdk', '?')}, {got.get('fingerprint', '?')})",
            kernel=got.get("kernel", ""), abi=got.get("abi", ""),
            cpus=parse_cpu_list(got.get("present", "")) or sorted(max_khz) or [0], cpu_max_khz=max_khz,
            mem_total_mb=int(mem[1]) // 1024 if mem else None,
        )

    def model(self) -> str:
        return self._sh("getprop ro.product.model", "reading its model").stdout.strip()

