"""Fixtures for the harness's own tests: an isolated artifact/runner cache and converted tiny models."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="session", autouse=True)
def isolated_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Every test session starts from an empty cache (artifacts and runner builds), shared by its tests
    and by the pytest/CLI subprocesses they start."""
    cache = tmp_path_factory.mktemp("litert-bench-cache")
    old = os.environ.get("LITERT_BENCH_CACHE")
    os.environ["LITERT_BENCH_CACHE"] = str(cache)
    yield cache
    if old is None:
        os.environ.pop("LITERT_BENCH_CACHE", None)
    else:
        os.environ["LITERT_BENCH_CACHE"] = old


@pytest.fixture(scope="session")
def tiny_artifact():
    """tiny_artifact(quant, prefill=32, decode=16) → Artifact, converted once per session and cached."""
    from harness.artifacts import Recipe, ensure_artifact, kv_len_for
    from models.registry import get_spec

    def make(quant: str = "dynamic_int8", prefill: int = 32, decode: int = 16):
        return ensure_artifact(get_spec("tinyllama", "tiny"), Recipe(quant, prefill, kv_len_for(prefill, decode)))

    return make


def run_cli(*args: str, timeout: float = 600):
    """`python -m harness ARGS` in a child process, as a user runs it."""
    import subprocess

    return subprocess.run([sys.executable, "-m", "harness", *args], cwd=REPO, capture_output=True, text=True,
                          timeout=timeout)
