"""Installed apps and com.apple.mobile.installation_proxy, the service that installs, lists and removes them.

An app is what iOS makes of an .ipa: its bundle in ROOT/private/var/containers/Bundle/Application/UUID/Name.app
and its data container (Documents, Library, tmp) in ROOT/private/var/mobile/Containers/Data/Application/UUID,
each folder marked, as the container manager marks them, by a .com.apple.mobile_container_manager.metadata.plist
naming the bundle id. The folders are the whole record: what is installed survives a restart of the fake.

installation_proxy speaks framed plists. Install/Upgrade take a package the host uploaded through AFC
(PackagePath, relative to /var/mobile/Media), unpack Payload/Name.app, read its Info.plist, and report progress
({Status, PercentComplete}) until {Status: Complete}, or {Error, ErrorDescription}. A reinstall keeps the data
container, as iOS does. Browse, Lookup and Uninstall answer as installd does.
"""

from __future__ import annotations

import contextlib
import dataclasses
import plistlib
import posixpath
import shutil
import threading
import uuid
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from device_runners.fake_ios.layout import Layout
from device_runners.fake_ios.wire import Conn

METADATA = ".com.apple.mobile_container_manager.metadata.plist"
_BUNDLE_CLASS, _DATA_CLASS = 1, 2  # MCMMetadataContentClass: app bundle, app data
# What installd reports while installing, with its percentages.
_INSTALL_STEPS = [
    ("CreatingStagingDirectory", 5), ("ExtractingPackage", 15), ("InspectingPackage", 20),
    ("TakingInstallLock", 20), ("PreflightingApplication", 30), ("VerifyingApplication", 40),
    ("CreatingContainer", 50), ("InstallingApplication", 60), ("PostflightingApplication", 70),
    ("SandboxingApplication", 80), ("GeneratingApplicationMap", 90),
]


class InstallError(Exception):
    def __init__(self, name: str, description: str):
        super().__init__(f"{name}: {description}")
        self.name, self.description = name, description


@dataclasses.dataclass(frozen=True)
class App:
    bundle_id: str
    info: dict[str, Any]  # its Info.plist
    bundle: Path  # .../Bundle/Application/UUID/Name.app
    container: Path  # .../Data/Application/UUID

    @property
    def executable(self) -> str:
        return str(self.info.get("CFBundleExecutable") or self.bundle.stem)

    @property
    def documents(self) -> Path:
        return self.container / "Documents"


