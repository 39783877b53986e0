"""Device = Transport + Profile. Profiles (devices.toml) name devices: `host`, phones such as `pixel8` or
`iphone15pro`, the generic `android` and `ios`; `adb:SERIAL[@HOST:PORT]` names any attached Android device and
`ios:UDID` any attached iPhone or iPad."""

from __future__ import annotations

import dataclasses
import functools
import os
import platform
import tomllib
from pathlib import Path

from device_runners.transports.base import DeviceFacts, Transport
from device_runners.transports.host import HostTransport

PROFILES_FILE = Path(__file__).resolve().parent / "devices.toml"
ADB_FORM = "adb:SERIAL[@HOST:PORT]"  # how the usage errors spell the adb names
SSH_FORM = "ssh:USER@HOST[:PORT]"  # any Linux board over SSH (its runner build from its `uname -m`)
BOARD_FORM = "BOARD@[USER@]HOST[:PORT]"  # a board profile (rpi5, ...) at an address
IOS_FORM = "ios:UDID"  # any attached iPhone or iPad (its profile from its ProductType)


@dataclasses.dataclass(frozen=True)
class Profile:
    name: str
    transport: str  # host | adb | qemu | ssh | ios
    runner_target: str  # which runner build runs there (device_runners.runners.native targets)
    # Cores worth using at most (a phone's big cluster); None: every core the device lets us run on.
    max_threads: int | None = None
    description: str = ""
    # What identifies it among attached devices: ro.product.model values (adb), ProductType values (iOS).
    models: tuple[str, ...] = ()
    soc: str | None = None
    abi: str | None = None
    clusters: str | None = None
    big_cores: tuple[int, ...] = ()  # fastest first; for devices that hide cpuinfo_max_freq
    # Boards over SSH: where the board answers ([USER@]HOST[:PORT]; `--device NAME@HOST` overrides it), and what
    # runs the runner there (a test board's `qemu-aarch64 -L PREFIX`; nothing on a real board).
    address: str | None = None
    launcher: tuple[str, ...] = ()
    emulated: bool = False  # an emulator (qemu-arm64): results are marked, greyed and never gated on speed
    cores: int | None = None  # CPU cores, for devices that do not say (iOS lists no CPUs)


def load_profiles(path: Path = PROFILES_FILE) -> dict[str, Profile]:
    with path.open("rb") as f:
        table = tomllib.load(f)
    return {name: Profile(name, **{k: tuple(v) if isinstance(v, list) else v for k, v in fields.items()})
            for name, fields in table.items()}


PROFILES: dict[str, Profile] = load_profiles()


def known_devices() -> list[str]:
    return [*sorted(PROFILES), ADB_FORM, IOS_FORM, SSH_FORM, BOARD_FORM]


def is_adb_name(name: str) -> bool:
    """`adb:SERIAL` or `adb:SERIAL@HOST:PORT`."""
    from device_runners.transports.adb import AdbAddress

    try:
        AdbAddress.parse(name)
    except ValueError:
        return False
    return True


def profile_for_model(model: str) -> Profile:
    """The profile of an adb device from its ro.product.model; `android` when none lists it."""
    from device_runners.transports.adb import model_tag

    for profile in PROFILES.values():
        if profile.transport == "adb" and model_tag(model) in set(map(model_tag, profile.models)):
            return profile
    return PROFILES["android"]


def profile_for_product_type(product_type: str) -> Profile:
    """The profile of an iOS device from its ProductType (iPhone16,1); `ios` when none lists it."""
    for profile in PROFILES.values():
        if profile.transport == "ios" and product_type in profile.models:
            return profile
    return PROFILES["ios"]


