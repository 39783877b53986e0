"""The iOS transport: device names and profiles, the runner app as the iOS runner build, the request/`done`
conversation, timeouts, crashes and a lost device with the phone's answers given here (offline), then the same
against the protocol-level test iPhone (device_runners/fake_ios, the `fake_ios` fixture) through unmodified
pymobiledevice3: installs, staging by content, bench() and the CLI on a real model, hangs, crashes, a device that
disappears mid-run, `harness devices`."""

from __future__ import annotations

import asyncio
import json
import platform
import plistlib
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from device_runners.device import (
    PROFILES,
    Device,
    is_address_name,
    known_devices,
    open_device,
    profile_for_product_type,
)
from device_runners.runners import native
from device_runners.runners.native import RunnerBuild, build_runner, prebuilt_runner, runner_for_target
from device_runners.transports import ios_contract as contract
from device_runners.transports import ios_link
from device_runners.transports.base import DeviceFacts
from device_runners.transports.ios import IosTransport
from device_runners.transports.ios_support import (
    APP_REF,
    INSTALLED_APP,
    AppNotInstalled,
    IosDeviceError,
    IosDeviceLost,
    cache_name,
    crash_exit_code,
    crash_stderr,
    digest_of,
    done_exit_code,
    is_app_crash_report,
    parse_ios_name,
    read_ipa,
    request_json,
)
from harness.common.files import local_sha256
from harness.measure.bench import Workload, bench, check_abi
from tests.conftest import run_cli

if TYPE_CHECKING:
    from tests.ios_fixtures import FakeIPhone

# The test iPhone's fixtures (tests/ios_fixtures.py: `fake_ios` and what it stands on).
pytest_plugins = ["tests.ios_fixtures"]

UDID = "00008120-001A2B3C4D5E6F70"
REPORT = ('{"app_name":"LiteRTBenchRunner","timestamp":"2025-01-31 12:00:00.00 +0000","bug_type":"309"}\n'
          '{\n  "uptime" : 1000,\n  "procName" : "LiteRTBenchRunner",\n  "exception" : {"codes":"0x0",'
          '"type":"EXC_CRASH","signal":"SIGABRT"},\n' + "".join(f'  "line{i}" : {i},\n' for i in range(30)) + "}\n")


def make_ipa(path: Path, bundle_id: str = contract.BUNDLE_ID, version: str = "7") -> Path:
    """An app package as Xcode exports one: Payload/NAME.app/ with a binary Info.plist."""
    info = {"CFBundleIdentifier": bundle_id, "CFBundleVersion": version, "CFBundleExecutable": contract.EXECUTABLE}
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr(f"Payload/{contract.EXECUTABLE}.app/Info.plist", plistlib.dumps(info, fmt=plistlib.FMT_BINARY))
        archive.writestr(f"Payload/{contract.EXECUTABLE}.app/{contract.EXECUTABLE}", b"\xcf\xfa\xed\xfe" + bytes(64))
    return path


# names and profiles
def test_ios_names():
    assert parse_ios_name(f"ios:{UDID}") == UDID
    assert parse_ios_name("ios:0123456789abcdef0123456789abcdef01234567") == "0123456789abcdef0123456789abcdef01234567"
    for bad in ("ios:", UDID, "adb:X", "ios:a b", "ios:-x"):
        with pytest.raises(ValueError, match="the form is ios:UDID"):
            parse_ios_name(bad)
    assert is_address_name(f"ios:{UDID}") and not is_address_name("ios:")
    assert "ios:UDID" in known_devices()


