"""The SSH transport against a real OpenSSH server on loopback (tests/ssh_fixtures.py), whose board is this
machine: names, facts, pinning and quoting, the content-addressed cache, the board's timeout, a connection dropped
mid-run (transport and whole suite), a full disk, host keys (unknown, changed, trust on first use), the real
runner, `harness devices`, and the linux-arm64 runner through qemu-aarch64 on a test board profile."""

import json
import os
import platform
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

import device_runners.device as device_module
from device_runners.device import Profile, open_device
from device_runners.transports.ssh import (
    BoardLost,
    HostKeyRefused,
    SshAddress,
    SshDeviceError,
    SshOptions,
    SshTransport,
    StorageFull,
    runner_target_for,
)
from harness.store.store import Store
from tests.conftest import REPO
from tests.processes import gone, running
from tests.ssh_fixtures import SshBoard, start_sshd, stop_sshd


@pytest.fixture
def board(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[SshBoard]:
    """A real sshd on loopback (killed afterwards, with all it started), its known_hosts and key told to the
    transport and to the pytest and CLI children."""
    started = start_sshd(tmp_path / "sshd")
    for key, value in started.env.items():
        monkeypatch.setenv(key, value)
    monkeypatch.delenv("LITERT_BENCH_SSH_ACCEPT_NEW", raising=False)
    try:
        yield started
    finally:
        stop_sshd(started)


@pytest.fixture
def opened(board: SshBoard):
    device = open_device(board.name)
    yield device
    device.transport.close()


def test_ssh_names():
    assert SshAddress.parse("ssh:pi@raspberrypi.local") == SshAddress("raspberrypi.local", 22, "pi")
    assert SshAddress.parse("ssh:pi@10.0.0.7:2222") == SshAddress("10.0.0.7", 2222, "pi")
    assert SshAddress.parse("ssh:pi@[fe80::1]:22") == SshAddress("fe80::1", 22, "pi")
    assert SshAddress.parse("10.0.0.7:2222").known_hosts_name == "[10.0.0.7]:2222"
    for bad in ("ssh:", "ssh:pi@host:port", "ssh:a@b@c", "ssh:pi@"):
        with pytest.raises(ValueError, match=r"the form is ssh:USER@HOST\[:PORT\]"):
            SshAddress.parse(bad)
    assert runner_target_for("aarch64", "b") == "linux-arm64" and runner_target_for("x86_64", "b") == "host"
    with pytest.raises(SshDeviceError, match=r"ssh:u@riscv: the board's architecture is 'riscv64' \(uname -m\)"):
        runner_target_for("riscv64", "ssh:u@riscv")


def test_board_profiles():
    profiles = device_module.PROFILES
    for name in ("rpi5", "jetson-orin-nano", "orangepi5"):
        profile = profiles[name]
        assert profile.transport == "ssh" and profile.runner_target == "linux-arm64" and profile.soc
        assert profile.big_cores and profile.clusters and profile.max_threads == len(profile.big_cores)
    assert device_module.board_profile("rpi5@pi@10.0.0.7") is profiles["rpi5"]
    assert device_module.board_profile("pixel8") is None and device_module.board_profile("nope@host") is None
    with pytest.raises(ValueError, match=r"rpi5: no address for the board; name it with --device rpi5@"):
        open_device("rpi5")


def test_facts_and_state_of_the_board(opened, board):
    # x86_64 here: a bare ssh: board takes the runner build of its uname -m.
    assert opened.profile.name == "ssh" and opened.profile.runner_target == {"x86_64": "host"}.get(
        platform.machine(), "linux-arm64")
    facts = opened.facts
    assert facts.os == "Linux" and facts.abi == platform.machine() and facts.kernel == platform.release()
    assert facts.cpus == sorted(os.sched_getaffinity(0))  # what `taskset -pc` says a board command may use
    assert facts.mem_total_mb and abs(facts.mem_total_mb - os.sysconf("SC_PHYS_PAGES") * os.sysconf(
        "SC_PAGE_SIZE") // 2**20) <= 2
    assert facts.os_version == _pretty_name()
    assert opened.transport.identity == f"ssh-{board.user}@127.0.0.1:{board.port}"
    state = opened.transport.state()
    assert state.cpu_cur_khz or state.temps_c or state.governors  # /proc/cpuinfo's MHz at least, on a VM


def _pretty_name() -> str:
    for line in Path("/etc/os-release").read_text().splitlines():
        if line.startswith("PRETTY_NAME="):
            return line.split("=", 1)[1].strip('"')
    return "?"


def test_run_is_pinned_quoted_and_reports_exit_codes(opened):
    tricky = "a b'c\"$(touch /tmp/pwned-by-ssh-test);`id`\\"
    result = opened.transport.run(["sh", "-c", 'printf %s "$1"; echo oops >&2; exit 3', "sh", tricky], timeout=30,
                                  cpus=[0])
    assert (result.exit_code, result.stdout, result.stderr) == (3, tricky, "oops\n")
    assert not result.timed_out and not Path("/tmp/pwned-by-ssh-test").exists()
    assert " timeout -s KILL 30 taskset 1 sh -c " in result.command
    pinned = opened.transport.run(["grep", "Cpus_allowed_list", "/proc/self/status"], timeout=30, cpus=[0])
    assert pinned.stdout.split() == ["Cpus_allowed_list:", "0"]


def test_second_session_pushes_nothing_already_on_the_board(board, tmp_path, monkeypatch):
    program = tmp_path / "prog.sh"
    program.write_text("#!/bin/sh\necho staged-program \"$@\"\n")
    lib = tmp_path / "liblitert-lm.so"
    lib.write_bytes(os.urandom(300_000))
    sends: list[str] = []
    real_send = SshTransport._send
    monkeypatch.setattr(SshTransport, "_send", lambda self, local, remote: (sends.append(remote),
                                                                              real_send(self, local, remote))[1])
    first = open_device(board.name)
    try:
        binary, staged_lib = first.transport.stage_together([program, lib])
        assert sends == [f"{binary}.part", f"{staged_lib}.part"]
        assert Path(binary).parent == Path(staged_lib).parent
        assert str(board.home / ".cache/litert-bench/cache") in binary
        assert first.transport.run([binary, "x y"], timeout=30).stdout == "staged-program x y\n"
        assert first.transport.sha256(staged_lib) == _sha256(lib)
        assert not list(Path(binary).parent.glob("*.part"))
    finally:
        first.transport.close()
    assert not list((board.home / ".cache/litert-bench").glob("run-*"))  # the session's folder is gone

    Path(staged_lib).write_bytes(b"corrupted")  # the board's copy no longer matches: pushed again
    sends.clear()
    second = open_device(board.name)
    try:
        assert second.transport.stage_together([program, lib]) == [binary, staged_lib]
        assert sends == [f"{staged_lib}.part"]
        assert _sha256(Path(staged_lib)) == _sha256(lib)
    finally:
        second.transport.close()


def _sha256(path: Path) -> str:
    import hashlib

    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_hanging_runner_is_killed_by_the_boards_timeout(opened, marker):
    start = time.monotonic()
    result = opened.transport.run(["sh", "-c", "sleep 60; echo never", marker], timeout=2)
    assert result.timed_out and result.exit_code == 137 and result.stdout == ""
    assert time.monotonic() - start < 15  # the board's `timeout -s KILL 2`, not our backstop (2 + 30 s)
    assert gone(marker, within_s=2)


def test_connection_dropped_mid_run_fails_the_run_and_leaves_nothing_running(opened, board, marker):
    def drop() -> None:  # once the program runs on the board, kill the sshd child serving the connection
        deadline = time.monotonic() + 20
        while not running(marker) and time.monotonic() < deadline:
            time.sleep(0.05)
        for pid in board.session_pids():
            os.kill(pid, 9)

    threading.Thread(target=drop, daemon=True).start()
    start = time.monotonic()
    with pytest.raises(BoardLost, match=rf"lost the board {board.name} while running sh -c 'sleep 60' "):
        opened.transport.run(["sh", "-c", "sleep 60", marker], timeout=60)
    assert time.monotonic() - start < 20
    assert gone(marker, within_s=2)  # run() reconnected and killed the runner's group on the board
    # The board answers again on a new connection: the next run goes ahead.
    assert opened.transport.run(["echo", "next"], timeout=30).stdout == "next\n"


def test_full_disk_is_refused_before_the_push(board, tmp_path, monkeypatch):
    small = board.home / ".cache/litert-bench"
    small.mkdir(parents=True)
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(small)], capture_output=True)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a 1 MiB tmpfs here: {mounted.stderr.decode().strip()}")
    try:
        model = tmp_path / "model.tflite"
        model.write_bytes(os.urandom(3 * 2**20))
        sends: list[str] = []
        monkeypatch.setattr(SshTransport, "_send", lambda self, local, remote: sends.append(remote))
        device = open_device(board.name)
        try:
            with pytest.raises(StorageFull, match=rf"{board.name}: no room for model.tflite \(3.0 MiB\): "
                                                  r"1.0 MiB free in .*; free some storage on the board"):
                device.transport.stage(model)
        finally:
            device.transport.close()
        assert sends == []  # refused before anything was sent
        assert not list(small.rglob("*.part"))
    finally:
        subprocess.run(["umount", str(small)], check=True)


