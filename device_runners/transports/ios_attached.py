"""The iOS devices usbmuxd lists: their UDIDs, what lockdown tells of each without pairing, and the one device
a profile (iphone15pro, ...) names by its ProductType."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Sequence

from pymobiledevice3 import usbmux
from pymobiledevice3.exceptions import (
    ConnectionFailedToUsbmuxdError,
)
from pymobiledevice3.lockdown import create_using_usbmux

from device_runners.transports.ios_link import DEVICE_ERRORS, describe, no_usbmuxd
from device_runners.transports.ios_support import (
    IosDeviceError,
)


async def _usbmux_devices() -> list[usbmux.MuxDevice]:
    """One entry per device (usbmuxd lists a device on USB and Wi-Fi twice): USB first."""
    unique: dict[str, usbmux.MuxDevice] = {}
    for device in sorted(await usbmux.list_devices(), key=lambda d: not d.is_usb):
        unique.setdefault(device.serial, device)
    return list(unique.values())


def attached_udids() -> list[str]:
    """The UDIDs usbmuxd lists ([] when usbmuxd cannot be reached)."""
    try:
        return [d.serial for d in asyncio.run(_usbmux_devices())]
    except DEVICE_ERRORS:
        return []


def describe_attached() -> list[dict]:
    """Every device usbmuxd lists: udid, connection, paired, and what lockdown says without pairing (ProductType,
    ProductVersion, BuildVersion, DeviceName), with the free storage when paired; `error` for one that does not
    answer. IosDeviceError when usbmuxd cannot be reached."""

    async def describe_one(device: usbmux.MuxDevice) -> dict:
        row: dict = {"udid": device.serial, "connection": device.connection_type}
        try:
            lockdown = await asyncio.wait_for(create_using_usbmux(serial=device.serial, autopair=False), 15)
        except (TimeoutError, *DEVICE_ERRORS) as e:
            return row | {"error": describe(e)}
        try:
            row["paired"] = bool(lockdown.paired)
            row |= {k: lockdown.all_values.get(k) for k in ("ProductType", "ProductVersion", "BuildVersion",
                                                            "DeviceName", "HardwareModel")}
            if lockdown.paired:
                with contextlib.suppress(TimeoutError, *DEVICE_ERRORS):
                    free = await asyncio.wait_for(lockdown.get_value("com.apple.disk_usage", "TotalDataAvailable"), 10)
                    row["storage_free_mb"] = int(free) // 2**20 if free is not None else None
        finally:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(lockdown.close(), 5)
        return row

    async def describe_all() -> list[dict]:
        return [await describe_one(device) for device in await _usbmux_devices()]

    try:
        return asyncio.run(describe_all())
    except ConnectionFailedToUsbmuxdError:
        raise IosDeviceError(no_usbmuxd()) from None
    except DEVICE_ERRORS as e:
        raise IosDeviceError(f"cannot list iOS devices through usbmuxd: {describe(e)}") from None


def find_udid(product_types: Sequence[str], what: str) -> str:
    """The UDID of the one attached device of one of `product_types` (any device when empty), for a profile
    (`what` names it)."""
    rows = describe_attached()
    wanted = set(product_types)
    matching = [r for r in rows if "error" not in r and (not wanted or r.get("ProductType") in wanted)]
    if len(matching) == 1:
        return matching[0]["udid"]
    listing = ", ".join(f"{r['udid']} ({r.get('ProductType') or r.get('error')})" for r in rows) or \
        "none (plugged in, unlocked and trusted?)"
    problem = "no attached iOS device matches" if not matching else f"{len(matching)} attached iOS devices match"
    raise IosDeviceError(f"{what}: {problem}; attached iOS devices: {listing}. Name one with --device ios:UDID")