def test_ios_profiles_match_product_types():
    for name, product, soc, p_cores, cores in [("iphone15pro", "iPhone16,1", "Apple A17 Pro", 2, 6),
                                               ("iphone16", "iPhone17,3", "Apple A18", 2, 6),
                                               ("iphone13", "iPhone14,5", "Apple A15 Bionic", 2, 6),
                                               ("ipad-m2", "iPad14,3", "Apple M2", 4, 8)]:
        profile = PROFILES[name]
        assert (profile.transport, profile.runner_target, profile.soc) == ("ios", "ios-arm64", soc)
        assert (profile.max_threads, profile.cores) == (p_cores, cores)
        assert profile_for_product_type(product) is profile
    assert profile_for_product_type("iPad14,10").name == "ipad-m2"
    assert profile_for_product_type("iPhone99,9").name == "ios"  # an unknown device: the generic profile
    assert PROFILES["ios"].transport == "ios" and not PROFILES["ios"].models


def test_threads_stop_at_the_performance_cores():
    facts = DeviceFacts("iphone15pro", "iPhone16,1", "iOS", "17.5", "", "arm64", list(range(6)), {}, None)
    device = Device(PROFILES["iphone15pro"], _FactsOnly(facts))
    assert device.threads_for(4) == 2 and device.threads_for(1) == 1


def test_no_usbmuxd_is_an_error_naming_the_device_and_what_to_start(monkeypatch, tmp_path):
    monkeypatch.setenv("USBMUXD_SOCKET_ADDRESS", str(tmp_path / "no-usbmuxd"))
    with pytest.raises(IosDeviceError, match=rf"ios:{UDID}: cannot reach usbmuxd at .*no-usbmuxd"):
        open_device(f"ios:{UDID}")
    with pytest.raises(IosDeviceError, match="cannot reach usbmuxd"):
        open_device("iphone15pro")
    from device_runners.device import attached_ios_devices

    [row] = attached_ios_devices()  # `harness devices` says why, since USBMUXD_SOCKET_ADDRESS asks for one
    assert (row["device"], row["state"]) == ("ios", "no usbmuxd") and "cannot reach usbmuxd" in row["error"]
    monkeypatch.delenv("USBMUXD_SOCKET_ADDRESS")
    monkeypatch.setattr("pymobiledevice3.usbmux.MuxConnection.USBMUXD_PIPE", str(tmp_path / "none"))
    assert attached_ios_devices() == []  # no usbmuxd where none was asked for: a machine without iPhones


# the runner build
def test_the_ios_runner_is_an_app_not_built_here(tmp_path):
    with pytest.raises(RuntimeError, match=r"device_runners/native/ios/README.md.*--runner-app PATH.ipa"):
        build_runner("ios-arm64")
    assert native.ios_runner(None) == RunnerBuild(INSTALLED_APP, None, "ios-arm64")
    ipa = make_ipa(tmp_path / "Runner.ipa")
    assert runner_for_target("ios-arm64", None, ipa) == RunnerBuild(ipa.resolve(), None, "ios-arm64")
    assert prebuilt_runner(ipa, "ios-arm64") == RunnerBuild(ipa.resolve(), None, "ios-arm64")
    # --runner-bin is for the other devices of a session: an iOS device takes the app
    assert runner_for_target("ios-arm64", Path("/bin/true"), None).binary == INSTALLED_APP
    package = read_ipa(ipa)
    assert (package.bundle_id, package.version, package.executable) == (contract.BUNDLE_ID, "7", contract.EXECUTABLE)
    with pytest.raises(ValueError, match="holds the app com.example.other, not the runner app"):
        read_ipa(make_ipa(tmp_path / "Other.ipa", "com.example.other"))
    (tmp_path / "bad.ipa").write_text("not a zip")
    with pytest.raises(ValueError, match="is not an app package"):
        native.ios_runner(tmp_path / "bad.ipa")
    with pytest.raises(ValueError, match=r"app package \(.ipa"):
        native.ios_runner(tmp_path / "runner.zip")


def test_check_abi_takes_the_app_on_ios_devices():
    facts = DeviceFacts("iphone15pro", "iPhone16,1", "iOS", "17.5", "", "arm64", list(range(6)), {}, None)
    device = Device(PROFILES["iphone15pro"], _FactsOnly(facts))
    check_abi(device, RunnerBuild(INSTALLED_APP, None, "ios-arm64"))
    if platform.machine() == "x86_64":  # on an arm64 host the host build has the phone's ABI
        with pytest.raises(RuntimeError, match="runs the host runner"):
            check_abi(device, RunnerBuild(Path("x"), Path("y"), "host"))