class InstalledApps:
    def __init__(self, layout: Layout, log: Callable[[str], None]):
        self.layout, self._log = layout, log
        self._lock = threading.Lock()
        # Called with a bundle id before its app is replaced or removed: iOS terminates a running app first.
        self.before_change: Callable[[str], None] = lambda bundle_id: None
        for leftover in layout.bundles.glob(".installing-*"):  # an install the fake was killed in
            shutil.rmtree(leftover, ignore_errors=True)

    def all(self) -> list[App]:
        data = {ident: path for path, ident in _marked(self.layout.data)}
        apps: list[App] = []
        for folder, bundle_id in _marked(self.layout.bundles):
            bundle = next((p for p in sorted(folder.glob("*.app")) if (p / "Info.plist").is_file()), None)
            if bundle is None or bundle_id not in data or any(a.bundle_id == bundle_id for a in apps):
                continue  # half-installed or half-removed (the fake was killed mid-way): not an app
            with contextlib.suppress(OSError, plistlib.InvalidFileException):
                apps.append(App(bundle_id, plistlib.loads((bundle / "Info.plist").read_bytes()), bundle,
                                data[bundle_id]))
        return apps

    def get(self, bundle_id: str) -> App | None:
        return next((app for app in self.all() if app.bundle_id == bundle_id), None)

    def describe(self, app: App, attributes: list[str] | None = None) -> dict[str, Any]:
        """An app as Browse and Lookup report it: its Info.plist and what installd adds."""
        container = self.layout.device_path(app.container)
        entry = {
            **app.info,
            "ApplicationType": "User",
            "Path": self.layout.device_path(app.bundle),
            "Container": container,
            "EnvironmentVariables": {"CFFIXED_USER_HOME": container, "HOME": container, "TMPDIR": f"{container}/tmp"},
            "Entitlements": {"application-identifier": f"LITERTBNCH.{app.bundle_id}", "get-task-allow": True},
            "SignerIdentity": "Apple Development: litert-bench (LITERTBNCH)",
            "IsAppClip": False,
            "ProfileValidated": True,
        }
        return {k: v for k, v in entry.items() if k in attributes} if attributes else entry

    def install(self, package: Path, progress: Callable[[str, int], None]) -> App:
        with self._lock:
            return self._install(package, progress)

    def uninstall(self, bundle_id: str) -> bool:
        with self._lock:
            app = self.get(bundle_id)
            if app is None:
                return False
            self.before_change(bundle_id)
            self._log(f"uninstall {bundle_id}")
            shutil.rmtree(app.bundle.parent)  # the bundle first: without it the data container is no app
            shutil.rmtree(app.container, ignore_errors=True)
            return True

    def _install(self, package: Path, progress: Callable[[str, int], None]) -> App:
        steps = iter(_INSTALL_STEPS)

        def report_through(last: str) -> None:
            for status, percent in steps:
                progress(status, percent)
                if status == last:
                    return

        report_through("CreatingStagingDirectory")
        try:
            archive = zipfile.ZipFile(package)
        except (OSError, zipfile.BadZipFile) as e:
            raise InstallError("PackageExtractionFailed", f"Failed to extract package {package.name}: {e}") from e
        with archive:
            report_through("ExtractingPackage")
            app_dirs = {name.split("/")[1] for name in archive.namelist()
                        if name.startswith("Payload/") and name.count("/") >= 2 and name.split("/")[1]}
            apps = sorted(d for d in app_dirs if d.endswith(".app"))
            if len(apps) != 1:
                raise InstallError("PackageInspectionFailed",
                                   f"Expected one .app in Payload, found {len(apps)}: {', '.join(apps) or 'none'}")
            try:
                info = plistlib.loads(archive.read(f"Payload/{apps[0]}/Info.plist"))
            except (KeyError, plistlib.InvalidFileException, ValueError) as e:
                raise InstallError("PackageInspectionFailed", f"No readable Info.plist in {apps[0]}: {e}") from e
            bundle_id = info.get("CFBundleIdentifier")
            if not isinstance(bundle_id, str) or not bundle_id:
                raise InstallError("PackageInspectionFailed", f"{apps[0]}'s Info.plist has no CFBundleIdentifier")
            report_through("CreatingContainer")
            old = self.get(bundle_id)
            if old is not None:
                self.before_change(bundle_id)
            bundle_uuid = str(uuid.uuid4()).upper()
            staging = self.layout.bundles / f".installing-{bundle_uuid}"
            try:
                _extract_payload(archive, staging)
                _mark(staging, bundle_id, _BUNDLE_CLASS, bundle_uuid)
                container = old.container if old is not None else self._new_container(bundle_id)
                staging.rename(self.layout.bundles / bundle_uuid)
            finally:
                shutil.rmtree(staging, ignore_errors=True)
            if old is not None:
                shutil.rmtree(old.bundle.parent, ignore_errors=True)
            report_through("GeneratingApplicationMap")
        self._log(f"install {bundle_id} {info.get('CFBundleShortVersionString', '')} "
                  f"({info.get('CFBundleVersion', '')})")
        return App(bundle_id, info, self.layout.bundles / bundle_uuid / apps[0], container)

    def _new_container(self, bundle_id: str) -> Path:
        container_uuid = str(uuid.uuid4()).upper()
        container = self.layout.data / container_uuid
        for sub in ("Documents", "Library/Caches", "Library/Preferences", "tmp"):
            (container / sub).mkdir(parents=True, exist_ok=True)
        _mark(container, bundle_id, _DATA_CLASS, container_uuid)
        return container


def _marked(folder: Path) -> list[tuple[Path, str]]:
    """(container, bundle id) for each container of `folder` that carries the container manager's mark."""
    found = []
    for path in sorted(folder.iterdir()) if folder.is_dir() else []:
        if path.name.startswith("."):  # an install in progress (or one the fake was killed in)
            continue
        with contextlib.suppress(OSError, plistlib.InvalidFileException, KeyError):
            found.append((path, plistlib.loads((path / METADATA).read_bytes())["MCMMetadataIdentifier"]))
    return found


