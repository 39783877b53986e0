"""What the iOS transport does on a device, as coroutines over pymobiledevice3 on the transport's event loop:
the connections a session keeps open (Link: lockdown, the app's container over house_arrest, DVT over lockdown
or a tunneld RemoteServiceDiscovery), and one coroutine per operation (push, read, write, install, launch, poll,
kill, list). Paths are the contract's (ios_contract.py, Documents/...). ios.py drives them behind the synchronous
Transport API."""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any

from bytestruct import BinaryDataError
from pymobiledevice3.dtx.exceptions import DTXNSCodingError, DTXNsError, DTXProtocolError
from pymobiledevice3.exceptions import (
    AfcException,
    AfcFileNotFoundError,
    AppInstallError,
    AppNotInstalledError,
    PyMobileDevice3Exception,
    TunneldConnectionError,
)
from pymobiledevice3.lockdown import LockdownClient, create_using_usbmux
from pymobiledevice3.services.afc import AfcError, AfcService
from pymobiledevice3.services.crash_reports import CrashReportsManager
from pymobiledevice3.services.dvt.instruments.device_info import DeviceInfo
from pymobiledevice3.services.dvt.instruments.dvt_provider import DvtProvider
from pymobiledevice3.services.dvt.instruments.process_control import SIGKILL, ProcessControl
from pymobiledevice3.services.house_arrest import HouseArrestService
from pymobiledevice3.services.installation_proxy import InstallationProxyService
from pymobiledevice3.tunneld.api import TUNNELD_DEFAULT_ADDRESS, get_tunneld_device_by_udid

from device_runners.transports import ios_contract as contract
from device_runners.transports.ios_support import (
    APP_SHA256_FILE,
    AppPackage,
    IosDeviceError,
    StorageFull,
    afc_path,
    done_exit_code,
    is_app_crash_report,
    is_jetsam_report,
    request_json,
)
from device_runners.transports.remote_runs import mib

PAIR_TIMEOUT_S = 60  # how long "Trust This Computer?" may wait for an answer on the phone
CHUNK = 4 * 2**20  # AFC's largest read: pushes are streamed in these, never held whole in memory
PUBLIC_STAGING = "/PublicStaging"  # where installation_proxy takes packages from (AFC's media root)
# What a dropped connection, a refused service or a malformed answer raise inside pymobiledevice3.
DEVICE_ERRORS = (PyMobileDevice3Exception, OSError, EOFError, DTXProtocolError, DTXNsError, DTXNSCodingError,
                 BinaryDataError)


def describe(error: BaseException) -> str:
    return f"{type(error).__name__}: {error}".rstrip(": ")


def tunneld_address() -> tuple[str, int]:
    """Where `pymobiledevice3 remote tunneld` listens: $LITERT_BENCH_TUNNELD (HOST:PORT), else its default."""
    spec = os.environ.get("LITERT_BENCH_TUNNELD")
    if not spec:
        return TUNNELD_DEFAULT_ADDRESS
    host, _, port = spec.rpartition(":")
    if not host or not port.isdigit():
        raise ValueError(f"LITERT_BENCH_TUNNELD={spec!r}: the form is HOST:PORT")
    return host, int(port)


