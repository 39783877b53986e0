"""What IosTransport (ios.py) stands on without talking to a phone: device names, errors, the runner app's
package (.ipa), the run's request and `done` file (ios_contract.py's side of the conversation) and the texts a
run reports. Nothing here imports pymobiledevice3, so device.py and the runner builds can use it cheaply."""

from __future__ import annotations

import dataclasses
import json
import os
import plistlib
import re
import secrets
import shlex
import signal
import socket
import time
import zipfile
from pathlib import Path

from device_runners.transports import ios_contract as contract
from harness.common.files import local_sha256

IOS_FORM = "ios:UDID"  # how usage errors spell the name of any attached iPhone or iPad
IOS_TARGET = "ios-arm64"  # the runner build an iOS device runs: the runner app, built with Xcode elsewhere
APP_REF = f"app:{contract.BUNDLE_ID}"  # argv[0] of a run: what stage_together returns for the runner app
# A RunnerBuild's `binary` when no --runner-app was given: use the runner app the device already has. Not a file
# name anyone has, and never opened: the iOS transport recognizes it.
INSTALLED_APP = Path("<the runner app installed on the iOS device>")
IOS_README = "device_runners/native/ios/README.md"
# What the app's container keeps of the .ipa it was installed from (its sha256), written after an install by the
# harness: a later session installs the same package again only when this or CFBundleVersion differ.
APP_SHA256_FILE = f"{contract.CACHE_DIR}/.app-sha256"
NO_PINNING = "QoS user-interactive, no core pinning on iOS"

_UDID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")
_INFO_PLIST = re.compile(r"Payload/[^/]+\.app/Info\.plist")


class IosDeviceError(RuntimeError):
    """An operation on an iPhone or iPad failed; the message names the device and the operation."""


class IosDeviceLost(IosDeviceError):
    """The device went away (unplugged, rebooted, usbmuxd gone) during an operation."""


class AppNotInstalled(IosDeviceError):
    """The runner app is not on the device, and no --runner-app was given to install it."""


class StorageFull(IosDeviceError):
    """The device has no room for a file the run needs."""


def parse_ios_name(name: str) -> str:
    """The UDID of `ios:UDID`; ValueError naming the form otherwise."""
    udid = name.removeprefix("ios:")
    if not name.startswith("ios:") or not _UDID.fullmatch(udid):
        raise ValueError(f"not an iOS device name: {name!r}; the form is {IOS_FORM}")
    return udid


def is_ios_name(name: str) -> bool:
    try:
        parse_ios_name(name)
    except ValueError:
        return False
    return True


def app_missing_message(name: str) -> str:
    return (f"{name}: the runner app {contract.BUNDLE_ID} is not installed, and no --runner-app was given to "
            f"install it. Build the app with Xcode as {IOS_README} describes, then pass the .ipa with "
            "--runner-app PATH.ipa (the harness installs it when it is missing or different)")


@dataclasses.dataclass(frozen=True)
class AppPackage:
    """A runner app package (.ipa), as its Info.plist describes it."""

    path: Path
    sha256: str
    bundle_id: str
    version: str  # CFBundleVersion
    executable: str  # CFBundleExecutable: names the app's crash reports