class Device:
    def __init__(self, profile: Profile, transport: Transport, name: str | None = None):
        self.profile = profile
        self.transport = transport
        self.name = name or profile.name

    @functools.cached_property
    def facts(self) -> DeviceFacts:
        return self.transport.facts()

    def threads_for(self, requested: int) -> int:
        """What a run asking for `requested` threads gets: never more than the cores present."""
        cap = min(len(self.facts.cpus), self.profile.max_threads or len(self.facts.cpus))
        return max(1, min(requested, cap))

    def cpus_for(self, threads: int) -> list[int]:
        if not self.facts.cpu_max_khz and self.profile.big_cores:
            # The device hides its frequencies: the profile's big cores, then the rest.
            ranked = [c for c in self.profile.big_cores if c in self.facts.cpus]
            ranked += [c for c in self.facts.cpus if c not in ranked]
            return sorted(ranked[:threads])
        return self.facts.fastest_cpus(threads)


def abi_name(machine: str) -> str:
    """Android's spelling of a CPU architecture (uname's aarch64 is arm64-v8a)."""
    return {"aarch64": "arm64-v8a", "arm64": "arm64-v8a"}.get(machine, machine)


def runner_abi(target: str) -> str:
    """The ABI a runner build target runs on."""
    return "arm64-v8a" if target in ("android-arm64", "linux-arm64", "ios-arm64") else abi_name(platform.machine())


def open_device(name: str) -> Device:
    if name.startswith("adb:"):
        from device_runners.transports.adb import AdbAddress, AdbTransport

        transport = AdbTransport(name, AdbAddress.parse(name))
        return Device(profile_for_model(transport.model()), transport, name)
    if name.startswith("ios:"):
        return open_ios(name)
    if name.startswith("ssh:") or board_profile(name) is not None:
        return open_board(name)
    try:
        profile = PROFILES[name]
    except KeyError:
        raise ValueError(f"unknown device {name!r}; known devices: {', '.join(known_devices())}") from None
    if profile.transport == "host":
        return Device(profile, HostTransport())
    if profile.transport == "qemu":
        from device_runners.transports.qemu import QemuTransport

        return Device(profile, QemuTransport())
    if profile.transport == "ios":
        return open_ios(name, profile)
    from device_runners.transports.adb import AdbAddress, AdbTransport, find_serial

    serial = find_serial(profile.models, f"{name} ({profile.description})" if profile.description else name)
    return Device(profile, AdbTransport(name, AdbAddress(serial)))


def is_address_name(name: str) -> bool:
    """A device named by where it is rather than by a profile alone: `adb:SERIAL[@HOST:PORT]`, `ios:UDID`,
    `ssh:USER@HOST[:PORT]` or `BOARD@[USER@]HOST[:PORT]`."""
    from device_runners.transports.ios_support import is_ios_name
    from device_runners.transports.ssh import SshAddress

    if is_adb_name(name) or is_ios_name(name):
        return True
    if not (name.startswith("ssh:") or (board_profile(name) is not None and "@" in name)):
        return False
    try:
        SshAddress.parse(name if name.startswith("ssh:") else name.partition("@")[2])
    except ValueError:
        return False
    return True


def board_profile(name: str) -> Profile | None:
    """The board profile of `BOARD` or `BOARD@[USER@]HOST[:PORT]`; None for names of other devices."""
    profile = PROFILES.get(name.partition("@")[0])
    return profile if profile is not None and profile.transport == "ssh" else None


def open_board(name: str) -> Device:
    """A Linux board over SSH: `ssh:USER@HOST[:PORT]`, whose runner build follows from its `uname -m`, or a board
    profile at the address given (`rpi5@HOST`) or at the one in its profile (`rpi5`)."""
    from device_runners.transports.ssh import SshAddress, SshTransport, runner_target_for

    if name.startswith("ssh:"):
        transport = SshTransport(name, SshAddress.parse(name, SSH_FORM))
        try:
            target = runner_target_for(transport.machine(), name)
        except BaseException:
            transport.close()
            raise
        return Device(Profile("ssh", "ssh", target, description="a Linux board over SSH"), transport, name)
    board, _, where = name.partition("@")
    profile = PROFILES[board]
    if not (where or profile.address):
        raise ValueError(f"{name}: no address for the board; name it with --device {board}@[USER@]HOST[:PORT], or "
                         f"set `address` in its profile ({PROFILES_FILE})")
    address = SshAddress.parse(where or profile.address or "", f"{board}@[USER@]HOST[:PORT]")
    return Device(profile, SshTransport(name, address, launcher=profile.launcher), name)


