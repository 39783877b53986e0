"""com.apple.mobile.house_arrest: AFC over an installed app's data container.

The host sends {Command: VendContainer | VendDocuments, Identifier: bundle id}; the device answers
{Status: Complete} and the rest of the connection is AFC rooted at the container (Documents, Library, tmp), or
{Error: ApplicationLookupFailed} for an app that is not installed. VendDocuments vends the same container with
only Documents in it, which is where pymobiledevice3's HouseArrestService(documents_only=True) looks
("/Documents").
"""

from __future__ import annotations

from collections.abc import Callable

from device_runners.fake_ios.afc import AfcServer
from device_runners.fake_ios.installation import InstalledApps
from device_runners.fake_ios.wire import Conn, Disconnected


def serve(conn: Conn, apps: InstalledApps, log: Callable[[str], None], model: str) -> None:
    try:
        request = conn.recv_plist()
    except Disconnected:
        return
    command, bundle_id = request.get("Command"), request.get("Identifier", "")
    log(f"house_arrest {command} {bundle_id}")
    if command not in ("VendContainer", "VendDocuments"):
        conn.send_plist({"Error": "UnknownCommand"})
        return
    app = apps.get(bundle_id)
    if app is None:
        conn.send_plist({"Error": "ApplicationLookupFailed"})
        return
    conn.send_plist({"Status": "Complete"})
    AfcServer(conn, app.container, log, only="Documents" if command == "VendDocuments" else None,
              model=model).serve()