def test_build_runner_command_says_how_to_get_the_ios_app():
    out = run_cli("build-runner", "--target", "ios-arm64", timeout=120)
    assert out.returncode == 1 and "device_runners/native/ios/README.md" in out.stderr and "--runner-app" in out.stderr


# the contract's files
def test_request_done_and_cache_names():
    assert json.loads(request_json("RUN-1", ["--model", "cache/x-m.tflite"])) == {
        "id": "RUN-1", "argv": ["--model", "cache/x-m.tflite"]}
    assert done_exit_code(contract.done_text(3, "RUN-1"), "RUN-1") == 3
    assert done_exit_code(contract.done_text(0, "RUN-0"), "RUN-1") is None  # an earlier run's
    assert done_exit_code("", "RUN-1") is None and done_exit_code("garbage", "RUN-1") is None
    name = cache_name("ab" * 32, Path("/x/model.tflite"))
    assert name == f"cache/{'ab' * 32}-model.tflite" and digest_of(name) == "ab" * 32
    assert digest_of("request.json") is None


def test_crash_reports_are_told_by_the_executable():
    assert is_app_crash_report("LiteRTBenchRunner-2025-01-31-120000.ips")
    assert not is_app_crash_report("OtherApp-2025-01-31-120000.ips")
    assert not is_app_crash_report("LiteRTBenchRunnerX-2025-01-31-120000.ips")
    assert crash_exit_code(REPORT) == 134 and crash_exit_code("{}") == 1
    stderr = crash_stderr("app stderr\n", "iphone15pro", 42, "LiteRTBenchRunner-1.ips", REPORT, [])
    lines = stderr.strip().splitlines()
    assert lines[0] == "app stderr" and "the app crashed on iphone15pro" in lines[1] and "pid 42" in lines[1]
    assert lines[2:] == REPORT.splitlines()[:12]
    missing = crash_stderr("", "iphone15pro", 42, None, "", ["JetsamEvent-2025.ips"])
    assert "crashed on iphone15pro" in missing and "memory" in missing and "JetsamEvent-2025.ips" in missing


# the transport with the phone's answers given here
class Offline(IosTransport):
    """An IosTransport whose device operations are answered by `answers`: {what the operation says it does (a
    prefix): a value, or a function of the call count}. Every operation it was asked for is in `asked`."""

    def __init__(self, answers: dict[str, Any], installed: bool = True):
        self.answers = answers
        self.asked: list[str] = []
        super().__init__(f"ios:{UDID}", UDID, cores=6)

    def _connect(self) -> dict:
        return {"ProductType": "iPhone16,1", "ProductVersion": "16.7.10", "BuildVersion": "20H350"}

    def _call(self, what: str, op: Callable, timeout: float = 60, retry: bool = True) -> Any:
        self.asked.append(what)
        for prefix, answer in self.answers.items():
            if what.startswith(prefix):
                if callable(answer):
                    return answer(sum(w.startswith(prefix) for w in self.asked))
                return answer
        raise AssertionError(f"unexpected operation: {what}")


def _run_answers(**overrides: Any) -> dict[str, Any]:
    return {"writing the run's request": None, "listing crash reports": [], "launching the runner app": 4242,
            "waiting for the run's done file": lambda n: 0 if n >= 3 else None,
            "reading the run's done file": None, "checking that the app runs": True,
            "reading the run's result": '{"ok": 1}', "reading the run's stderr": "warmup\n", "stopping run": None,
            "reading the app's stderr": "started\n", "reading crash report": REPORT} | overrides