def test_unknown_host_key_is_refused_saying_how_to_accept_it(board):
    empty = board.known_hosts.with_name("empty_known_hosts")
    name = board.name
    with pytest.raises(HostKeyRefused) as refused:
        SshTransport(name, SshAddress.parse(name), SshOptions(empty, board.client_key))
    message = str(refused.value)
    assert f"{name}: unknown host key: [127.0.0.1]:{board.port} is not in {empty}" in message
    assert f"`ssh -p {board.port} {board.user}@127.0.0.1`" in message and "LITERT_BENCH_SSH_ACCEPT_NEW=1" in message
    assert not empty.exists()  # nothing was trusted

    # Trust on first use, when asked: the key is recorded, and checked from then on.
    trusting = SshTransport(name, SshAddress.parse(name), SshOptions(empty, board.client_key, accept_new=True))
    try:
        assert trusting.run(["echo", "ok"], timeout=30).stdout == "ok\n"
    finally:
        trusting.close()
    assert empty.read_text() == f"[127.0.0.1]:{board.port} {board.host_key_line}\n"


def test_changed_host_key_is_refused_even_when_trusting_new_ones(board, tmp_path):
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(tmp_path / "other")], check=True)
    other = " ".join((tmp_path / "other.pub").read_text().split()[:2])
    known = tmp_path / "known_hosts"
    known.write_text(f"[127.0.0.1]:{board.port} {other}\n")
    with pytest.raises(HostKeyRefused, match=rf"does not match the one in {known}: .*ssh-keygen -f {known} -R "
                                             rf"'\[127.0.0.1\]:{board.port}'"):
        SshTransport(board.name, SshAddress.parse(board.name), SshOptions(known, board.client_key, accept_new=True))
    assert known.read_text() == f"[127.0.0.1]:{board.port} {other}\n"


