"""XNNPACK's weight cache, as apps ship it (the runner's --weight-cache, harness/measure/weight_cache.py): the runner
writes the cache on a cold run and reads it, untouched, on a warm one, computing the same tokens and logits; a
file XNNPACK cannot use is rebuilt and reported cold; a path the runner cannot use exits 2 naming it. Through the
host and adb transports a bench builds the cache beside the model, named by the model's sha256, records cold then
warm, and leaves no half-written file behind; a session stores both inits and the setting, and the report and
the gate show them. Speed is not asserted anywhere: a warm init being faster is a benchmark's finding."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import posixpath
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from device_runners.device import open_device
from device_runners.runners.native import RunnerBuild, build_runner
from harness.common.files import sha256_file
from harness.measure.bench import RunnerError, Workload, bench

PREFILL, KV_LEN = 32, 128
# --top-k: each decode step's 8 highest logits, so that "the same output" covers logits, not only argmaxes.
FLAGS = ("--threads", 2, "--decode", 16, "--warmup", 0, "--reps", 1, "--bandwidth-probe-mb", 0, "--top-k", 8)


@pytest.fixture(scope="module")
def runner() -> RunnerBuild:
    return build_runner("host")


@pytest.fixture(scope="module")
def model(tiny_artifact) -> Path:
    return tiny_artifact("dynamic_int8", prefill=PREFILL, decode=KV_LEN - PREFILL).path


def run(runner: RunnerBuild, *args: object) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(runner.binary), *map(str, args)], capture_output=True, text=True, timeout=300)


def run_json(runner: RunnerBuild, *args: object) -> dict:
    proc = run(runner, *args)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


def identity(path: Path) -> tuple:
    """Which file is there and what it holds: a reader changes none of it, a rewrite changes the mtime at least."""
    st = path.stat()
    return st.st_ino, st.st_size, st.st_mtime_ns, hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.mark.parametrize("api", ["compiled_model", "interpreter"])
def test_a_cold_run_writes_the_cache_and_a_warm_run_reads_it_as_it_is(runner, model, tmp_path, api):
    cache = tmp_path / "model.xnnpack_cache"
    plain = run_json(runner, "--model", model, "--api", api, *FLAGS)
    cold = run_json(runner, "--model", model, "--api", api, "--weight-cache", cache, *FLAGS)
    assert cold["weight_cache"] == "cold" and cache.is_file()
    assert cold["weight_cache_bytes"] == cache.stat().st_size > 0
    written = identity(cache)
    warm = run_json(runner, "--model", model, "--api", api, "--weight-cache", cache, *FLAGS)
    assert warm["weight_cache"] == "warm" and warm["weight_cache_bytes"] == written[1]
    assert identity(cache) == written  # read, not rewritten: the same inode, size, mtime and bytes
    # Where the packed weights come from changes nothing computed: the tokens and every step's top logits.
    assert cold["tokens"] == warm["tokens"] == plain["tokens"]
    assert cold["top_logits"] == warm["top_logits"] == plain["top_logits"]
    assert plain["weight_cache"] == "off" and plain["weight_cache_bytes"] is None
    assert cold["init_warm_ms"] > 0 and warm["init_warm_ms"] > 0  # the reload reads the cache in both


@pytest.mark.parametrize("damage", ["unfinished", "cut-off", "stale", "garbage", "empty"])
def test_a_cache_xnnpack_cannot_use_is_rebuilt_and_reported_cold(runner, model, tmp_path, damage):
    cache = tmp_path / "model.xnnpack_cache"
    built = run_json(runner, "--model", model, "--weight-cache", cache, *FLAGS)
    good = cache.read_bytes()
    # XNNPACK's header (weight_cache.h): u64 version (0 until a build finishes), u64 offset and u64 size of the
    # buffer list that ends the file, u8 stale.
    damaged = {"unfinished": bytes(8) + good[8:], "cut-off": good[:len(good) // 2],
               "stale": good[:24] + b"\x01" + good[25:], "garbage": os.urandom(4096), "empty": b""}[damage]
    cache.write_bytes(damaged)
    proc = run(runner, "--model", model, "--weight-cache", cache, *FLAGS)
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    assert out["weight_cache"] == "cold"
    assert f"note: the weight cache '{cache}' was not usable" in proc.stderr and "XNNPACK rebuilt it" in proc.stderr
    assert cache.read_bytes() == good  # rebuilt whole: the same bytes the first build wrote
    assert out["tokens"] == built["tokens"] and out["top_logits"] == built["top_logits"]


def test_a_weight_cache_path_the_runner_cannot_use_exits_2_naming_it(runner, model, tmp_path):
    a_file = tmp_path / "a-file"
    a_file.write_text("not a folder")
    cases = {
        str(tmp_path): "is a folder; give the cache file's path (created when absent)",
        str(tmp_path / "missing" / "c.bin"): f"its folder '{tmp_path / 'missing'}' does not exist",
        str(a_file / "c.bin"): f"'{a_file}' is not a folder",
        str(tmp_path / 'a"b.bin'): "the path may hold no '\"' and no control character",
        "": None,
    }
    for path, reason in cases.items():
        proc = run(runner, "--model", model, "--weight-cache", path, *FLAGS)
        assert proc.returncode == 2, (path, proc.stderr)
        assert proc.stdout == ""
        last = proc.stderr.strip().splitlines()[-1]  # after the usage text, where a terminal and the harness look
        expected = "error: --weight-cache needs a file path" if reason is None else \
            f"error: --weight-cache '{path}'{'' if reason.startswith('is ') else ':'} {reason}"
        assert last == expected, (path, last)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a-file"]  # nothing created on the way


def _cpu_has_fp16_arithmetic() -> bool:
    text = Path("/proc/cpuinfo").read_text()
    return bool(re.search(r"^(flags|Features)\s*:.*\b(avx512_fp16|asimdhp)\b", text, re.M))


def test_fp16_arithmetic_is_only_applied_where_the_cpu_has_it(runner, tiny_artifact):
    if _cpu_has_fp16_arithmetic():
        pytest.skip("this CPU has fp16 arithmetic; there XNNPACK's FORCE_FP16 fails on these exports' attention "
                    "composite (harness/measure/bench.py, Workload.fp16_arithmetic)")
    model = tiny_artifact("fp16", prefill=PREFILL, decode=KV_LEN - PREFILL).path
    asked = run_json(runner, "--model", model, "--fp16-arithmetic", *FLAGS)
    plain = run_json(runner, "--model", model, *FLAGS)
    # Applied here, the flag would fail the run (exit 4): XNNPACK cannot compute in fp16 without the hardware.
    assert asked["fp16_arithmetic"] is False and plain["fp16_arithmetic"] is False
    assert asked["top_logits"] == plain["top_logits"]


# Harness level: a bench through a transport.

WORKLOAD = Workload(prefill_len=PREFILL, decode_len=8, threads=2, warmup=0, reps=2, bandwidth_probe_mb=0)


def test_a_host_bench_builds_the_cache_beside_the_model_by_sha256_and_records_cold_then_warm(runner, model,
                                                                                             tmp_path):
    copy = tmp_path / "model.tflite"  # a folder of the test's own: the cache goes beside the model
    shutil.copy(model, copy)
    cache = tmp_path / f"{sha256_file(copy)}.xnnpack_cache"
    device = open_device("host")
    try:
        first = bench(device, runner, copy, WORKLOAD, timeout=300)
        assert sorted(p.name for p in tmp_path.iterdir()) == sorted([copy.name, cache.name])  # no .part left
        assert first.cold_run is not None and first.cold_run.path == str(cache)
        assert first.cold_run.report.weight_cache == "cold" and first.report.weight_cache == "warm"
        assert re.search(rf"--no-warm-init --weight-cache {re.escape(str(cache))}\.[0-9a-f]{{8}}\.part$",
                         first.cold_run.command)
        assert first.command.endswith(f"--weight-cache {cache}") and first.provenance["weight_cache"] == str(cache)
        figures = first.figures()
        assert figures["weight_cache"] == "on" and figures["fp16_arithmetic"] is False
        assert figures["init_cache_cold_ms"] == first.cold_run.report.init_ms > 0
        assert figures["init_ms"] > 0 and figures["init_warm_ms"] > 0
        assert figures["peak_rss_cache_cold_mb"] > 0 and figures["peak_rss_mb"] > 0
        assert figures["weight_cache_mb"] == cache.stat().st_size / 2**20
        # The cold run decodes one step: the measured run's first token.
        assert first.cold_run.report.tokens == first.report.tokens[:1]

        built = cache.stat().st_ino
        again = bench(device, runner, copy, WORKLOAD, timeout=300)
        # Each cell measures its own cold build: a new cache replaced the first one in one step.
        assert again.cold_run.report.weight_cache == "cold" and again.report.weight_cache == "warm"
        assert cache.stat().st_ino != built
        assert sorted(p.name for p in tmp_path.iterdir()) == sorted([copy.name, cache.name])
        assert again.report.tokens == first.report.tokens

        off = bench(device, runner, copy, dataclasses.replace(WORKLOAD, weight_cache=False), timeout=300)
        assert off.cold_run is None and off.report.weight_cache == "off" and "--weight-cache" not in off.command
        assert off.figures()["weight_cache"] == "off" and off.figures()["init_cache_cold_ms"] is None
        assert off.report.tokens == first.report.tokens
    finally:
        device.transport.close()
    assert cache.is_file()  # closing the device removes nothing it did not create for the session


def test_a_cold_run_that_fails_leaves_no_cache_behind(runner, model, tmp_path):
    copy = tmp_path / "model.tflite"
    shutil.copy(model, copy)
    device = open_device("host")
    # The runner loads the model (writing the whole cache into its .part), then refuses the workload: the model's
    # prefill length is 32.
    wrong = dataclasses.replace(WORKLOAD, prefill_len=16)
    try:
        with pytest.raises(RunnerError, match="does not match the model's prefill length 32") as failed:
            bench(device, runner, copy, wrong, timeout=300)
    finally:
        device.transport.close()
    assert "--no-warm-init --weight-cache" in str(failed.value)  # it was the cold run that failed
    assert sorted(p.name for p in tmp_path.iterdir()) == [copy.name]


def test_a_session_stores_the_setting_and_both_inits_and_the_report_and_gate_show_them(tiny_artifact, tmp_path):
    import pandas as pd

    from harness.run.session import BenchSession
    from harness.run.settings import Settings
    from harness.store.store import Store
    from reports.render import render_run_report

    tiny_artifact("dynamic_int8")  # the cell's artifact (prefill 32, KV 128), converted once per test session
    settings = Settings(devices=("host",), quants=("dynamic_int8",), prefill=(PREFILL,), decode=(16,),
                        threads=(2,), warmup=0, reps=2, bandwidth_probe_mb=0, cooldown_s=0,
                        results_db=str(tmp_path / "results.db"))
    runs = {}
    for setting in (True, False):
        session = BenchSession(dataclasses.replace(settings, weight_cache=setting,
                                                   baseline_run=runs.get(True)))  # off is judged against on
        try:
            measured = session.measure(settings.cells()[0])
            verdict = session.gate(measured.result_id)
        finally:
            session.close()
        runs[setting] = session.run_id
    assert verdict.note == "baseline ran with the weight cache on, this run off"

    store = Store(settings.results_db)
    on, off = (store.results_frame(runs[s]).iloc[0] for s in (True, False))
    assert on["weight_cache"] == "on" and not on["fp16_arithmetic"]
    assert on["init_cache_cold_ms"] > 0 and on["init_ms"] > 0 and on["init_warm_ms"] > 0
    assert on["peak_rss_cache_cold_mb"] > 0 and on["weight_cache_mb"] > 0
    assert json.loads(on["data"])["weight_cache_cold_run"]["runner"]["weight_cache"] == "cold"
    assert off["weight_cache"] == "off" and pd.isna(off["init_cache_cold_ms"])  # NULL: no cold run
    html = render_run_report(store, runs[True], tmp_path / "on.html").read_text()
    assert f"cache cold {on['init_cache_cold_ms']:.0f}" in html and "no weight cache" not in html
    html = render_run_report(store, runs[False], tmp_path / "off.html").read_text()
    assert "no weight cache" in html and "cache cold" not in html.split('id="results"')[1]
    store.close()


def test_an_adb_bench_builds_the_cache_beside_the_staged_model_and_removes_nothing(runner, model,
                                                                                  fake_adb_device):
    test_device = fake_adb_device()
    device = open_device(test_device.name)
    try:
        measured = bench(device, runner, model, WORKLOAD, timeout=300)
        staged = posixpath.dirname(measured.cold_run.path)
    finally:
        device.transport.close()
    digest = sha256_file(model)
    assert measured.cold_run.path == f"{staged}/{digest}.xnnpack_cache"
    assert measured.cold_run.report.weight_cache == "cold" and measured.report.weight_cache == "warm"
    folder = test_device.root / staged.lstrip("/")
    # Beside the model in its content-addressed folder, no .part left; the cache stays when the session ends.
    assert sorted(p.name for p in folder.iterdir()) == sorted([model.name, f"{digest}.xnnpack_cache"])
    assert (folder / f"{digest}.xnnpack_cache").stat().st_size == measured.report.weight_cache_bytes
    assert not list((test_device.root / "data/local/tmp/litert-bench").glob("run-*"))
