"""The test iPhone (device_runners.fake_ios) driven by unmodified pymobiledevice3, as the iOS transport drives a
phone: usbmuxd, lockdownd's TLS session, AFC, installation_proxy, house_arrest, DVT process control and device
info, crash reports, and the app contract of ios_contract.py run by the host build of the native runner."""

from __future__ import annotations

import asyncio
import io
import json
import os
import plistlib
import re
import signal
import subprocess
import sys
import time
import zipfile
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import pytest
from pymobiledevice3.dtx import DTXNsError
from pymobiledevice3.exceptions import (
    AfcException,
    AfcFileNotFoundError,
    AppInstallError,
    AppNotInstalledError,
    InvalidHostIDError,
    MissingValueError,
    NotPairedError,
    UnrecognizedSelectorError,
)
from pymobiledevice3.lockdown import UsbmuxLockdownClient, create_using_usbmux
from pymobiledevice3.pair_records import get_usbmux_pairing_record
from pymobiledevice3.services.afc import AfcError, AfcService
from pymobiledevice3.services.crash_reports import CrashReportsManager
from pymobiledevice3.services.dvt.instruments.device_info import DeviceInfo
from pymobiledevice3.services.dvt.instruments.dvt_provider import DvtProvider
from pymobiledevice3.services.dvt.instruments.process_control import ProcessControl
from pymobiledevice3.services.house_arrest import HouseArrestService
from pymobiledevice3.services.installation_proxy import InstallationProxyService
from pymobiledevice3.services.mobile_image_mounter import DeveloperDiskImageMounter
from pymobiledevice3.usbmux import list_devices

from device_runners.transports import ios_contract

if TYPE_CHECKING:
    from tests.ios_fixtures import FakeIPhone

# Fixtures: fake_ios, ios_runner, pymobiledevice3_home (loaded as a plugin, not imported, so that pytest rewrites
# its asserts and no test parameter shadows an imported name).
pytest_plugins = ["tests.ios_fixtures"]
REPO = Path(__file__).resolve().parent.parent
T = TypeVar("T")
BUNDLE = ios_contract.BUNDLE_ID


def run(coro: Awaitable[T]) -> T:
    return asyncio.run(coro)  # type: ignore[arg-type]


def ipa(version: str = "1", bundle_id: str = BUNDLE) -> bytes:
    """The smallest package installd takes: Payload/NAME.app/Info.plist in a zip."""
    info = {"CFBundleIdentifier": bundle_id, "CFBundleExecutable": ios_contract.EXECUTABLE,
            "CFBundleVersion": version, "CFBundleShortVersionString": f"{version}.0",
            "CFBundleName": "LiteRT Bench", "UIFileSharingEnabled": True}
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr(f"Payload/{ios_contract.EXECUTABLE}.app/Info.plist", plistlib.dumps(info))
        z.writestr(f"Payload/{ios_contract.EXECUTABLE}.app/{ios_contract.EXECUTABLE}", b"\x7fELF not really")
    return buf.getvalue()


async def connect(udid: str) -> UsbmuxLockdownClient:
    return await create_using_usbmux(serial=udid)


async def install(lockdown: UsbmuxLockdownClient, package: bytes) -> None:
    async with InstallationProxyService(lockdown) as installer:
        await installer.install_from_bytes(package)


async def put_request(lockdown: UsbmuxLockdownClient, run_id: str, argv: list[str],
                      files: dict[str, bytes] | None = None) -> None:
    """What the host does before a launch (ios_contract steps 1-2)."""
    async with await HouseArrestService.create(lockdown, BUNDLE, documents_only=True) as docs:
        for name, data in (files or {}).items():  # named relative to Documents, as the request's paths are
            await docs.makedirs(os.path.dirname(f"/{ios_contract.DOCUMENTS}/{name}"))
            await docs.set_file_contents(f"/{ios_contract.DOCUMENTS}/{name}", data)
        for stale in (ios_contract.RESULT, ios_contract.DONE):
            await docs.rm_single(f"/{stale}", force=True)
        await docs.set_file_contents(f"/{ios_contract.REQUEST}", json.dumps({"id": run_id, "argv": argv}).encode())


