"""Where the runner's resident memory is (native/src/memory_split.h): the model file's pages, the weight cache
file's, anonymous memory, read from /proc/self/smaps after the load, the last prefill and the last decode; what
a cell stores of it, and the gate's limits on each part."""

from __future__ import annotations

import pytest

from device_runners.runners.native import RunnerBuild, build_runner
from harness.gate.config import GateConfig, Rule
from harness.gate.judge import evaluate_cell
from tests.test_runner import run_json


@pytest.fixture(scope="module")
def runner() -> RunnerBuild:
    return build_runner("host")


WORKLOAD = ("--threads", 2, "--prefill", 32, "--decode", 16, "--warmup", 0, "--reps", 1, "--bandwidth-probe-mb", 0)


def _split(doc: dict, phase: str) -> dict:
    (found,) = [m for m in doc["memory"] if m["phase"] == phase]
    return found


@pytest.mark.parametrize("api", ["compiled_model", "interpreter"])
def test_without_a_weight_cache_the_model_file_is_resident_and_the_kv_cache_anonymous(runner, tiny_artifact, api):
    art = tiny_artifact("dynamic_int8", prefill=32, decode=96)
    doc = run_json(runner, "--model", art.path, "--api", api, *WORKLOAD)
    assert [m["phase"] for m in doc["memory"]] == ["load", "prefill", "decode"]
    end = _split(doc, "decode")
    # LiteRT reads the weights in place from the mapped file: every page of it was touched by the end.
    assert end["model_file_kb"] * 1024 == pytest.approx(art.path.stat().st_size, rel=0.10)
    assert end["weight_cache_kb"] == 0
    assert end["anonymous_kb"] * 1024 >= doc["kv_cache_bytes"]  # the KV cache lives in anonymous memory
    parts = end["anonymous_kb"] + end["model_file_kb"] + end["weight_cache_kb"] + end["other_file_kb"]
    assert parts == pytest.approx(end["rss_kb"], rel=0.02)  # the parts are the whole
    assert end["pss_kb"] <= end["rss_kb"]


def test_with_a_warm_weight_cache_the_packed_weights_come_from_the_cache_file(runner, tiny_artifact, tmp_path):
    art = tiny_artifact("dynamic_int8", prefill=32, decode=96)
    model = tmp_path / "m.tflite"
    model.write_bytes(art.path.read_bytes())
    cache = tmp_path / "m.xnnpack_cache"
    run_json(runner, "--model", model, "--weight-cache", cache, *WORKLOAD)  # cold: builds it
    warm = run_json(runner, "--model", model, "--weight-cache", cache, *WORKLOAD)
    plain = run_json(runner, "--model", model, *WORKLOAD)
    assert warm["weight_cache"] == "warm"
    end, without = _split(warm, "decode"), _split(plain, "decode")
    assert end["weight_cache_kb"] * 1024 == pytest.approx(cache.stat().st_size, rel=0.10)
    # The cache holds the packed weights: fewer of the model file's pages are read than without it (how many
    # fewer depends on the kernel's readahead around the pages still read).
    assert end["model_file_kb"] < without["model_file_kb"]


def test_a_cell_stores_the_split_and_the_gate_limits_each_part():
    rec = {"model": "m-tiny", "quant": "q", "device": "host", "status": "ok", "mem_anonymous_mb": 300.0,
           "mem_model_file_mb": 5.0}
    config = GateConfig((Rule({}, {"max_mem_anonymous_mb": 256.0, "max_mem_model_file_mb": 10.0}),))
    verdict = evaluate_cell(rec, None, config)
    assert [c.detail for c in verdict.failures] == ["anonymous 300 MB > max 256 MB"]