def test_the_installed_app_is_missing_and_no_runner_app_given():
    phone = Offline({"looking up the runner app": None})
    with pytest.raises(AppNotInstalled, match=rf"ios:{UDID}: the runner app {contract.BUNDLE_ID} is not installed, "
                                              r"and no --runner-app.*device_runners/native/ios/README.md.*"
                                              r"--runner-app PATH.ipa"):
        phone.stage_together([INSTALLED_APP])


def test_the_installed_app_runs_when_no_runner_app_is_given():
    phone = Offline({"looking up the runner app": {"CFBundleVersion": "7"},
                     "reading which package": "f" * 64})
    assert phone.stage_together([INSTALLED_APP]) == [APP_REF]
    assert phone.sha256(APP_REF) == "f" * 64
    assert phone.stage_together([INSTALLED_APP]) == [APP_REF]  # looked up once a session
    assert phone.asked.count("looking up the runner app") == 1


def test_a_runner_app_is_installed_only_when_missing_or_different(tmp_path, monkeypatch):
    ipa = make_ipa(tmp_path / "Runner.ipa", version="7")
    digest = read_ipa(ipa).sha256
    installs: list[str] = []
    monkeypatch.setattr(IosTransport, "_install", lambda self, app: installs.append(app.version))
    for installed, recorded, expected in [(None, None, ["7"]), ({"CFBundleVersion": "6"}, digest, ["7"]),
                                          ({"CFBundleVersion": "7"}, "0" * 64, ["7"]),
                                          ({"CFBundleVersion": "7"}, digest, [])]:
        installs.clear()
        phone = Offline({"looking up the runner app": installed, "reading which package": recorded})
        assert phone.stage_together([ipa]) == [APP_REF] and installs == expected, (installed, recorded)
        assert phone.sha256(APP_REF) == digest


def test_a_run_writes_its_request_launches_and_returns_the_runners_output():
    phone = Offline(_run_answers())
    job_argv = [APP_REF, "--model", "cache/abc-m.tflite", "--threads", "2"]
    result = phone.run(job_argv, timeout=30, cpus=[4, 5])
    assert (result.exit_code, result.stdout, result.stderr, result.timed_out) == (0, '{"ok": 1}', "warmup\n", False)
    assert contract.BUNDLE_ID in result.command and "QoS user-interactive, no core pinning on iOS" in result.command
    assert "--model cache/abc-m.tflite --threads 2" in result.command
    asked = phone.asked
    assert asked.index("writing the run's request") < asked.index("launching the runner app")
    assert asked[-1].startswith("stopping run 1 (pid 4242)")  # an app still there after `done` is stopped
    assert not phone._unfinished


def test_argv0_must_be_the_runner_app():
    with pytest.raises(ValueError, match="argv\\[0\\] must be app:dev.litertbench.runner"):
        Offline(_run_answers()).run(["/bin/sh", "-c", "true"], timeout=5)


def test_a_hang_is_killed_by_pid_at_the_timeout():
    phone = Offline(_run_answers(**{"waiting for the run's done file": None}))
    result = phone.run([APP_REF, "--reps", "1"], timeout=1.5)
    assert result.timed_out and result.exit_code == 137
    assert "killed on ios:" in result.stderr and "after 1.5 s" in result.stderr and result.stderr.startswith("started")
    assert any(w.startswith("stopping run 1 (pid 4242)") for w in phone.asked)


def test_a_crash_fails_fast_with_the_crash_reports_first_lines():
    phone = Offline(_run_answers(**{
        "waiting for the run's done file": None, "checking that the app runs": False,
        "listing crash reports": lambda n: [("LiteRTBenchRunner-old.ips", 1.0)] if n == 1 else [
            ("LiteRTBenchRunner-old.ips", 1.0), ("LiteRTBenchRunner-new.ips", 2.0)]}))
    result = phone.run([APP_REF], timeout=60)
    assert not result.timed_out and result.exit_code == 134  # SIGABRT, as the report says
    assert result.seconds < 10
    lines = result.stderr.strip().splitlines()
    assert "the app crashed on ios:" in lines[1] and "LiteRTBenchRunner-new.ips" in lines[1]
    assert lines[-12:] == REPORT.splitlines()[:12]


