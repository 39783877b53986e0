"""What the test iPhone says it is: the values lockdownd's GetValue answers, by domain.

The product follows the iOS version (an iPhone 14 Pro for iOS 16, which an iPhone 15 Pro never ran; an iPhone 15
Pro from iOS 17), so that the pair is one a real phone could report. The UDID has the A12-and-later form,
CHIPID-ECID, which pymobiledevice3 reads the ECID from.
"""

from __future__ import annotations

import dataclasses
import shutil
import time
from pathlib import Path
from typing import Any

DEVICE_NAME = "litert-bench test iPhone"
WIFI_ADDRESS = "f0:18:98:00:00:01"  # also in the pair record (WiFiMACAddress), which hosts match Wi-Fi devices by
_DEFAULT_ECID = 0x001A2B3C4D5E6F70


@dataclasses.dataclass(frozen=True)
class Product:
    product_type: str
    hardware_model: str
    chip_id: int
    platform: str  # HardwarePlatform


# iOS major version → the product the test device claims, and that version's last build.
_PRODUCTS = {
    15: (Product("iPhone14,2", "D63AP", 0x8110, "t8110"), "19H384"),
    16: (Product("iPhone15,2", "D73AP", 0x8120, "t8120"), "20H19"),
    17: (Product("iPhone16,1", "D83AP", 0x8130, "t8130"), "21H16"),
    18: (Product("iPhone16,1", "D83AP", 0x8130, "t8130"), "22H20"),
}


@dataclasses.dataclass(frozen=True)
class Identity:
    ios_version: str
    udid: str
    device_public_key: bytes  # PEM, as lockdownd reports DevicePublicKey
    wifi_address: str
    storage: Path  # the folder whose disk the device reports as its own

    @classmethod
    def create(cls, ios_version: str, udid: str | None, device_public_key: bytes, storage: Path) -> Identity:
        major = int(ios_version.split(".")[0])
        if major not in _PRODUCTS:
            raise ValueError(f"iOS {ios_version}: the test device knows iOS {min(_PRODUCTS)}-{max(_PRODUCTS)}")
        product = _PRODUCTS[major][0]
        return cls(ios_version, udid or f"{product.chip_id:08X}-{_DEFAULT_ECID:016X}", device_public_key,
                   WIFI_ADDRESS, storage)

    @property
    def major(self) -> int:
        return int(self.ios_version.split(".")[0])

    @property
    def product(self) -> Product:
        return _PRODUCTS[self.major][0]

    @property
    def build_version(self) -> str:
        return _PRODUCTS[self.major][1]

    @property
    def ecid(self) -> int:
        digits = self.udid.replace("-", "")
        return int(digits[8:], 16) if len(digits) == 24 else _DEFAULT_ECID

    def public_values(self) -> dict[str, Any]:
        """What lockdownd tells a host before a session: enough to pick a protocol and to pair."""
        return {
            "ActivationState": "Activated",
            "BuildVersion": self.build_version,
            "CPUArchitecture": "arm64e",
            "ChipID": self.product.chip_id,
            "DeviceClass": "iPhone",
            "DeviceColor": "1",
            "DeviceName": DEVICE_NAME,
            "DevicePublicKey": self.device_public_key,
            "HardwareModel": self.product.hardware_model,
            "HardwarePlatform": self.product.platform,
            "PasswordProtected": False,
            "ProductName": "iPhone OS",
            "ProductType": self.product.product_type,
            "ProductVersion": self.ios_version,
            "ProtocolVersion": "2",
            "UniqueChipID": self.ecid,
            "UniqueDeviceID": self.udid,
            "WiFiAddress": self.wifi_address,
        }

    def values(self) -> dict[str, Any]:
        """The default domain in a session."""
        return {
            **self.public_values(),
            "BasebandVersion": "2.09.01",
            "BluetoothAddress": "f0:18:98:00:00:02",
            "FirmwareVersion": "iBoot-8422.142.2",
            "HostAttached": True,
            "ModelNumber": "MQ0G3",
            "ProductionSOC": True,
            "RegionInfo": "LL/A",
            "SerialNumber": "LITERTBENCH1",
            "TimeIntervalSince1970": time.time(),
            "TimeZone": "UTC",
            "TimeZoneOffsetFromUTC": 0.0,
            "Uses24HourClock": True,
        }

    def domain(self, name: str) -> dict[str, Any] | None:
        """A named domain's values; None for one the test device does not have."""
        if name == "com.apple.disk_usage":
            disk = shutil.disk_usage(self.storage)
            return {"TotalDiskCapacity": disk.total, "TotalDataCapacity": disk.total,
                    "TotalDataAvailable": disk.free, "AmountDataAvailable": disk.free,
                    "AmountDataReserved": 0, "TotalSystemCapacity": 0, "TotalSystemAvailable": 0}
        return {
            # Developer mode on: the developer services (DVT) answer, as on a phone set up for benchmarking.
            "com.apple.security.mac.amfi": {"DeveloperModeStatus": True},
            "com.apple.mobile.wireless_lockdown": {"EnableWifiConnections": False},
            "com.apple.international": {"Language": "en", "Locale": "en_US", "SupportedLanguages": ["en"]},
            "com.apple.mobile.battery": {"BatteryCurrentCapacity": 100, "BatteryIsCharging": False,
                                         "ExternalChargeCapable": True, "ExternalConnected": True,
                                         "FullyCharged": True},
            "com.apple.xcode.developerdomain": {"DeveloperStatus": "Development"},
        }.get(name)