async def read_documents(lockdown: UsbmuxLockdownClient, *names: str) -> dict[str, bytes | None]:
    async with await HouseArrestService.create(lockdown, BUNDLE) as container:
        return {name: (await container.get_file_contents(f"/{name}") if await container.exists(f"/{name}") else None)
                for name in names}


async def wait_for(check: Callable[[], Awaitable[Any]], timeout: float = 30) -> Any:
    deadline = time.monotonic() + timeout
    while not (result := await check()):
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.1)
    return result


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def gone(pid: int, within_s: float = 10) -> bool:
    deadline = time.monotonic() + within_s
    while alive(pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    return not alive(pid)


# usbmuxd and lockdownd

def test_usbmuxd_lists_the_device_and_hands_out_its_pair_record(fake_ios: FakeIPhone):
    udid, _, _ = fake_ios

    async def check() -> None:
        devices = await list_devices()
        assert [(d.serial, d.connection_type, d.ecid) for d in devices] == [(udid, "USB", 0x001A2B3C4D5E6F70)]
        record = await get_usbmux_pairing_record(udid)
        assert record is not None
        assert {"HostID", "SystemBUID", "HostCertificate", "HostPrivateKey", "RootCertificate",
                "DeviceCertificate", "WiFiMACAddress"} <= set(record)
        assert record["HostCertificate"].startswith(b"-----BEGIN CERTIFICATE-----")
        assert await get_usbmux_pairing_record("00008120-0000000000000000") is None  # not this device's

    run(check())


def test_lockdown_session_is_tls_and_reports_an_ios16_iphone(fake_ios: FakeIPhone):
    udid, _, _ = fake_ios

    async def check() -> None:
        async with await connect(udid) as lockdown:
            assert lockdown.paired and lockdown.session_id
            assert lockdown.service.writer.get_extra_info("ssl_object") is not None  # StartSession switched to TLS
            values = await lockdown.get_value()
            assert (values["ProductVersion"], values["ProductType"], values["CPUArchitecture"],
                    values["DeviceClass"], values["UniqueDeviceID"]) == ("16.7", "iPhone15,2", "arm64e", "iPhone",
                                                                         udid)
            assert values["BuildVersion"] and values["HardwareModel"] == "D73AP" and values["DeviceName"]
            assert lockdown.ecid == 0x001A2B3C4D5E6F70
            assert await lockdown.get_developer_mode_status() is True
            with pytest.raises(MissingValueError):
                await lockdown.get_value(key="NoSuchValue")
            async with DeveloperDiskImageMounter(lockdown) as mounter:  # DVT needs it; auto_mount finds it there
                assert await mounter.is_image_mounted("Developer")
            await lockdown.stop_session()

    run(check())


def test_lockdown_refuses_a_host_it_never_paired_with(fake_ios: FakeIPhone):
    udid, _, _ = fake_ios

    async def check() -> None:
        record = await get_usbmux_pairing_record(udid)
        stranger = {**record, "HostID": "00000000-0000-0000-0000-000000000000"}
        async with await create_using_usbmux(serial=udid, pair_record=stranger, autopair=False) as lockdown:
            assert not lockdown.paired
            assert (await lockdown.get_value())["ProductVersion"] == "16.7"  # public values only
            with pytest.raises(MissingValueError):
                await lockdown.get_value(key="SerialNumber")
            with pytest.raises(InvalidHostIDError):
                await lockdown._request("StartSession", {"HostID": stranger["HostID"]})
            with pytest.raises(NotPairedError):
                await lockdown.start_lockdown_service("com.apple.afc")

    run(check())


# AFC

def test_afc_push_pull_listdir_stat_rename_remove(fake_ios: FakeIPhone, tmp_path: Path):
    udid, _, root = fake_ios
    local = tmp_path / "big.bin"
    local.write_bytes(os.urandom(5 * 1024 * 1024 + 7))  # over pymobiledevice3's 4 MiB: streamed both ways

    async def check() -> None:
        async with await connect(udid) as lockdown, AfcService(lockdown) as afc:
            assert set(await afc.listdir("/")) >= {"Downloads", "PublicStaging"}
            await afc.makedirs("/a/b/c")  # with its parents, as afcd makes them
            await afc.push(str(local), "/a/b/c/big.bin")
            assert (await afc.stat("/a/b/c/big.bin"))["st_size"] == local.stat().st_size
            await afc.pull("/a/b/c/big.bin", str(tmp_path / "back.bin"))
            assert (tmp_path / "back.bin").read_bytes() == local.read_bytes()
            assert (root / "private/var/mobile/Media/a/b/c/big.bin").read_bytes() == local.read_bytes()
            await afc.set_file_contents("/a/small.txt", b"hello")
            await afc.rename("/a/small.txt", "/a/renamed.txt")
            assert sorted(await afc.listdir("/a")) == ["b", "renamed.txt"]
            assert await afc.get_file_contents("/a/renamed.txt") == b"hello"
            assert await afc.isdir("/a/b") and not await afc.exists("/a/small.txt")
            with pytest.raises(AfcFileNotFoundError):
                await afc.stat("/a/missing")
            with pytest.raises(AfcFileNotFoundError):
                await afc.get_file_contents("/missing/file")
            with pytest.raises(AfcException) as not_empty:
                await afc.rm_single("/a/b")
            assert not_empty.value.status == AfcError.DIR_NOT_EMPTY
            assert await afc.listdir("/../../..") == await afc.listdir("/")  # ".." stops at the root
            assert await afc.rm("/a") == []
            assert not await afc.exists("/a")
            info = await afc.get_device_info()
            assert info["Model"] == "iPhone15,2" and int(info["FSFreeBytes"]) > 0

    run(check())


# installation_proxy and house_arrest

def test_install_browse_house_arrest_restart_and_uninstall(fake_ios: FakeIPhone, tmp_path: Path):
    udid, _, root = fake_ios
    containers: list[str] = []

    async def install_and_use() -> None:
        async with await connect(udid) as lockdown:
            with pytest.raises(AppNotInstalledError):
                await HouseArrestService.create(lockdown, BUNDLE)
            await install(lockdown, ipa("1"))
            async with InstallationProxyService(lockdown) as installer:
                apps = {a["CFBundleIdentifier"]: a for a in await installer.browse()}
                assert set(apps) == {BUNDLE}
                app = apps[BUNDLE]
                assert (app["CFBundleVersion"], app["CFBundleShortVersionString"], app["CFBundleExecutable"]) == (
                    "1", "1.0", ios_contract.EXECUTABLE)
                assert re.fullmatch(r"/private/var/containers/Bundle/Application/[0-9A-F-]{36}/"
                                    rf"{ios_contract.EXECUTABLE}\.app", app["Path"])
                assert re.fullmatch(r"/private/var/mobile/Containers/Data/Application/[0-9A-F-]{36}", app["Container"])
                assert (root / app["Path"].lstrip("/") / "Info.plist").is_file()
                looked_up = await installer.lookup({"BundleIDs": [BUNDLE], "ReturnAttributes": ["CFBundleVersion"]})
                assert looked_up == {BUNDLE: {"CFBundleVersion": "1"}}
                assert await installer.get_apps(bundle_identifiers=["com.example.none"]) == {}
            async with await HouseArrestService.create(lockdown, BUNDLE, documents_only=True) as docs:
                assert await docs.listdir("/") == ["Documents"]
                await docs.makedirs("/Documents/cache")
                await docs.set_file_contents("/Documents/cache/model.bin", b"weights")
                assert await docs.listdir("/Documents") == ["cache"]
                with pytest.raises(AfcException):
                    await docs.listdir("/Library")  # VendDocuments: Documents only
            async with await HouseArrestService.create(lockdown, BUNDLE) as container:
                assert {"Documents", "Library", "tmp"} <= set(await container.listdir("/"))
                await container.pull("/Documents/cache/model.bin", str(tmp_path))
                assert (tmp_path / "model.bin").read_bytes() == b"weights"
            await install(lockdown, ipa("2"))  # an upgrade keeps the data container
            async with InstallationProxyService(lockdown) as installer:
                upgraded = (await installer.get_apps(bundle_identifiers=[BUNDLE]))[BUNDLE]
                assert (upgraded["CFBundleVersion"], upgraded["Container"]) == ("2", app["Container"])
                assert upgraded["Path"] != app["Path"]
                assert not (root / app["Path"].lstrip("/")).exists()  # the old bundle is gone
                assert len(list((root / app["Container"].lstrip("/")).parent.iterdir())) == 1  # no second container
            async with await HouseArrestService.create(lockdown, BUNDLE) as container:
                assert await container.get_file_contents("/Documents/cache/model.bin") == b"weights"
            containers.append(app["Container"])

    async def after_restart() -> None:
        async with await connect(udid) as lockdown:
            async with InstallationProxyService(lockdown) as installer:
                apps = await installer.get_apps(application_type="User")
                assert (apps[BUNDLE]["CFBundleVersion"], apps[BUNDLE]["Container"]) == ("2", containers[0])
            async with await HouseArrestService.create(lockdown, BUNDLE) as container:
                assert await container.get_file_contents("/Documents/cache/model.bin") == b"weights"
            async with InstallationProxyService(lockdown) as installer:
                await installer.uninstall(BUNDLE)
                assert await installer.browse() == []
            with pytest.raises(AppNotInstalledError):
                await HouseArrestService.create(lockdown, BUNDLE)
        assert not (root / containers[0].lstrip("/")).exists()  # uninstall removes the data too

    run(install_and_use())
    host_id = plistlib.loads(next((root / "private/var").rglob("host_pair_record.plist")).read_bytes())["HostID"]
    fake_ios.restart()
    run(after_restart())
    assert plistlib.loads(next((root / "private/var").rglob("host_pair_record.plist")).read_bytes())["HostID"] \
        == host_id  # the same pairing after a restart
    assert [line.split()[1] for line in fake_ios.log() if line.startswith(("install ", "uninstall "))] == [
        BUNDLE, BUNDLE, BUNDLE]


def test_install_refuses_an_app_without_a_bundle_id(fake_ios: FakeIPhone):
    udid, _, _ = fake_ios
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr("Payload/Nameless.app/Info.plist", plistlib.dumps({"CFBundleExecutable": "Nameless"}))

    async def check() -> None:
        async with await connect(udid) as lockdown, InstallationProxyService(lockdown) as installer:
            with pytest.raises(AppInstallError, match="PackageInspectionFailed"):
                await installer.install_from_bytes(buf.getvalue())
            assert await installer.browse() == []

    run(check())


# DVT: the app contract

def test_launch_runs_the_runner_in_documents_and_writes_done(fake_ios: FakeIPhone):
    udid, _, root = fake_ios

    async def check() -> None:
        async with await connect(udid) as lockdown:
            await install(lockdown, ipa())
            async with DvtProvider(lockdown) as dvt, ProcessControl(dvt) as control:
                # No model: the runner prints its usage error and exits 2.
                await put_request(lockdown, "run-usage", [])
                pid = await control.launch(BUNDLE)
                assert pid > 0
                files = await wait_for(lambda: _done(lockdown))
                assert files[ios_contract.DONE] == ios_contract.done_text(2, "run-usage").encode()
                assert b"--model is required" in files[ios_contract.STDERR]
                assert files[ios_contract.RESULT] == b""
                # A path relative to Documents reaches the file the host pushed there: the runner reads it (and
                # finds no flatbuffer), where a wrong working folder would say "No such file or directory".
                await put_request(lockdown, "run-model", ["--model", "cache/m.tflite", "--bandwidth-probe-mb", "0"],
                                  files={"cache/m.tflite": b"not a model"})
                await control.launch(BUNDLE)
                files = await wait_for(lambda: _done(lockdown))
                assert files[ios_contract.DONE] == ios_contract.done_text(3, "run-model").encode()
                assert b"cache/m.tflite': The model is not a valid Flatbuffer" in files[ios_contract.STDERR]
                # stdout is result.json; an environment over 128 KiB makes the host split the launch message
                # into DTX fragments
                await put_request(lockdown, "run-help", ["--help"])
                await control.launch(BUNDLE, environment={f"PAD{i}": str(i) * 60000 for i in range(3)})
                files = await wait_for(lambda: _done(lockdown))
                assert ios_contract.parse_done(files[ios_contract.DONE].decode()) == (0, "run-help")
                assert files[ios_contract.RESULT].startswith(b"usage: llm_runner")
                # No request: the app says so and ends as a usage error would.
                async with await HouseArrestService.create(lockdown, BUNDLE) as container:
                    await container.rm_single(f"/{ios_contract.REQUEST}")
                    await container.rm_single(f"/{ios_contract.DONE}")
                await control.launch(BUNDLE)
                files = await wait_for(lambda: _done(lockdown))
                assert ios_contract.parse_done(files[ios_contract.DONE].decode())[0] == 2
                assert b"request.json" in files[ios_contract.STDERR]

    run(check())
    assert sum(line.startswith(f"launch {BUNDLE} pid ") for line in fake_ios.log()) == 4


async def _done(lockdown: UsbmuxLockdownClient) -> dict[str, bytes | None] | None:
    files = await read_documents(lockdown, ios_contract.DONE, ios_contract.RESULT, ios_contract.STDERR)
    return files if files[ios_contract.DONE] is not None else None


def test_a_hanging_app_is_listed_and_killed_by_pid(fake_ios: FakeIPhone):
    udid, _, _ = fake_ios

    async def check() -> None:
        async with await connect(udid) as lockdown:
            await install(lockdown, ipa())
            await put_request(lockdown, "run-hang", ["--help"])
            fake_ios.set_fault("hang")
            async with DvtProvider(lockdown) as dvt, ProcessControl(dvt) as control, DeviceInfo(dvt) as info:
                pid = await control.launch(BUNDLE)
                await asyncio.sleep(0.5)
                assert alive(pid)
                processes = {p["pid"]: p for p in await info.proclist()}
                assert processes[pid]["name"] == ios_contract.EXECUTABLE and processes[pid]["isApplication"]
                assert await info.is_running_pid(pid)
                assert await control.process_identifier_for_bundle_identifier(BUNDLE) == pid
                await control.kill(pid)  # sendSignal:toPid: SIGKILL
                assert await asyncio.to_thread(gone, pid)
                assert not await info.is_running_pid(pid)
                assert pid not in {p["pid"] for p in await info.proclist()}
                # A second launch of the same app kills the first (KillExisting); launched suspended, it waits for
                # resumePid:; killPid: is fire-and-forget.
                first = await control.launch(BUNDLE)
                second = await control.launch(BUNDLE, start_suspended=True)
                assert await asyncio.to_thread(gone, first) and alive(second)
                assert await wait_for(lambda: _state_is(second, "T"))
                await control.resume(second)
                assert await wait_for(lambda: _state_is(second, "S", "R"))
                await control.service.kill_pid_(second)
                assert await asyncio.to_thread(gone, second)
                with pytest.raises(UnrecognizedSelectorError):
                    await info.service.invoke("noSuchSelector")
            assert (await read_documents(lockdown, ios_contract.DONE))[ios_contract.DONE] is None
            async with CrashReportsManager(lockdown) as reports:
                await reports.flush()
                assert await reports.ls("/") == []  # killed by the host: no crash report, as on iOS

    run(check())


async def _state_is(pid: int, *states: str) -> bool:
    """Whether the process is in one of the states of /proc/PID/stat (T: stopped, S: sleeping, R: running)."""
    return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] in states


