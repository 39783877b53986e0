"""`harness export --format pytest-benchmark`: stored cells as pytest-benchmark's JSON document, read back by
pytest-benchmark itself (its file storage's loader and the `pytest-benchmark compare` command) and by the
fields github-action-benchmark's pytest extractor reads."""

from __future__ import annotations

import dataclasses
import json
import statistics
import subprocess
import sys
from pathlib import Path

import pytest
from pytest_benchmark import __version__ as PYTEST_BENCHMARK_VERSION
from pytest_benchmark.stats import Stats
from pytest_benchmark.storage.file import FileStorage
from pytest_benchmark.table import NUMBER_FMT

from device_runners.runners.report import RunnerReport, Sample
from harness.measure.metrics import CellResult
from harness.store.store import Store
from reports import pytest_benchmark as pb
from tests.conftest import run_cli
from tests.fake_results import CELLS, add_run

COMPARE = Path(sys.executable).with_name("pytest-benchmark")  # the console script pytest-benchmark installs


@pytest.mark.parametrize("data", [
    [3.0], [2.0, 1.0], [5.0, 1.0, 3.0], [4.0, 1.0, 3.0, 2.0], [1.0, 2.0, 3.0, 4.0, 100.0],
    [0.1 * i for i in range(1, 7)], [1.0, 1.1, 0.9, 1.05, 0.95, 1.0, 9.0], [2.0 ** -i for i in range(10)],
    [7.0, 7.0, 7.0, 7.0, 7.0, 7.0, 7.0, 7.0, 7.0],
])
def test_stats_are_pytest_benchmarks_own(data):
    """Every stats field equals what pytest_benchmark.stats.Stats computes from the same per-iteration times
    (each quartile method: 1, odd of each remainder, even)."""
    theirs = Stats()
    for x in data:
        theirs.update(x)
    ours = pb.stats(data, iterations=3)
    assert {k: v for k, v in ours.items() if k not in ("data", "iterations")} == theirs.as_dict()
    assert ours["data"] == data and ours["iterations"] == 3


def test_schema_version_is_the_pinned_pytest_benchmark():
    assert pb.SCHEMA_VERSION == PYTEST_BENCHMARK_VERSION  # the dev extra pins it; bump both together


def _export(db: str, tmp_path: Path, name: str, *args: str) -> tuple[Path, dict, str]:
    out = tmp_path / f"{name}.json"
    done = run_cli("export", "--results-db", db, "--format", "pytest-benchmark", "--out", str(out), *args,
                   timeout=120)
    assert done.returncode == 0, done.stderr
    return out, json.loads(out.read_text()), done.stderr


def _bench(doc: dict, fullname: str) -> dict:
    (found,) = [b for b in doc["benchmarks"] if b["fullname"] == fullname]
    return found


