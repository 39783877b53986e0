"""DTX, the message protocol of Instruments' remote server (DVT), as the device speaks it.

A message travels as fragments: a 32-byte little-endian header (magic 0x1F3D5B79, header size, fragment index and
count, data size, message identifier, conversation index, channel code, flags: 1 = a reply is expected) and a
body. A message split in several fragments announces its total size in fragment 0, which has no body. The body
is a 16-byte payload header (message type, aux size, aux + payload size), the aux (the arguments: a "primitive
dictionary" of NULL keys and typed values, objects NSKeyedArchived into buffers), and the payload (the selector
of a method call, or a reply's value, NSKeyedArchived). A reply repeats the identifier with the conversation
index one higher.

NSKeyedArchiver is bpylist2's, as on the host's side; NSError, which a failed call answers with, is registered
for archiving only, so that this module leaves bpylist2's unarchiving classes as they are.
"""

from __future__ import annotations

import dataclasses
import struct
from typing import Any

from bpylist2 import archiver

from device_runners.fake_ios.wire import Conn, Disconnected

MAGIC = 0x1F3D5B79
_FRAGMENT = struct.Struct("<IIHHIIIiI")  # magic, header size, index, count, data size, identifier, conv, channel, flags
_PAYLOAD = struct.Struct("<BBBBIII")  # type, 3 reserved bytes, aux size, aux + payload size, flags
EXPECTS_REPLY = 1
# message types
OK, DATA, DISPATCH, OBJECT, ERROR = 0, 1, 2, 3, 4
MAX_FRAGMENT_BODY = 64 * 1024  # what the device puts in one fragment; hosts accept up to 128 KiB
MAX_MESSAGE = 128 * 1024 * 1024
# primitive types of the aux dictionary
_P_STRING, _P_BUFFER, _P_INT32, _P_INT64, _P_DOUBLE, _P_NULL, _P_DICT = 1, 2, 3, 6, 9, 10, 0xF0


class DtxProtocolError(Disconnected):
    """The host sent something that is not DTX: the connection cannot go on."""


class NSError:
    def __init__(self, code: int, domain: str, description: str):
        self.code, self.domain, self.user_info = code, domain, {"NSLocalizedDescription": description}

    @staticmethod
    def encode_archive(obj: NSError, archive: Any) -> None:
        archive.encode("NSDomain", obj.domain)
        archive.encode("NSCode", obj.code)
        archive.encode("NSUserInfo", obj.user_info)


archiver.ARCHIVE_CLASS_MAP[NSError] = "NSError"


@dataclasses.dataclass
class Message:
    type: int
    identifier: int
    conversation: int
    channel: int
    expects_reply: bool
    aux: list[Any]
    payload: Any


class Reader:
    """Messages from one connection, reassembled from their fragments (which may interleave between messages)."""

    def __init__(self, conn: Conn):
        self.conn = conn
        self._partial: dict[int, tuple[bytes, bytearray, int]] = {}  # identifier → first header, body, left

    def next(self) -> Message:
        while True:
            raw = self.conn.recv_exact(_FRAGMENT.size)
            magic, header_size, index, count, size, identifier, conv, channel, flags = _FRAGMENT.unpack(raw)
            if magic != MAGIC or header_size < _FRAGMENT.size or index >= count or size > MAX_MESSAGE:
                raise DtxProtocolError(f"not a DTX fragment header: {raw.hex()}")
            if header_size > _FRAGMENT.size:
                self.conn.recv_exact(header_size - _FRAGMENT.size)
            if count == 1:
                return _parse(self.conn.recv_exact(size), identifier, conv, channel, flags)
            if index == 0:  # the announcement: no body, the whole message's size
                self._partial[identifier] = (raw, bytearray(), count - 1)
                continue
            if identifier not in self._partial:
                raise DtxProtocolError(f"fragment {index} of message {identifier} without its first")
            first, body, left = self._partial[identifier]
            body += self.conn.recv_exact(size)
            if left > 1:
                self._partial[identifier] = (first, body, left - 1)
                continue
            del self._partial[identifier]
            _, _, _, _, _, _, conv, channel, flags = _FRAGMENT.unpack(first)
            return _parse(bytes(body), identifier, conv, channel, flags)


