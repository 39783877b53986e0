"""Fixtures for the harness's own tests: an isolated artifact/runner cache, converted tiny models, results
databases on SQLite and PostgreSQL, and the system's Chromium."""

from __future__ import annotations

import os
import shutil
import sys
import uuid
from pathlib import Path

import pytest

from tests.adb_fixtures import adb_server, fake_adb_device  # noqa: F401 - fixtures: the test device behind adb
from tests.processes import marker  # noqa: F401 - fixture: names a test's processes, kills leftovers

REPO = Path(__file__).resolve().parent.parent
# .ci/run installs Chromium and starts PostgreSQL, and says so: there a missing service fails its tests.
SERVICES_PROVIDED = os.environ.get("LITERT_BENCH_CI") == "1"


def need_service(reason: str) -> None:
    if SERVICES_PROVIDED:
        pytest.fail(f"{reason}; .ci/run provides it (LITERT_BENCH_CI=1)")
    pytest.skip(reason)


@pytest.fixture(params=["sqlite", "postgresql"])
def results_url(request: pytest.FixtureRequest, tmp_path: Path):
    """A fresh, empty results database: a SQLite file, or a new database on the PostgreSQL server named by
    $LITERT_BENCH_PG_URL (dropped afterwards)."""
    if request.param == "sqlite":
        yield str(tmp_path / "results.db")
        return
    server = os.environ.get("LITERT_BENCH_PG_URL")
    if not server:
        need_service("LITERT_BENCH_PG_URL is unset: no PostgreSQL server (bash tests/pg_server.sh start DIR)")
    import sqlalchemy as sa

    name = f"litert_bench_test_{uuid.uuid4().hex[:12]}"
    admin = sa.create_engine(server, isolation_level="AUTOCOMMIT")  # CREATE DATABASE refuses a transaction
    with admin.connect() as conn:
        conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    yield sa.make_url(server).set(database=name).render_as_string(hide_password=False)
    with admin.connect() as conn:
        conn.execute(sa.text(f'DROP DATABASE "{name}" WITH (FORCE)'))  # FORCE: a store left open
    admin.dispose()


@pytest.fixture(scope="session")
def chromium() -> str:
    """The system's Chromium (Debian's `chromium` package); Playwright drives it and downloads no browser."""
    path = os.environ.get("LITERT_BENCH_CHROMIUM") or shutil.which("chromium")
    if not path:
        need_service("no chromium on PATH (Debian: apt-get install chromium)")
    return path


# Without the networking flags Chromium phones home at start (updates, sync, QUIC probes); a fresh
# profile (Playwright gives every launch its own --user-data-dir) keeps one test from seeing another's state.
CHROMIUM_FLAGS = ["--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync"]


@pytest.fixture(scope="module")
def browser(chromium: str):
    """Headless Chromium under Playwright, one per test module (the reports' and the graph page's tests)."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=chromium, headless=True, chromium_sandbox=False,
                                     args=CHROMIUM_FLAGS)
        yield browser
        browser.close()


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
    from harness.artifacts.cache import ensure_artifact
    from harness.artifacts.recipe import Recipe, kv_len_for
    from models.registry import get_spec

    def make(quant: str = "dynamic_int8", prefill: int = 32, decode: int = 16):
        return ensure_artifact(get_spec("tinyllama", "tiny"), Recipe(quant, prefill, kv_len_for(prefill, decode)))

    return make


def run_cli(*args: str, timeout: float = 600):
    """`python -m harness ARGS` in a child process, as a user runs it."""
    import subprocess

    return subprocess.run([sys.executable, "-m", "harness", *args], cwd=REPO, capture_output=True, text=True,
                          timeout=timeout)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Tests marked `full` (full-size models: minutes and GiBs each) run only when -m names them."""
    if "full" in (config.option.markexpr or ""):
        return
    full = [item for item in items if item.get_closest_marker("full") and item.path.is_relative_to(REPO / "tests")]
    if full:
        config.hook.pytest_deselected(items=full)
        items[:] = [item for item in items if item not in full]