def test_done_written_just_after_the_app_left_the_process_list_is_no_crash():
    phone = Offline(_run_answers(**{"waiting for the run's done file": None, "checking that the app runs": False,
                                    "reading the run's done file": lambda n: 5 if n >= 2 else None}))
    result = phone.run([APP_REF], timeout=60)
    assert result.exit_code == 5 and result.stdout == '{"ok": 1}'


def test_a_device_that_goes_away_raises_an_error_naming_it(monkeypatch):
    """A connection dropped while usbmuxd no longer lists the device: IosDeviceLost naming it, no retry."""
    phone = Offline({})
    monkeypatch.setattr(IosTransport, "_listed", lambda self: False)
    calls = []

    async def dropped(link):
        calls.append(1)
        raise ConnectionAbortedError("usbmuxd closed the connection")

    with pytest.raises(IosDeviceLost, match=rf"lost the device ios:{UDID} while polling \(ConnectionAbortedError"):
        IosTransport._call(phone, "polling", dropped)
    assert calls == [1]
    monkeypatch.setattr(IosTransport, "_listed", lambda self: True)  # still there: once more on a fresh connection
    with pytest.raises(IosDeviceError, match=rf"ios:{UDID}: polling failed") as failed:
        IosTransport._call(phone, "polling", dropped)
    assert calls == [1, 1, 1] and not isinstance(failed.value, IosDeviceLost)

    async def slow(link):
        await asyncio.sleep(5)

    with pytest.raises(IosDeviceError, match=r"polling failed \(no answer within 0.2 s\)"):
        IosTransport._call(phone, "polling", slow, timeout=0.2)
    phone.close()


def test_state_is_empty_and_staged_files_are_hashed_by_name():
    phone = Offline({"looking for": 10})
    assert phone.read_files(["/proc/cpuinfo"]) == {} and phone.state().max_temp_c() is None
    assert phone.sha256(f"cache/{'c' * 64}-m.tflite") == "c" * 64
    with pytest.raises(IosDeviceError, match="not a file staged"):
        phone.sha256("request.json")
    facts = phone.facts()
    assert (facts.os, facts.abi, facts.model, facts.cpus) == ("iOS", "arm64", "iPhone16,1", list(range(6)))
    assert phone.identity == f"ios:{UDID}"


class _FactsOnly:
    """The part of a transport a Device reads its facts from."""

    kind = "stub"

    def __init__(self, facts: DeviceFacts):
        self._facts = facts

    def facts(self) -> DeviceFacts:
        return self._facts


# against the protocol-level test iPhone (iOS 16.7, an iPhone 14 Pro: the generic `ios` profile)
def _documents(device: FakeIPhone) -> Path:
    [documents] = (device.root / "private/var/mobile/Containers/Data/Application").glob("*/Documents")
    return documents


@pytest.fixture
def iphone(fake_ios: FakeIPhone, tmp_path: Path):
    """The test iPhone opened by its UDID, with the runner app installed; closed afterwards."""
    opened = open_device(f"ios:{fake_ios.udid}")
    assert opened.transport.stage_together([make_ipa(tmp_path / "Runner.ipa")]) == [APP_REF]
    yield fake_ios, opened
    opened.transport.close()


def test_profiles_find_the_attached_device_by_product_type(fake_ios):
    opened = open_device(f"ios:{fake_ios.udid}")
    try:
        assert opened.profile.name == "ios" and opened.facts.model == "iPhone15,2"  # iOS 16.7: an iPhone 14 Pro
        assert opened.facts.os_version.startswith("16.7") and opened.facts.cpus == list(range(6))
        assert opened.transport.identity == f"ios:{fake_ios.udid}"
    finally:
        opened.transport.close()
    generic = open_device("ios")  # the one attached device
    assert generic.transport.udid == fake_ios.udid
    generic.transport.close()
    with pytest.raises(IosDeviceError, match=rf"iphone15pro \(Apple iPhone 15 Pro\): no attached iOS device matches; "
                                             rf"attached iOS devices: {fake_ios.udid} \(iPhone15,2\)\. Name one with "
                                             r"--device ios:UDID"):
        open_device("iphone15pro")
    with pytest.raises(IosDeviceError, match="ios:0000-NOPE: usbmuxd lists no such device; attached iOS devices: "
                                             f"{fake_ios.udid}"):
        open_device("ios:0000-NOPE")


