"""lockdownd: the device's front door on port 62078, plists behind 4-byte big-endian lengths.

QueryType and GetValue answer before a session (GetValue with the public values only); StartSession takes the
pair record's HostID (any other is refused with InvalidHostID, as a phone refuses a host it never trusted) and
switches the connection to TLS; StartService hands out a port for one connection to a service, whose TLS
(EnableServiceSSL) is what the real service asks for; StopSession ends the session.
"""

from __future__ import annotations

import dataclasses
import random
import ssl
import threading
import uuid
from collections.abc import Callable
from typing import Any

from device_runners.fake_ios.identity import Identity
from device_runners.fake_ios.pair_record import Pairing
from device_runners.fake_ios.wire import Conn

LOCKDOWN_PORT = 62078

Handler = Callable[[Conn], None]


@dataclasses.dataclass(frozen=True)
class Service:
    handler: Handler
    ssl: bool  # EnableServiceSSL: TLS from the first byte, with the pairing's certificates


class Lockdownd:
    def __init__(self, identity: Identity, pairing: Pairing, services: dict[str, Service],
                 log: Callable[[str], None]):
        self.identity, self.pairing, self.services, self._log = identity, pairing, services, log
        self._ports: dict[int, Service] = {}
        self._ports_lock = threading.Lock()

    # usbmuxd's Connect
    def handler_for_port(self, port: int) -> Handler | None:
        if port == LOCKDOWN_PORT:
            return self.serve
        with self._ports_lock:
            service = self._ports.pop(port, None)  # a service port takes one connection, as lockdownd's do
        if service is None:
            return None

        def serve(conn: Conn) -> None:
            if service.ssl:
                conn.start_tls(self.pairing.server_context())
            service.handler(conn)

        return serve

    # one lockdownd connection
    def serve(self, conn: Conn) -> None:
        session: str | None = None
        for request in conn.requests():
            name = request.get("Request", "")
            reply: dict[str, Any] = {"Request": name}
            if name == "StartSession":
                self._log(f"lockdown StartSession HostID={request.get('HostID')}")
                if request.get("HostID") != self.pairing.host_id:
                    reply["Error"] = "InvalidHostID"
                    conn.send_plist(reply)
                    continue
                session = str(uuid.uuid4()).upper()
                tls = not isinstance(conn.sock, ssl.SSLSocket)  # already TLS after a StopSession: stays so
                conn.send_plist({**reply, "SessionID": session, "EnableSessionSSL": tls})
                if tls:
                    conn.start_tls(self.pairing.server_context())
                continue
            if name == "StopSession":
                if session is None or request.get("SessionID") != session:
                    reply["Error"] = "InvalidSessionID"
                else:
                    session, reply["Result"] = None, "Success"
                # The connection stays TLS, as pymobiledevice3 expects (libimobiledevice shuts TLS down after
                # StopSession; pymobiledevice3 goes on reading the TLS stream).
                conn.send_plist(reply)
                continue
            if name != "GetValue":
                self._log(f"lockdown {name} {request.get('Service', '')}".rstrip())
            reply.update(self._answer(name, request, session is not None))
            conn.send_plist(reply)

    def _answer(self, name: str, request: dict[str, Any], in_session: bool) -> dict[str, Any]:
        if name == "QueryType":
            return {"Type": "com.apple.mobile.lockdown"}
        if name == "GetValue":
            return self._get_value(request.get("Domain"), request.get("Key"), in_session)
        if name == "StartService":
            return self._start_service(request.get("Service", ""), in_session)
        if name == "ValidatePair":  # iOS < 7's check; a newer lockdownd still answers it
            ok = request.get("PairRecord", {}).get("HostID") == self.pairing.host_id
            return {} if ok else {"Error": "InvalidHostID"}
        if name == "Pair":
            # The trust dialog: this device trusts its one pairing (the record usbmuxd hands out) and no other.
            return {"Error": "UserDeniedPairing"}
        if name in ("SetValue", "RemoveValue"):
            return {} if in_session else {"Error": "SessionInactive"}
        return {"Error": "InvalidRequest"}

    def _get_value(self, domain: str | None, key: str | None, in_session: bool) -> dict[str, Any]:
        if domain:
            values = self.identity.domain(domain) if in_session else None
        else:
            values = self.identity.values() if in_session else self.identity.public_values()
        if values is None:
            return {"Error": "MissingValue"}
        if key is None:
            return {"Value": values}
        if key not in values:
            return {"Error": "MissingValue"}
        return {"Value": values[key]}

    def _start_service(self, name: str, in_session: bool) -> dict[str, Any]:
        if not in_session:
            return {"Error": "SessionInactive"}
        service = self.services.get(name)
        if service is None:
            return {"Error": "InvalidService"}
        with self._ports_lock:
            port = random.randint(49152, 65535)  # the dynamic range, where lockdownd's ports come from
            while port in self._ports:
                port = random.randint(49152, 65535)
            self._ports[port] = service
        reply: dict[str, Any] = {"Service": name, "Port": port}
        if service.ssl:
            reply["EnableServiceSSL"] = True
        return reply