class Link:
    """The connections a session keeps open to one device, opened on first use. Used on the transport's event
    loop only; a link that failed is closed and replaced by a fresh one (IosTransport._reset)."""

    def __init__(self, udid: str, name: str):
        self.udid = udid
        self.name = name
        self.lockdown: LockdownClient | None = None
        self.documents: HouseArrestService | None = None
        self.rsd: Any = None  # RemoteServiceDiscoveryService from tunneld (iOS 17+)
        self.dvt: DvtProvider | None = None
        self.process_control: ProcessControl | None = None
        self.device_info: DeviceInfo | None = None

    async def lockdown_client(self) -> LockdownClient:
        if self.lockdown is None:
            # autopair: a device this machine has not paired with asks "Trust This Computer?" (unlocked).
            self.lockdown = await create_using_usbmux(serial=self.udid, autopair=True, pair_timeout=PAIR_TIMEOUT_S)
        return self.lockdown

    async def container(self) -> HouseArrestService:
        """AFC inside the runner app's container, whose /Documents is the contract's Documents."""
        if self.documents is None:
            lockdown = await self.lockdown_client()
            try:
                # VendDocuments serves apps that share their Documents (UIFileSharingEnabled)...
                self.documents = await HouseArrestService.create(lockdown, contract.BUNDLE_ID, documents_only=True)
            except AppNotInstalledError:
                raise
            except PyMobileDevice3Exception:
                # ...VendContainer any development-signed app: a runner app built without file sharing.
                self.documents = await HouseArrestService.create(lockdown, contract.BUNDLE_ID, documents_only=False)
        return self.documents

    async def instruments(self) -> tuple[ProcessControl, DeviceInfo]:
        """DVT's processcontrol and deviceinfo on one connection: over lockdown up to iOS 16, through tunneld's
        RemoteServiceDiscovery from iOS 17 on."""
        if self.process_control is None or self.device_info is None:
            lockdown = await self.lockdown_client()
            provider: Any = lockdown
            version = lockdown.product_version
            if major_version(version) >= 17:
                self.rsd = provider = await self._tunnel(version)
            dvt = DvtProvider(provider)
            try:
                await dvt.connect()
            except PyMobileDevice3Exception as e:
                raise IosDeviceError(
                    f"{self.name}: DVT instruments refused ({describe(e)}): enable Developer Mode (Settings > "
                    "Privacy & Security) and mount the developer disk image (`pymobiledevice3 mounter auto-mount`)"
                ) from None
            self.dvt = dvt
            self.process_control, self.device_info = ProcessControl(dvt), DeviceInfo(dvt)
            await self.process_control.connect()
            await self.device_info.connect()
        return self.process_control, self.device_info

    async def _tunnel(self, version: str) -> Any:
        address = tunneld_address()
        how = (f"iOS {version} launches apps only over a RemoteXPC tunnel: start `sudo pymobiledevice3 remote "
               f"tunneld` (it serves {address[0]}:{address[1]}; $LITERT_BENCH_TUNNELD=HOST:PORT names another)")
        try:
            rsd = await get_tunneld_device_by_udid(self.udid, address)
        except TunneldConnectionError:
            raise IosDeviceError(f"{self.name}: no tunneld answers at {address[0]}:{address[1]}; {how}") from None
        if rsd is None:
            raise IosDeviceError(f"{self.name}: tunneld at {address[0]}:{address[1]} has no tunnel to {self.udid}; "
                                 f"{how}")
        return rsd

    async def close(self) -> None:
        """Close what is open, each part on its own: a dead connection must not keep the others open."""
        parts: list[Callable[[], Awaitable[Any]]] = []
        if self.dvt is not None:
            parts.append(self.dvt.close)
        if self.rsd is not None:
            parts.append(self.rsd.close)
        if self.documents is not None:
            parts.append(self.documents.aclose)
        if self.lockdown is not None:
            parts.append(self.lockdown.close)
        for close in parts:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(close(), 5)
        self.dvt = self.rsd = self.documents = self.lockdown = self.process_control = self.device_info = None


def major_version(version: str) -> int:
    head = version.split(".", 1)[0]
    return int(head) if head.isdigit() else 0


def no_usbmuxd() -> str:
    where = os.environ.get("USBMUXD_SOCKET_ADDRESS") or "its default socket"
    return (f"cannot reach usbmuxd at {where}: start it (Linux: apt-get install usbmuxd; it starts when a device is "
            "plugged in), or name another with USBMUXD_SOCKET_ADDRESS")


# What the transport does on the device, as coroutines on its event loop. Paths are the contract's (Documents/...).
async def size_of(link: Link, documents_path: str) -> int | None:
    afc = await link.container()
    try:
        return (await afc.stat(afc_path(f"{contract.DOCUMENTS}/{documents_path}")))["st_size"]
    except AfcFileNotFoundError:
        return None


async def free_bytes(link: Link) -> int | None:
    """Free bytes of the data partition, from AFC's device info; None when the device does not say."""
    afc = await link.container()
    try:
        info = await afc.get_device_info()
    except AfcException:
        return None
    free = info.get("FSFreeBytes", "")
    return int(free) if str(free).isdigit() else None


