"""AFC, the file protocol of com.apple.afc, house_arrest and crashreportcopymobile, served over a folder.

A packet is a 40-byte header (magic "CFA6LPAA", then little-endian u64s: the packet's whole length, the length of
its header and fixed arguments, the packet number, the operation) and its data; the device answers each packet
with one of the same number: STATUS (a u64 AFC error code), DATA, or the open/tell results. Paths are relative
to the service's root whether or not they start with "/", and ".." stops at it, as afcd's do.

Only what hosts use is served: file info, directory listing, open/read/write/seek/tell/truncate/lock/close,
remove, make directory (with its parents), rename, links, set time and device info. Errors carry afcd's codes:
OBJECT_NOT_FOUND for a missing path, OBJECT_EXISTS, DIR_NOT_EMPTY, PERM_DENIED outside the root, ...
"""

from __future__ import annotations

import contextlib
import errno
import os
import posixpath
import shutil
import stat
import struct
from collections.abc import Callable
from pathlib import Path
from typing import IO

from device_runners.fake_ios.wire import Conn, Disconnected

MAGIC = b"CFA6LPAA"
_HEADER = struct.Struct("<8sQQQQ")  # magic, entire length, this length, packet number, operation
_U64 = struct.Struct("<Q")
_MAX_PACKET = (1 << 30) + 4096  # pymobiledevice3 writes at most 1 GiB in one packet

# operations (afc.h of libimobiledevice; pymobiledevice3's AfcOpcode)
STATUS, DATA, READ_DIR, REMOVE_PATH, MAKE_DIR, GET_FILE_INFO, GET_DEVINFO = 0x01, 0x02, 0x03, 0x08, 0x09, 0x0A, 0x0B
TRUNCATE, FILE_OPEN, FILE_OPEN_RES, READ, WRITE, FILE_SEEK, FILE_TELL = 0x07, 0x0D, 0x0E, 0x0F, 0x10, 0x11, 0x12
FILE_TELL_RES, FILE_CLOSE, FILE_SET_SIZE, RENAME_PATH, FILE_LOCK, MAKE_LINK = 0x13, 0x14, 0x15, 0x18, 0x1B, 0x1C
SET_FILE_TIME, REMOVE_PATH_AND_CONTENTS = 0x1E, 0x22

# error codes
SUCCESS, UNKNOWN_ERROR, INVALID_ARG, OBJECT_NOT_FOUND, OBJECT_IS_DIR, PERM_DENIED = 0, 1, 7, 8, 9, 10
OP_NOT_SUPPORTED, OBJECT_EXISTS, OBJECT_BUSY, NO_SPACE_LEFT, IO_ERROR, DIR_NOT_EMPTY = 15, 16, 17, 18, 20, 33
_ERRNO_TO_AFC = {
    errno.ENOENT: OBJECT_NOT_FOUND, errno.ENOTDIR: OBJECT_NOT_FOUND, errno.EEXIST: OBJECT_EXISTS,
    errno.EISDIR: OBJECT_IS_DIR, errno.EACCES: PERM_DENIED, errno.EPERM: PERM_DENIED, errno.ENOSPC: NO_SPACE_LEFT,
    errno.ENOTEMPTY: DIR_NOT_EMPTY, errno.EINVAL: INVALID_ARG, errno.EBUSY: OBJECT_BUSY, errno.EBADF: INVALID_ARG,
}
# fopen modes → os.open flags (afc.h: r, r+, w, w+, a, a+)
_OPEN_FLAGS = {
    1: os.O_RDONLY,
    2: os.O_RDWR | os.O_CREAT,
    3: os.O_WRONLY | os.O_CREAT | os.O_TRUNC,
    4: os.O_RDWR | os.O_CREAT | os.O_TRUNC,
    5: os.O_WRONLY | os.O_APPEND | os.O_CREAT,
    6: os.O_RDWR | os.O_APPEND | os.O_CREAT,
}
_IFMT = {stat.S_IFREG: "S_IFREG", stat.S_IFDIR: "S_IFDIR", stat.S_IFLNK: "S_IFLNK", stat.S_IFIFO: "S_IFIFO",
         stat.S_IFCHR: "S_IFCHR", stat.S_IFBLK: "S_IFBLK", stat.S_IFSOCK: "S_IFSOCK"}


class AfcError(Exception):
    def __init__(self, code: int):
        super().__init__(code)
        self.code = code


