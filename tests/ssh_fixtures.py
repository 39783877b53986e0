"""A real OpenSSH server on loopback, as fixtures: the board of the SSH transport's tests is this machine.

`sshd_board`: generates an ed25519 host key and client key, writes an sshd_config that listens on 127.0.0.1 only
(a free port), starts `/usr/sbin/sshd -D -e` and yields an SshBoard: its address, a known_hosts file that trusts
its host key, the client key, and $HOME of its sessions (a folder of the test's own, set with sshd's SetEnv, so
the board's cache and working folders land under tmp_path). sshd is killed in the finalizer, with every session
child it forked and what runs under them.
"""

from __future__ import annotations

import contextlib
import dataclasses
import getpass
import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

SSHD = "/usr/sbin/sshd"


@dataclasses.dataclass
class SshBoard:
    port: int
    user: str
    home: Path  # $HOME of the board's sessions: its litert-bench folder is home/.cache/litert-bench
    known_hosts: Path  # trusts this sshd's host key
    client_key: Path
    host_key_line: str  # "ssh-ed25519 AAAA..." as known_hosts holds it
    proc: subprocess.Popen
    log: Path

    @property
    def name(self) -> str:
        return f"ssh:{self.user}@127.0.0.1:{self.port}"

    @property
    def env(self) -> dict[str, str]:
        """What the transport reads to reach this board (for a child process: add to os.environ)."""
        return {"LITERT_BENCH_SSH_KNOWN_HOSTS": str(self.known_hosts), "LITERT_BENCH_SSH_KEY": str(self.client_key)}

    def session_pids(self) -> list[int]:
        """The sshd children serving connections, one per connection (each calls setsid: not in our group)."""
        return _children(self.proc.pid)


def _children(pid: int) -> list[int]:
    out = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True).stdout
    return [int(p) for p in out.split()]


def _descendants(pid: int) -> list[int]:
    found = []
    for child in _children(pid):
        found += [child, *_descendants(child)]
    return found


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _keygen(path: Path) -> None:
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(path)], check=True, timeout=30)


def _config(folder: Path, home: Path) -> Path:
    config = folder / "sshd_config"
    config.write_text("\n".join([
        "ListenAddress 127.0.0.1",
        f"HostKey {folder / 'host_key'}",
        f"AuthorizedKeysFile {folder / 'authorized_keys'}",
        f"PidFile {folder / 'sshd.pid'}",
        "PasswordAuthentication no", "KbdInteractiveAuthentication no",
        "UsePAM no", "StrictModes no", "PermitRootLogin yes",
        "Subsystem sftp internal-sftp",
        f"SetEnv HOME={home}",
        "",
    ]))
    return config


def start_sshd(folder: Path) -> SshBoard:
    if not Path(SSHD).is_file() or not shutil.which("ssh-keygen"):
        pytest.skip("no OpenSSH server here (Debian: apt-get install openssh-server)")
    folder.mkdir(parents=True, exist_ok=True)
    home = folder / "home"
    home.mkdir(exist_ok=True)
    _keygen(folder / "host_key")
    _keygen(folder / "client_key")
    shutil.copy(folder / "client_key.pub", folder / "authorized_keys")
    host_key_line = " ".join((folder / "host_key.pub").read_text().split()[:2])
    port = _free_port()
    known_hosts = folder / "known_hosts"
    known_hosts.write_text(f"[127.0.0.1]:{port} {host_key_line}\n")
    Path("/run/sshd").mkdir(exist_ok=True)  # sshd's privilege-separation folder
    log = folder / "sshd.log"
    with log.open("wb") as out:
        proc = subprocess.Popen([SSHD, "-D", "-e", "-f", str(_config(folder, home)), "-p", str(port)],
                                stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    board = SshBoard(port, getpass.getuser(), home, known_hosts, folder / "client_key", host_key_line, proc, log)
    _wait_listening(board)
    return board


def _wait_listening(board: SshBoard) -> None:
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        if board.proc.poll() is not None:
            raise RuntimeError(f"sshd exited with {board.proc.returncode}: {board.log.read_text()[-2000:]}")
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", board.port)) == 0:
                return
        time.sleep(0.05)
    stop_sshd(board)
    raise RuntimeError(f"sshd did not listen on 127.0.0.1:{board.port}: {board.log.read_text()[-2000:]}")


def stop_sshd(board: SshBoard) -> None:
    """sshd and every process under it: the session children (each a session of its own) and their shells."""
    # Children first, while the listener lives to reap them (this machine's init may not reap orphans).
    for pid in reversed(_descendants(board.proc.pid)):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + 5
    while _children(board.proc.pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    with contextlib.suppress(ProcessLookupError):
        os.kill(board.proc.pid, signal.SIGKILL)
    board.proc.wait(timeout=30)


@pytest.fixture
def sshd_board(tmp_path: Path) -> Iterator[SshBoard]:
    board = start_sshd(tmp_path / "sshd")
    try:
        yield board
    finally:
        stop_sshd(board)