def test_two_runs_export_and_pytest_benchmark_compare_reads_them(tmp_path):
    """Two stored runs (the second 20 % slower), exported by the CLI from a SQLite file: pytest-benchmark's own
    loader reads both, its `compare` command shows their figures side by side and the change between them."""
    db = str(tmp_path / "results.db")
    store = Store(db)
    a_run, b_run = add_run(store, "before", seed=1), add_run(store, "after", seed=2, scale=0.8)
    # Named so that pytest-benchmark, which loads files sorted by name, takes the earlier run as the reference.
    a_path, a, _ = _export(db, tmp_path, "1-before", "--run", str(a_run))
    b_path, b, _ = _export(db, tmp_path, "2-after", "--run", str(b_run))

    assert set(a) == {"machine_info", "commit_info", "benchmarks", "datetime", "version"}
    assert a["version"] == PYTEST_BENCHMARK_VERSION and a["commit_info"]["id"] == "0123456789abcdef"
    assert a["machine_info"]["node"] == "host" and a["machine_info"]["devices"]["host"]["model"] == "vm"
    stored = store.results_frame(a_run).to_dict("records")
    assert {b_["fullname"] for b_ in a["benchmarks"]} == {b_["fullname"] for b_ in b["benchmarks"]}
    assert len(a["benchmarks"]) == 4 * len(CELLS)  # prefill, decode, TTFT, init per cell

    # The figures: decode as seconds per token over the 5 stored repetitions, 128 tokens each.
    model, quant = CELLS[0][:2]
    name = f"litert-bench::decode[{model}-{quant}-host-p128-d128-t2]"
    decode = _bench(a, name)
    samples = [s["decode_tok_s"] for s in json.loads(stored[0]["data"])["runner"]["samples"]]
    assert decode["stats"]["data"] == [1 / x for x in samples]
    assert decode["stats"]["rounds"] == 5 and decode["stats"]["iterations"] == 128
    assert decode["stats"]["mean"] == pytest.approx(statistics.mean(1 / x for x in samples))
    assert decode["stats"]["ops"] == pytest.approx(statistics.harmonic_mean(samples))  # tokens/s
    assert decode["params"].items() >= {"model": model, "quant": quant, "device": "host", "runtime": "2.23.0",
                                        "api": None, "prefill_len": 128, "decode_len": 128, "depth": 0,
                                        "threads": 2}.items()
    assert not {"prefill_len", "model", "status", "emulated"} & set(decode["extra_info"])  # params, not again
    assert decode["extra_info"]["decode_tok_s"] == stored[0]["decode_tok_s"]
    assert decode["extra_info"]["peak_rss_mb"] == 80.0 and decode["group"] == "decode (seconds per token)"
    init = _bench(a, name.replace("decode[", "init["))
    assert init["stats"]["rounds"] == 1 and init["stats"]["mean"] == 0.006  # init_ms 6.0: once per process
    assert init["extra_info"]["rounds_are"].startswith("one value per process")

    # pytest-benchmark's loader (what `compare` and --benchmark-compare use) takes both files.
    storage = FileStorage(tmp_path / "storage", logger=None)
    loaded = list(storage.load_benchmarks(str(a_path), str(b_path)))
    assert len(loaded) == 2 * 4 * len(CELLS)
    assert {Path(x["path"]) for x in loaded} == {a_path, b_path}
    assert next(x for x in loaded if x["fullname"] == name and Path(x["path"]) == a_path)["mean"] == \
        decode["stats"]["mean"]

    # `pytest-benchmark compare A B`, in its own process: both files' figures (decode: µs per token).
    shown = subprocess.run([str(COMPARE), "compare", str(a_path), str(b_path), "--columns", "mean,ops,rounds"],
                           cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert shown.returncode == 0, shown.stderr
    assert "Failed to load" not in shown.stderr + shown.stdout
    table = shown.stdout.split("benchmark 'decode (seconds per token)': 4 tests")[1].split("benchmark '")[0]
    assert "Name (time in us)" in table
    after = _bench(b, name)
    for label, bench in (("1-before", decode), ("2-after", after)):
        line = next(x for x in table.splitlines() if x.startswith(f"{bench['name']} (") and f"{label})" in x)
        assert NUMBER_FMT.format(bench["stats"]["mean"] * 1e6) in line and line.rstrip().endswith(" 5")

    # --between: the same cell across the two files, with the change (20 % slower: +25 % time per token).
    between = subprocess.run([str(COMPARE), "compare", "--between", "mean", str(a_path), str(b_path)],
                             cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert between.returncode == 0, between.stderr
    row = next(x for x in between.stdout.splitlines() if x.startswith(decode["name"]))
    change = (after["stats"]["mean"] / decode["stats"]["mean"] - 1) * 100
    assert 20 < change < 30 and f"+{change:.1f}%" in row
    assert NUMBER_FMT.format(decode["stats"]["mean"] * 1e6) in row.split("+")[0]


def test_what_github_action_benchmark_reads(tmp_path):
    """Its pytest extractor takes, per benchmark: fullname (the series), stats.ops (value, bigger is better),
    stats.stddev, stats.mean and stats.rounds. With several runs in one document each cell's series is its own."""
    db = str(tmp_path / "results.db")
    store = Store(db)
    add_run(store, "a", seed=1)
    add_run(store, "b", seed=2)
    _, doc, _ = _export(db, tmp_path, "all", "--all")
    names = [b["fullname"] for b in doc["benchmarks"]]
    assert len(names) == len(set(names)) == 2 * 4 * len(CELLS)
    assert {n.split("[")[1].split("-")[0] for n in names} == {"run1", "run2"}
    for bench in doc["benchmarks"]:
        s = bench["stats"]
        assert isinstance(bench["fullname"], str) and isinstance(s["rounds"], int)
        assert all(isinstance(s[k], float) and s[k] > 0 for k in ("ops", "mean")) and s["stddev"] >= 0
        assert s["ops"] == pytest.approx(s["rounds"] / s["total"])
    assert doc["commit_info"]["id"] == "0123456789abcdef"


def _real_runner_data(reps: int) -> dict:
    """`data` as the suites store it for a measured cell: the runner's own report (RunnerReport.to_json)."""
    samples = [Sample(prefill_s=0.002 + i * 1e-5, prefill_tok_s=128 / (0.002 + i * 1e-5), decode_s=0.01,
                      decode_tok_s=64 / 0.01, ttft_ms=2.2 + i * 0.01) for i in range(reps)]
    report = RunnerReport(
        runner="llm_runner", runner_version="1", api="compiled_model", runtime="LiteRT", runtime_version="2.3.0",
        model="m.tflite", model_bytes=1, threads=2, prefill_len=128, decode_len=64, depth=0, kv_len=256,
        vocab=2048, num_layers=2, kv_cache_bytes=1, weight_bytes=None, warmup=1, init_ms=12.5, init_warm_ms=4.0,
        samples=samples, tokens=[], top_logits=[], peak_rss_kb=65536, vmhwm_kb=None, bandwidth=None, xnnpack=True)
    return {"runner": report.to_json(), "device_facts": {"name": "pixel8", "model": "Pixel 8", "os": "Android",
                                                         "os_version": "15", "abi": "arm64-v8a",
                                                         "cpus": list(range(9))}}


def test_cells_without_samples_failed_and_emulated_cells(tmp_path):
    """A cell measured by the real runner report; one whose samples were not stored (its one stored figure is
    one round, and says so); a failed and an emulated cell, left out with a note on stderr."""
    db = str(tmp_path / "results.db")
    store = Store(db)
    run = store.start_run("mixed", [], "feedbeef-dirty", "0.1.0")
    base = dict(quant="dynamic_int8", device="pixel8", prefill_len=128, decode_len=64, depth=0, threads=2,
                cpus="4,5", status="ok", init_ms=12.5, init_warm_ms=4.0, peak_rss_mb=64.0)
    data = _real_runner_data(reps=4)
    figures = {m: statistics.median(s[m] for s in data["runner"]["samples"])
               for m in ("prefill_tok_s", "decode_tok_s", "ttft_ms")}
    store.add_result(run, CellResult(model="measured\x1b[31m", **base, **figures), data)
    store.add_result(run, CellResult(model="summary-only", **base, **figures),
                     {"spread": {"decode_tok_s": {"n": 10}}, "device_facts": data["device_facts"]})
    store.add_result(run, CellResult(model="crashed", quant="none", device="pixel8", status="failed",
                                     error="RunnerError: boom"))
    store.add_result(run, dataclasses.replace(CellResult(model="qemu", **base, **figures), emulated=True), data)
    store.finish_run(run)
    _, doc, stderr = _export(db, tmp_path, "mixed")
    assert "left out 1 failed (no figures) cell" in stderr and "left out 1 emulated" in stderr
    assert {b["params"]["model"] for b in doc["benchmarks"]} == {"measured\x1b[31m", "summary-only"}
    assert doc["commit_info"].items() >= {"id": "feedbeef", "dirty": True, "project": "litert-bench"}.items()
    assert doc["machine_info"]["machine"] == "arm64-v8a" and doc["machine_info"]["cpu"]["count"] == 9

    measured = [b for b in doc["benchmarks"] if b["params"]["model"].startswith("measured")]
    assert all("\x1b" not in b["fullname"] and "\\x1b" in b["fullname"] for b in measured)  # no terminal escape
    prefill = next(b for b in measured if b["name"].startswith("prefill["))
    assert prefill["params"]["runtime"] == "LiteRT 2.3.0" and prefill["params"]["api"] == "compiled_model"
    assert prefill["stats"]["rounds"] == 4 and prefill["stats"]["iterations"] == 128
    assert prefill["stats"]["data"] == pytest.approx([s["prefill_s"] / 128 for s in data["runner"]["samples"]])
    assert prefill["options"]["warmup"] is True and prefill["options"]["warmup_rounds"] == 1
    ttft = next(b for b in measured if b["name"].startswith("ttft["))
    assert ttft["stats"]["data"] == pytest.approx([s["ttft_ms"] / 1000 for s in data["runner"]["samples"]])

    summary = [b for b in doc["benchmarks"] if b["params"]["model"] == "summary-only"]
    decode = next(b for b in summary if b["name"].startswith("decode["))
    assert decode["stats"]["rounds"] == 1 and decode["stats"]["data"] == [1 / figures["decode_tok_s"]]
    assert "median of 10 repetitions" in decode["extra_info"]["rounds_are"]
    assert "unknown, not zero" in decode["extra_info"]["rounds_are"]
