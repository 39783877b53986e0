"""Files on a device reached through a POSIX shell (adb, SSH): staged into a content-addressed cache, and read
back (with commands' output) in one round trip.

Staging: files are named
by their sha256 under `<cache>/<key>/NAME`, checked there with `sha256sum`, and pushed only when missing or
different, so a second session pushes nothing already there. Files staged together share one folder, so a
program finds its libraries next to it (RUNPATH $ORIGIN).

It also keeps the session's working folder there (`<root>/run-…`), where runs write their output and N.pgid
(remote_runs.run_line), and removes it with whatever still runs there.

A transport mixes this in and provides `_sh(script, what, timeout)` (a command under the device's timeout),
`_push(local, target, digest)` (to a `.part`, checked, then renamed), `_root_dir()`, `_where`/`_error` for
messages, and `_workdir = None` at start.
"""

from __future__ import annotations

import contextlib
import hashlib
import re
import secrets
import shlex
import time
from collections.abc import Sequence
from pathlib import Path

from device_runners.transports.base import push_progress
from device_runners.transports.remote_runs import run_folder_name, stop_runs
from harness.common.files import local_sha256

# What read_files passes to the device's shell unquoted: a glob of path characters only.
SAFE_GLOB = re.compile(r"[\w/.*?\[\]-]+")


class RemoteFiles:
    _where: str = "device"
    _error: type[Exception] = RuntimeError
    _sha256: dict[str, str]  # device path → sha256 of what is there (pushed or checked this session)
    name: str

    _workdir: str | None

    def _root_dir(self) -> str:
        raise NotImplementedError

    def _cache_dir(self) -> str:
        return f"{self._root_dir()}/cache"

    # the session's working folder and its runs
    def _ensure_workdir(self) -> str:
        if self._workdir is None:
            # Named by the machine and process that own it: `devices --clean` tells a live session's folder from
            # a dead one's.
            stamp = time.strftime("%Y%m%d-%H%M%S")
            workdir = f"{self._root_dir()}/{run_folder_name(stamp, secrets.token_hex(3))}"
            self._sh(f"mkdir -p {shlex.quote(workdir)}", "creating the working folder")
            self._workdir = workdir
        return self._workdir

    def _remove_workdir(self) -> None:
        """Runs first, then the folder: a runner must not go on measuring after its folder is gone. A device
        that cannot be reached keeps the folder."""
        workdir, self._workdir = self._workdir, None
        if workdir is not None:
            with contextlib.suppress(self._error):
                self._sh(f"{stop_runs(workdir, '*')}; rm -rf {shlex.quote(workdir)}",
                         "stopping its runs and removing the working folder", timeout=60)

    def stage(self, local: Path) -> str:
        return self.stage_together([local])[0]

    def stage_together(self, files: Sequence[Path]) -> list[str]:
        paths = [Path(f) for f in files]
        for path in paths:
            if not path.is_file():
                raise FileNotFoundError(f"no such file: {path}")
        if len({p.name for p in paths}) != len(paths):
            raise ValueError(f"files staged together need distinct names: {[p.name for p in paths]}")
        digests = [local_sha256(p) for p in paths]
        key = digests[0] if len(paths) == 1 else hashlib.sha256(
            "".join(f"{p.name}\0{d}\0" for p, d in zip(paths, digests, strict=True)).encode()).hexdigest()
        folder = f"{self._cache_dir()}/{key[:16]}"
        targets = [f"{folder}/{p.name}" for p in paths]
        present = self._remote_sha256(targets, used=folder)
        for path, digest, target in zip(paths, digests, targets, strict=True):
            if present.get(target) != digest:
                with push_progress(path.name, path.stat().st_size, self.name):
                    self._push(path, target, digest)
            self._sha256[target] = digest
        return targets

    def sha256(self, device_path: str) -> str:
        if device_path not in self._sha256:
            found = self._remote_sha256([device_path])
            if device_path not in found:
                raise self._error(f"{self.name}: cannot hash {device_path}: no such file on the {self._where}")
            self._sha256[device_path] = found[device_path]
        return self._sha256[device_path]

    def file_size(self, device_path: str) -> int | None:
        out = self._sh(f"stat -c %s {shlex.quote(device_path)} 2>/dev/null; true", "looking for a file").stdout
        return int(out.strip()) if out.strip().isdigit() else None

    def replace(self, source: str, target: str) -> None:
        self._checked(f"mv -f {shlex.quote(source)} {shlex.quote(target)}", f"moving {source} to {target}")

    def remove_file(self, device_path: str) -> None:
        self._checked(f"rm -f {shlex.quote(device_path)}", f"removing {device_path}")

    def _checked(self, command: str, what: str) -> None:
        """A command that must succeed; adb and SSH report exit codes differently, so success prints a mark."""
        mark = f"@@ok-{secrets.token_hex(4)}@@"
        out = self._sh(f"{command} 2>&1 && echo {mark}; true", what).stdout
        if mark not in out:
            raise self._error(f"{self.name}: {what} failed on the {self._where}: {out.strip()}")

    def _remote_sha256(self, paths: Sequence[str], used: str | None = None) -> dict[str, str]:
        """{path: sha256} of those of `paths` that exist there, in one command. `used`: a cache folder to mark as
        staged now (its mtime), which `devices --clean --keep N` ranks by."""
        touch = f"touch -c {shlex.quote(used)} 2>/dev/null; " if used else ""
        out = self._sh(f"{touch}sha256sum {' '.join(map(shlex.quote, paths))} 2>/dev/null; true",
                       "hashing files").stdout
        digests = {}
        for line in out.splitlines():
            digest, _, path = line.partition("  ")
            if re.fullmatch(r"[0-9a-f]{64}", digest):
                digests[path] = digest
        return digests

    def _gather(self, commands: dict[str, str], globs: Sequence[str]) -> dict[str, str]:
        """Several commands' output and the text of every file matching `globs`, in ONE shell round trip:
        {label or path: text}. Sections are split by a marker line no file contains."""
        for pattern in globs:
            if not SAFE_GLOB.fullmatch(pattern):
                raise ValueError(f"unsafe glob for the {self._where}'s shell: {pattern!r}")
        mark = f"@@litert-bench-{secrets.token_hex(6)}@@"
        parts = [f"echo {mark}{label}; {{ {command}; }} 2>/dev/null; echo" for label, command in commands.items()]
        parts += [f'for f in {pattern}; do [ -f "$f" ] && echo "{mark}$f" && cat "$f" 2>/dev/null; echo; done'
                  for pattern in globs]
        out = self._sh("; ".join(parts) + "; true", f"reading {self._where} facts").stdout
        sections: dict[str, list[str]] = {}
        current: list[str] | None = None
        for line in out.splitlines():
            if line.startswith(mark):
                current = sections.setdefault(line[len(mark):], [])
            elif current is not None:
                current.append(line)
        return {key: "\n".join(lines).strip() for key, lines in sections.items()}
