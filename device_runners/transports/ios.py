"""iPhones and iPads through usbmuxd, with pymobiledevice3 (lockdown, house_arrest, installation_proxy, DVT).

A stock iPhone runs no command-line program, so the runner is an app (device_runners/native/ios/, built with
Xcode elsewhere) and a run is a conversation through files in the app's container (ios_contract.py):

  Documents/cache/SHA256-NAME   staged files (models), named by content: a second session pushes nothing that is
                                already there (checked by name and size; pushed to NAME.part, checked, renamed)
  Documents/cache/.app-sha256   the sha256 of the .ipa the harness installed, so that a later --runner-app
                                installs again only when it differs (or its CFBundleVersion does)
  Documents/request.json        {"id": RUN_ID, "argv": [runner flags]}, paths relative to Documents
  Documents/result.json, stderr.txt, done
                                the runner's stdout and stderr, and last `done`: "EXIT_CODE RUN_ID"

A run writes request.json (after removing what an earlier run left), launches the app through DVT processcontrol
(its pid goes on the Job), then polls for `done` until the runner's timeout, when the pid is killed. Every second
it also checks the pid in DVT's process list: an app that is gone without `done` crashed, and the run fails fast
with the first lines of the app's newest crash report (crashreportcopymobile). After `done`, an app that has not
ended by itself is killed, so nothing runs on the phone between cells. close() removes the run's files; the cache
stays.

DVT (launch, kill, the process list) is reached over lockdown (com.apple.instruments.remoteserver.
DVTSecureSocketProxy) up to iOS 16, which needs the developer disk image mounted (`pymobiledevice3 mounter
auto-mount`). iOS 17 and later serve it only over a RemoteXPC tunnel: start `sudo pymobiledevice3 remote tunneld`
(it keeps a tunnel to every attached device) and the transport finds the device's RemoteServiceDiscovery there
($LITERT_BENCH_TUNNELD=HOST:PORT when tunneld does not listen on 127.0.0.1:49151). The iOS 17+ branch has not
been run here: the protocol-level test iPhone speaks lockdown only. Files, installs and crash reports go over
lockdown on every version.

iOS has no /proc or /sys and no command to pin threads: read_files returns nothing (no state, no cooldown wait),
the CPU count comes from the device's profile, and the app runs its threads at QoS user-interactive wherever the
scheduler puts them.

pymobiledevice3 is asyncio: a private event loop in a background thread runs it behind the synchronous Transport
API. A connection the phone closed is reopened once; a device that usbmuxd no longer lists fails the operation with
IosDeviceLost, naming the device.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import os
import sys
import time
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar

from pymobiledevice3 import usbmux
from pymobiledevice3.exceptions import (
    AppNotInstalledError,
    ConnectionFailedToUsbmuxdError,
    ConnectionTerminatedError,
    DeviceNotFoundError,
    NoDeviceConnectedError,
    NotPairedError,
    PairingError,
    PasscodeRequiredError,
)

from device_runners.transports import ios_contract as contract
from device_runners.transports import ios_link as ops  # what is done on the device, one coroutine each
from device_runners.transports.base import DeviceFacts, Job, RunResult, Transport, push_progress
from device_runners.transports.event_loop import EventLoopThread
from device_runners.transports.ios_attached import attached_udids
from device_runners.transports.ios_link import DEVICE_ERRORS, PAIR_TIMEOUT_S, describe, no_usbmuxd
from device_runners.transports.ios_support import (
    APP_REF,
    APP_SHA256_FILE,
    INSTALLED_APP,
    AppNotInstalled,
    AppPackage,
    IosDeviceError,
    IosDeviceLost,
    StorageFull,
    app_missing_message,
    cache_name,
    crash_exit_code,
    crash_stderr,
    digest_of,
    is_app_crash_report,
    is_jetsam_report,
    new_run_id,
    read_ipa,
    run_description,
)
from device_runners.transports.remote_runs import mib
from harness.common.files import local_sha256
from harness.common.signals import signals_deferred

_T = TypeVar("_T")

COMMAND_TIMEOUT_S = 60  # one of the harness's own operations (a stat, a small file, a DVT call)
CONNECT_TIMEOUT_S = 30 + PAIR_TIMEOUT_S
LAUNCH_TIMEOUT_S = 60  # launching the app (SpringBoard may first kill an earlier instance)
STOP_TIMEOUT_S = 20  # killing the app, removing a failed push: short, since Ctrl-C waits for them
INSTALL_TIMEOUT_S = 900  # uploading and installing the app (hundreds of MB over USB 2, then iOS verifies it)
MIN_PUSH_BYTES_S = 5 * 2**20  # pushes get at least this rate before their timeout (USB 2 sustains ~30 MB/s)
POLL_S = 0.5  # between looks for `done`
ALIVE_EVERY_S = 1.0  # between looks at the process list: how fast a crash is noticed
EXIT_GRACE_S = 2.0  # how long after the app left the process list its `done` may still appear
CRASH_REPORT_WAIT_S = float(os.environ.get("LITERT_BENCH_IOS_CRASH_WAIT_S", "20"))  # ReportCrash takes seconds
@dataclasses.dataclass
class _Run:
    """A run's own state on its Job (Job.handle): its id, and whether its launch may have happened (then a pid
    not yet known is looked up by bundle id before a kill)."""

    id: str
    launching: bool = False


class IosTransport(Transport):
    kind = "ios"
    can_fork = False  # an app may not fork: the runner's bandwidth probe is off (the app refuses it)

    def __init__(self, name: str, udid: str, cores: int | None = None):
        super().__init__()
        self.name = name
        self.udid = udid
        self.cores = cores  # the profile's CPU count: iOS reports none
        self._loop: EventLoopThread | None = None
        self._link = ops.Link(udid, name)
        self._sha256: dict[str, str] = {}  # device path (or APP_REF) → sha256 of what is there
        self._apps: set[Path] = set()  # runner apps (packages, or INSTALLED_APP) checked this session
        self._launched = False  # whether this session left run files to remove
        self.pushed: list[str] = []  # what this session pushed (Documents-relative), for messages and tests
        self.values = self._connect()  # fail now, naming the device, not mid-cell

    @property
    def identity(self) -> str:
        return f"ios:{self.udid}"

    @property
    def product_type(self) -> str:
        return str(self.values.get("ProductType", ""))

    @property
    def product_version(self) -> str:
        return str(self.values.get("ProductVersion", ""))

    # the connection
    def _loop_thread(self) -> EventLoopThread:
        if self._loop is None:
            self._loop = EventLoopThread("ios-transport")
            self._loop.loop.set_exception_handler(_quiet_about_lost_connections)
        return self._loop

    def _connect(self) -> dict:
        async def values(link: ops.Link) -> dict:
            lockdown = await link.lockdown_client()
            return dict(await lockdown.get_value() or lockdown.all_values)  # all of them, now that it is paired

        try:
            return self._loop_thread().call(values(self._link), CONNECT_TIMEOUT_S)
        except BaseException as e:
            self._shutdown()  # no transport comes of it, so nothing else would stop its thread
            raise self._connect_error(e) from None

    def _connect_error(self, error: BaseException) -> BaseException:
        try:
            raise error
        except (DeviceNotFoundError, NoDeviceConnectedError):
            return IosDeviceError(f"{self.name}: usbmuxd lists no such device; attached iOS devices: "
                                  f"{', '.join(attached_udids()) or 'none'}")
        except ConnectionFailedToUsbmuxdError:
            return IosDeviceError(f"{self.name}: {no_usbmuxd()}")
        except (PairingError, NotPairedError, PasscodeRequiredError) as e:
            return IosDeviceError(f"{self.name}: not paired with this computer ({describe(e)}): unlock it and answer "
                                  "Trust on its \"Trust This Computer?\" prompt")
        except TimeoutError:
            return IosDeviceError(f"{self.name}: no answer within {CONNECT_TIMEOUT_S} s (locked, with a pairing "
                                  "prompt waiting?)")
        except DEVICE_ERRORS as e:
            return IosDeviceError(f"{self.name}: cannot connect through usbmuxd ({describe(e)})")
        except BaseException as e:  # Ctrl-C, and anything else: as it was
            return e

    def _call(self, what: str, op: Callable[[ops.Link], Awaitable[_T]], timeout: float = COMMAND_TIMEOUT_S,
              retry: bool = True) -> _T:
        """Run op(link) on the event loop under `timeout`. A connection error while the device is still listed
        (the phone closed an idle connection, a service restarted) is tried once more on fresh connections when
        `retry`; otherwise it fails naming the device, as lost when usbmuxd no longer lists it."""
        for attempt in range(2):
            try:
                return self._loop_thread().call(op(self._link), timeout)
            except IosDeviceError:
                raise
            except AppNotInstalledError:
                raise AppNotInstalled(app_missing_message(self.name)) from None
            except TimeoutError:  # before DEVICE_ERRORS: a TimeoutError is an OSError
                self._reset()
                raise self._failed(f"no answer within {timeout:g} s", what) from None
            except DEVICE_ERRORS as e:
                self._reset()
                if attempt == 0 and retry and self._listed():
                    continue
                raise self._failed(describe(e), what) from None
            except BaseException:  # Ctrl-C mid-call may leave half a message on a connection: use fresh ones
                self._reset()
                raise
        raise AssertionError("unreachable")

    def _reset(self) -> None:
        link, self._link = self._link, ops.Link(self.udid, self.name)
        if self._loop is not None:
            with contextlib.suppress(Exception):
                self._loop.call(link.close(), STOP_TIMEOUT_S)

    def _listed(self) -> bool:
        try:
            devices = self._loop_thread().call(usbmux.list_devices(), 10)
        except Exception:  # usbmuxd gone with the device (a test iPhone), or not answering
            return False
        return any(d.matches_udid(self.udid) for d in devices)

    def _failed(self, detail: str, what: str) -> IosDeviceError:
        if self._listed():
            return IosDeviceError(f"{self.name}: {what} failed ({detail})")
        return IosDeviceLost(f"lost the device {self.name} while {what} ({detail}); usbmuxd no longer lists it "
                             "(unplugged, rebooted, or usbmuxd stopped)")

    # files
    def stage(self, local: Path) -> str:
        """Into Documents/cache/SHA256-NAME; the path relative to Documents, as the runner's argv carries it."""
        local = Path(local)
        if not local.is_file():
            raise FileNotFoundError(f"no such file: {local}")
        digest, size = local_sha256(local), local.stat().st_size
        target = cache_name(digest, local)
        # The name says the content: a file of that name and size is that file (a cut-off push never gets the
        # name: it is written as .part and renamed once its size checks).
        if self._call(f"looking for {target}", lambda link: ops.size_of(link, target)) != size:
            with push_progress(local.name, size, self.name):
                self._push(local, target, size)
        self._sha256[target] = digest
        return target

    def stage_together(self, files: Sequence[Path]) -> list[str]:
        """The runner app (its .ipa, or INSTALLED_APP for the one the device has) → APP_REF, the argv[0] of a run,
        installed first when missing or different; anything else goes into the cache like stage()."""
        return [self._stage_app(Path(f)) if _is_app(Path(f)) else self.stage(Path(f)) for f in files]

    def _push(self, local: Path, target: str, size: int) -> None:
        free = self._call("checking free storage", ops.free_bytes)
        if free is not None and size > free:
            raise StorageFull(f"{self.name}: no room for {local.name} ({mib(size)}): {mib(free)} free; free some "
                              "storage on the device")
        part = f"{target}.part"
        try:
            self._call(f"pushing {local.name} ({mib(size)}) to Documents/{target}",
                       lambda link: ops.push_file(link, local, target, size), 120 + size / MIN_PUSH_BYTES_S)
        except BaseException:  # Ctrl-C, a refused push: no .part left behind while the device answers
            with signals_deferred(), contextlib.suppress(Exception):
                self._call("removing an unfinished push", lambda link: ops.remove(link, [f"Documents/{part}"]),
                           STOP_TIMEOUT_S, retry=False)
            raise
        self.pushed.append(target)

    def _stage_app(self, package: Path) -> str:
        if package in self._apps:
            return APP_REF
        installed = self._call("looking up the runner app", ops.lookup_app)
        recorded = self._call("reading which package it was installed from", ops.app_record) if installed else None
        if package == INSTALLED_APP:
            if installed is None:
                raise AppNotInstalled(app_missing_message(self.name))
            self._sha256[APP_REF] = recorded or (f"unknown: {contract.BUNDLE_ID} {installed.get('CFBundleVersion')} "
                                                 "was not installed by the harness (pass --runner-app)")
        else:
            app = read_ipa(package)
            if installed is None or installed.get("CFBundleVersion") != app.version or recorded != app.sha256:
                self._install(app)
            self._sha256[APP_REF] = app.sha256
        self._apps.add(package)
        return APP_REF

    def _install(self, app: AppPackage) -> None:
        print(f"installing {app.path.name} ({contract.BUNDLE_ID} {app.version}, {mib(app.path.stat().st_size)}) on "
              f"{self.name}", file=sys.stderr, flush=True)
        self._call(f"installing {app.path.name}", lambda link: ops.install_app(link, app), INSTALL_TIMEOUT_S,
                   retry=False)
        self._reset()  # the container was vended before the install: vend it again
        self._call("recording the installed package", lambda link: ops.write_text(link, APP_SHA256_FILE,
                                                                              f"{app.sha256}\n"))

    def sha256(self, device_path: str) -> str:
        """From the name: a staged file is named by its sha256 and was checked by size when staged (AFC cannot hash
        on the phone, and pulling a 4 GB model back over USB to hash it would take minutes)."""
        if device_path in self._sha256:
            return self._sha256[device_path]
        digest = digest_of(device_path)
        if digest is None or self._call(f"looking for {device_path}", lambda link: ops.size_of(link, device_path)) \
                is None:
            raise IosDeviceError(f"{self.name}: cannot hash {device_path}: not a file staged in Documents/cache")
        self._sha256[device_path] = digest
        return digest

    # Paths relative to Documents, as the runner's argv carries them (the app runs there).
    def file_size(self, device_path: str) -> int | None:
        return self._call(f"looking for {device_path}", lambda link: ops.size_of(link, device_path))

    def replace(self, source: str, target: str) -> None:
        self._call(f"moving {source} to {target}", lambda link: ops.rename(link, source, target))

    def remove_file(self, device_path: str) -> None:
        self._call(f"removing {device_path}", lambda link: ops.remove(link, [f"{contract.DOCUMENTS}/{device_path}"]),
                   STOP_TIMEOUT_S)

    def read_files(self, globs: Sequence[str]) -> dict[str, str]:
        return {}  # no /proc or /sys on iOS: the state before and after a run is empty

    # runs
    def _execute(self, job: Job) -> RunResult:
        if not job.argv or job.argv[0] != APP_REF:
            raise ValueError(f"{self.name}: iOS runs the runner app only: argv[0] must be {APP_REF} (what "
                             f"stage_together returns for it), not {job.argv[:1]}")
        flags = job.argv[1:]
        run = _Run(new_run_id(job.number))
        job.handle = run
        command = run_description(self.udid, flags)
        self._call("writing the run's request", lambda link: ops.prepare(link, run.id, flags))
        self._launched = True
        known = self._crash_reports()
        start = time.monotonic()
        run.launching = True
        job.pgid = self._call("launching the runner app", ops.launch, LAUNCH_TIMEOUT_S, retry=False)
        deadline, next_check = start + job.timeout, start + ALIVE_EVERY_S
        while (code := self._call("waiting for the run's done file", lambda link: ops.done(link, run.id))) is None:
            now = time.monotonic()
            if now >= deadline:
                self._kill(job)
                stderr = self._call("reading the app's stderr", lambda link: ops.read_text(link, contract.STDERR))
                return RunResult(137, "", f"{stderr.rstrip()}\nkilled on {self.name} after {job.timeout:g} s: the "
                                          f"app (pid {job.pgid}) wrote no done\n".lstrip(), now - start, True, command)
            if now >= next_check:
                next_check = now + ALIVE_EVERY_S
                if not self._call("checking that the app runs", lambda link: ops.alive(link, job.pgid)):
                    code = self._done_after_exit(run)
                    if code is None:
                        return self._crashed(job, known, time.monotonic() - start, command)
                    break
            time.sleep(max(0.0, min(POLL_S, deadline - now)))
        seconds = time.monotonic() - start
        stdout = self._call("reading the run's result", lambda link: ops.read_text(link, contract.RESULT))
        stderr = self._call("reading the run's stderr", lambda link: ops.read_text(link, contract.STDERR))
        self._stop_lingering(job)
        return RunResult(code, stdout, stderr, seconds, False, command)

    def _done_after_exit(self, run: _Run) -> int | None:
        """`done` of an app that has left the process list: written just before it ended, or (a process list that
        drops the pid before the app's last write lands) just after; None when none comes within EXIT_GRACE_S."""
        give_up = time.monotonic() + EXIT_GRACE_S
        while (code := self._call("reading the run's done file", lambda link: ops.done(link, run.id))) is None and \
                time.monotonic() < give_up:
            time.sleep(0.2)
        return code

    def _stop_lingering(self, job: Job) -> None:
        """The app ends itself after `done`; one that has not is killed, so nothing runs on between cells."""
        try:
            self._kill(job)
        except IosDeviceError as e:
            print(f"warning: {e}", file=sys.stderr, flush=True)

    def _crash_reports(self) -> set[str] | None:
        """The crash reports there before a launch: a later crash is the one report not among them. None when they
        cannot be listed (then the newest report of the app is taken)."""
        try:
            # Flushed, so that reports of earlier crashes still pending are among them, not taken for this run's.
            return {name for name, _ in self._call("listing crash reports", lambda link: ops.crash_listing(link, True))}
        except IosDeviceLost:
            raise
        except IosDeviceError:
            return None

    def _crashed(self, job: Job, known: set[str] | None, seconds: float, command: str) -> RunResult:
        """The app is gone without `done`: its crash report's first lines, once iOS has written it."""
        stderr = self._call("reading the app's stderr", lambda link: ops.read_text(link, contract.STDERR))
        report_name, report, jetsam = None, "", []
        waited = time.monotonic()
        flush = True
        while report_name is None and time.monotonic() - waited <= CRASH_REPORT_WAIT_S:
            listing = self._call("listing crash reports", lambda link, flush=flush: ops.crash_listing(link, flush))
            flush = False
            new = [(mtime, name) for name, mtime in listing if known is None or name not in known]
            jetsam = [name for _, name in sorted(new, reverse=True) if is_jetsam_report(name)]
            app_reports = sorted((m, n) for m, n in new if is_app_crash_report(n))
            if app_reports:
                report_name = app_reports[-1][1]
                report = self._call(f"reading crash report {report_name}",
                                    lambda link, name=report_name: ops.crash_report(link, name))
            else:
                time.sleep(1)
        return RunResult(crash_exit_code(report) if report_name else 1, "",
                         crash_stderr(stderr, self.name, job.pgid or 0, report_name, report, jetsam), seconds, False,
                         command)

    def _kill(self, job: Job) -> None:
        run = job.handle
        if not isinstance(run, _Run) or not run.launching:
            return  # never launched
        self._call(f"stopping run {job.number} (pid {job.pgid or 'not known yet'})",
                   lambda link: ops.kill_app(link, job.pgid), STOP_TIMEOUT_S)

    def _cleanup(self) -> None:
        """Remove the run's files (the cache stays), then let go of the device."""
        try:
            if self._launched:
                with contextlib.suppress(IosDeviceError):
                    self._call("removing the run's files", lambda link: ops.remove(
                        link, [contract.REQUEST, contract.RESULT, contract.STDERR, contract.DONE]), STOP_TIMEOUT_S)
                self._launched = False
        finally:
            self._shutdown()

    def _shutdown(self) -> None:
        """Close the connections and stop the event loop's thread (a later call starts them again)."""
        self._reset()
        if self._loop is not None:
            self._loop.stop()
            self._loop = None

    def clean(self, keep: int | None = None, older_than_days: float | None = None) -> dict:
        """What sessions that are gone left (`python -m harness devices --clean`): a runner app still running, the
        run's files, pushes cut off (.part); with `keep`, all but the `keep` most recently pushed cached files; with
        `older_than_days`, cached files pushed longer ago. (AFC cannot touch a file, so a cached file's age is when
        it was pushed, not when it was last used.) What was removed, by kind."""
        stopped = self._call("stopping a runner app left running", lambda link: ops.kill_app(link, None),
                             STOP_TIMEOUT_S)
        try:
            listing = self._call("listing the cache", ops.cache_listing)
        except AppNotInstalled:  # no app, no container: nothing of the harness's is left there
            return {"runs": [], "parts": [], "cache": []}
        parts = [name for name, _ in listing if name.endswith(".part")]
        cached = sorted(((mtime, name) for name, mtime in listing if not name.endswith(".part")), reverse=True)
        old = [name for i, (mtime, name) in enumerate(cached)
               if (keep is not None and i >= keep)
               or (older_than_days is not None and mtime < time.time() - older_than_days * 86400)]
        run_files = [contract.REQUEST, contract.RESULT, contract.STDERR, contract.DONE]
        cache = contract.CACHE_DIR
        self._call("removing what earlier sessions left", lambda link: ops.remove(
            link, run_files + [f"{cache}/{name}" for name in parts + old]))
        return {"runs": [f"pid {stopped}"] if stopped else [], "parts": parts, "cache": old}

    # facts
    def facts(self) -> DeviceFacts:
        v = self.values
        return DeviceFacts(
            name=self.name, model=self.product_type, os="iOS",
            os_version=f"{self.product_version} ({v.get('BuildVersion', '?')}, {v.get('HardwareModel', '?')})",
            kernel="", abi="arm64",  # CPUArchitecture says arm64e: the same instruction set, pointer signing on
            # iOS lists no CPUs: the profile's count (every core of it; iOS schedules, nothing is pinned).
            cpus=list(range(self.cores or 1)), cpu_max_khz={}, mem_total_mb=None,
        )

    @property
    def device_name(self) -> str:
        return str(self.values.get("DeviceName", ""))


def _quiet_about_lost_connections(loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
    """When a device goes away, pymobiledevice3's AFC reader may fail a request's future just as the request fails
    on its own (its send to the dead socket): that future's "exception was never retrieved" repeats the error the
    caller already has. Everything else is reported as asyncio would."""
    error = context.get("exception")
    if "never retrieved" in str(context.get("message", "")) and isinstance(error, (ConnectionTerminatedError,
                                                                                  ConnectionError)):
        return
    loop.default_exception_handler(context)


def _is_app(path: Path) -> bool:
    return path == INSTALLED_APP or path.suffix == ".ipa"