class AfcServer:
    def __init__(self, conn: Conn, root: Path, log: Callable[[str], None], only: str | None = None,
                 model: str = "iPhone"):
        """`only`: a folder of the root (e.g. "Documents") outside which nothing is reachable, as house_arrest's
        VendDocuments vends the container with Documents the only thing in it."""
        self.conn, self.root, self._log, self._model = conn, Path(root).resolve(), log, model
        self._only = only.strip("/") if only else None
        self._files: dict[int, IO[bytes]] = {}
        self._next_handle = 1  # 0 is no handle to pymobiledevice3 and libimobiledevice

    def serve(self) -> None:
        try:
            while True:
                magic, entire, this, number, op = _HEADER.unpack(self.conn.recv_exact(_HEADER.size))
                if magic != MAGIC or not _HEADER.size <= entire <= _MAX_PACKET:
                    self._log(f"afc bad header {magic!r} {entire}")
                    return
                data = self.conn.recv_exact(entire - _HEADER.size)
                try:
                    result = self._dispatch(op, data)
                except AfcError as e:
                    self._status(number, e.code)
                    continue
                except OSError as e:
                    self._status(number, _ERRNO_TO_AFC.get(e.errno or 0, IO_ERROR))
                    continue
                except (ValueError, struct.error, IndexError):  # arguments shorter than the operation's
                    self._status(number, INVALID_ARG)
                    continue
                if result is None:
                    self._status(number, SUCCESS)
                else:
                    self._send(number, *result)
        except Disconnected:
            pass
        finally:
            for f in self._files.values():
                with contextlib.suppress(OSError):
                    f.close()

    # wire
    def _send(self, number: int, op: int, data: bytes) -> None:
        self.conn.send(_HEADER.pack(MAGIC, _HEADER.size + len(data), _HEADER.size, number, op) + data)

    def _status(self, number: int, code: int) -> None:
        self._send(number, STATUS, _U64.pack(code))

    # operations
    def _dispatch(self, op: int, data: bytes) -> tuple[int, bytes] | None:
        if op == GET_FILE_INFO:
            return DATA, _pairs(self._file_info(self._path(_cstrings(data)[0])))
        if op == READ_DIR:
            return DATA, b"".join(name.encode() + b"\0" for name in [".", "..", *self._listdir(_cstrings(data)[0])])
        if op == FILE_OPEN:
            (mode,) = _U64.unpack_from(data)
            return FILE_OPEN_RES, _U64.pack(self._open(mode, _cstrings(data[8:])[0]))
        if op == READ:
            handle, size = struct.unpack_from("<QQ", data)
            return DATA, self._file(handle).read(size)
        if op == WRITE:
            (handle,) = _U64.unpack_from(data)
            self._file(handle).write(data[8:])
            return None
        if op == FILE_SEEK:
            handle, whence, offset = struct.unpack_from("<QQq", data)
            self._file(handle).seek(offset, whence)
            return None
        if op == FILE_TELL:
            return FILE_TELL_RES, _U64.pack(self._file(_U64.unpack_from(data)[0]).tell())
        if op == FILE_SET_SIZE:
            handle, size = struct.unpack_from("<QQ", data)
            self._file(handle).truncate(size)
            return None
        if op == FILE_LOCK:
            self._file(_U64.unpack_from(data)[0])  # advisory; one client at a time here
            return None
        if op == FILE_CLOSE:
            handle = _U64.unpack_from(data)[0]
            self._file(handle).close()
            del self._files[handle]
            return None
        if op == REMOVE_PATH:
            self._remove(_cstrings(data)[0], recursive=False)
            return None
        if op == REMOVE_PATH_AND_CONTENTS:
            self._remove(_cstrings(data)[0], recursive=True)
            return None
        if op == MAKE_DIR:
            self._make_dir(_cstrings(data)[0])
            return None
        if op == RENAME_PATH:
            source, target = _cstrings(data)[:2]
            self._log(f"afc rename {source} {target}")
            os.rename(self._path(source, follow=False), self._path(target, follow=False))
            return None
        if op == TRUNCATE:
            (size,) = _U64.unpack_from(data)
            os.truncate(self._path(_cstrings(data[8:])[0]), size)
            return None
        if op == MAKE_LINK:
            kind, = _U64.unpack_from(data)
            target, source = _cstrings(data[8:])[:2]
            link = self._path(source, follow=False)
            if kind == 2:
                os.symlink(target, link)
            else:
                os.link(self._path(target), link)
            return None
        if op == SET_FILE_TIME:
            (mtime_ns,) = _U64.unpack_from(data)
            os.utime(self._path(_cstrings(data[8:])[0]), ns=(mtime_ns, mtime_ns))
            return None
        if op == GET_DEVINFO:
            disk = shutil.disk_usage(self.root)
            return DATA, _pairs({"Model": self._model, "FSTotalBytes": disk.total, "FSFreeBytes": disk.free,
                                 "FSBlockSize": 4096})
        return None if op == 0x17 else (STATUS, _U64.pack(OP_NOT_SUPPORTED))  # 0x17: SetConnectionOptions

    def _file_info(self, path: Path) -> dict[str, object]:
        st = os.lstat(path)
        info: dict[str, object] = {
            "st_size": st.st_size, "st_blocks": st.st_blocks, "st_nlink": st.st_nlink,
            "st_ifmt": _IFMT.get(stat.S_IFMT(st.st_mode), "S_IFREG"),
            "st_mtime": st.st_mtime_ns, "st_birthtime": st.st_ctime_ns,  # ns, as afcd reports them
        }
        if stat.S_ISLNK(st.st_mode):
            info["LinkTarget"] = os.readlink(path)
        return info

    def _listdir(self, device_path: str) -> list[str]:
        path = self._path(device_path)
        if not path.is_dir():
            raise AfcError(OBJECT_NOT_FOUND if not path.exists() else INVALID_ARG)
        names = sorted(os.listdir(path))
        if self._only and path == self.root:
            names = [n for n in names if n == self._only]
        return names

    def _open(self, mode: int, device_path: str) -> int:
        if mode not in _OPEN_FLAGS:
            raise AfcError(INVALID_ARG)
        path = self._path(device_path)
        if path.is_dir():
            raise AfcError(OBJECT_IS_DIR)
        if mode != 1:
            self._log(f"afc write {device_path}")
        fd = os.open(path, _OPEN_FLAGS[mode], 0o644)
        handle, self._next_handle = self._next_handle, self._next_handle + 1
        self._files[handle] = os.fdopen(fd, "rb" if mode == 1 else ("ab+" if mode in (5, 6) else "rb+"),
                                        buffering=0)
        return handle

    def _file(self, handle: int) -> IO[bytes]:
        f = self._files.get(handle)
        if f is None:
            raise AfcError(INVALID_ARG)
        return f

    def _remove(self, device_path: str, recursive: bool) -> None:
        path = self._path(device_path, follow=False)
        if path == self.root:
            raise AfcError(PERM_DENIED)
        self._log(f"afc remove {device_path}")
        if path.is_dir() and not path.is_symlink():
            if recursive:
                shutil.rmtree(path)
            else:
                os.rmdir(path)  # ENOTEMPTY → DIR_NOT_EMPTY, as afcd answers for a folder with files
        else:
            os.unlink(path)

    def _make_dir(self, device_path: str) -> None:
        path = self._path(device_path)
        if path.exists() and not path.is_dir():
            raise AfcError(OBJECT_EXISTS)
        path.mkdir(parents=True, exist_ok=True)  # afcd's MakeDir makes the parents too

    def _path(self, device_path: str, follow: bool = True) -> Path:
        """The host path of a device path; PERM_DENIED for one that leaves the root (through a link too) or, in a
        VendDocuments container, that is outside Documents."""
        relative = posixpath.normpath("/" + device_path).lstrip("/")
        if self._only and relative and relative.split("/")[0] != self._only:
            raise AfcError(PERM_DENIED)
        path = self.root / relative if relative else self.root
        real = Path(os.path.realpath(path if follow else path.parent))
        if real != self.root and self.root not in real.parents:
            raise AfcError(PERM_DENIED)
        return path


def _cstrings(data: bytes) -> list[str]:
    """The NUL-terminated strings of a packet's data (a last one without its NUL too)."""
    parts = data.split(b"\0")
    if len(parts) > 1 and not parts[-1]:
        parts.pop()
    return [part.decode("utf-8", "replace") for part in parts]


def _pairs(values: dict[str, object]) -> bytes:
    """AFC's key/value lists: NUL-terminated key, NUL-terminated value, ..."""
    return b"".join(f"{key}\0{value}\0".encode() for key, value in values.items())
