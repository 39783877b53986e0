"""Where a result came from: the harness's git commit and version."""

from __future__ import annotations

import functools
import subprocess
from pathlib import Path

from harness import __version__
from harness.common.files import REPO_ROOT

HARNESS_VERSION = __version__


@functools.cache
def git_commit(repo: Path | None = None) -> str | None:
    repo = repo or REPO_ROOT
    try:
        out = subprocess.run(["git", "-C", str(repo), "rev-parse", "HEAD"], capture_output=True, text=True,
                             timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return None
    if out.returncode != 0:
        return None
    dirty = subprocess.run(["git", "-C", str(repo), "status", "--porcelain", "--untracked-files=no"],
                           capture_output=True, text=True, timeout=10).stdout.strip()
    return out.stdout.strip() + ("-dirty" if dirty else "")
