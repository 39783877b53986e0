"""One host connection: the CNXN handshake, then streams multiplexed over the socket, each served by a thread.

Flow control as adbd does it: a stream sends one WRTE and waits for the host's OKAY before the next, and
acknowledges the host's WRTE only once its service has consumed the data (so a push is paced by the disk).
"""

from __future__ import annotations

import collections
import contextlib
import itertools
import socket
import threading
from collections.abc import Callable

from device_runners.fake_adbd import protocol
from device_runners.fake_adbd.protocol import CLSE, CNXN, OKAY, OPEN, WRTE, Message


class StreamClosed(EOFError):
    pass


class Stream:
    def __init__(self, conn: Connection, local_id: int, remote_id: int):
        self.conn, self.local_id, self.remote_id = conn, local_id, remote_id
        self.on_remote_close: Callable[[], None] | None = None  # a service's hook, e.g. hang up its command
        self._inbox: collections.deque[bytes] = collections.deque()
        self._cond = threading.Condition()
        self._acked = True
        self._closed = False
        self._write_lock = threading.Lock()

    # host → device
    def feed(self, data: bytes) -> None:
        with self._cond:
            self._inbox.append(data)
            self._cond.notify_all()

    def read(self, n: int) -> bytes:
        """Up to n bytes; b"" once the host has closed the stream."""
        with self._cond:
            self._cond.wait_for(lambda: self._inbox or self._closed)
            if not self._inbox:
                return b""
            chunk = self._inbox[0]
            if len(chunk) > n:
                self._inbox[0] = chunk[n:]
                return chunk[:n]
            self._inbox.popleft()
        self.conn.send(Message(OKAY, self.local_id, self.remote_id))  # that WRTE is consumed: the next may come
        return chunk

    def read_exact(self, n: int) -> bytes:
        parts, left = [], n
        while left:
            chunk = self.read(left)
            if not chunk:
                raise StreamClosed("the host closed the stream")
            parts.append(chunk)
            left -= len(chunk)
        return b"".join(parts)

    # device → host
    def write(self, data: bytes) -> None:
        with self._write_lock:  # one writer at a time: a shell's stdout and stderr pumps share the stream
            for start in range(0, len(data), self.conn.max_payload):
                with self._cond:
                    self._cond.wait_for(lambda: self._acked or self._closed)
                    if self._closed:
                        raise StreamClosed("the host closed the stream")
                    self._acked = False
                self.conn.send(Message(WRTE, self.local_id, self.remote_id,
                                       data[start:start + self.conn.max_payload]))

    def acked(self) -> None:
        with self._cond:
            self._acked = True
            self._cond.notify_all()

    def close(self) -> None:
        """Close from the device side (the service finished)."""
        if self._mark_closed():
            self.conn.send(Message(CLSE, self.local_id, self.remote_id))

    def closed_by_host(self) -> None:
        if self._mark_closed() and self.on_remote_close:
            self.on_remote_close()

    def _mark_closed(self) -> bool:
        with self._cond:
            was_open, self._closed = not self._closed, True
            self._cond.notify_all()
        return was_open


Service = Callable[[Stream], None]


class Connection:
    def __init__(self, sock: socket.socket, banner: str, find_service: Callable[[str], Service | None],
                 log: Callable[[str], None]):
        self.sock, self.banner, self.find_service, self.log = sock, banner, find_service, log
        self.max_payload = protocol.MAX_PAYLOAD
        self._send_lock = threading.Lock()
        self._streams: dict[int, Stream] = {}
        self._ids = itertools.count(1)

    def send(self, message: Message) -> None:
        # OSError: the host is gone; the reader loop notices and closes every stream.
        with self._send_lock, contextlib.suppress(OSError):
            self.sock.sendall(message.pack())

    def serve(self) -> None:
        reader = self.sock.makefile("rb")
        try:
            while True:
                self._dispatch(protocol.read_message(reader))
        except (EOFError, OSError, protocol.ProtocolError):
            pass
        finally:
            for stream in list(self._streams.values()):
                stream.closed_by_host()
            self.sock.close()

    def _dispatch(self, msg: Message) -> None:
        if msg.command == CNXN:
            # No AUTH: the host takes the device as authorized, as it does an emulator or an adbd with
            # ro.adb.secure=0.
            self.max_payload = min(msg.arg1, protocol.MAX_PAYLOAD)
            self.send(Message(CNXN, protocol.VERSION, protocol.MAX_PAYLOAD, self.banner.encode()))
        elif msg.command == OPEN:
            self._open(msg.arg0, msg.payload.rstrip(b"\0").decode("utf-8", "replace"))
        elif msg.command == WRTE and (stream := self._streams.get(msg.arg1)):
            stream.feed(msg.payload)
        elif msg.command == OKAY and (stream := self._streams.get(msg.arg1)):
            stream.acked()
        elif msg.command == CLSE and (stream := self._streams.pop(msg.arg1, None)):
            stream.closed_by_host()

    def _open(self, remote_id: int, name: str) -> None:
        self.log(f"OPEN {name}")
        service = self.find_service(name)
        if service is None:
            self.send(Message(CLSE, 0, remote_id))  # adbd's answer to a service it does not have
            return
        stream = Stream(self, next(self._ids), remote_id)
        self._streams[stream.local_id] = stream
        self.send(Message(OKAY, stream.local_id, remote_id))
        threading.Thread(target=self._run, args=(service, stream), daemon=True, name=name[:40]).start()

    def _run(self, service: Service, stream: Stream) -> None:
        try:
            service(stream)
        except StreamClosed:
            pass
        except Exception as e:  # a bug in a service must not take the connection down
            self.log(f"ERROR {type(e).__name__}: {e}")
        finally:
            stream.close()
            self._streams.pop(stream.local_id, None)
