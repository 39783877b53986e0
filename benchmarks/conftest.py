"""The harness's own speed, measured with pytest-benchmark (`pytest benchmarks/`, see README.md): kept out of
the default `pytest` run by pyproject's testpaths (tests/ and suites/).

The saved baseline lives in benchmarks/baseline/ (pytest-benchmark's file storage: MACHINE-ID/NNNN_NAME.json).
Unless --benchmark-storage is given, this conftest points it there, so `--benchmark-compare=0001` compares with
the committed baseline and `--benchmark-save=NAME` adds a run beside it.
"""

from __future__ import annotations

from pathlib import Path

import pytest

BASELINE_DIR = Path(__file__).resolve().parent / "baseline"
_PLUGIN_DEFAULT_STORAGE = "file://./.benchmarks"  # pytest-benchmark's own default for --benchmark-storage
DEFAULT_CELLS = 1000


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--bench-cells", type=int, default=DEFAULT_CELLS,
                     help=f"cells stored, reported and gated by the benchmarks [{DEFAULT_CELLS}]; the count is in "
                          f"each benchmark's name, so only runs with the same count compare")


def pytest_configure(config: pytest.Config) -> None:
    # Before pytest-benchmark's own pytest_configure (trylast) opens the storage.
    if config.getoption("benchmark_storage", None) == _PLUGIN_DEFAULT_STORAGE:
        config.option.benchmark_storage = f"file://{BASELINE_DIR}"


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "n_cells" in metafunc.fixturenames:
        n = metafunc.config.getoption("bench_cells")
        if n < 10:
            raise pytest.UsageError(f"--bench-cells: at least 10 (a tenth of the cells regress), got {n}")
        metafunc.parametrize("n_cells", [n], ids=[f"{n}cells"], scope="session")
