"""Where the harness keeps what it builds: one cache root shared by artifacts, runner builds and device locks."""

import os
from pathlib import Path


def cache_root() -> Path:
    """$LITERT_BENCH_CACHE, else ~/.cache/litert-bench."""
    root = os.environ.get("LITERT_BENCH_CACHE") or Path.home() / ".cache" / "litert-bench"
    return Path(root)