async def push_file(link: Link, local: Path, target: str, size: int) -> None:
    """Streamed to TARGET.part, its size checked on the device, then renamed into place."""
    afc = await link.container()
    await afc.makedirs(afc_path(contract.CACHE_DIR))
    full = afc_path(f"{contract.DOCUMENTS}/{target}")
    part = f"{full}.part"
    try:
        handle = await afc.fopen(part, "w")
        try:
            with local.open("rb") as f:
                while chunk := f.read(CHUNK):
                    await afc.fwrite(handle, chunk)
        finally:
            await afc.fclose(handle)
    except AfcException as e:
        if e.status == AfcError.NO_SPACE_LEFT:
            raise StorageFull(f"{link.name}: no room for {local.name} ({mib(size)}): the device is full") from None
        raise
    got = (await afc.stat(part))["st_size"]
    if got != size:
        raise IosDeviceError(f"{link.name}: the push of {local} is incomplete: the device holds {got} bytes, sent "
                             f"{size}")
    await afc.rename(part, full)


async def remove(link: Link, paths: Sequence[str]) -> None:
    afc = await link.container()
    for path in paths:
        await afc.rm_single(afc_path(path), force=True)  # force: a missing file is no error


async def rename(link: Link, source: str, target: str) -> None:
    """Paths relative to Documents; AFC's rename replaces an existing target, as rename(2) does."""
    afc = await link.container()
    docs = contract.DOCUMENTS
    await afc.rename(afc_path(f"{docs}/{source}"), afc_path(f"{docs}/{target}"))


async def read_text(link: Link, path: str) -> str:
    """A file of the container as text; '' when it is not there."""
    afc = await link.container()
    try:
        return (await afc.get_file_contents(afc_path(path))).decode("utf-8", "replace")
    except AfcFileNotFoundError:
        return ""


async def write_text(link: Link, path: str, text: str) -> None:
    """Written whole under another name, then renamed: the app never reads half of it."""
    afc = await link.container()
    await afc.makedirs(afc_path(path).rsplit("/", 1)[0])
    await afc.set_file_contents(afc_path(path) + ".part", text.encode())
    await afc.rename(afc_path(path) + ".part", afc_path(path))


async def lookup_app(link: Link) -> dict | None:
    """installation_proxy's record of the runner app (CFBundleVersion, ...), None when it is not installed."""
    async with InstallationProxyService(await link.lockdown_client()) as proxy:
        apps = await proxy.get_apps(bundle_identifiers=[contract.BUNDLE_ID])
    return apps.get(contract.BUNDLE_ID)


async def app_record(link: Link) -> str | None:
    text = (await read_text(link, APP_SHA256_FILE)).strip()
    return text or None


async def install_app(link: Link, app: AppPackage) -> None:
    """Upload the .ipa to PublicStaging (streamed) and install it: installation_proxy's Install upgrades an app
    that is there, keeping its container (and the cache in it)."""
    lockdown = await link.lockdown_client()
    remote = f"{PUBLIC_STAGING}/litert-bench-{app.sha256[:16]}.ipa"
    async with AfcService(lockdown) as afc:
        await afc.makedirs(PUBLIC_STAGING)
        handle = await afc.fopen(remote, "w")
        try:
            with app.path.open("rb") as f:
                while chunk := f.read(CHUNK):
                    await afc.fwrite(handle, chunk)
        finally:
            await afc.fclose(handle)
        try:
            async with InstallationProxyService(lockdown) as proxy:
                await proxy.service.send_plist({"Command": "Install", "ClientOptions": {}, "PackagePath": remote})
                while True:  # progress messages until Complete (pymobiledevice3's own loop draws a progress bar)
                    response = await proxy.service.recv_plist()
                    if not response:
                        raise AppInstallError("installation_proxy hung up before the install completed")
                    if response.get("Error"):
                        raise IosDeviceError(f"{link.name}: installing {app.path.name} failed: {response['Error']}: "
                                             f"{response.get('ErrorDescription', '')} (is the app signed for this "
                                             "device? see the iOS README)")
                    if response.get("Status") == "Complete":
                        break
        finally:
            await afc.rm_single(remote, force=True)


async def prepare(link: Link, run_id: str, flags: list[str]) -> None:
    """Remove what an earlier run left, then write the request (whole, then renamed)."""
    await remove(link, [contract.DONE, contract.RESULT, contract.STDERR, contract.REQUEST])
    await write_text(link, contract.REQUEST, request_json(run_id, flags).decode())