def test_crash_fault_leaves_a_crash_report_and_no_done(fake_ios: FakeIPhone, tmp_path: Path):
    udid, _, _ = fake_ios

    async def check() -> None:
        async with await connect(udid) as lockdown:
            await install(lockdown, ipa())
            await put_request(lockdown, "run-crash", ["--help"])
            fake_ios.set_fault("crash")
            async with DvtProvider(lockdown) as dvt, ProcessControl(dvt) as control:
                pid = await control.launch(BUNDLE)
            assert await asyncio.to_thread(gone, pid)
            await asyncio.sleep(0.3)  # the fake writes the report after it reaps the app
            assert (await read_documents(lockdown, ios_contract.DONE))[ios_contract.DONE] is None
            async with CrashReportsManager(lockdown) as reports:
                assert await reports.ls("/") == []  # still with OSAnalytics until crashreportmover moves it
                await reports.flush()
                names = await reports.ls("/")
                assert len(names) == 1 and re.fullmatch(
                    rf"/{ios_contract.EXECUTABLE}-\d{{4}}-\d\d-\d\d-\d{{6}}\.ips", names[0]), names
                report = await reports.parse(names[0])
                assert (report.name, report.exception_type, report.bug_type_str) == (
                    ios_contract.EXECUTABLE, "EXC_CRASH", "309")
                await reports.pull(str(tmp_path), names[0])
            fake_ios.set_fault(None)
            async with DvtProvider(lockdown) as dvt, ProcessControl(dvt) as control:
                await control.launch(BUNDLE)  # cleared: the app runs again
            assert (await wait_for(lambda: _done(lockdown)))[ios_contract.DONE] == b"0 run-crash\n"

    run(check())
    text = next(tmp_path.glob("*.ips")).read_text()
    header, body = text.split("\n", 1)
    assert json.loads(header)["bundleID"] == BUNDLE
    assert json.loads(body)["exception"]["signal"] == "SIGABRT"


