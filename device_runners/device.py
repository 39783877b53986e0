"""Device = Transport + Profile. Profiles name devices; `host` is the built-in default."""

from __future__ import annotations

import dataclasses
import functools

from device_runners.host import HostTransport
from device_runners.transport import DeviceFacts, Transport


@dataclasses.dataclass(frozen=True)
class Profile:
    name: str
    transport: str  # host | adb | ssh | ios
    runner_target: str  # which runner build runs there (device_runners.build targets)
    # Cores worth using at most (a phone's big cluster); None: every core the device lets us run on.
    max_threads: int | None = None


PROFILES: dict[str, Profile] = {
    "host": Profile("host", transport="host", runner_target="host"),
}


def known_devices() -> list[str]:
    return sorted(PROFILES)


class Device:
    def __init__(self, profile: Profile, transport: Transport):
        self.profile = profile
        self.transport = transport

    @property
    def name(self) -> str:
        return self.profile.name

    @functools.cached_property
    def facts(self) -> DeviceFacts:
        return self.transport.facts()

    def threads_for(self, requested: int) -> int:
        """What a run asking for `requested` threads gets: never more than the cores present."""
        cap = min(len(self.facts.cpus), self.profile.max_threads or len(self.facts.cpus))
        return max(1, min(requested, cap))

    def cpus_for(self, threads: int) -> list[int]:
        return self.facts.fastest_cpus(threads)


def open_device(name: str) -> Device:
    try:
        profile = PROFILES[name]
    except KeyError:
        raise ValueError(f"unknown device {name!r}; known devices: {', '.join(known_devices())}") from None
    transports = {"host": HostTransport}
    return Device(profile, transports[profile.transport]())
