"""The native runner (llm_runner) on tiny converted models: its JSON contract, greedy tokens against the
interpreter path and the in-process Python CompiledModel loop (also at a prefilled KV depth), the memory
bandwidth probe, cold and warm init, and its exit codes."""

from __future__ import annotations

import dataclasses
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from device_runners.runners import native as build
from device_runners.runners.native import RunnerBuild, build_runner
from device_runners.runners.report import RunnerReport
from harness.common.options import default

REPO = Path(__file__).resolve().parent.parent
# The harness's tiny TinyLlama (models/families/tinyllama.py), converted with prefill 32 and a 128-long KV cache.
PREFILL, KV_LEN, VOCAB, LAYERS = 32, 128, 2048, 2
KV_HEADS, HEAD_DIM = 1, 32
KV_CACHE_BYTES = 2 * LAYERS * KV_LEN * KV_HEADS * HEAD_DIM * 4  # k and v, float32
FIELDS = {"runner", "runner_version", "api", "runtime", "runtime_version", "model", "model_bytes", "threads",
          "prefill_len", "decode_len", "depth", "kv_len", "vocab", "num_layers", "kv_cache_bytes", "weight_bytes",
          "warmup", "init_ms", "init_warm_ms", "samples", "tokens", "top_logits", "peak_rss_kb", "vmhwm_kb",
          "bandwidth", "xnnpack", "fp16_arithmetic", "weight_cache", "weight_cache_bytes", "memory", "profile", "power"}
SAMPLE_FIELDS = {"prefill_s", "prefill_tok_s", "decode_s", "decode_tok_s", "ttft_ms"}
BANDWIDTH_FIELDS = {"read_gb_s", "median_gb_s", "probe_bytes", "threads", "passes"}


@pytest.fixture(scope="session")
def runner() -> RunnerBuild:
    return build_runner("host")


@pytest.fixture(scope="session")
def tiny_models(tiny_artifact) -> dict[str, Path]:
    return {quant: tiny_artifact(quant, prefill=PREFILL, decode=KV_LEN - PREFILL).path
            for quant in ("none", "dynamic_int8")}


def run(runner: RunnerBuild, *args: object, launcher: tuple[str, ...] = ()) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*launcher, str(runner.binary), *map(str, args)], capture_output=True, text=True,
                          timeout=300)


def run_json(runner: RunnerBuild, *args: object, launcher: tuple[str, ...] = ()) -> dict:
    proc = run(runner, *args, launcher=launcher)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)  # exactly one JSON document, nothing else on stdout


