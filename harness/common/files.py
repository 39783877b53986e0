"""Where the harness keeps what it builds, and how it names bytes: shared by every stage."""

import hashlib
import os
from pathlib import Path

# The repository's root: gate.toml, accuracy.toml and the native sources are found from here.
REPO_ROOT = Path(__file__).resolve().parents[2]


def cache_root() -> Path:
    """$LITERT_BENCH_CACHE, else ~/.cache/litert-bench: one root for artifacts, runner builds and device locks."""
    root = os.environ.get("LITERT_BENCH_CACHE") or Path.home() / ".cache" / "litert-bench"
    return Path(root)


_LOCAL_SHA256: dict[tuple[str, int, int], str] = {}


def sha256_file(path: Path, chunk: int = 1 << 22) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def local_sha256(path: Path) -> str:
    """sha256 of a local file, once per process for each (path, size, mtime): a 4 GB model takes seconds."""
    st = Path(path).stat()
    key = (str(Path(path).resolve()), st.st_size, st.st_mtime_ns)
    if key not in _LOCAL_SHA256:
        _LOCAL_SHA256[key] = sha256_file(Path(path))
    return _LOCAL_SHA256[key]
