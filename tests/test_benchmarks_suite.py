"""The benchmarks/ suite (the harness's own speed, pytest-benchmark): it runs, and its committed baseline names
exactly the benchmarks it has. The suite itself is run with `pytest benchmarks/` (README.md); here its store,
gate and report benchmarks run once each, on fewer cells, with timing off."""

from __future__ import annotations

import ast
import subprocess
import sys

from pytest_benchmark.storage.file import FileStorage

from tests.conftest import REPO

SUITE = REPO / "benchmarks" / "test_harness_speed.py"
BASELINE = REPO / "benchmarks" / "baseline"


def _suite_constants() -> tuple[int, int]:
    """ROUNDS from the suite module and DEFAULT_CELLS from its conftest, read from their source."""
    found = {}
    for path in (SUITE, SUITE.with_name("conftest.py")):
        for node in ast.parse(path.read_text()).body:
            if isinstance(node, ast.Assign) and isinstance(node.value, ast.Constant):
                for target in node.targets:
                    if isinstance(target, ast.Name) and target.id in ("ROUNDS", "DEFAULT_CELLS"):
                        found[target.id] = node.value.value
    return found["ROUNDS"], found["DEFAULT_CELLS"]


def test_store_gate_and_report_benchmarks_run_and_the_baseline_is_found():
    """The suite's own assertions (every cell stored, every regressed cell failed by the gate, every cell in the
    report) hold on 40 cells; the conftest points pytest-benchmark's storage at benchmarks/baseline/."""
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "benchmarks/", "-k", "not convert", "--bench-cells", "40",
         "--benchmark-disable", "--benchmark-compare=*/0001_baseline", "-p", "no:cacheprovider", "-q"],
        cwd=REPO, capture_output=True, text=True, timeout=120)
    out = done.stdout + done.stderr
    assert done.returncode == 0, out
    assert "3 passed, 1 deselected" in out
    assert "Comparing against benchmarks from" in out and "0001_baseline.json" in out


def test_the_baseline_names_every_benchmark_of_the_suite():
    """Read with pytest-benchmark's own loader: one saved run holding each benchmark of the suite at the default
    cell count, with the rounds the suite runs. A renamed or added benchmark needs a new baseline."""
    rounds, cells = _suite_constants()
    tests = {node.name: {a.arg for a in node.args.args} for node in ast.parse(SUITE.read_text()).body
             if isinstance(node, ast.FunctionDef) and node.name.startswith("test_")}
    expected = {f"benchmarks/test_harness_speed.py::{name}" + (f"[{cells}cells]" if "n_cells" in args else "")
                for name, args in tests.items()}
    storage = FileStorage(BASELINE, logger=None)
    runs = list(storage.load("*/0001_baseline"))
    assert len(runs) == 1, f"one saved baseline run in {BASELINE}"
    (_, doc), = runs
    saved = {b["fullname"]: b for b in doc["benchmarks"]}
    assert set(saved) == expected
    for name, bench in saved.items():
        assert bench["stats"]["rounds"] == (1 if "convert" in name else rounds) and bench["stats"]["mean"] > 0
