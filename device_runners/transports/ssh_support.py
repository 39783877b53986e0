"""What SshTransport (ssh.py) stands on: board addresses and options, its errors, and the private asyncio
event loop (event_loop.py) that runs asyncssh behind the synchronous Transport API."""

from __future__ import annotations

import dataclasses
import os
import re
import signal
from pathlib import Path
from typing import Any, NamedTuple

from device_runners.transports.event_loop import EventLoopThread  # noqa: F401 - the SSH transport's loop

SSH_FORM = "ssh:USER@HOST[:PORT]"
ROOT_UNDER_HOME = ".cache/litert-bench"
COMMAND_TIMEOUT_S = 300  # the harness's own commands (hashing a model on an SD card takes a while)
BACKSTOP_S = 30  # how long past the board-side timeout we wait for an answer before giving up on the board
STOP_TIMEOUT_S = 20  # killing a run's group, removing a failed push: short, since Ctrl-C waits for them
CONNECT_TIMEOUT_S = 15
# A board that vanishes without closing the TCP connection (unplugged) is noticed after about a minute.
KEEPALIVE_S, KEEPALIVE_MISSES = 15, 4
# uname -m → the runner build a bare `ssh:` board takes.
RUNNER_TARGETS = {"aarch64": "linux-arm64", "arm64": "linux-arm64", "x86_64": "host"}
# USER@HOST:PORT, USER and PORT optional; an IPv6 address in brackets.
_ADDRESS = re.compile(r"(?:(?P<user>[^@\s]+)@)?(?:\[(?P<v6>[0-9A-Fa-f:.]+)\]|(?P<host>[^:@\s\[\]]+))"
                      r"(?::(?P<port>\d+))?")


class SshDeviceError(RuntimeError):
    """An SSH operation failed; the message names the board and what to do."""


class BoardLost(SshDeviceError):
    """The connection to the board dropped during an operation."""


class StorageFull(SshDeviceError):
    """The board has no room for a file the run needs."""


class HostKeyRefused(SshDeviceError):
    """The board's host key is not in known_hosts, or does not match it."""


@dataclasses.dataclass(frozen=True)
class SshAddress:
    host: str
    port: int = 22
    user: str | None = None  # None: ~/.ssh/config's User, else the local user name

    @classmethod
    def parse(cls, spec: str, what: str = SSH_FORM) -> SshAddress:
        """`USER@HOST[:PORT]`, `HOST[:PORT]`, `USER@[IPV6]:PORT` (an `ssh:` prefix is dropped)."""
        m = _ADDRESS.fullmatch(spec.removeprefix("ssh:"))
        if not m:
            raise ValueError(f"not an SSH address: {spec!r}; the form is {what}")
        return cls(m["host"] or m["v6"], int(m["port"] or 22), m["user"])

    def __str__(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{self.user + '@' if self.user else ''}{host}:{self.port}"

    @property
    def known_hosts_name(self) -> str:
        """How known_hosts (and ssh-keygen -R) spell this host: `[host]:port` off port 22."""
        return self.host if self.port == 22 else f"[{self.host}]:{self.port}"

    def ssh_command(self) -> str:
        """The OpenSSH command that reaches this board, for messages."""
        port = f"-p {self.port} " if self.port != 22 else ""
        return f"ssh {port}{self.user + '@' if self.user else ''}{self.host}"


@dataclasses.dataclass(frozen=True)
class SshOptions:
    known_hosts: Path
    key: Path | None = None  # None: the agent, ~/.ssh/id_* and ~/.ssh/config
    accept_new: bool = False  # trust on first use: add an unknown board's key to known_hosts

    @classmethod
    def from_env(cls) -> SshOptions:
        key = os.environ.get("LITERT_BENCH_SSH_KEY")
        return cls(Path(os.environ.get("LITERT_BENCH_SSH_KNOWN_HOSTS") or Path.home() / ".ssh" / "known_hosts"),
                   Path(key) if key else None, os.environ.get("LITERT_BENCH_SSH_ACCEPT_NEW") == "1")


def runner_target_for(machine: str, name: str) -> str:
    """The runner build for a board's `uname -m`; other architectures have none."""
    try:
        return RUNNER_TARGETS[machine]
    except KeyError:
        raise SshDeviceError(f"{name}: the board's architecture is {machine!r} (uname -m); the harness builds runners "
                             f"for {', '.join(sorted(set(RUNNER_TARGETS)))} only") from None


class Completed(NamedTuple):
    code: int
    stdout: str
    stderr: str


def as_text(data: Any) -> str:
    if isinstance(data, bytes):
        return data.decode("utf-8", "replace")
    return data or ""


def signal_number(name: str | None) -> int:
    """SSH names signals without "SIG" ("KILL"); their numbers, for an exit code as a shell would give."""
    return getattr(signal, f"SIG{name}", signal.SIGKILL).value if name else signal.SIGKILL.value


def describe(error: BaseException) -> str:
    return f"{type(error).__name__}: {error}".rstrip(": ")
