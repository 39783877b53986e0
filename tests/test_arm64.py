"""The arm64 Linux runner: its cross build (Debian's aarch64 compiler, the pinned manylinux aarch64 wheel's
library) and the `qemu-arm64` device that runs it under qemu-user. The emulator's speed measures nothing; what
these tests hold is that the ARM build and the runtime's ARM kernels compute the host's greedy tokens."""

from __future__ import annotations

import platform
import re
import shutil
import subprocess
import time
import zipfile
from pathlib import Path

import pytest

import device_runners.runners.native as build
from device_runners.device import PROFILES, open_device
from device_runners.runners.native import RunnerBuild, build_runner
from device_runners.transports import qemu
from harness.measure.bench import Workload, bench, check_abi
from harness.store.store import Store
from tests.conftest import need_service
from tests.processes import gone
from tests.test_suites_e2e import run_suites

# The default recipes of the suites, each converted once per session (tiny model: seconds).
RECIPES = ["none", "fp16", "dynamic_int8", "dynamic_int4_block32"]
# qemu runs a tiny model ~10× slower than the host does: one short repetition, no bandwidth probe.
DECODE_STEPS = 16
SHORT = Workload(prefill_len=32, decode_len=16, threads=2, warmup=0, reps=1, bandwidth_probe_mb=0)


def need_tool(name: str, package: str) -> str:
    path = shutil.which(name)
    if not path:
        need_service(f"no {name} on PATH (Debian: apt-get install {package})")
    return path


@pytest.fixture(scope="module")
def cross_compiler() -> str:
    return need_tool(build.LINUX_ARM64_CXX, "g++-aarch64-linux-gnu")


@pytest.fixture(scope="module")
def qemu_user(cross_compiler) -> str:  # the arm64 sysroot comes with the cross compiler
    return need_tool(qemu.QEMU, "qemu-user")


@pytest.fixture(scope="module")
def arm_runner(cross_compiler) -> RunnerBuild:
    return build_runner("linux-arm64")


def test_linux_arm64_build_is_an_aarch64_elf_and_cached(arm_runner, monkeypatch):
    readelf = need_tool("readelf", "binutils")
    header = subprocess.run([readelf, "-h", str(arm_runner.binary)], capture_output=True, text=True, timeout=30)
    assert re.search(r"Machine:\s+AArch64", header.stdout), header.stdout
    assert "ELF64" in header.stdout
    dynamic = subprocess.run([readelf, "-d", str(arm_runner.binary)], capture_output=True, text=True,
                             timeout=30).stdout
    assert "Shared library: [liblitert-lm.so]" in dynamic  # by name: it is staged next to the binary
    assert re.search(r"R(UN)?PATH.*\[\$ORIGIN[:\]]", dynamic)
    # The library it links is the pinned aarch64 one.
    assert arm_runner.target == "linux-arm64"
    assert build._file_sha256(arm_runner.runtime_lib).hex() == build.LINUX_ARM64_LIB_SHA256
    lib_header = subprocess.run([readelf, "-h", str(arm_runner.runtime_lib)], capture_output=True, text=True,
                                timeout=30).stdout
    assert re.search(r"Machine:\s+AArch64", lib_header)

    def no_build(*args: object) -> None:
        raise AssertionError("rebuilt although nothing changed")

    def no_download(*args: object, **kwargs: object) -> None:
        raise AssertionError("downloaded the wheel again although the cached library matches its pin")

    monkeypatch.setattr(build, "_cmake_build", no_build)
    monkeypatch.setattr(build, "install_wheel_lib", no_download)
    assert build_runner("linux-arm64") == arm_runner


