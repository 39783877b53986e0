"""usbmuxd's side of its plist protocol: what a host's libusbmuxd or pymobiledevice3 asks the daemon that owns
the USB connection.

Every message is a 16-byte header (little-endian u32 length of the whole message, version 1, type 8 = plist,
tag) and a plist; the answer repeats the tag. `Connect` turns the socket into a byte stream to a port of the
device: lockdownd's 62078, or a service port lockdownd handed out. `Listen` answers and then reports the device
as attached, as usbmuxd does to a client that waits for devices.
"""

from __future__ import annotations

import plistlib
import socket
import struct
from collections.abc import Callable
from typing import Any

from device_runners.fake_ios.wire import Conn, Disconnected

_HEADER = struct.Struct("<IIII")  # length (header included), version, message type, tag
_PLIST_VERSION, _RESULT_TYPE, _PLIST_TYPE = 1, 1, 8
# usbmuxd's result numbers (libusbmuxd's usbmuxd-proto.h)
RESULT_OK, RESULT_BADCOMMAND, RESULT_BADDEV, RESULT_CONNREFUSED, RESULT_BADVERSION = 0, 1, 2, 3, 6
DEVICE_ID = 1  # usbmuxd numbers devices from 1 in the order they attach; this one is alone
_APPLE_PRODUCT_ID = 0x12A8  # what every iPhone since the 5 reports over USB

Handler = Callable[[Conn], None]


class Usbmuxd:
    def __init__(self, udid: str, system_buid: str, pair_record: dict[str, Any],
                 connect: Callable[[int], Handler | None], log: Callable[[str], None]):
        """`connect(port)`: what serves a connection to that device port, or None when nothing listens there."""
        self.udid, self.system_buid, self.pair_record = udid, system_buid, pair_record
        self._connect, self._log = connect, log

    def device_properties(self) -> dict[str, Any]:
        return {"DeviceID": DEVICE_ID, "MessageType": "Attached",
                "Properties": {"ConnectionSpeed": 480000000, "ConnectionType": "USB", "DeviceID": DEVICE_ID,
                               "LocationID": 0x14100000, "ProductID": _APPLE_PRODUCT_ID, "SerialNumber": self.udid,
                               "USBSerialNumber": self.udid.replace("-", "")}}

    def serve(self, conn: Conn) -> None:
        """Requests until the client hangs up or a Connect hands the socket to a device port."""
        while True:
            try:
                length, version, kind, tag = _HEADER.unpack(conn.recv_exact(_HEADER.size))
                body = conn.recv_exact(max(0, length - _HEADER.size))
            except Disconnected:
                return
            if version != _PLIST_VERSION or kind != _PLIST_TYPE:
                # The binary protocol (version 0) of old usbmuxd: answered in kind and refused, as a plist-only
                # daemon would, so that a client falls back to the plist protocol.
                conn.send(_HEADER.pack(_HEADER.size + 4, 0, _RESULT_TYPE, tag) + struct.pack("<I", RESULT_BADVERSION))
                continue
            request = plistlib.loads(body)
            message = request.get("MessageType")
            # Connect is logged with its answer; ListDevices and ReadBUID come from every client, all the time.
            if message not in ("Connect", "ListDevices", "ReadBUID"):
                self._log(f"usbmux {message}")
            if message == "Connect":
                handler = self._handle_connect(conn, tag, request)
                if handler is not None:
                    handler(conn)
                    return
            elif message == "Listen":
                self._reply(conn, tag, {"MessageType": "Result", "Number": RESULT_OK})
                self._reply(conn, 0, self.device_properties())  # what is attached now; nothing attaches later
                conn.wait_closed()
                return
            else:
                self._reply(conn, tag, self._answer(request))

    def _answer(self, request: dict[str, Any]) -> dict[str, Any]:
        message = request.get("MessageType")
        if message == "ListDevices":
            return {"DeviceList": [self.device_properties()]}
        if message == "ReadBUID":
            return {"BUID": self.system_buid}
        if message == "ReadPairRecord":
            if request.get("PairRecordID") != self.udid:
                return {"MessageType": "Result", "Number": RESULT_BADDEV}  # usbmuxd has no record of that one
            return {"PairRecordData": plistlib.dumps(self.pair_record)}
        if message in ("SavePairRecord", "DeletePairRecord"):
            # The device trusts its one pairing only; a host's new record would not be accepted by lockdownd.
            return {"MessageType": "Result", "Number": RESULT_OK}
        return {"MessageType": "Result", "Number": RESULT_BADCOMMAND}

    def _handle_connect(self, conn: Conn, tag: int, request: dict[str, Any]) -> Handler | None:
        # The port travels in network byte order (libusbmuxd and pymobiledevice3 both htons it).
        port = socket.ntohs(int(request.get("PortNumber", 0)) & 0xFFFF)
        handler = None
        if request.get("DeviceID") != DEVICE_ID:
            number = RESULT_BADDEV
        else:
            handler = self._connect(port)
            number = RESULT_OK if handler is not None else RESULT_CONNREFUSED
        self._log(f"usbmux Connect port {port}: {number}")
        self._reply(conn, tag, {"MessageType": "Result", "Number": number})
        return handler

    @staticmethod
    def _reply(conn: Conn, tag: int, value: dict[str, Any]) -> None:
        data = plistlib.dumps(value, fmt=plistlib.FMT_XML)
        conn.send(_HEADER.pack(_HEADER.size + len(data), _PLIST_VERSION, _PLIST_TYPE, tag) + data)