@pytest.fixture
def fake_ios17(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, ios_runner: Path, pymobiledevice3_home: Path):
    """The test iPhone claiming iOS 17.5, which it pairs with an iPhone 15 Pro (iPhone16,1)."""
    from tests.ios_fixtures import FakeIPhone

    socket_dir = Path(tempfile.mkdtemp(prefix="fake-ios-"))
    device = FakeIPhone("00008130-001A2B3C4D5E6F70", str(socket_dir / "usbmuxd.sock"), tmp_path / "iphone",
                        ios_runner)
    device.proc = subprocess.Popen(
        [sys.executable, "-m", "device_runners.fake_ios", "--socket", device.socket, "--root", str(device.root),
         "--runner", str(ios_runner), "--udid", device.udid, "--ios-version", "17.5"],
        cwd=Path(__file__).resolve().parent.parent, stdout=subprocess.PIPE, text=True)
    assert device.proc.stdout.readline().startswith("listening on ")
    monkeypatch.setenv("USBMUXD_SOCKET_ADDRESS", device.socket)
    yield device
    device.stop()
    shutil.rmtree(socket_dir, ignore_errors=True)


def test_a_profile_picks_the_device_of_its_product_type_and_ios_17_needs_tunneld(fake_ios17, tmp_path,
                                                                                 monkeypatch):
    opened = open_device("iphone15pro")
    try:
        assert (opened.profile.name, opened.transport.udid) == ("iphone15pro", fake_ios17.udid)
        assert opened.facts.model == "iPhone16,1" and opened.threads_for(4) == 2
        assert opened.transport.stage_together([make_ipa(tmp_path / "Runner.ipa")]) == [APP_REF]
        with socket.socket() as s:  # a port where no tunneld listens
            s.bind(("127.0.0.1", 0))
            monkeypatch.setenv("LITERT_BENCH_TUNNELD", f"127.0.0.1:{s.getsockname()[1]}")
        with pytest.raises(IosDeviceError, match=r"iphone15pro: no tunneld answers at 127.0.0.1:\d+; iOS 17.5 "
                                                 r"launches apps only over a RemoteXPC tunnel: start `sudo "
                                                 r"pymobiledevice3 remote tunneld`"):
            opened.transport.run([APP_REF, "--reps", "1"], timeout=30)
    finally:
        opened.transport.close()
    by_udid = open_device(f"ios:{fake_ios17.udid}")
    assert by_udid.profile.name == "iphone15pro"  # ios:UDID takes the profile of its ProductType
    by_udid.transport.close()


def test_the_app_is_installed_once_and_again_when_it_changes(fake_ios, tmp_path):
    ipa = make_ipa(tmp_path / "Runner.ipa", version="7")
    for session in range(2):
        opened = open_device(f"ios:{fake_ios.udid}")
        if session == 0:
            with pytest.raises(AppNotInstalled, match="device_runners/native/ios/README.md"):
                opened.transport.stage_together([INSTALLED_APP])
        assert opened.transport.stage_together([ipa]) == [APP_REF]
        assert opened.transport.sha256(APP_REF) == read_ipa(ipa).sha256
        opened.transport.close()
    installs = [line for line in fake_ios.log() if line.startswith("install ")]
    assert len(installs) == 1  # the second session found the same package installed
    newer = make_ipa(tmp_path / "Runner8.ipa", version="8")
    opened = open_device(f"ios:{fake_ios.udid}")
    assert opened.transport.stage_together([newer]) == [APP_REF]
    assert opened.transport.stage_together([INSTALLED_APP]) == [APP_REF]  # the app it has now
    assert opened.transport.sha256(APP_REF) == read_ipa(newer).sha256  # its record survived the upgrade
    opened.transport.close()
    assert len([line for line in fake_ios.log() if line.startswith("install ")]) == 2


