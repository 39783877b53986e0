"""adb's transport protocol, device side: messages of a 24-byte header (six little-endian u32) and a payload.

As AOSP's packages/modules/adb/protocol.txt describes it: CNXN opens the connection, OPEN asks for a service
and gets OKAY (or CLSE), WRTE carries data that the receiver acknowledges with OKAY, CLSE ends a stream.
"""

from __future__ import annotations

import dataclasses
import struct
from typing import BinaryIO


def _command(name: bytes) -> int:
    return struct.unpack("<I", name)[0]


CNXN, OPEN, OKAY, WRTE, CLSE = map(_command, (b"CNXN", b"OPEN", b"OKAY", b"WRTE", b"CLSE"))
# A_VERSION_SKIP_CHECKSUM: peers of this version or newer ignore the payload checksum; older ones (adb 29
# talks this version too) check it, so it is still filled in.
VERSION = 0x01000001
MAX_PAYLOAD = 256 * 1024
_HEADER = struct.Struct("<6I")


class ProtocolError(Exception):
    pass


@dataclasses.dataclass(frozen=True)
class Message:
    command: int
    arg0: int
    arg1: int
    payload: bytes = b""

    def pack(self) -> bytes:
        checksum = sum(self.payload) & 0xFFFFFFFF
        return _HEADER.pack(self.command, self.arg0, self.arg1, len(self.payload), checksum,
                            self.command ^ 0xFFFFFFFF) + self.payload


def read_message(stream: BinaryIO) -> Message:
    """The next message; EOFError when the peer has gone."""
    command, arg0, arg1, length, _checksum, magic = _HEADER.unpack(_read_exact(stream, _HEADER.size))
    if magic != command ^ 0xFFFFFFFF:
        raise ProtocolError(f"bad magic in message header {command:#x}")
    return Message(command, arg0, arg1, _read_exact(stream, length))


def _read_exact(stream: BinaryIO, n: int) -> bytes:
    data = stream.read(n)
    if len(data) < n:
        raise EOFError("the host closed the connection")
    return data