def read_ipa(path: Path) -> AppPackage:
    """The package's identity, read from Payload/NAME.app/Info.plist; ValueError when it is no runner app package
    (a wrong bundle id would install an app the transport never launches)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"--runner-app {path} does not exist")
    try:
        with zipfile.ZipFile(path) as archive:
            names = [n for n in archive.namelist() if _INFO_PLIST.fullmatch(n)]
            if len(names) != 1:
                raise ValueError(f"{path} is not an app package (.ipa): it holds {len(names)} Payload/*.app/"
                                 "Info.plist, not one")
            info = plistlib.loads(archive.read(names[0]))
    except (zipfile.BadZipFile, plistlib.InvalidFileException, OSError) as e:
        raise ValueError(f"{path} is not an app package (.ipa): {e}") from None
    bundle_id = info.get("CFBundleIdentifier", "")
    if bundle_id != contract.BUNDLE_ID:
        raise ValueError(f"{path} holds the app {bundle_id or '(no CFBundleIdentifier)'}, not the runner app "
                         f"{contract.BUNDLE_ID} ({IOS_README})")
    return AppPackage(path, local_sha256(path), bundle_id, str(info.get("CFBundleVersion", "")),
                      str(info.get("CFBundleExecutable", contract.EXECUTABLE)))


def cache_name(digest: str, local: Path) -> str:
    """Where a staged file lives, relative to Documents (what the runner's argv carries): cache/SHA256-NAME."""
    return f"{contract.CACHE_DIR.removeprefix(contract.DOCUMENTS + '/')}/{digest}-{local.name}"


def digest_of(device_path: str) -> str | None:
    """The sha256 a staged file's name carries (cache/SHA256-NAME); None for other paths."""
    m = re.fullmatch(r"cache/([0-9a-f]{64})-[^/]+", device_path)
    return m[1] if m else None


def afc_path(contract_path: str) -> str:
    """A path of the contract (Documents/...) as house_arrest's AFC names it in the app's container."""
    return f"/{contract_path}"


# the run
def new_run_id(number: int) -> str:
    """Unique across sessions and machines: a `done` left by another run never passes for this one's."""
    stamp = time.strftime("%Y%m%d-%H%M%S")
    return f"{stamp}-{socket.gethostname()}-{os.getpid()}-{number}-{secrets.token_hex(4)}"


def request_json(run_id: str, argv: list[str]) -> bytes:
    return json.dumps({"id": run_id, "argv": argv}).encode()


def done_exit_code(text: str, run_id: str) -> int | None:
    """The runner's exit code when `done` is this run's; None when it is another run's or not complete yet."""
    try:
        code, done_id = contract.parse_done(text)
    except ValueError:
        return None
    return code if done_id == run_id else None


def run_description(udid: str, argv: list[str]) -> str:
    """RunResult.command: how the device ran it (the app's bundle id, the request's argv, no pinning)."""
    return (f"launch {contract.BUNDLE_ID} on ios:{udid} through DVT processcontrol, {contract.REQUEST} argv: "
            f"{shlex.join(argv)} ({NO_PINNING})")


# crashes
def is_app_crash_report(filename: str, executable: str = contract.EXECUTABLE) -> bool:
    """Crash reports name the executable: LiteRTBenchRunner-2025-01-31-123456.ips (older iOS: .crash)."""
    return re.fullmatch(rf"{re.escape(executable)}[-_.].*\.(ips|crash)(\.synced)?", filename) is not None


def is_jetsam_report(filename: str) -> bool:
    """iOS names memory kills JetsamEvent-*.ips, not by the app they killed."""
    return filename.startswith("JetsamEvent") and filename.endswith(".ips")


def crash_exit_code(report: str) -> int:
    """128 + the crashing signal when the report names one (as a shell reports a signalled program), else 1."""
    m = re.search(r'"signal"\s*:\s*"(SIG[A-Z0-9]+)"', report) or re.search(r"Exception Type:.*\((SIG[A-Z0-9]+)\)",
                                                                          report)
    if m and m[1] in signal.Signals.__members__:
        return 128 + signal.Signals[m[1]].value
    return 1


def crash_stderr(stderr: str, name: str, pid: int, report_name: str | None, report: str, jetsam: list[str],
                 lines: int = 12) -> str:
    """What a crashed run's RunResult says: the app's own stderr, a line saying it crashed, and last the crash
    report's first lines (the tail an error message quotes)."""
    if report_name is None:
        why = (f"; iOS may have killed it for memory (new report {', '.join(jetsam)})" if jetsam else
               "; no crash report for it appeared (Settings > Privacy & Security > Analytics & Improvements > "
               "Analytics Data lists them)")
        return f"{stderr.rstrip()}\nthe app crashed on {name}: pid {pid} ended without writing done{why}\n".lstrip()
    head = "\n".join(report.splitlines()[:lines])
    return (f"{stderr.rstrip()}\nthe app crashed on {name}: pid {pid} ended without writing done; crash report "
            f"{report_name}, first lines:\n{head}\n").lstrip()
