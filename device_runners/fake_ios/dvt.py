"""Instruments' remote server (com.apple.instruments.remoteserver.DVTSecureSocketProxy on iOS 14-16) over DTX.

On connection the device publishes its capabilities (`_notifyOfPublishedCapabilities:` on channel 0) and the host
publishes its own. The host opens a service's channel with `_requestChannelWithCode:identifier:` (a code it
chose) and calls the service's methods on that channel; `_channelCanceled:` closes it. Served channels:

- com.apple.instruments.server.services.processcontrol: launchSuspendedProcessWithDevicePath:bundleIdentifier:
  environment:arguments:options: (→ pid), killPid:, sendSignal:toPid:, processIdentifierForBundleIdentifier:,
  suspendPid:, resumePid:, isPidDebuggable:, requestDisableMemoryLimitsForPid:, start/stopObservingPid:;
- com.apple.instruments.server.services.deviceinfo: runningProcesses, isRunningPid:, execnameForPid:,
  systemInformation, hardwareInformation, machKernelName, nameForUID:, nameForGID:.

A method the service does not have is answered with the NSError a real one sends ("... it does not respond to the
selector"); a failed call with an NSError that says why.
"""

from __future__ import annotations

import contextlib
import signal
import threading
import time
from collections.abc import Callable
from typing import Any

from bpylist2.archive_types import timestamp

from device_runners.fake_ios import dtx
from device_runners.fake_ios.app import AppRunner, LaunchError
from device_runners.fake_ios.dtx import NSError
from device_runners.fake_ios.identity import Identity
from device_runners.fake_ios.wire import Conn, Disconnected

PROCESS_CONTROL = "com.apple.instruments.server.services.processcontrol"
DEVICE_INFO = "com.apple.instruments.server.services.deviceinfo"
CAPABILITIES = {
    "com.apple.private.DTXConnection": 1,
    "com.apple.private.DTXBlockCompression": 0,  # nothing compressed either way
    PROCESS_CONTROL: 2,
    DEVICE_INFO: 1,
}
_CLASSES = {PROCESS_CONTROL: "DTProcessControlService", DEVICE_INFO: "DTDeviceInfoService"}
_BOOT_TIME = time.time()