def test_staging_twice_pushes_nothing_the_second_time(iphone, tmp_path):
    fake, opened = iphone
    model = tmp_path / "model.tflite"
    model.write_bytes(bytes(range(256)) * 40_000)  # 10 MB: several AFC writes
    path = opened.transport.stage(model)
    assert path.startswith("cache/") and path.endswith("-model.tflite") and opened.transport.pushed == [path]
    assert (_documents(fake) / path).read_bytes() == model.read_bytes()
    assert opened.transport.sha256(path) == local_sha256(model)
    opened.transport.close()
    again = open_device(f"ios:{fake.udid}")
    writes = sum(" write " in f" {line} " for line in fake.log())
    assert again.transport.stage(model) == path and again.transport.pushed == []
    assert sum(" write " in f" {line} " for line in fake.log()) == writes  # not one byte written
    assert not list(_documents(fake).rglob("*.part"))
    again.transport.close()


def test_a_run_returns_the_runners_json_and_leaves_only_the_cache(iphone, tiny_artifact):
    fake, opened = iphone
    artifact = tiny_artifact("dynamic_int8")
    measured = bench(opened, native.ios_runner(None), artifact.path,
                     Workload(prefill_len=32, decode_len=8, threads=2, warmup=0, reps=1, bandwidth_probe_mb=0),
                     timeout=120)
    assert measured.median("prefill_tok_s") > 0 and measured.median("decode_tok_s") > 0
    assert measured.threads == 2 and "no core pinning on iOS" in measured.provenance["device_command"]
    assert set(measured.provenance["sha256"]) == {"model", "runner"}  # the app holds its runtime
    assert measured.provenance["sha256"]["model"] == artifact.sha256
    assert measured.provenance["device"]["os"] == "iOS"
    assert len(_launched(fake)) == 2  # the weight cache's cold run, then the measured run
    assert measured.cold_run.report.weight_cache == "cold" and measured.report.weight_cache == "warm"
    opened.transport.close()
    documents = _documents(fake)
    assert sorted(p.name for p in documents.iterdir()) == ["cache"]  # request, result, stderr and done removed
    # The model and, beside it, the weight cache the app's runner wrote (paths relative to Documents), no .part.
    assert sorted(p.name for p in (documents / "cache").iterdir() if not p.name.startswith(".")) == sorted(
        [f"{artifact.sha256}-{artifact.path.name}", f"{artifact.sha256}.xnnpack_cache"])
    assert measured.cold_run.path == f"cache/{artifact.sha256}.xnnpack_cache"


def test_the_bench_command_installs_the_runner_app_it_is_given(fake_ios, tiny_artifact, tmp_path):
    artifact = tiny_artifact("dynamic_int8")
    ipa = make_ipa(tmp_path / "Runner.ipa")
    out = run_cli("bench", str(artifact.path), "--device", f"ios:{fake_ios.udid}", "--runner-app", str(ipa),
                  "--prefill", "32", "--decode", "8", "--threads", "2", "--reps", "1", "--warmup", "0",
                  "--bandwidth-probe-mb", "0", "--json", timeout=300)
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["provenance"]["sha256"]["runner"] == read_ipa(ipa).sha256
    assert any(line.startswith("install dev.litertbench.runner") for line in fake_ios.log())


def test_a_hang_is_killed_by_pid_at_the_timeout_with_nothing_left_running(iphone):
    fake, opened = iphone
    fake.set_fault("hang")
    start = time.monotonic()
    result = opened.transport.run([APP_REF, "--reps", "1"], timeout=3)
    assert result.timed_out and result.exit_code == 137 and time.monotonic() - start < 15
    [pid] = _launched(fake)
    assert f"signal SIGKILL pid {pid}" in fake.log()
    assert _gone(pid)
    assert not opened.transport._unfinished