def inprocess_json(model: Path, *args: object) -> dict:
    proc = subprocess.run([sys.executable, "-m", "device_runners.runners.inprocess", "--model", str(model),
                           *map(str, args)], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


@pytest.mark.parametrize("api", ["compiled_model", "interpreter"])
def test_json_has_every_field_with_sane_values(runner, tiny_models, api):
    model = tiny_models["dynamic_int8"]
    out = run_json(runner, "--model", model, "--api", api, "--threads", 2, "--decode", 8, "--reps", 3)
    assert set(out) == FIELDS == {f.name for f in dataclasses.fields(RunnerReport)}  # the C++ and its twin
    assert (out["runner"], out["runner_version"], out["api"], out["runtime"]) == (
        "llm_runner", "0.1.0", api, "LiteRT")
    assert re.fullmatch(r"\d+\.\d+\.\d+.*", out["runtime_version"])
    assert (out["model"], out["model_bytes"]) == (str(model), model.stat().st_size)
    assert (out["threads"], out["prefill_len"], out["decode_len"], out["kv_len"]) == (2, PREFILL, 8, KV_LEN)
    assert (out["vocab"], out["num_layers"], out["warmup"], out["xnnpack"]) == (VOCAB, LAYERS, 1, True)
    # Without --weight-cache and --fp16-arithmetic: XNNPACK packs the weights in memory and computes in fp32.
    assert (out["weight_cache"], out["weight_cache_bytes"], out["fp16_arithmetic"]) == ("off", None, False)
    assert (out["depth"], out["kv_cache_bytes"]) == (0, KV_CACHE_BYTES)
    assert 0 < out["weight_bytes"] <= out["model_bytes"]
    assert out["init_ms"] > 0 and out["init_warm_ms"] > 0
    bandwidth = out["bandwidth"]  # the default probe (the harness's, 1024 MiB) on --threads threads, 5 passes
    assert set(bandwidth) == BANDWIDTH_FIELDS
    assert (bandwidth["probe_bytes"], bandwidth["threads"], len(bandwidth["passes"])) == (
        default("bandwidth_probe_mb") << 20, 2, 5)
    assert bandwidth["read_gb_s"] == max(bandwidth["passes"]) and bandwidth["read_gb_s"] > 0.5
    assert bandwidth["median_gb_s"] == sorted(bandwidth["passes"])[2]
    assert len(out["samples"]) == 3
    for s in out["samples"]:
        assert set(s) == SAMPLE_FIELDS
        assert all(v > 0 for v in s.values())
        assert s["prefill_tok_s"] == pytest.approx(PREFILL / s["prefill_s"], rel=1e-6)
        assert s["decode_tok_s"] == pytest.approx(8 / s["decode_s"], rel=1e-6)
        assert s["prefill_s"] * 1000 < s["ttft_ms"] < (s["prefill_s"] + s["decode_s"]) * 1000 + 1e-6
    assert len(out["tokens"]) == 8 and all(0 <= t < VOCAB for t in out["tokens"])
    assert out["peak_rss_kb"] > 0 and out["vmhwm_kb"] > 0


@pytest.mark.accuracy
@pytest.mark.parametrize("quant", ["none", "dynamic_int8"])
def test_greedy_tokens_match_interpreter_and_inprocess_loop(runner, tiny_models, quant):
    # Same file, same computation: the argmax must agree at every step, in place or copied KV cache.
    model = tiny_models[quant]
    workload = ("--threads", 2, "--decode", KV_LEN - PREFILL, "--warmup", 0, "--reps", 1)
    native = run_json(runner, "--model", model, *workload)
    compiled = native["tokens"]
    assert len(compiled) == KV_LEN - PREFILL
    interpreter = run_json(runner, "--model", model, "--api", "interpreter", *workload)
    assert interpreter["tokens"] == compiled
    reference = inprocess_json(model, *workload)
    assert reference["tokens"] == compiled
    assert set(reference) == FIELDS
    # The byte counts agree too: LiteRT's model walk (both APIs) and a read of the flatbuffer's buffer table.
    for key in ("kv_cache_bytes", "weight_bytes"):
        assert native[key] == interpreter[key] == reference[key], key


@pytest.mark.accuracy
@pytest.mark.parametrize("quant", ["none", "dynamic_int8"])
def test_depth_moves_the_decode_start_alike_in_every_runner(runner, tiny_models, quant):
    # 72: prefill chunks at 32 and at 40 (the last one ends at position 71 and overlaps the one before).
    model, depth = tiny_models[quant], 72
    workload = ("--threads", 2, "--decode", 16, "--warmup", 0, "--reps", 1)
    deep = run_json(runner, "--model", model, "--depth", depth, *workload)
    assert deep["depth"] == depth and len(deep["tokens"]) == 16
    assert run_json(runner, "--model", model, "--api", "interpreter", "--depth", depth, *workload)["tokens"] == \
        deep["tokens"]
    assert inprocess_json(model, "--depth", depth, *workload)["tokens"] == deep["tokens"]
    shallow = run_json(runner, "--model", model, *workload)["tokens"]
    assert deep["tokens"] != shallow
    # A depth up to the prompt length is the plain run: decode starts after the prompt either way.
    assert run_json(runner, "--model", model, "--depth", PREFILL, *workload)["tokens"] == shallow
    # Filled right up to the end of the cache: depth + decode == kv_len.
    full = ("--depth", KV_LEN - 16, *workload)
    assert run_json(runner, "--model", model, *full)["tokens"] == \
        run_json(runner, "--model", model, "--api", "interpreter", *full)["tokens"]


def test_weight_bytes_include_block_wise_scales(runner, tiny_artifact):
    # int4 block-wise weights keep their scales in tensors that are no op's input; each decode step reads them.
    from device_runners.runners.inprocess import weight_bytes

    model = tiny_artifact("dynamic_int4_block32", prefill=PREFILL, decode=KV_LEN - PREFILL).path
    workload = ("--threads", 2, "--decode", 4, "--warmup", 0, "--reps", 1, "--bandwidth-probe-mb", 0)
    for api in ("compiled_model", "interpreter"):
        assert run_json(runner, "--model", model, "--api", api, *workload)["weight_bytes"] == weight_bytes(model)


def test_bandwidth_probe_leaves_peak_memory_alone(runner, tiny_models):
    # The probe's 256 MiB buffer lives in a forked child, so the runner's high-water marks stay the model's.
    # Launched through `timeout`, as the host transport does: Linux carries the RSS high-water mark of the
    # process that execs the runner into its ru_maxrss, so started straight from this (large) pytest process
    # peak_rss_kb would read pytest's peak, not the runner's; timeout forks, so its child starts afresh.
    model = tiny_models["dynamic_int8"]
    workload = ("--threads", 2, "--decode", 8, "--warmup", 0, "--reps", 1)
    launcher = ("timeout", "300")
    probed = run_json(runner, "--model", model, "--bandwidth-probe-mb", 256, *workload, launcher=launcher)
    plain = run_json(runner, "--model", model, "--bandwidth-probe-mb", 0, *workload, launcher=launcher)
    assert probed["bandwidth"]["probe_bytes"] == 256 << 20 and probed["bandwidth"]["read_gb_s"] > 0.5
    assert plain["bandwidth"] is None
    assert probed["peak_rss_kb"] < (256 << 10)  # the buffer alone would be 256 MiB
    assert probed["peak_rss_kb"] == pytest.approx(plain["peak_rss_kb"], rel=0.10)
    assert probed["vmhwm_kb"] == pytest.approx(plain["vmhwm_kb"], rel=0.10)


@pytest.mark.parametrize("api", ["compiled_model", "interpreter"])
def test_warm_init_reloads_the_model_and_no_warm_init_skips_it(runner, tiny_models, api):
    model = tiny_models["dynamic_int8"]
    workload = ("--api", api, "--threads", 2, "--decode", 8, "--warmup", 0, "--reps", 1, "--bandwidth-probe-mb", 0)
    warm = run_json(runner, "--model", model, *workload)
    cold = run_json(runner, "--model", model, "--no-warm-init", *workload)
    assert warm["init_ms"] > 0 and warm["init_warm_ms"] > 0
    assert cold["init_ms"] > 0 and cold["init_warm_ms"] is None
    assert warm["tokens"] == cold["tokens"]  # the second instance computes what the first would


def test_inprocess_accepts_the_runner_flags(tiny_models):
    model = tiny_models["dynamic_int8"]
    workload = ("--threads", 2, "--decode", 8, "--warmup", 0, "--reps", 1, "--bandwidth-probe-mb", 256)
    warm = inprocess_json(model, *workload)
    assert warm["bandwidth"] is None and warm["init_warm_ms"] > 0 and warm["kv_cache_bytes"] == KV_CACHE_BYTES
    assert inprocess_json(model, "--no-warm-init", *workload)["init_warm_ms"] is None
    proc = subprocess.run([sys.executable, "-m", "device_runners.runners.inprocess", "--model", str(model),
                           "--depth", str(KV_LEN - 15), "--decode", "16"], cwd=REPO, capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 2 and f"exceeds the KV cache length {KV_LEN}" in proc.stderr


def test_prompt_tokens_flag(runner, tiny_models):
    model = tiny_models["dynamic_int8"]
    workload = ("--threads", 2, "--decode", 8, "--warmup", 0, "--reps", 1)
    default_prompt = [1 + (i * 7919) % (VOCAB - 1) for i in range(PREFILL)]
    default = run_json(runner, "--model", model, *workload)["tokens"]
    explicit = run_json(runner, "--model", model, "--prompt-tokens", ",".join(map(str, default_prompt)),
                        *workload)["tokens"]
    assert explicit == default
    other = ",".join(str(t) for t in range(5, 5 + PREFILL))
    tokens = run_json(runner, "--model", model, "--prompt-tokens", other, *workload)["tokens"]
    assert run_json(runner, "--model", model, "--api", "interpreter", "--prompt-tokens", other,
                    *workload)["tokens"] == tokens


def test_top_k_lists_each_steps_highest_logits_and_follow_tokens_feeds_the_path(runner, tiny_models):
    model = tiny_models["dynamic_int8"]
    workload = ("--threads", 2, "--decode", 8, "--warmup", 0, "--reps", 1)
    free = run_json(runner, "--model", model, *workload, "--top-k", 4)
    assert run_json(runner, "--model", model, *workload)["top_logits"] == []  # off by default
    assert len(free["top_logits"]) == 8
    for token, step in zip(free["tokens"], free["top_logits"], strict=True):
        assert len(step["ids"]) == 4 and step["ids"][0] == token  # the argmax heads the list
        assert step["logits"] == sorted(step["logits"], reverse=True)
    # Fed its own path, the runner retraces it; fed another, only step 0 (before any fed token) is the same.
    same = run_json(runner, "--model", model, *workload, "--top-k", 4,
                    "--follow-tokens", ",".join(map(str, free["tokens"][:-1])))
    assert same["tokens"] == free["tokens"] and same["top_logits"] == free["top_logits"]
    other = [(t + 1) % VOCAB for t in free["tokens"][:-1]]
    fed = run_json(runner, "--model", model, *workload, "--top-k", 4, "--follow-tokens", ",".join(map(str, other)))
    assert fed["top_logits"][0] == free["top_logits"][0] and fed["top_logits"][1:] != free["top_logits"][1:]


def _corrupt_files(folder: Path, good: Path) -> dict[str, Path]:
    files = {"garbage": bytes(range(256)) * 64, "empty": b"", "truncated": good.read_bytes()[:4096]}
    for name, data in files.items():
        (folder / f"{name}.tflite").write_bytes(data)
    return {name: folder / f"{name}.tflite" for name in files}


@pytest.mark.parametrize("api", ["compiled_model", "interpreter"])
def test_missing_or_corrupt_model_exits_3_with_one_line_naming_the_file(runner, tiny_models, tmp_path, api):
    corrupt = _corrupt_files(tmp_path, tiny_models["none"])
    for path in [tmp_path / "missing.tflite", tmp_path, *corrupt.values()]:
        proc = run(runner, "--model", path, "--api", api)
        assert proc.returncode == 3, (path, proc.stderr)
        assert proc.stdout == ""
        assert proc.stderr.count("\n") == 1, proc.stderr
        assert proc.stderr.startswith(f"error: cannot load model file '{path}': "), proc.stderr


@pytest.mark.parametrize("args", [
    ["--model"],
    ["--decode", "8"],
    ["--model", "m.tflite", "--bogus", "1"],
    ["--model", "m.tflite", "--decode", "x"],
    ["--model", "m.tflite", "--threads", "0"],
    ["--model", "m.tflite", "--reps", "0"],
    ["--model", "m.tflite", "--api", "gpu"],
    ["--model", "m.tflite", "--prompt-tokens", "1,,2"],
    ["--model", "m.tflite", "--depth", "-1"],
    ["--model", "m.tflite", "--bandwidth-probe-mb", "x"],
    ["--model", "m.tflite", "--no-warm-init=1"],
    ["--model", "m.tflite", "--fp16-arithmetic=1"],
    ["--model", "m.tflite", "--weight-cache"],
    ["--model", "m.tflite", "--power-hz", "0"],
    ["--model", "m.tflite", "--power-hz", "5000"],
    ["--model", "m.tflite", "--power-file", ""],
], ids=["no-value", "no-model", "unknown-flag", "not-a-number", "zero-threads", "zero-reps", "bad-api",
        "bad-token-list", "negative-depth", "bad-probe-size", "value-for-no-warm-init", "value-for-fp16-arithmetic",
        "no-weight-cache-path", "zero-power-hz", "power-hz-above-1000", "empty-power-file"])
def test_bad_flags_exit_2_with_usage(runner, args):
    proc = run(runner, *args)
    assert proc.returncode == 2
    assert proc.stdout == ""
    # What was wrong is the last line (after the usage text), where a terminal and the harness's tail show it.
    assert proc.stderr.strip().splitlines()[-1].startswith("error: ")
    for flag in ("--model", "--prefill", "--decode", "--threads", "--warmup", "--reps", "--api",
                 "--prompt-tokens", "--depth", "--bandwidth-probe-mb", "--no-warm-init", "--top-k",
                 "--follow-tokens", "--weight-cache", "--fp16-arithmetic", "--power-file", "--power-counter",
                 "--power-hz", "--power-idle-ms"):
        assert flag in proc.stderr


@pytest.mark.parametrize("args, message", [
    (["--prefill", "16"], f"does not match the model's prefill length {PREFILL}"),
    (["--decode", str(KV_LEN - PREFILL + 1)], f"exceeds the KV cache length {KV_LEN}"),
    (["--depth", str(KV_LEN - 15), "--decode", "16"], f"depth {KV_LEN - 15} + decode 16 exceeds the KV cache length"),
    (["--prompt-tokens", "1,2,3"], f"the model's prefill length is {PREFILL}"),
    (["--prompt-tokens", ",".join([str(VOCAB)] * PREFILL)], f"outside the vocabulary of {VOCAB}"),
    (["--decode", "8", "--follow-tokens", "1,2"], "--follow-tokens has 2 tokens; --decode 8 needs 7"),
    (["--decode", "3", "--follow-tokens", f"1,{VOCAB}"], f"--follow-tokens token {VOCAB} is outside the vocabulary"),
    (["--top-k", str(VOCAB + 1)], f"--top-k {VOCAB + 1} exceeds the vocabulary of {VOCAB}"),
])
def test_workload_that_does_not_fit_the_model_exits_2(runner, tiny_models, args, message):
    proc = run(runner, "--model", tiny_models["dynamic_int8"], *args)
    assert proc.returncode == 2
    assert message in proc.stderr


def test_help_prints_usage(runner):
    proc = run(runner, "--help")
    assert proc.returncode == 0 and proc.stdout.startswith("usage: llm_runner --model PATH")


def test_binary_finds_its_runtime_library_by_name_next_to_itself(runner):
    if shutil.which("readelf") is None:
        pytest.skip("readelf not installed")
    dynamic = subprocess.run(["readelf", "-d", str(runner.binary)], capture_output=True, text=True).stdout
    assert "Shared library: [liblitert-lm.so]" in dynamic  # by name, not by the build machine's path
    assert re.search(r"R(UN)?PATH.*\[\$ORIGIN[:\]]", dynamic)


def test_second_build_reuses_the_cache(runner, monkeypatch):
    def no_build(*args: object) -> None:
        raise AssertionError("rebuilt although nothing changed")

    monkeypatch.setattr(build, "_cmake_build", no_build)
    assert build_runner("host") == runner


def test_the_same_library_in_another_environment_gets_a_build_of_its_own(tmp_path):
    # The host binary's RUNPATH names the library's folder: a cached build from another clone's venv (since
    # deleted) failed with "liblitert-lm.so: cannot open shared object file" before the folder was in the key.
    first, second = tmp_path / "venv1" / build.RUNTIME_LIB, tmp_path / "venv2" / build.RUNTIME_LIB
    for lib in (first, second):
        lib.parent.mkdir()
        lib.write_bytes(b"the same bytes")
    assert build._build_key("host", first, []) != build._build_key("host", second, [])
    assert build._build_key("host", first, []) == build._build_key("host", first, [])


def test_android_build_without_ndk_says_what_is_missing(monkeypatch, tmp_path):
    monkeypatch.delenv("ANDROID_NDK_HOME", raising=False)
    with pytest.raises(RuntimeError, match="ANDROID_NDK_HOME"):
        build_runner("android-arm64", tmp_path)


def test_android_runtime_library_must_match_its_pinned_sha256(tmp_path):
    """A wheel that is not the pinned litert-lm-api 0.18.1 Android wheel (a new upload, a proxy's copy) installs
    nothing: the phone would run bytes that no figure names."""
    import zipfile

    wheel = tmp_path / "litert_lm_api-0.18.1-py3-none-android_23_arm64_v8a.whl"
    with zipfile.ZipFile(wheel, "w") as archive:
        archive.writestr(f"litert_lm/{build.RUNTIME_LIB}", b"\x7fELF not the pinned library")
    lib = tmp_path / "cache" / build.RUNTIME_LIB
    lib.parent.mkdir()
    with pytest.raises(RuntimeError, match=rf"the Android litert-lm-api==0.18.1 wheel is not the pinned one: sha256 "
                                           rf"[0-9a-f]{{64}}, expected {build.ANDROID_WHEEL_SHA256}"):
        build.install_android_lib(wheel, lib)
    assert not lib.exists()
