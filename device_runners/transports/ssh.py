"""Linux boards over SSH (asyncssh): a Raspberry Pi 5, a Jetson Orin Nano, an Orange Pi 5, any `ssh:USER@HOST[:PORT]`.

The same guarantees as the adb transport, whose structure and shell lines this mirrors. On the board, under the
login user's $HOME:
  .cache/litert-bench/cache/<sha256 prefix>/NAME   pushed files, named by content and checked with sha256sum, so
                                                   a second run pushes nothing already there
  .cache/litert-bench/run-<time>-<host>-<pid>-<random>/
                                                   one session's working folder, removed by close(): N.stdout,
                                                   N.stderr of run N, and N.pgid while run N may still be going

Every command runs under the board's own `timeout -s KILL` (a lost connection must not leave it running) in `sh`
(whatever the user's login shell is), with every argument quoted. The runner runs in a session of its own (setsid),
so sshd's SIGHUP on a dropped connection does not reach it; after a drop, `_kill` reconnects and kills its group.

Host keys are checked against known_hosts (~/.ssh/known_hosts, or $LITERT_BENCH_SSH_KNOWN_HOSTS); an unknown board
is refused unless $LITERT_BENCH_SSH_ACCEPT_NEW=1 asks to trust it on first use (its key is then added there). Keys:
ssh-agent ($SSH_AUTH_SOCK), ~/.ssh/id_*, ~/.ssh/config's IdentityFile, or $LITERT_BENCH_SSH_KEY.

asyncssh is asyncio: a private event loop runs in a background thread behind the synchronous Transport API.
"""

from __future__ import annotations

import contextlib
import posixpath
import re
import shlex
import time
from collections.abc import Awaitable, Sequence
from pathlib import Path
from typing import Any, TypeVar

import asyncssh

from device_runners.transports.base import (
    DeviceFacts,
    Job,
    RunResult,
    Transport,
    parse_cpu_list,
)
from device_runners.transports.remote_files import RemoteFiles
from device_runners.transports.remote_runs import mib, run_line, stop_runs
from device_runners.transports.ssh_support import (  # noqa: F401 - SSH_FORM, runner_target_for: ssh's API
    BACKSTOP_S,
    COMMAND_TIMEOUT_S,
    CONNECT_TIMEOUT_S,
    KEEPALIVE_MISSES,
    KEEPALIVE_S,
    ROOT_UNDER_HOME,
    RUNNER_TARGETS,
    SSH_FORM,
    STOP_TIMEOUT_S,
    BoardLost,
    Completed,
    EventLoopThread,
    HostKeyRefused,
    SshAddress,
    SshDeviceError,
    SshOptions,
    StorageFull,
    as_text,
    describe,
    runner_target_for,
    signal_number,
)
from harness.common.signals import signals_deferred

_T = TypeVar("_T")