def test_launching_an_app_that_is_not_installed_fails(fake_ios: FakeIPhone):
    udid, _, _ = fake_ios

    async def check() -> None:
        async with await connect(udid) as lockdown, DvtProvider(lockdown) as dvt, ProcessControl(dvt) as control:
            with pytest.raises(DTXNsError, match="com.example.missing"):
                await control.launch("com.example.missing")

    run(check())


def test_dtx_messages_of_many_fragments_reach_pymobiledevice3_whole():
    from pymobiledevice3.dtx.fragment import DTXFragment
    from pymobiledevice3.dtx.fragmenter import DTXFragmenter
    from pymobiledevice3.dtx.message import DTXMessage

    from device_runners.fake_ios import dtx

    value = [{"pid": i, "name": f"process-{i}"} for i in range(4000)]  # a few hundred KiB archived
    wire = dtx.encode(dtx.OBJECT, 7, 1, 3, value)
    assert wire.count(dtx.MAGIC.to_bytes(4, "little")) > 2  # fragment 0 announces, the others carry the body

    async def parse() -> DTXMessage:
        reader = asyncio.StreamReader()
        reader.feed_data(wire)
        reader.feed_eof()
        fragmenter = DTXFragmenter(await DTXFragment.read(reader), 0, 1 << 30)
        while not fragmenter.add(await DTXFragment.read(reader)):
            pass
        raw, first = fragmenter.assemble()
        return DTXMessage.parse(first, raw)

    message = run(parse())
    assert (message.identifier, message.conversation_index, message.channel_code) == (7, 1, 3)
    assert message.payload == value


