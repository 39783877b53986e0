"""Blocking socket helpers every service shares: exact reads, lockdown's length-prefixed plists, and the switch to
TLS in mid-stream that lockdownd's StartSession and the SSL services make.

Nothing here buffers ahead of what a caller asked for: a TLS handshake that starts after a plaintext plist must
find its first byte still in the socket.
"""

from __future__ import annotations

import contextlib
import plistlib
import socket
import ssl
import struct
from collections.abc import Iterator
from typing import Any

# Far above any request the host sends (install options, launch arguments); a guard against a corrupt length.
MAX_PLIST_BYTES = 64 * 1024 * 1024
_LENGTH = struct.Struct(">I")


class Disconnected(EOFError):
    """The host closed the connection (or it broke)."""


class TlsRefused(Disconnected):
    """The TLS handshake failed: most often a host whose certificate is not the pairing's."""


class Conn:
    """One host connection, plaintext or TLS."""

    def __init__(self, sock: socket.socket):
        self.sock: socket.socket = sock

    def recv_exact(self, n: int) -> bytes:
        parts, left = [], n
        while left:
            try:
                chunk = self.sock.recv(min(left, 1 << 20))
            except (OSError, ssl.SSLError) as e:  # a reset, or TLS torn down without close_notify
                raise Disconnected(str(e)) from e
            if not chunk:
                raise Disconnected("the host closed the connection")
            parts.append(chunk)
            left -= len(chunk)
        return b"".join(parts)

    def send(self, data: bytes) -> None:
        try:
            self.sock.sendall(data)
        except (OSError, ssl.SSLError) as e:
            raise Disconnected(str(e)) from e

    def recv_plist(self) -> Any:
        """A plist behind a 4-byte big-endian length, as lockdownd and the plist services frame them."""
        (length,) = _LENGTH.unpack(self.recv_exact(_LENGTH.size))
        if length > MAX_PLIST_BYTES:
            raise Disconnected(f"a {length}-byte plist is beyond any request: the stream is out of step")
        return plistlib.loads(self.recv_exact(length))

    def requests(self) -> Iterator[Any]:
        """The host's plist requests, one by one, until it hangs up (a service's whole loop)."""
        while True:
            try:
                yield self.recv_plist()
            except Disconnected:
                return

    def send_plist(self, value: Any) -> None:
        data = plistlib.dumps(value, fmt=plistlib.FMT_XML)  # what lockdownd and installd send
        self.send(_LENGTH.pack(len(data)) + data)

    def start_tls(self, context: ssl.SSLContext) -> None:
        """Become the TLS server on this socket from the next byte on."""
        try:
            self.sock = context.wrap_socket(self.sock, server_side=True)
        except (OSError, ssl.SSLError) as e:
            raise TlsRefused(f"TLS handshake failed: {e}") from e

    def wait_closed(self) -> None:
        """Read and drop whatever comes until the host hangs up."""
        with contextlib.suppress(OSError, ssl.SSLError):
            while self.sock.recv(65536):
                pass

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.sock.close()
