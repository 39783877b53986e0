"""An arm64 Linux device emulated on this machine: the `linux-arm64` runner under qemu-user (`qemu-aarch64`).

Its speed measures nothing (a tiny model runs ~10× slower than natively, and the timing is the emulator's):
the `qemu-arm64` profile is marked `emulated`. What it is for: the ARM build and the runtime's ARM kernels
computing the same tokens as the host's.

binfmt_misc is not assumed: the transport calls qemu-aarch64 itself, with a prefix folder (`-L`) that it builds
under the harness's cache. qemu-user looks every absolute path up under the prefix first, then in the real file
system, so the prefix holds only what must differ from this host:

  lib -> /usr/aarch64-linux-gnu/lib   the arm64 loader, libc and libstdc++ (Debian's cross packages)
  proc/cpuinfo                        an ARM cpuinfo: LiteRT's TfLiteInterpreterCreate crashes (qemu 7.2) after
                                      parsing the host's x86 one

Everything else (files, pinning, the device-side `timeout`, the process group, state) is the host's.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import os
import shutil
import tempfile
from collections.abc import Sequence
from pathlib import Path

from device_runners.transports.base import DeviceFacts, Job, RunResult
from device_runners.transports.host import HostTransport
from harness.common.files import cache_root

QEMU = "qemu-aarch64"
# `max` and `neoverse-n1` run the library; `cortex-a72` aborts (it uses LSE atomics, an Armv8.1 feature).
# SME off: with qemu 7.2's `max` (SME on) the dynamic_int8 tiny model's greedy tokens differ from the first one
# on (the library then takes its SME kernels), while `max,sme=off`, `max,sve=off`, `neoverse-n1` and
# `cortex-a76` all give the host's tokens. Whether qemu's SME or the SME kernels are at fault is not known.
DEFAULT_CPU = "max,sme=off"
SYSROOT_LIB = Path("/usr/aarch64-linux-gnu/lib")  # Debian: libc6-arm64-cross, pulled in by g++-aarch64-linux-gnu
LOADER = "ld-linux-aarch64.so.1"
_FEATURES = ("fp asimd evtstrm aes pmull sha1 sha2 crc32 atomics fphp asimdhp cpuid asimdrdm lrcpc dcpop asimddp "
             "ssbs")


def arm_cpuinfo(cpus: int) -> str:
    """/proc/cpuinfo as an arm64 Linux writes it: `cpus` Neoverse-N1 cores (what -cpu max can run)."""
    core = ("BogoMIPS\t: 50.00\n"
            f"Features\t: {_FEATURES}\n"
            "CPU implementer\t: 0x41\n"
            "CPU architecture: 8\n"
            "CPU variant\t: 0x3\n"
            "CPU part\t: 0xd0c\n"
            "CPU revision\t: 1\n")
    return "".join(f"processor\t: {n}\n{core}\n" for n in range(max(1, cpus)))


def qemu_prefix(root: Path | None = None, sysroot_lib: Path = SYSROOT_LIB) -> Path:
    """The `-L` folder for qemu-aarch64 (see the module's docstring), built on first use under
    cache_root()/qemu-prefix/aarch64 and rebuilt when what it should hold changed."""
    if not (sysroot_lib / LOADER).exists():
        raise RuntimeError(f"no arm64 sysroot: {sysroot_lib / LOADER} does not exist; install Debian's cross "
                           "compiler, which brings it (apt-get install g++-aarch64-linux-gnu)")
    prefix = (root or cache_root() / "qemu-prefix") / "aarch64"
    cpuinfo = arm_cpuinfo(os.cpu_count() or 1)
    if _prefix_ok(prefix, sysroot_lib, cpuinfo):
        return prefix
    prefix.parent.mkdir(parents=True, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(prefix="aarch64.", dir=prefix.parent))
    try:
        scratch.chmod(0o755)
        (scratch / "lib").symlink_to(sysroot_lib, target_is_directory=True)
        (scratch / "proc").mkdir()
        (scratch / "proc" / "cpuinfo").write_text(cpuinfo)
        # Swap in one step: a concurrent caller sees the old folder or the new one, never half of one.
        old = None
        if prefix.exists() or prefix.is_symlink():
            old = Path(tempfile.mkdtemp(prefix="aarch64.old.", dir=prefix.parent))
            with contextlib.suppress(FileNotFoundError):  # a concurrent caller moved it first
                os.replace(prefix, old / "prefix")
        try:
            os.rename(scratch, prefix)
        except OSError:
            if not _prefix_ok(prefix, sysroot_lib, cpuinfo):  # not a concurrent build that won the race
                raise
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return prefix


def _prefix_ok(prefix: Path, sysroot_lib: Path, cpuinfo: str) -> bool:
    try:
        return (os.readlink(prefix / "lib") == str(sysroot_lib)
                and (prefix / "proc" / "cpuinfo").read_text() == cpuinfo)
    except OSError:
        return False


def find_qemu() -> str:
    path = shutil.which(QEMU)
    if path is None:
        raise RuntimeError(f"no {QEMU} on PATH: the qemu-arm64 device runs the linux-arm64 runner under qemu-user; "
                           "install it (apt-get install qemu-user)")
    return path


class QemuTransport(HostTransport):
    """This machine running arm64 Linux programs through qemu-user. Files are used in place; a program staged
    together with its libraries gets them beside it (RUNPATH $ORIGIN)."""

    kind = "qemu"

    def __init__(self, cpu: str = DEFAULT_CPU, prefix: Path | None = None, qemu: str | None = None):
        super().__init__()
        self.cpu = cpu
        self.qemu = qemu or find_qemu()
        self.prefix = Path(prefix) if prefix else qemu_prefix()

    @property
    def identity(self) -> str:
        # The emulator runs on this machine's cores: it shares the host's lock, so that it never runs beside a
        # host measurement and disturbs it.
        return "host"

    def emulator_argv(self) -> list[str]:
        return [self.qemu, "-cpu", self.cpu, "-L", str(self.prefix)]

    def _execute(self, job: Job) -> RunResult:
        # The host's run (device-side `timeout`, taskset, a session of its own) of `qemu-aarch64 ... PROGRAM ...`:
        # the pinning and the timeout apply to the emulator, which runs the program's threads as its own.
        job.argv = [*self.emulator_argv(), *job.argv]
        return super()._execute(job)

    def stage_together(self, files: Sequence[Path]) -> list[str]:
        """A program and its libraries in one folder: in place when they already are, else hard links (copies
        across file systems) in a folder of the cache named by the files' identities."""
        paths = [Path(self.stage(f)) for f in files]
        if len({p.parent for p in paths}) <= 1:
            return [str(p) for p in paths]
        key = hashlib.sha256()
        for p in paths:
            st = p.stat()
            key.update(f"{p}\0{st.st_size}\0{st.st_mtime_ns}\0".encode())
        folder = cache_root() / "qemu-stage" / key.hexdigest()[:16]
        if not all((folder / p.name).is_file() for p in paths):
            folder.parent.mkdir(parents=True, exist_ok=True)
            scratch = Path(tempfile.mkdtemp(prefix=f"{folder.name}.", dir=folder.parent))
            try:
                for p in paths:
                    try:
                        os.link(p, scratch / p.name)
                    except OSError:
                        shutil.copy2(p, scratch / p.name)
                try:
                    os.rename(scratch, folder)
                except OSError:
                    if not all((folder / p.name).is_file() for p in paths):
                        raise
            finally:
                shutil.rmtree(scratch, ignore_errors=True)
        return [str(folder / p.name) for p in paths]

    def facts(self) -> DeviceFacts:
        host = super().facts()
        return dataclasses.replace(host, name="qemu-arm64", abi="aarch64",
                                   model=f"{QEMU} -cpu {self.cpu} (emulated on {host.model})",
                                   os=f"{host.os} (qemu-user)")
