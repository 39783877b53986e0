"""How fast the harness itself is: converting a tiny model, storing a run's cells, judging them with the release
gate and rendering their report. Real components throughout: the conversion worker, a SQLite results database,
the repository's gate.toml and the report renderer.

Each benchmark also checks what it timed did its work (every cell stored, every regression found, every cell in
the report), so a fast wrong answer fails instead of improving the figures.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pytest

from harness.gate.config import GateConfig, config_from
from harness.gate.verdicts import run_verdicts
from harness.store.store import Store
from tests.fake_results import add_run

QUANTS = ("none", "fp16", "dynamic_int8", "dynamic_int4_block32")
REGRESSED = 3  # every cell of model3 is 30 % slower in the new run than in the baseline
ROUNDS = 3  # rounds of the store, gate and report benchmarks (each starts from the same database state)

Cell = tuple[str, str, str, float, float, float]


def make_cells(n: int, slower: float = 1.0) -> list[Cell]:
    """n distinct cells (model × quant × board), shaped as tests/fake_results.add_run takes them; with `slower`
    below 1, model3's speeds are scaled by it."""
    cells = []
    for i in range(n):
        scale = slower if i % 10 == REGRESSED else 1.0
        cells.append((f"model{i % 10}-tiny", QUANTS[(i // 10) % 4], f"board{i // 40:02d}",
                      180_000.0 * scale, 14_000.0 * scale, 80.0))
    return cells


def regressed(n: int) -> int:
    return sum(1 for i in range(n) if i % 10 == REGRESSED)


@pytest.fixture(scope="session")
def gate_config() -> GateConfig:
    return config_from(None)  # the repository's gate.toml


@pytest.fixture(scope="session")
def two_runs(tmp_path_factory: pytest.TempPathFactory, n_cells: int) -> tuple[Path, int, int]:
    """A database holding a baseline run and a new run of n_cells cells each, not judged yet."""
    path = tmp_path_factory.mktemp("two-runs") / "results.db"
    store = Store(str(path))
    base = add_run(store, "baseline", make_cells(n_cells), seed=1)
    run = add_run(store, "new", make_cells(n_cells, slower=0.7), seed=2)
    store.close()
    return path, base, run


@pytest.fixture(scope="session")
def judged(tmp_path_factory: pytest.TempPathFactory, two_runs: tuple[Path, int, int],
           gate_config: GateConfig) -> tuple[Path, int, int]:
    """The same database after the gate judged the new run: what a suite session leaves for its report."""
    source, base, run = two_runs
    path = tmp_path_factory.mktemp("judged") / "results.db"
    shutil.copy(source, path)
    store = Store(str(path))
    run_verdicts(store, run, base, gate_config)
    store.close()
    return path, base, run


def test_store_cells(benchmark: Any, tmp_path: Path, n_cells: int) -> None:
    """One run of n_cells cells stored the way the suites store them: a commit per cell, samples and all."""
    cells, stores = make_cells(n_cells), []

    def fresh_store() -> tuple[tuple, dict]:
        stores.append(Store(str(tmp_path / f"results-{len(stores)}.db")))  # the schema is made here, untimed
        return (stores[-1], "bench", cells), {}

    run = benchmark.pedantic(add_run, setup=fresh_store, rounds=ROUNDS)
    assert len(stores[-1].results_frame(run)) == n_cells
    for store in stores:
        store.close()


def test_gate_cells(benchmark: Any, tmp_path: Path, n_cells: int, two_runs: tuple[Path, int, int],
                    gate_config: GateConfig) -> None:
    """The release gate over a run of n_cells cells against a baseline run: every cell judged (Mann–Whitney on
    its samples) and its verdict stored."""
    source, base, run = two_runs
    stores = []

    def fresh_copy() -> tuple[tuple, dict]:
        path = tmp_path / f"results-{len(stores)}.db"
        shutil.copy(source, path)  # no verdicts yet: each round judges every cell
        stores.append(Store(str(path)))
        return (stores[-1], run, base, gate_config), {}

    verdicts = benchmark.pedantic(run_verdicts, setup=fresh_copy, rounds=ROUNDS)
    assert len(verdicts) == n_cells
    failed = [v for v in verdicts if not v.passed]
    assert len(failed) == regressed(n_cells) and all(v.rec["model"] == f"model{REGRESSED}-tiny" for v in failed)
    for store in stores:
        store.close()


def test_report_cells(benchmark: Any, tmp_path: Path, n_cells: int, judged: tuple[Path, int, int],
                      gate_config: GateConfig) -> None:
    """The comparison report of a judged run of n_cells cells against its baseline: tables, deltas, charts."""
    from reports.render import render_run_report

    path, base, run = judged
    store = Store(str(path))
    out = benchmark.pedantic(render_run_report, args=(store, run, tmp_path / "run.html", base, gate_config),
                             rounds=ROUNDS)
    html = out.read_text()
    assert html.count('<tr class="') == n_cells  # one row per cell
    assert html.count(f"model{REGRESSED}-tiny · ") >= regressed(n_cells)  # the failing cells are listed
    assert "<svg" in html
    store.close()


def test_convert_tiny_model(benchmark: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A tiny TinyLlama (fp32, prefill 32, KV 128) exported to a .tflite with prefill and decode signatures,
    from an empty cache: the conversion worker process, litert-torch's export and the cache's bookkeeping."""
    from harness.artifacts.cache import ensure_artifact
    from harness.artifacts.recipe import Recipe, kv_len_for
    from models.registry import get_spec

    monkeypatch.setenv("LITERT_BENCH_CACHE", str(tmp_path / "cache"))  # where cache_root() looks: empty
    spec, recipe = get_spec("tinyllama", "tiny"), Recipe("none", 32, kv_len_for(32, 16))
    artifact = benchmark.pedantic(ensure_artifact, args=(spec, recipe), rounds=1, iterations=1)
    assert artifact.path.is_file() and artifact.path.is_relative_to(tmp_path / "cache")
    assert artifact.meta["bytes"] == artifact.path.stat().st_size > 0
    benchmark.extra_info["convert_seconds"] = artifact.meta["convert_seconds"]
    benchmark.extra_info["convert_peak_rss_mb"] = artifact.meta["convert_peak_rss_mb"]
