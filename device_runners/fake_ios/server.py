"""The test iPhone: its parts wired together, and usbmuxd's listener (a unix socket, or HOST:PORT for TCP), one
thread per host connection.
"""

from __future__ import annotations

import contextlib
import os
import socket
import threading
import traceback
from pathlib import Path

from device_runners.fake_ios import crash_reports, house_arrest, image_mounter, installation
from device_runners.fake_ios.afc import AfcServer
from device_runners.fake_ios.app import AppRunner
from device_runners.fake_ios.dvt import DvtConnection
from device_runners.fake_ios.identity import WIFI_ADDRESS, Identity
from device_runners.fake_ios.installation import InstalledApps
from device_runners.fake_ios.layout import Layout
from device_runners.fake_ios.lockdown import Lockdownd, Service
from device_runners.fake_ios.pair_record import Pairing
from device_runners.fake_ios.usbmux import Usbmuxd
from device_runners.fake_ios.wire import Conn, Disconnected, TlsRefused

DVT_SECURE = "com.apple.instruments.remoteserver.DVTSecureSocketProxy"


class FakeIPhone:
    def __init__(self, root: Path, runner: Path, address: str, udid: str | None = None, ios_version: str = "16.7"):
        """`address`: a unix socket's path, or HOST:PORT (PORT 0: any free one), as USBMUXD_SOCKET_ADDRESS names
        usbmuxd (a ':' means TCP there too)."""
        self.layout = layout = Layout(root)
        log = layout.log
        pairing = Pairing(layout.lockdown, WIFI_ADDRESS)
        self.identity = identity = Identity.create(ios_version, udid, pairing.device_public_key_pem, layout.root)
        self.apps = apps = InstalledApps(layout, log)
        self.runner = AppRunner(runner, apps, layout, identity, log)
        model = identity.product.product_type
        # Plaintext after usbmuxd's Connect, as iOS 16 serves them (no EnableServiceSSL); only Instruments' proxy
        # below asks for TLS.
        services = {
            "com.apple.afc": Service(lambda conn: AfcServer(conn, layout.media, log, model=model).serve(), ssl=False),
            "com.apple.mobile.house_arrest": Service(lambda conn: house_arrest.serve(conn, apps, log, model), False),
            "com.apple.mobile.installation_proxy": Service(
                lambda conn: installation.serve(conn, apps, layout, log), False),
            "com.apple.crashreportmover": Service(lambda conn: crash_reports.serve_mover(conn, layout, log), False),
            "com.apple.crashreportcopymobile": Service(
                lambda conn: AfcServer(conn, layout.crash_reports, log, model=model).serve(), False),
            "com.apple.mobile.mobile_image_mounter": Service(lambda conn: image_mounter.serve(conn, log), False),
        }
        if 14 <= identity.major < 17:
            # iOS 14-16 serve Instruments over lockdown, TLS throughout ("Secure"); iOS 17 only through a tunnel
            # (RSD), which this device does not offer, and iOS 13's TLS-then-plaintext variant is not served.
            services[DVT_SECURE] = Service(lambda conn: DvtConnection(conn, self.runner, identity, log).serve(), True)
        self.lockdownd = Lockdownd(identity, pairing, services, log)
        self.usbmuxd = Usbmuxd(identity.udid, pairing.system_buid, pairing.host_record,
                               self.lockdownd.handler_for_port, log)
        self._unix_path: Path | None = None
        if ":" in address:
            host, _, port = address.rpartition(":")
            self._listener = socket.create_server((host, int(port)))
            bound = self._listener.getsockname()
            self.address = f"{bound[0]}:{bound[1]}"
        else:
            self._unix_path = Path(address)
            with contextlib.suppress(FileNotFoundError):
                self._unix_path.unlink()  # a socket left by a fake that was killed
            self._listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            self._listener.bind(str(self._unix_path))
            self._listener.listen(64)
            self.address = str(self._unix_path)

    @property
    def udid(self) -> str:
        return self.identity.udid

    def serve_forever(self) -> None:
        while True:
            try:
                sock, _ = self._listener.accept()
            except OSError:  # closed by shutdown()
                return
            threading.Thread(target=self._serve, args=(sock,), daemon=True, name="usbmux-client").start()

    def _serve(self, sock: socket.socket) -> None:
        conn = Conn(sock)
        try:
            self.usbmuxd.serve(conn)
        except TlsRefused as e:
            self.layout.log(str(e))
        except Disconnected:
            pass  # the host hung up mid-answer
        except Exception as e:  # a bug in a service must not take the device down; the log says where
            self.layout.log(f"ERROR {type(e).__name__}: {e}\n{traceback.format_exc()}")
        finally:
            conn.close()

    def shutdown(self) -> None:
        """Power off: no more connections, every app killed."""
        with contextlib.suppress(OSError):
            self._listener.close()
        self.runner.shutdown()
        if self._unix_path is not None:
            with contextlib.suppress(OSError):
                os.unlink(self._unix_path)