async def launch(link: Link) -> int:
    process_control, _ = await link.instruments()
    try:
        # KillExisting: an instance left from before (another session's) would otherwise just come to the front.
        return await process_control.launch(contract.BUNDLE_ID, kill_existing=True)
    except (DTXNsError, AssertionError) as e:
        raise IosDeviceError(f"{link.name}: the device refused to launch {contract.BUNDLE_ID} ({describe(e)}): unlock "
                             "it, and trust the app's developer (Settings > General > VPN & Device Management)") \
            from None


async def done(link: Link, run_id: str) -> int | None:
    """The runner's exit code once `done` holds this run's id; None before."""
    afc = await link.container()
    try:
        text = (await afc.get_file_contents(afc_path(contract.DONE))).decode("utf-8", "replace")
    except AfcFileNotFoundError:
        return None
    return done_exit_code(text, run_id)


async def running(info: DeviceInfo, pid: int) -> bool:
    """Whether pid is in DVT's process list as the runner app (a pid of an app that ended may be reused)."""
    for process in await info.proclist():
        if process.get("pid") == pid:
            name = str(process.get("name") or "")
            path = str(process.get("realAppName") or "")
            return not (name or path) or name == contract.EXECUTABLE or path.endswith(f"/{contract.EXECUTABLE}")
    return False


async def alive(link: Link, pid: int | None) -> bool:
    _, info = await link.instruments()
    return pid is not None and await running(info, pid)


async def kill_app(link: Link, pid: int | None) -> int | None:
    """SIGKILL the app by pid (looked up by bundle id when its launch was cut off before the pid came back); nothing
    when it is gone. The pid killed, else None; raises when it still runs afterwards."""
    process_control, info = await link.instruments()
    if pid is None:
        pid = await process_control.process_identifier_for_bundle_identifier(contract.BUNDLE_ID)
        if not pid:
            return None
    if not await running(info, pid):
        return None
    await process_control.service.kill_pid_(pid)  # killPid:, no reply: checked in the process list below
    for attempt in range(40):
        await asyncio.sleep(0.25)
        if not await running(info, pid):
            return pid
        if attempt == 8:  # still there after 2 s: the signal through sendSignal:toPid:, which answers
            await process_control.signal(pid, SIGKILL)
    raise IosDeviceError(f"{link.name}: the app (pid {pid}) still runs 10 s after SIGKILL")


async def cache_listing(link: Link) -> list[tuple[str, float]]:
    """(name, mtime) of each file in Documents/cache but the app's record."""
    afc = await link.container()
    try:
        names = await afc.listdir(afc_path(contract.CACHE_DIR))
    except AfcFileNotFoundError:
        return []
    listing = []
    for name in names:
        if afc_path(f"{contract.CACHE_DIR}/{name}") != afc_path(APP_SHA256_FILE):
            stat = await afc.stat(afc_path(f"{contract.CACHE_DIR}/{name}"))
            listing.append((name, stat["st_mtime"].timestamp()))
    return listing


async def crash_listing(link: Link, flush: bool = False) -> list[tuple[str, float]]:
    """(name, mtime) of each report at the top of the device's crash reports (apps' reports are there)."""
    lockdown = await link.lockdown_client()
    if flush:  # crashreportmover moves reports still pending into place, then says "ping"
        with contextlib.suppress(*DEVICE_ERRORS):
            mover = await lockdown.start_lockdown_service(CrashReportsManager.CRASH_MOVER_NAME)
            try:
                await asyncio.wait_for(mover.recvall(5), 5)
            finally:
                await mover.close()
    async with CrashReportsManager(lockdown) as reports:
        listing = []
        for name in await reports.afc.listdir("/"):
            if is_app_crash_report(name) or is_jetsam_report(name):
                stat = await reports.afc.stat(f"/{name}")
                listing.append((name, stat["st_mtime"].timestamp()))
        return listing


async def crash_report(link: Link, name: str) -> str:
    async with CrashReportsManager(await link.lockdown_client()) as reports:
        return (await reports.afc.get_file_contents(f"/{name}")).decode("utf-8", "replace")