def test_a_crash_returns_the_crash_reports_first_lines(iphone):
    fake, opened = iphone
    fake.set_fault("crash")
    start = time.monotonic()
    result = opened.transport.run([APP_REF, "--reps", "1"], timeout=120)
    assert not result.timed_out and result.exit_code == 134  # SIGABRT
    assert time.monotonic() - start < 15  # noticed by the process list, not at the timeout
    [report] = (fake.root / "private/var/mobile/Library/Logs/CrashReporter").glob("LiteRTBenchRunner-*.ips")
    lines = result.stderr.strip().splitlines()
    head = report.read_text().splitlines()[:12]
    assert lines[-len(head):] == head
    assert f"the app crashed on ios:{fake.udid}" in lines[-len(head) - 1] and report.name in lines[-len(head) - 1]
    fake.set_fault(None)  # the next run is fine again, and is not blamed for the old report
    assert opened.transport.run([APP_REF, "--help"], timeout=60).exit_code == 0


def test_a_device_that_disappears_mid_run_raises_an_error_naming_it(iphone):
    fake, opened = iphone
    fake.set_fault("hang")
    killer = threading.Timer(2.0, fake.kill)
    killer.start()
    start = time.monotonic()
    try:
        with pytest.raises(IosDeviceLost, match=rf"lost the device ios:{fake.udid} while"):
            opened.transport.run([APP_REF, "--reps", "1"], timeout=120)
    finally:
        killer.cancel()
    assert time.monotonic() - start < 30
    [pid] = _launched(fake)
    assert _gone(pid)  # the test iPhone's apps die with it


def test_devices_lists_the_iphone_beside_adb_devices(fake_ios, adb_server):
    out = run_cli("devices", timeout=120)
    assert out.returncode == 0, out.stderr
    rows = [json.loads(line) for line in out.stdout.splitlines()]
    [row] = [r for r in rows if r["device"].startswith("ios:")]
    assert row["device"] == f"ios:{fake_ios.udid}" and row["state"] == "device" and row["profile"] == "ios"
    assert row["model"] == "iPhone15,2" and row["os"].startswith("iOS 16.7") and row["storage_free_mb"] > 0


def test_devices_clean_stops_a_runner_left_running_and_trims_the_cache(iphone, adb_server, tmp_path):
    fake, opened = iphone
    model = tmp_path / "model.tflite"
    model.write_bytes(b"weights" * 1000)
    staged = opened.transport.stage(model)
    fake.set_fault("hang")
    opened.transport._call("launching", ios_link.launch)  # what a session killed mid-run leaves: the app running
    (_documents(fake) / "cache" / "cut-off.bin.part").write_bytes(b"half")
    opened.transport.close()
    [pid] = _launched(fake)
    out = run_cli("devices", "--clean", "--keep", "0", timeout=120)
    assert out.returncode == 0, out.stderr
    [row] = [json.loads(line) for line in out.stdout.splitlines() if '"ios:' in line]
    assert row["removed"] == {"runs": [f"pid {pid}"], "parts": ["cut-off.bin.part"], "cache": [staged.split("/")[1]]}
    assert _gone(pid)
    assert sorted(p.name for p in (_documents(fake) / "cache").iterdir()) == [".app-sha256"]  # the app's record


def _launched(device: FakeIPhone) -> list[int]:
    """The pids of the apps the test iPhone launched ("launch BUNDLE pid N [fault F]")."""
    return [int(m[1]) for line in device.log() if (m := re.match(r"launch \S+ pid (\d+)", line))]


def _gone(pid: int, within_s: float = 5.0) -> bool:
    """Whether a process of the test iPhone (a host process) has ended within `within_s`."""
    deadline = time.monotonic() + within_s
    while Path(f"/proc/{pid}").exists() and time.monotonic() < deadline:
        time.sleep(0.1)
    return not Path(f"/proc/{pid}").exists()