def _parse(body: bytes, identifier: int, conv: int, channel: int, flags: int) -> Message:
    if len(body) < _PAYLOAD.size:
        raise DtxProtocolError(f"message {identifier} is shorter than its payload header")
    kind, _, _, _, aux_size, total, _ = _PAYLOAD.unpack_from(body)
    if _PAYLOAD.size + total != len(body) or aux_size > total:
        raise DtxProtocolError(f"message {identifier} declares {total} bytes and has {len(body) - _PAYLOAD.size}")
    aux = body[_PAYLOAD.size:_PAYLOAD.size + aux_size]
    payload = body[_PAYLOAD.size + aux_size:]
    return Message(kind, identifier, conv, channel, bool(flags & EXPECTS_REPLY), decode_aux(aux),
                   archiver.unarchive(payload) if payload else None)


def encode(kind: int, identifier: int, conv: int, channel: int, payload: Any = None, aux: list[Any] | None = None,
           expects_reply: bool = False) -> bytes:
    """One message, fragmented as the device does for a large one."""
    aux_bytes = encode_aux(aux or [])
    payload_bytes = archiver.archive(payload) if payload is not None else b""
    body = _PAYLOAD.pack(kind, 0, 0, 0, len(aux_bytes), len(aux_bytes) + len(payload_bytes), 0) + aux_bytes \
        + payload_bytes
    flags = EXPECTS_REPLY if expects_reply else 0

    def fragment(index: int, count: int, size: int) -> bytes:
        return _FRAGMENT.pack(MAGIC, _FRAGMENT.size, index, count, size, identifier, conv, channel, flags)

    if len(body) <= MAX_FRAGMENT_BODY:
        return fragment(0, 1, len(body)) + body
    chunks = [body[i:i + MAX_FRAGMENT_BODY] for i in range(0, len(body), MAX_FRAGMENT_BODY)]
    parts = [fragment(0, len(chunks) + 1, len(body))]
    parts += [fragment(i, len(chunks) + 1, len(chunk)) + chunk for i, chunk in enumerate(chunks, 1)]
    return b"".join(parts)


def decode_aux(data: bytes) -> list[Any]:
    """The arguments of a method call: the values of a primitive dictionary whose keys are all NULL."""
    if not data:
        return []
    (tag,) = struct.unpack_from("<I", data)
    if tag & 0xFF != _P_DICT:
        raise DtxProtocolError(f"aux is not a primitive dictionary (type {tag:#x})")
    _, length = struct.unpack_from("<IQ", data, 4)
    offset, end, values = 16, 16 + length, []
    while offset < end:
        _, offset = _primitive(data, offset)  # the key: NULL for an argument
        value, offset = _primitive(data, offset)
        values.append(value)
    return values


def _primitive(data: bytes, offset: int) -> tuple[Any, int]:
    (tag,) = struct.unpack_from("<I", data, offset)
    offset += 4
    kind = tag & 0xFF
    if kind == _P_NULL:
        return None, offset
    if kind in (_P_STRING, _P_BUFFER):
        (n,) = struct.unpack_from("<I", data, offset)
        raw = data[offset + 4:offset + 4 + n]
        if kind == _P_STRING:
            return raw.decode("utf-8", "replace"), offset + 4 + n
        return (archiver.unarchive(raw) if raw else None), offset + 4 + n  # an empty buffer is a nil argument
    if kind == _P_INT32:
        return struct.unpack_from("<i", data, offset)[0], offset + 4
    if kind == _P_INT64:
        return struct.unpack_from("<q", data, offset)[0], offset + 8
    if kind == _P_DOUBLE:
        return struct.unpack_from("<d", data, offset)[0], offset + 8
    raise DtxProtocolError(f"unknown primitive type {tag:#x} in aux")


def encode_aux(values: list[Any]) -> bytes:
    """Arguments as the device sends them: each object NSKeyedArchived into a buffer, under a NULL key."""
    if not values:
        return b""
    entries = b""
    for value in values:
        archived = archiver.archive(value)
        entries += struct.pack("<I", _P_NULL) + struct.pack("<II", _P_BUFFER, len(archived)) + archived
    return struct.pack("<IIQ", 0x100 | _P_DICT, 0, len(entries)) + entries