# the device goes away

@pytest.mark.parametrize("how", ["sigkill", "sigterm"])
def test_apps_end_with_the_device(fake_ios: FakeIPhone, how: str):
    udid, socket_path, _ = fake_ios

    async def launch_hanging_app() -> int:
        async with await connect(udid) as lockdown:
            await install(lockdown, ipa())
            fake_ios.set_fault("hang")
            async with DvtProvider(lockdown) as dvt, ProcessControl(dvt) as control:
                return await control.launch(BUNDLE)

    pid = run(launch_hanging_app())
    assert alive(pid)
    try:
        if how == "sigkill":
            fake_ios.kill()  # no goodbye: the app dies with it (PR_SET_PDEATHSIG)
        else:
            fake_ios.stop()
            assert not os.path.exists(socket_path)
        assert gone(pid, 5)
    finally:
        if alive(pid):  # what a failure left behind, orphaned
            os.kill(pid, signal.SIGKILL)


def test_usbmuxd_on_tcp(tmp_path: Path, ios_runner: Path, pymobiledevice3_home: Path):
    proc = subprocess.Popen([sys.executable, "-m", "device_runners.fake_ios", "--socket", "127.0.0.1:0",
                             "--root", str(tmp_path / "iphone"), "--runner", str(ios_runner)],
                            cwd=REPO, stdout=subprocess.PIPE, text=True)
    try:
        line = proc.stdout.readline()
        assert re.fullmatch(r"listening on 127\.0\.0\.1:\d+\n", line), line
        address = line.split()[-1]
        devices = run(list_devices(usbmux_address=address))
        assert [d.connection_type for d in devices] == ["USB"]

        async def session() -> str:
            async with await create_using_usbmux(serial=devices[0].serial, usbmux_address=address) as lockdown:
                return lockdown.product_version

        assert run(session()) == "16.7"
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        proc.stdout.close()
