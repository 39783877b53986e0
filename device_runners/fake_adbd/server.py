"""The test device's listener: one thread per host connection, a log of every service it was asked for."""

from __future__ import annotations

import socket
import threading
import time
from pathlib import Path

from device_runners.fake_adbd import services
from device_runners.fake_adbd.connection import Connection
from device_runners.fake_adbd.sandbox import Sandbox


class FakeAdbd:
    def __init__(self, root: Path, host: str = "127.0.0.1", port: int = 0, quota_bytes: int | None = None,
                 battery_trace: Path | None = None):
        self.sandbox = Sandbox(root, quota_bytes, battery_trace=battery_trace)
        self.log_path = self.sandbox.root / "adbd.log"  # beside the device's folders, not inside them
        self._log_lock = threading.Lock()
        self._listener = socket.create_server((host, port))
        self.address: tuple[str, int] = self._listener.getsockname()[:2]

    def log(self, line: str) -> None:
        with self._log_lock, self.log_path.open("a") as f:
            f.write(f"{time.time():.3f} {line}\n")

    def serve_forever(self) -> None:
        while True:
            sock, peer = self._listener.accept()
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            self.log(f"CONNECT {peer[0]}:{peer[1]}")
            conn = Connection(sock, self.sandbox.banner, lambda name: services.find(name, self.sandbox, self.log),
                              self.log)
            threading.Thread(target=conn.serve, daemon=True).start()

    def shutdown(self) -> None:
        self._listener.close()
        self.sandbox.kill_all()