def test_a_board_without_our_key_says_how_to_install_it(board, tmp_path):
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(tmp_path / "stranger")], check=True)
    with pytest.raises(SshDeviceError, match=rf"no key was accepted for .*`ssh-copy-id -p {board.port} "):
        SshTransport(board.name, SshAddress.parse(board.name), SshOptions(board.known_hosts, tmp_path / "stranger"))


def test_devices_lists_the_configured_boards_that_answer(board, monkeypatch, capsys):
    from harness.cli import main

    profiles = dict(device_module.PROFILES)
    profiles["test-board"] = Profile("test-board", "ssh", "host", address=f"{board.user}@127.0.0.1:{board.port}",
                                     clusters="as this machine")
    profiles["gone-board"] = Profile("gone-board", "ssh", "host", address=f"{board.user}@127.0.0.1:1")
    monkeypatch.setattr(device_module, "PROFILES", profiles)
    monkeypatch.setattr(device_module, "attached_devices", lambda: [])  # no adb server in this test
    assert main(["devices"]) == 0
    rows = {row["device"]: row for row in map(json.loads, capsys.readouterr().out.splitlines())}
    assert rows["test-board"]["state"] == "ok" and rows["test-board"]["abi"] == platform.machine()
    assert rows["test-board"]["storage_free_mb"] > 0
    assert rows["gone-board"]["state"] == "no answer" and "cannot reach" in rows["gone-board"]["error"]
    assert "rpi5" not in rows  # a profile without an address is not probed


SMALL = ["--models", "tinyllama", "--quant", "dynamic_int8", "--prefill", "32", "--decode", "16", "--reps", "2",
         "--cooldown", "0", "-k", "test_prefill_and_decode"]