class DvtConnection:
    def __init__(self, conn: Conn, apps: AppRunner, identity: Identity, log: Callable[[str], None]):
        self.conn, self.apps, self.identity, self._log = conn, apps, identity, log
        self._channels: dict[int, str] = {}  # the host's channel code → service identifier
        self._next_id = 1
        self._send_lock = threading.Lock()

    def serve(self) -> None:
        reader = dtx.Reader(self.conn)
        with contextlib.suppress(Disconnected):
            self._send(dtx.DISPATCH, 0, 0, "_notifyOfPublishedCapabilities:", [CAPABILITIES])
            while True:
                self._handle(reader.next())

    def _send(self, kind: int, conv: int, channel: int, payload: Any = None, aux: list[Any] | None = None,
              identifier: int | None = None) -> None:
        with self._send_lock:
            if identifier is None:  # a message of the device's own, not a reply
                identifier, self._next_id = self._next_id, self._next_id + 1
            self.conn.send(dtx.encode(kind, identifier, conv, channel, payload, aux))

    def _reply(self, message: dtx.Message, value: Any) -> None:
        if not message.expects_reply:
            return
        kind = dtx.ERROR if isinstance(value, NSError) else dtx.OK if value is None else dtx.OBJECT
        self._send(kind, message.conversation + 1, message.channel, value, identifier=message.identifier)

    def _handle(self, message: dtx.Message) -> None:
        if message.type != dtx.DISPATCH:
            self._reply(message, None)  # a reply or notification of the host's: acknowledged if it asks
            return
        selector = message.payload
        if message.channel == 0:
            self._reply(message, self._control(str(selector), message.aux))
            return
        identifier = self._channels.get(message.channel)
        if identifier is None:
            self._reply(message, NSError(1, "DTXMessage", f"No channel {message.channel} is open"))
            return
        handler = {PROCESS_CONTROL: self._process_control, DEVICE_INFO: self._device_info}[identifier]
        try:
            result = handler(str(selector), message.aux)
        except LaunchError as e:
            result = NSError(1, "DTXMessage", str(e))
        except ProcessLookupError as e:
            result = NSError(3, "NSPOSIXErrorDomain", f"No such process: {e}")
        except Exception as e:  # arguments of the wrong kind, or a bug here: an answer, not a dropped connection
            result = NSError(1, "DTXMessage", f"In invocation of method {selector!r}: {type(e).__name__}: {e}")
        if result is _UNKNOWN:
            result = NSError(1, "DTXMessage", f"Unable to invoke -[{_CLASSES[identifier]} {selector}] - it does not "
                                              "respond to the selector")
        self._reply(message, result)

    def _control(self, selector: str, args: list[Any]) -> Any:
        if selector == "_notifyOfPublishedCapabilities:":
            return None
        if selector == "_requestChannelWithCode:identifier:":
            code, identifier = int(args[0]), str(args[1])
            self._log(f"dvt channel {code} {identifier}")
            if identifier not in _CLASSES:
                return NSError(1, "DTXMessage", f"Unable to find service {identifier!r}")
            self._channels[code] = identifier
            return None
        if selector == "_channelCanceled:":
            self._channels.pop(int(args[0]), None)
            return None
        return NSError(1, "DTXMessage", f"Unable to invoke {selector!r} - it does not respond to the selector")

    def _process_control(self, selector: str, args: list[Any]) -> Any:
        if selector == "launchSuspendedProcessWithDevicePath:bundleIdentifier:environment:arguments:options:":
            _path, bundle_id, environment, _arguments, options = args
            return self.apps.launch(str(bundle_id), environment or {}, options or {})
        if selector == "killPid:":
            self.apps.send_signal(int(args[0]), signal.SIGKILL)
            return None
        if selector == "sendSignal:toPid:":
            self.apps.send_signal(int(args[1]), int(args[0]))
            return None
        if selector == "suspendPid:":
            self.apps.send_signal(int(args[0]), signal.SIGSTOP)
            return None
        if selector == "resumePid:":
            self.apps.send_signal(int(args[0]), signal.SIGCONT)
            return None
        if selector == "processIdentifierForBundleIdentifier:":
            return self.apps.pid_for_bundle(str(args[0]))
        if selector in ("isPidDebuggable:", "requestDisableMemoryLimitsForPid:"):
            return self.apps.is_running(int(args[0]))  # development-signed apps: both granted
        if selector in ("startObservingPid:", "stopObservingPid:"):
            return None
        return _UNKNOWN

    def _device_info(self, selector: str, args: list[Any]) -> Any:
        if selector == "runningProcesses":
            return self._processes()
        if selector == "isRunningPid:":
            return any(p["pid"] == int(args[0]) for p in self._processes())
        if selector == "execnameForPid:":
            return next((p["realAppName"] for p in self._processes() if p["pid"] == int(args[0])), None)
        if selector == "systemInformation":
            return {"ProductName": "iPhone OS", "ProductVersion": self.identity.ios_version,
                    "BuildVersion": self.identity.build_version, "ProductType": self.identity.product.product_type}
        if selector == "hardwareInformation":
            return {"numberOfCpus": 6, "numberOfPhysicalCpus": 6, "hwCPUtype": 16777228, "hwCPUsubtype": 2,
                    "hwCPU64BitCapable": 1, "speedOfCpus": 0}
        if selector == "machKernelName":
            return "/mach.release.t8120"
        if selector in ("nameForUID:", "nameForGID:"):
            return {0: "root", 501: "mobile"}.get(int(args[0]), str(args[0]))
        return _UNKNOWN

    def _processes(self) -> list[dict[str, Any]]:
        """launchd and the running apps (the host's processes are none of the device's business)."""
        processes = [{"pid": 1, "name": "launchd", "realAppName": "/sbin/launchd", "isApplication": False,
                      "startDate": timestamp(_BOOT_TIME)}]
        for running in self.apps.running():
            bundle = self.apps.layout.device_path(running.app.bundle)
            processes.append({"pid": running.pid, "name": running.app.executable,
                              "realAppName": f"{bundle}/{running.app.executable}", "isApplication": True,
                              "bundleIdentifier": running.app.bundle_id, "startDate": timestamp(running.started)})
        return processes


_UNKNOWN = object()  # a selector the service does not have