def configured_boards() -> list[dict]:
    """The boards whose profiles carry an address and that answer: profile, model, architecture, OS, CPU clusters,
    memory, free storage. A board that does not answer gets a row saying why."""
    rows = []
    for profile in sorted(PROFILES.values(), key=lambda p: p.name):
        if profile.transport != "ssh" or not profile.address:
            continue
        row: dict = {"device": profile.name, "address": profile.address}
        try:
            device = open_board(profile.name)
        except Exception as e:  # one board down must not hide the others
            rows.append(row | {"state": "no answer", "error": str(e)})
            continue
        try:
            facts, free = device.facts, device.transport.free_bytes()
            row |= {"state": "ok", "profile": profile.name, "model": facts.model, "abi": facts.abi,
                    "os": facts.os_version, "clusters": facts.clusters() or profile.clusters,
                    "mem_total_mb": facts.mem_total_mb, "storage_free_mb": free // 2**20 if free is not None else None}
        finally:
            device.transport.close()
        rows.append(row)
    return rows


def attached_devices() -> list[dict]:
    """Every device the adb server lists, and for those online: profile, model, ABI, CPU clusters, free storage."""
    from device_runners.transports.adb import attached

    rows = []
    for info in attached():  # starts the local adb server if it is not running
        row: dict = {"device": f"adb:{info.serial}", "state": info.state}
        if info.state == "device":
            device = open_device(row["device"])
            facts = device.facts
            free = device.transport.free_bytes()
            row |= {"profile": device.profile.name, "model": facts.model, "abi": facts.abi, "os": facts.os_version,
                    "clusters": facts.clusters() or device.profile.clusters, "mem_total_mb": facts.mem_total_mb,
                    "storage_free_mb": free // 2**20 if free is not None else None}
        rows.append(row)
    return rows


def open_ios(name: str, profile: Profile | None = None) -> Device:
    """An iPhone or iPad: `ios:UDID`, whose profile follows from its ProductType, or a profile's one attached device
    (`iphone15pro`; `ios` for the only one attached)."""
    from device_runners.transports.ios import IosTransport
    from device_runners.transports.ios_attached import find_udid
    from device_runners.transports.ios_support import parse_ios_name

    if profile is None:
        transport = IosTransport(name, parse_ios_name(name))
        profile = profile_for_product_type(transport.product_type)
    else:
        what = f"{name} ({profile.description})" if profile.description else name
        transport = IosTransport(name, find_udid(profile.models, what))
    transport.cores = profile.cores
    return Device(profile, transport, name)


def attached_ios_devices() -> list[dict]:
    """Every device usbmuxd lists, and for those that answer: profile, model, OS, clusters, free storage. No
    usbmuxd here (a Linux machine that never had an iPhone plugged in) lists nothing, unless
    $USBMUXD_SOCKET_ADDRESS names one: then a row says why it does not answer."""
    from device_runners.transports.ios_attached import describe_attached
    from device_runners.transports.ios_support import IosDeviceError

    try:
        found = describe_attached()
    except IosDeviceError as e:
        return [{"device": "ios", "state": "no usbmuxd", "error": str(e)}] if os.environ.get(
            "USBMUXD_SOCKET_ADDRESS") else []
    rows = []
    for info in found:
        row: dict = {"device": f"ios:{info['udid']}", "connection": info["connection"]}
        if "error" in info:
            rows.append(row | {"state": "no answer", "error": info["error"]})
            continue
        profile = profile_for_product_type(info.get("ProductType") or "")
        rows.append(row | {
            "state": "device" if info.get("paired") else "not paired (unlock it and accept Trust This Computer)",
            "profile": profile.name, "model": info.get("ProductType"), "name": info.get("DeviceName"), "abi": "arm64",
            "os": f"iOS {info.get('ProductVersion')} ({info.get('BuildVersion')})", "clusters": profile.clusters,
            "mem_total_mb": None, "storage_free_mb": info.get("storage_free_mb")})
    return rows
