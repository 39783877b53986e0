"""The services a host opens on the test device: `shell:` (v1), `shell,v2,...:`, `sync:` and `tcp:PORT`.

Wire formats as adbd speaks them (AOSP packages/modules/adb: shell_protocol.h, file_sync_protocol.h).
"""

from __future__ import annotations

import contextlib
import errno
import functools
import os
import socket
import stat
import struct
import threading
from collections.abc import Callable
from typing import IO

from device_runners.fake_adbd.connection import Service, Stream, StreamClosed
from device_runners.fake_adbd.sandbox import Sandbox

# shell protocol v2 packet ids (shell_protocol.h)
_STDOUT, _STDERR, _EXIT = 1, 2, 3
SYNC_DATA_MAX = 64 * 1024


def find(name: str, sandbox: Sandbox, log: Callable[[str], None]) -> Service | None:
    if name.startswith("shell"):
        head, _, command = name.partition(":")
        options = head.split(",")[1:]  # e.g. shell,v2,raw,TERM=xterm
        if head != "shell" and not head.startswith("shell,"):
            return None
        return functools.partial(shell, sandbox=sandbox, command=command, v2="v2" in options)
    if name == "sync:":
        return functools.partial(sync, sandbox=sandbox, log=log)
    if name.startswith("tcp:") and name[4:].isdigit():
        return functools.partial(forward, port=int(name[4:]))
    return None


def shell(stream: Stream, sandbox: Sandbox, command: str, v2: bool) -> None:
    if not command:
        command = "echo 'the litert-bench test device has no interactive shell' >&2; exit 1"
    proc = sandbox.spawn(command, merge_stderr=not v2)
    stream.on_remote_close = lambda: sandbox.hang_up(proc)
    if not v2:  # v1: one byte stream, no exit code (hosts append `; echo $?` themselves)
        _pump(proc.stdout, stream.write, sandbox)
        sandbox.reap(proc)
        return

    def packet(kind: int, data: bytes) -> None:
        stream.write(struct.pack("<BI", kind, len(data)) + data)

    err = threading.Thread(target=_pump, args=(proc.stderr, functools.partial(packet, _STDERR), sandbox))
    err.start()
    _pump(proc.stdout, functools.partial(packet, _STDOUT), sandbox)
    err.join()
    packet(_EXIT, bytes([sandbox.reap(proc) & 0xFF]))


def _pump(pipe: IO[bytes], write: Callable[[bytes], None], sandbox: Sandbox) -> None:
    """Copy a command's output to the host line by line, with host paths turned back into device paths. Once
    the host has left, the rest is read and dropped, so the command never blocks on a full pipe."""
    with pipe:
        for line in iter(pipe.readline, b""):
            with contextlib.suppress(StreamClosed):
                write(sandbox.to_device(line))


def sync(stream: Stream, sandbox: Sandbox, log: Callable[[str], None]) -> None:
    """Requests of 4-byte id + u32 length + path until QUIT or the host closes the stream."""
    while True:
        request, length = struct.unpack("<4sI", stream.read_exact(8))
        path = stream.read_exact(length).decode("utf-8", "replace")
        if request == b"QUIT":
            return
        log(f"{request.decode('ascii', 'replace')} {path}")
        handler = _SYNC.get(request)
        if handler is None:
            _fail(stream, f"unknown sync request {request!r}")
            return
        handler(stream, sandbox, path)


def _stat(stream: Stream, sandbox: Sandbox, path: str) -> None:
    try:
        st = os.lstat(sandbox.host_path(path))
        stream.write(b"STAT" + struct.pack("<3I", st.st_mode, st.st_size & 0xFFFFFFFF, int(st.st_mtime)))
    except OSError:
        stream.write(b"STAT" + bytes(12))  # v1 has no error field: all zero means "not there"


def _stat2(stream: Stream, sandbox: Sandbox, path: str, follow: bool) -> None:
    try:
        host = sandbox.host_path(path)
        st = os.stat(host) if follow else os.lstat(host)
        fields = (0, st.st_dev, st.st_ino, st.st_mode, st.st_nlink, st.st_uid, st.st_gid, st.st_size,
                  int(st.st_atime), int(st.st_mtime), int(st.st_ctime))
    except OSError as e:
        fields = (e.errno or errno.EIO, *(0,) * 10)
    stream.write((b"STA2" if follow else b"LST2") + struct.pack("<IQQIIIIQqqq", *fields))


def _list(stream: Stream, sandbox: Sandbox, path: str) -> None:
    try:
        entries = list(os.scandir(sandbox.host_path(path)))
    except OSError:
        entries = []
    for entry in entries:
        st = entry.stat(follow_symlinks=False)
        name = entry.name.encode()
        stream.write(b"DENT" + struct.pack("<4I", st.st_mode, st.st_size & 0xFFFFFFFF, int(st.st_mtime), len(name))
                     + name)
    stream.write(b"DONE" + bytes(16))


def _send(stream: Stream, sandbox: Sandbox, spec: str) -> None:
    """SEND "path,mode", then DATA chunks and DONE(mtime); OKAY, or FAIL with adbd's wording. A failed file
    is removed, and the rest of the data read and dropped, as adbd does."""
    path, _, mode = spec.rpartition(",")
    error, target = None, None
    try:
        target = sandbox.host_path(path)
        target.parent.mkdir(parents=True, exist_ok=True)
        out: IO[bytes] | None = target.open("wb")
    except OSError as e:
        error, out = f"open failed: {e.strerror}", None
    free = sandbox.free_bytes()
    written = 0
    while True:
        kind, value = struct.unpack("<4sI", stream.read_exact(8))  # DATA: its length; DONE: the mtime
        if kind == b"DONE":
            break
        data = stream.read_exact(value)
        if out is None:
            continue
        try:
            written += len(data)
            if free is not None and written > free:
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
            out.write(data)
        except OSError as e:
            error = f"write failed: {e.strerror}"
            out.close()
            out = None
            target.unlink(missing_ok=True)
    if out is not None:
        out.close()
        target.chmod(stat.S_IMODE(int(mode or "420")))
        os.utime(target, (value, value))
    if error:
        _fail(stream, error)
    else:
        stream.write(b"OKAY" + bytes(4))


def _recv(stream: Stream, sandbox: Sandbox, path: str) -> None:
    try:
        with sandbox.host_path(path).open("rb") as f:
            while chunk := f.read(SYNC_DATA_MAX):
                stream.write(b"DATA" + struct.pack("<I", len(chunk)) + chunk)
    except OSError as e:
        _fail(stream, f"open failed: {e.strerror}")
        return
    stream.write(b"DONE" + bytes(4))


def _fail(stream: Stream, message: str) -> None:
    data = message.encode()
    stream.write(b"FAIL" + struct.pack("<I", len(data)) + data)


_SYNC: dict[bytes, Callable[[Stream, Sandbox, str], None]] = {
    b"STAT": _stat, b"STA2": functools.partial(_stat2, follow=True), b"LST2": functools.partial(_stat2, follow=False),
    b"LIST": _list, b"SEND": _send, b"RECV": _recv,
}


def forward(stream: Stream, port: int) -> None:
    """`adb forward tcp:L tcp:PORT`: the device side connects to its own port and relays both ways."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.settimeout(None)

        def upstream() -> None:
            try:
                while data := stream.read(SYNC_DATA_MAX):
                    sock.sendall(data)
                sock.shutdown(socket.SHUT_WR)
            except OSError:
                pass  # the device-side peer closed first

        threading.Thread(target=upstream, daemon=True).start()
        while data := sock.recv(SYNC_DATA_MAX):
            stream.write(data)