def test_build_runner_command_prints_the_binary(arm_runner):
    from tests.conftest import run_cli

    out = run_cli("build-runner", "--target", "linux-arm64", timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip().splitlines()[-1] == str(arm_runner.binary)


def test_linux_arm64_library_must_match_its_pinned_sha256(tmp_path):
    wheel = tmp_path / "litert_lm_api-0.18.1-py3-none-manylinux_2_27_aarch64.whl"
    with zipfile.ZipFile(wheel, "w") as archive:
        archive.writestr(f"litert_lm/{build.RUNTIME_LIB}", b"\x7fELF not the pinned library")
    lib = tmp_path / "cache" / build.RUNTIME_LIB
    lib.parent.mkdir()
    with pytest.raises(RuntimeError, match=rf"the Linux arm64 litert-lm-api==0.18.1 wheel is not the pinned one: "
                                           rf"sha256 [0-9a-f]{{64}}, expected {build.LINUX_ARM64_WHEEL_SHA256}"):
        build.install_wheel_lib("linux-arm64", wheel, lib)
    assert not lib.exists()


def test_linux_arm64_without_cross_compiler_says_what_to_install(monkeypatch, tmp_path):
    monkeypatch.setattr(build, "LINUX_ARM64_CXX", "no-such-aarch64-linux-gnu-g++")
    with pytest.raises(RuntimeError, match=r"apt-get install g\+\+-aarch64-linux-gnu.*--runner-bin"):
        build_runner("linux-arm64", tmp_path)


def test_qemu_prefix_is_built_once_and_rebuilt_when_stale(tmp_path, cross_compiler):
    prefix = qemu.qemu_prefix(tmp_path)
    assert prefix == tmp_path / "aarch64"
    assert (prefix / "lib").resolve() == qemu.SYSROOT_LIB.resolve()
    cpuinfo = (prefix / "proc" / "cpuinfo").read_text()
    assert "CPU implementer\t: 0x41" in cpuinfo and "atomics" in cpuinfo and "GenuineIntel" not in cpuinfo
    stamp = (prefix / "proc" / "cpuinfo").stat().st_mtime_ns
    assert qemu.qemu_prefix(tmp_path) == prefix and (prefix / "proc" / "cpuinfo").stat().st_mtime_ns == stamp
    (prefix / "proc" / "cpuinfo").write_text("processor\t: 0\nvendor_id\t: GenuineIntel\n")
    assert qemu.qemu_prefix(tmp_path) == prefix
    assert (prefix / "proc" / "cpuinfo").read_text() == cpuinfo
    assert sorted(p.name for p in tmp_path.iterdir()) == ["aarch64"]  # no scratch folders left
    with pytest.raises(RuntimeError, match="apt-get install g\\+\\+-aarch64-linux-gnu"):
        qemu.qemu_prefix(tmp_path, sysroot_lib=tmp_path / "no-sysroot")


def test_qemu_profile_is_emulated_and_reports_arm64(qemu_user, arm_runner):
    profile = PROFILES["qemu-arm64"]
    assert (profile.transport, profile.runner_target, profile.emulated) == ("qemu", "linux-arm64", True)
    assert not any(p.emulated for name, p in PROFILES.items() if name != "qemu-arm64")
    device = open_device("qemu-arm64")
    assert device.profile.emulated and device.transport.kind == "qemu"
    assert device.transport.identity == "host"  # one lock with the host: it runs on the same cores
    assert device.facts.abi == "aarch64"
    check_abi(device, arm_runner)
    if platform.machine() in ("aarch64", "arm64"):
        return  # here a host build runs under qemu too
    with pytest.raises(RuntimeError, match="built for"):
        check_abi(device, RunnerBuild(Path("x"), Path("y"), "host"))


def test_qemu_kills_the_emulated_program_on_timeout(tmp_path, qemu_user, cross_compiler, marker):
    source = tmp_path / "hang.c"
    source.write_text("#include <unistd.h>\nint main(void) { for (;;) pause(); }\n")
    program = tmp_path / "hang"
    gcc = need_tool("aarch64-linux-gnu-gcc", "gcc-aarch64-linux-gnu")
    subprocess.run([gcc, "-O1", "-o", str(program), str(source)], check=True, timeout=120)
    transport = open_device("qemu-arm64").transport
    start = time.monotonic()
    result = transport.run([transport.stage(program), marker], timeout=2)
    assert result.timed_out and time.monotonic() - start < 30
    assert qemu_user in result.command and "-L" in result.command  # the emulator ran it, under `timeout`
    assert gone(marker)
    transport.close()


@pytest.fixture(scope="module")
def host_runs(tiny_artifact):
    """The host runner's greedy tokens for each recipe, measured once."""
    device, runner = open_device("host"), build_runner("host")
    return {quant: bench(device, runner, tiny_artifact(quant).path, SHORT, timeout=300).report.tokens
            for quant in RECIPES}


# Measured: free-running greedy tokens on qemu-arm64 equal the host's for none, fp16 and dynamic_int8; with
# dynamic_int4_block32 the two part at the 5th token, where the host's top two logits lie 0.0086 apart and the
# ARM kernels' 0.0004 apart, the other way round (cross-device logit noise 0.012, int4's own error against float
# 0.14). That is what the agreement check is for: it holds both to one path and bounds the flip.
FREE_RUNNING_EQUAL = ["none", "fp16", "dynamic_int8"]


@pytest.mark.parametrize("quant", FREE_RUNNING_EQUAL)
def test_qemu_arm64_computes_the_host_tokens(quant, tiny_artifact, host_runs, qemu_user, arm_runner):
    device = open_device("qemu-arm64")
    try:
        measured = bench(device, arm_runner, tiny_artifact(quant).path, SHORT, timeout=300)
    finally:
        device.transport.close()
    assert measured.provenance["device"]["abi"] == "aarch64"
    assert len(measured.report.tokens) == SHORT.decode_len
    assert measured.report.tokens == host_runs[quant]


@pytest.mark.parametrize("quant", RECIPES)
def test_qemu_arm64_agrees_with_the_host_on_every_recipe(quant, tiny_artifact, qemu_user, arm_runner):
    from harness.accuracy.agreement import check_agreement
    from harness.measure.device_bench import DeviceBench

    arm = DeviceBench(open_device("qemu-arm64"), arm_runner, timeout=300, cooldown_s=0)
    host = DeviceBench(open_device("host"), build_runner("host"), timeout=300, cooldown_s=0)
    try:
        result = check_agreement("tinyllama", arm, host, tiny_artifact(quant),
                                 None if quant == "none" else tiny_artifact("none"))
    finally:
        arm.device.transport.close()
    assert result["passed"], result["failures"]
    assert result["max_logit_diff"] <= result["bound"]
    if quant in FREE_RUNNING_EQUAL:  # where free-running greedy matches, so does every teacher-forced step
        assert result["greedy_identical"] and result["steps_equal"] == DECODE_STEPS
    else:
        assert result["steps_equal"] >= DECODE_STEPS - 2 and result["steps_agreeing"] >= 4


def test_suites_on_qemu_arm64_store_their_cells(tmp_path, qemu_user, arm_runner):
    out = run_suites(tmp_path, "-m", "performance", "--device", "qemu-arm64", "--quant", "none,dynamic_int8",
                     "--prefill", "32", "--decode", "16", "--reps", "1", "--warmup", "0", "--threads", "2",
                     "--bandwidth-probe-mb", "0", timeout=900)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    frame = Store(str(tmp_path / "results.db")).results_frame()
    assert sorted(frame["quant"]) == ["dynamic_int8", "none"]
    assert (frame["device"] == "qemu-arm64").all() and (frame["status"] == "ok").all()
    assert (frame["decode_tok_s"] > 0).all()
    assert frame["emulated"].astype(bool).all()