def _mark(folder: Path, bundle_id: str, content_class: int, container_uuid: str) -> None:
    (folder / METADATA).write_bytes(plistlib.dumps({
        "MCMMetadataIdentifier": bundle_id, "MCMMetadataContentClass": content_class,
        "MCMMetadataUUID": container_uuid, "MCMMetadataVersion": 6}))


def _extract_payload(archive: zipfile.ZipFile, dest: Path) -> None:
    """Payload/Name.app/... into dest/Name.app/..., nothing outside dest, with the zip's file modes."""
    dest.mkdir(parents=True)
    for member in archive.infolist():
        name = posixpath.normpath(member.filename)
        if not name.startswith("Payload/") or name.startswith("Payload/../") or posixpath.isabs(name):
            continue
        target = dest / name[len("Payload/"):]
        if member.is_dir():
            target.mkdir(parents=True, exist_ok=True)
            continue
        target.parent.mkdir(parents=True, exist_ok=True)
        with archive.open(member) as src, target.open("wb") as dst:
            shutil.copyfileobj(src, dst, 1 << 20)
        mode = (member.external_attr >> 16) & 0o777
        if mode:
            target.chmod(mode)


def serve(conn: Conn, apps: InstalledApps, layout: Layout, log: Callable[[str], None]) -> None:
    """One installation_proxy connection: commands until the host hangs up."""
    for request in conn.requests():
        command = request.get("Command")
        options = request.get("ClientOptions") or {}
        log(f"installation_proxy {command} {request.get('ApplicationIdentifier') or ''}".rstrip())
        if command == "Browse":
            found = _select(apps, options)
            if found:
                conn.send_plist({"Status": "BrowsingApplications", "CurrentIndex": 0, "CurrentAmount": len(found),
                                 "Amount": len(found), "CurrentList": [apps.describe(a, options.get("ReturnAttributes"))
                                                                       for a in found]})
            conn.send_plist({"Status": "Complete"})
        elif command == "Lookup":
            conn.send_plist({"Status": "Complete", "LookupResult": {
                a.bundle_id: apps.describe(a, options.get("ReturnAttributes")) for a in _select(apps, options)}})
        elif command in ("Install", "Upgrade"):
            _install(conn, apps, layout, request.get("PackagePath", ""))
        elif command == "Uninstall":
            conn.send_plist({"Status": "RemovingApplication", "PercentComplete": 50})
            apps.uninstall(request.get("ApplicationIdentifier", ""))  # installd answers Complete for an unknown id
            conn.send_plist({"Status": "GeneratingApplicationMap", "PercentComplete": 90})
            conn.send_plist({"Status": "Complete"})
        elif command == "CheckCapabilitiesMatch":
            conn.send_plist({"Status": "Complete", "LookupResult": True})
        else:
            conn.send_plist({"Error": "UnknownCommand", "ErrorDescription": f"Unknown command {command!r}"})


def _select(apps: InstalledApps, options: dict[str, Any]) -> list[App]:
    if options.get("ApplicationType", "Any") not in ("Any", "User"):
        return []  # System, Internal, ...: the test device has no such apps
    wanted = options.get("BundleIDs")
    return [app for app in apps.all() if wanted is None or app.bundle_id in wanted]


def _install(conn: Conn, apps: InstalledApps, layout: Layout, package_path: str) -> None:
    package = layout.media / posixpath.normpath("/" + package_path).lstrip("/")
    if not package.is_file():
        conn.send_plist({"Error": "PackageExtractionFailed",
                         "ErrorDescription": f"Could not find the package at {package_path}"})
        return
    try:
        apps.install(package, lambda status, percent: conn.send_plist({"Status": status,
                                                                         "PercentComplete": percent}))
    except InstallError as e:
        conn.send_plist({"Error": e.name, "ErrorDescription": e.description})
        return
    conn.send_plist({"Status": "Complete"})
