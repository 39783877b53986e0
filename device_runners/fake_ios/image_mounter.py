"""com.apple.mobile.mobile_image_mounter, as on a phone whose Developer disk image is mounted (Xcode or
`pymobiledevice3 mounter auto-mount` did it once): the DVT services need it, and a host that checks first
(pymobiledevice3's auto_mount) finds it there and mounts nothing.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable

from device_runners.fake_ios.wire import Conn

# What LookupImage reports for the mounted image: the image's signature (any 128 bytes stand in for it).
_SIGNATURE = hashlib.sha512(b"litert-bench test iPhone DeveloperDiskImage").digest() * 2


def serve(conn: Conn, log: Callable[[str], None]) -> None:
    for request in conn.requests():
        command = request.get("Command")
        log(f"mobile_image_mounter {command} {request.get('ImageType', '')}".rstrip())
        if command == "LookupImage":
            mounted = request.get("ImageType") == "Developer"
            conn.send_plist({"ImagePresent": mounted, "ImageSignature": [_SIGNATURE] if mounted else [],
                             "Status": "Complete"})
        elif command == "CopyDevices":
            conn.send_plist({"EntryList": [{"DiskImageType": "Developer", "IsMounted": True,
                                            "ImageSignature": _SIGNATURE, "MountPath": "/Developer"}],
                             "Status": "Complete"})
        elif command == "Hangup":
            conn.send_plist({"Status": "Complete"})
            return
        else:  # MountImage, ReceiveBytes, UnmountImage: the test device's image is fixed
            conn.send_plist({"Error": "ImageMountFailed", "DetailedError": f"{command} is not supported here"})