class SshTransport(RemoteFiles, Transport):
    _where, _error = "board", SshDeviceError  # RemoteFiles's messages
    kind = "ssh"

    def __init__(self, name: str, address: SshAddress, options: SshOptions | None = None,
                 launcher: Sequence[str] = ()):
        super().__init__()
        self.name = name
        self.address = address
        self.options = options or SshOptions.from_env()
        self.launcher = list(launcher)  # e.g. qemu-aarch64 -L PREFIX: what runs the runner on a test board
        self._loop: EventLoopThread | None = None
        self._conn: asyncssh.SSHClientConnection | None = None
        self._root: str | None = None
        self._workdir: str | None = None
        self._sha256: dict[str, str] = {}  # board path → sha256 of what is there (pushed or checked this session)
        self._call(self._connection(), CONNECT_TIMEOUT_S * 3)  # fail now, naming the board, not mid-cell

    @property
    def identity(self) -> str:
        return f"ssh-{self.address}"

    # the connection
    def _call(self, coro: Awaitable[_T], timeout: float) -> _T:
        if self._loop is None:
            self._loop = EventLoopThread()
        return self._loop.call(coro, timeout)

    async def _connection(self) -> asyncssh.SSHClientConnection:
        """The open connection, (re)connecting when there is none (first use, or after a drop)."""
        if self._conn is None:
            self._conn = await self._connect()
        return self._conn

    async def _connect(self) -> asyncssh.SSHClientConnection:
        known = self._known_hosts()
        try:
            return await self._open(known)
        except asyncssh.HostKeyNotVerifiable:
            if not self.options.accept_new or self._has_keys(known):
                raise self._host_key_refused(known) from None
        await self._trust_on_first_use()
        return await self._open(self._known_hosts())

    async def _open(self, known_hosts: Any) -> asyncssh.SSHClientConnection:
        a = self.address
        options: dict[str, Any] = {"client_keys": [str(self.options.key)]} if self.options.key else {}
        try:
            return await asyncssh.connect(
                a.host, port=a.port, username=a.user or (), known_hosts=known_hosts, connect_timeout=CONNECT_TIMEOUT_S,
                keepalive_interval=KEEPALIVE_S, keepalive_count_max=KEEPALIVE_MISSES, **options)
        except asyncssh.HostKeyNotVerifiable:
            raise
        except asyncssh.PermissionDenied:
            raise SshDeviceError(
                f"{self.name}: no key was accepted for {a}; install yours with `ssh-copy-id "
                f"{a.ssh_command().removeprefix('ssh ')}`, load it into ssh-agent, or name it with "
                "LITERT_BENCH_SSH_KEY=PATH") from None
        except (OSError, asyncssh.Error) as e:  # refused, no route, name unknown, connect timeout
            raise SshDeviceError(f"{self.name}: cannot reach {a}: {describe(e)}") from None

    def _known_hosts(self) -> asyncssh.SSHKnownHosts:
        path = self.options.known_hosts
        return asyncssh.read_known_hosts(str(path)) if path.is_file() else asyncssh.import_known_hosts("")

    def _has_keys(self, known: asyncssh.SSHKnownHosts) -> bool:
        """Whether known_hosts holds a key for this board at all (then a failure is a changed key, not a new one)."""
        return any(known.match(self.address.host, "", self.address.port)[:2])

    def _host_key_refused(self, known: asyncssh.SSHKnownHosts) -> HostKeyRefused:
        a, path = self.address, self.options.known_hosts
        if self._has_keys(known):
            return HostKeyRefused(
                f"{self.name}: the host key of {a.known_hosts_name} does not match the one in {path}: the board was "
                f"reinstalled, or this is not your board. If it was reinstalled, remove the old key with "
                f"`ssh-keygen -f {path} -R '{a.known_hosts_name}'`, then accept the new one with `{a.ssh_command()}`")
        return HostKeyRefused(
            f"{self.name}: unknown host key: {a.known_hosts_name} is not in {path}. To accept it, connect once with "
            f"`{a.ssh_command()}` and answer yes after checking its fingerprint (or add `ssh-keyscan -p {a.port} "
            f"{a.host}` to {path}), or set LITERT_BENCH_SSH_ACCEPT_NEW=1 to trust a board seen for the first time")

    async def _trust_on_first_use(self) -> None:
        key = await asyncssh.get_server_host_key(self.address.host, self.address.port)
        if key is None:
            raise SshDeviceError(f"{self.name}: {self.address} offered no host key")
        algorithm, blob = key.export_public_key("openssh").decode().split()[:2]
        line = f"{self.address.known_hosts_name} {algorithm} {blob}\n"
        path = self.options.known_hosts
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("a") as f:
            f.write(line)

    def _forget_connection(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            conn.abort()

    # commands
    async def _run(self, command: str) -> asyncssh.SSHCompletedProcess:
        conn = await self._connection()
        return await conn.run(command, check=False, encoding=None)  # bytes: any output

    def _exec(self, command: str, wait_s: float, what: str) -> Completed:
        """One command round trip; a dropped connection becomes BoardLost (the next command reconnects)."""
        try:
            result = self._call(self._run(command), wait_s)
        except SshDeviceError:
            raise
        except TimeoutError:
            self._forget_connection()  # an answer that never came: this connection is not to be trusted
            raise
        except (OSError, asyncssh.Error, EOFError) as e:
            self._forget_connection()
            raise BoardLost(f"lost the board {self.name} while {what} ({describe(e)})") from None
        if result.exit_status is None and result.exit_signal is None:  # the channel closed without an exit
            self._forget_connection()
            raise BoardLost(f"lost the board {self.name} while {what} (the connection to {self.address} dropped)")
        # No exit status but a signal: the shell itself was killed (128 + N, as a shell reports it).
        code = result.exit_status if result.exit_status is not None else 128 + signal_number(result.exit_signal)
        return Completed(code, as_text(result.stdout), as_text(result.stderr))

    def _sh(self, script: str, what: str, timeout: float = COMMAND_TIMEOUT_S) -> Completed:
        """A short command of the harness's own, killed on the board after `timeout` s."""
        try:
            return self._exec(f"timeout -s KILL {timeout:g} sh -c {shlex.quote(script)}", timeout + BACKSTOP_S, what)
        except TimeoutError:
            raise SshDeviceError(f"{self.name}: no answer within {timeout + BACKSTOP_S:g} s while {what}") from None

    def _execute(self, job: Job) -> RunResult:
        line = self._run_line(job)
        start = time.monotonic()
        try:
            result = self._exec(f"sh -c {shlex.quote(line)}", job.timeout + BACKSTOP_S,
                                f"running {shlex.join(job.argv)}")
        except TimeoutError:  # run() kills the group over a new connection
            seconds = time.monotonic() - start
            return RunResult(-1, "", f"no answer from {self.name} within {seconds:.0f} s", seconds, True, line)
        seconds = time.monotonic() - start
        # coreutils' timeout exits 137 after SIGKILL; once the time is up, that is a timeout.
        timed_out = result.code in (124, 137) and seconds >= job.timeout
        return RunResult(result.code, result.stdout, result.stderr, seconds, timed_out, line)

    def _run_line(self, job: Job) -> str:
        """The run's shell line (remote_runs.run_line); the output goes to files, so the runner never blocks on
        the SSH channel, and is sent back once the run ended."""
        return run_line(self._ensure_workdir(), job, self.launcher, echo_output=True)


    def _board_root(self) -> str:
        if self._root is None:
            home = self._sh('printf %s "$HOME"', "reading $HOME").stdout.strip()
            if not home.startswith("/"):
                raise SshDeviceError(f"{self.name}: the login user has no usable $HOME ({home!r})")
            self._root = f"{home}/{ROOT_UNDER_HOME}"
        return self._root

    def _kill(self, job: Job) -> None:
        if self._workdir is not None:  # raises when the board cannot be reached: close() tries again
            self._sh(stop_runs(self._workdir, str(job.number)), f"stopping run {job.number}", STOP_TIMEOUT_S)

    def _cleanup(self) -> None:
        self._remove_workdir()  # a board that is gone keeps its folder
        self._disconnect()

    def _disconnect(self) -> None:
        if self._loop is None:
            return
        conn = self._conn
        if conn is not None:
            with contextlib.suppress(Exception):
                self._call(_close(conn), 10)
        self._conn = None
        self._loop.stop()
        self._loop = None

    # files
    def _root_dir(self) -> str:
        return self._board_root()

    def free_bytes(self, folder: str | None = None) -> int | None:
        """Bytes free to this user in `folder` (created if missing; default: the board's litert-bench folder),
        from `df -Pk`; None if df says nothing."""
        folder = folder or self._board_root()
        out = self._sh(f"mkdir -p {shlex.quote(folder)} && df -Pk {shlex.quote(folder)}",
                             "checking free storage").stdout.strip()
        fields = out.splitlines()[-1].split() if out else []
        return int(fields[3]) * 1024 if len(fields) >= 4 and fields[3].isdigit() else None

    def _push(self, local: Path, target: str, digest: str) -> None:
        size = local.stat().st_size
        free = self.free_bytes(posixpath.dirname(target))
        if free is not None and size > free:
            raise StorageFull(f"{self.name}: no room for {local.name} ({mib(size)}): {mib(free)} free in "
                              f"{posixpath.dirname(target)}; free some storage on the board (or `python -m harness "
                              "devices --clean` for old cache folders)")
        part = f"{target}.part"
        try:
            self._send(local, part)
            self._check_push(local, part, size, digest)
        except BaseException:  # Ctrl-C, a bad or refused push: no .part left behind while the board answers
            with signals_deferred(), contextlib.suppress(SshDeviceError):
                self._sh(f"rm -f {shlex.quote(part)}", "removing an unfinished push", STOP_TIMEOUT_S)
            raise
        self._sh(f"chmod 755 {shlex.quote(part)} && mv -f {shlex.quote(part)} {shlex.quote(target)}",
                 "moving a push into place")

    def _send(self, local: Path, remote: str) -> None:
        what = f"pushing {local.name} ({mib(local.stat().st_size)}) to {remote}"

        async def put() -> None:
            conn = await self._connection()
            async with conn.start_sftp_client() as sftp:
                await sftp.put(str(local), remote)

        try:
            self._call(put(), COMMAND_TIMEOUT_S + max(60.0, local.stat().st_size / 2**20))  # ≥ 1 MiB/s
        except TimeoutError:
            self._forget_connection()
            raise SshDeviceError(f"{self.name}: {what}: no progress, gave up") from None
        except asyncssh.SFTPError as e:
            full = "space" in str(e).lower() or "quota" in str(e).lower()
            raise (StorageFull if full else SshDeviceError)(f"{self.name}: {what} failed: {describe(e)}") from None
        except (OSError, asyncssh.Error) as e:
            self._forget_connection()
            raise BoardLost(f"lost the board {self.name} while {what} ({describe(e)})") from None

    def _check_push(self, local: Path, part: str, size: int, digest: str) -> None:
        out = self._sh(f"stat -c %s {shlex.quote(part)} && sha256sum {shlex.quote(part)}",
                             "checking a push").stdout.split()
        got_size, got_digest = (int(out[0]), out[1]) if len(out) >= 2 and out[0].isdigit() else (None, None)
        if (got_size, got_digest) != (size, digest):
            raise SshDeviceError(f"{self.name}: the push of {local} is incomplete: the board holds {got_size} bytes "
                                 f"(sha256 {str(got_digest)[:12]}), sent {size} (sha256 {digest[:12]})")

    # facts
    def read_files(self, globs: Sequence[str]) -> dict[str, str]:
        return {path: text for path, text in self._gather({}, globs).items() if text}

    def facts(self) -> DeviceFacts:
        commands = {
            "machine": "uname -m", "kernel": "uname -r", "hostname": "hostname",
            # /proc/device-tree/model ends in a NUL; x86 boards have DMI instead.
            "model": "tr -d '\\000' </proc/device-tree/model || cat /sys/devices/virtual/dmi/id/product_name",
            "os": "sed -n 's/^PRETTY_NAME=//p' /etc/os-release",
            "affinity": "taskset -pc $$", "online": "cat /sys/devices/system/cpu/online",
            "meminfo": "grep '^MemTotal:' /proc/meminfo"}
        got = self._gather(commands, ["/sys/devices/system/cpu/cpu[0-9]*/cpufreq/cpuinfo_max_freq"])
        max_khz = {int(m[1]): int(text) for path, text in got.items()
                   if (m := re.search(r"/cpu(\d+)/cpufreq/cpuinfo_max_freq$", path)) and text.isdigit()}
        # The CPUs a command of ours may run on ("pid N's current affinity list: 0-3"), as the host's facts say.
        cpus = parse_cpu_list(got.get("affinity", "").rpartition(":")[2]) or parse_cpu_list(got.get("online", ""))
        mem = re.search(r"(\d+)", got.get("meminfo", ""))
        return DeviceFacts(
            name=self.name, model=got.get("model") or got.get("hostname", ""), os="Linux",
            os_version=got.get("os", "").strip('"') or "?", kernel=got.get("kernel", ""),
            abi=self._launched_abi() or got.get("machine", ""), cpus=cpus or sorted(max_khz) or [0],
            cpu_max_khz=max_khz,
            mem_total_mb=int(mem[1]) // 1024 if mem else None)

    def machine(self) -> str:
        """`uname -m` of the board."""
        return self._sh("uname -m", "reading its architecture").stdout.strip()

    def _launched_abi(self) -> str | None:
        """The ABI a launcher runs the runner as (a test board's qemu-aarch64), which is what check_abi holds the
        runner build to; None for a board that runs it natively."""
        return "aarch64" if self.launcher and Path(self.launcher[0]).name == "qemu-aarch64" else None


async def _close(conn: asyncssh.SSHClientConnection) -> None:
    conn.close()
    await conn.wait_closed()