def run_suites(tmp_path: Path, *extra: str, timeout: float = 600) -> subprocess.CompletedProcess:
    args = [sys.executable, "-m", "pytest", "suites/", "-p", "no:cacheprovider", *SMALL,
            "--results-db", str(tmp_path / "results.db"), "--report", str(tmp_path / "report"), *extra]
    return subprocess.run(args, cwd=REPO, capture_output=True, text=True, timeout=timeout)


def test_suite_on_the_board_survives_a_dropped_connection(board, tmp_path, marker):
    """Two cells on the board with the real runner; the connection drops while the first one's runner runs: that
    cell fails naming the board, the next cell runs, and nothing is left running on the board."""
    from device_runners.runners.native import build_runner

    flag = tmp_path / "stalled-once"
    wrapper = tmp_path / "runner" / "llm_runner"
    wrapper.parent.mkdir()
    stall = f"{sys.executable} -c 'import time; time.sleep(120)' {marker}"
    wrapper.write_text(f'#!/bin/sh\n[ -e {flag} ] || {{ touch {flag}; exec {stall}; }}\n'
                       f'exec {build_runner("host").binary} "$@"\n')
    wrapper.chmod(0o755)

    def drop() -> None:
        deadline = time.monotonic() + 400
        while not running(marker) and time.monotonic() < deadline:
            time.sleep(0.2)
        for pid in board.session_pids():
            os.kill(pid, 9)

    threading.Thread(target=drop, daemon=True).start()
    out = run_suites(tmp_path, "--device", board.name, "--threads", "1,2", "--runner-bin", str(wrapper))
    assert out.returncode == 1, out.stdout[-3000:] + out.stderr[-3000:]
    assert gone(marker, within_s=2), "the stalled runner was left running on the board"
    frame = Store(str(tmp_path / "results.db")).results_frame().sort_values("id")
    assert list(frame["status"]) == ["failed", "ok"], frame[["status", "error"]].to_string()
    assert f"BoardLost: lost the board {board.name} while running " in frame.iloc[0]["error"]
    ok = frame.iloc[1]
    assert ok["decode_tok_s"] > 0 and ok["device"] == board.name
    data = json.loads(ok["data"])
    assert " timeout -s KILL 600 taskset " in data["provenance"]["device_command"]
    assert data["provenance"]["device"]["os"] == "Linux"
    assert not list((board.home / ".cache/litert-bench").glob("run-*"))  # the session's folder is gone


@pytest.fixture
def qemu_board(board, monkeypatch):
    """A board profile used only by the tests: this machine over SSH, running the linux-arm64 runner through
    qemu-aarch64 with the qemu transport's prefix folder (an ARM /proc/cpuinfo, the arm64 sysroot)."""
    from device_runners.transports import qemu

    if not shutil.which(qemu.QEMU) or not (qemu.SYSROOT_LIB / qemu.LOADER).exists():
        pytest.skip("needs qemu-user and g++-aarch64-linux-gnu (apt-get install qemu-user g++-aarch64-linux-gnu)")
    launcher = (qemu.QEMU, "-cpu", qemu.DEFAULT_CPU, "-L", str(qemu.qemu_prefix()))
    profile = Profile("qemu-test-board", "ssh", "linux-arm64", address=f"{board.user}@127.0.0.1:{board.port}",
                      abi="arm64-v8a", launcher=launcher, emulated=True)
    monkeypatch.setattr(device_module, "PROFILES", {**device_module.PROFILES, profile.name: profile})
    return profile


def test_arm64_runner_runs_on_a_qemu_board_over_ssh(qemu_board, tiny_artifact):
    from device_runners.runners.native import build_runner
    from harness.measure.bench import Workload, run_benchmark

    runner = build_runner("linux-arm64")
    device = open_device(qemu_board.name)
    try:
        # The board is this x86_64 machine; what it runs is arm64 code, through the profile's launcher.
        binary, _ = device.transport.stage_together([runner.binary, runner.runtime_lib])
        artifact = tiny_artifact()
        workload = Workload(prefill_len=32, decode_len=16, threads=1, reps=1, warmup=0, bandwidth_probe_mb=0)
        measurement = run_benchmark(device, [binary], artifact.path, workload, timeout=600)
    finally:
        device.transport.close()
    assert measurement.report.samples and measurement.report.tokens
    assert f" {qemu_board.launcher[0]} -cpu {qemu_board.launcher[2]} -L " in measurement.provenance["device_command"]
