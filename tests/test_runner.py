"""The native runner (llm_runner) on tiny converted models: its JSON contract, greedy tokens against the
interpreter path and the in-process Python CompiledModel loop, and its exit codes."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from device_runners import build
from device_runners.build import RunnerBuild, build_runner

REPO = Path(__file__).resolve().parent.parent
PREFILL, KV_LEN, VOCAB, LAYERS = 32, 64, 1000, 2
FIELDS = {"runner", "runner_version", "api", "runtime", "runtime_version", "model", "model_bytes", "threads",
          "prefill_len", "decode_len", "kv_len", "vocab", "num_layers", "warmup", "init_ms", "samples",
          "tokens", "peak_rss_kb", "vmhwm_kb", "xnnpack"}
SAMPLE_FIELDS = {"prefill_s", "prefill_tok_s", "decode_s", "decode_tok_s", "ttft_ms"}


def convert_tiny(prefill: int, kv_len: int, quant: str, out: Path) -> Path:
    """A tiny TinyLlama-architecture .tflite with signatures 'prefill' (length `prefill`) and 'decode'."""
    import torch
    from litert_torch._convert import interface as conv
    from litert_torch.generative.examples.tiny_llama import tiny_llama
    from litert_torch.generative.layers import kv_cache as kv_utils
    from litert_torch.generative.utilities import converter, export_config
    from litert_torch.generative.utilities.model_builder import DecoderOnlyModel

    torch.manual_seed(0)
    cfg = tiny_llama.get_model_config()
    cfg.vocab_size, cfg.num_layers, cfg.embedding_dim = VOCAB, LAYERS, 128
    attn = cfg.block_config(0).attn_config
    attn.num_heads, attn.head_dim, attn.num_query_groups = 4, 32, 2
    cfg.block_config(0).ff_config.intermediate_size = 256
    model = DecoderOnlyModel(cfg, mask_cache_size=kv_len).eval()
    for p in model.parameters():
        torch.nn.init.normal_(p, std=0.05)
    module = converter.ExportableModule(model, export_config=export_config.ExportConfig()).eval()
    kv = kv_utils.KVCache.from_model_config(kv_len, cfg)
    c = conv.Converter()
    for name, length in (("prefill", prefill), ("decode", 1)):
        c.add_signature(name, module, sample_kwargs=dict(
            tokens=torch.zeros((1, length), dtype=torch.int), input_pos=torch.arange(length, dtype=torch.int),
            kv_cache=kv))
    c.convert(quant_config=converter.get_quant_recipe_from_flag(quant, cfg)).export(str(out))
    return out


@pytest.fixture(scope="session")
def runner() -> RunnerBuild:
    return build_runner("host")


@pytest.fixture(scope="session")
def tiny_models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("runner-models")
    return {quant: convert_tiny(PREFILL, KV_LEN, quant, folder / f"tiny_{quant}.tflite")
            for quant in ("none", "dynamic_int8")}


def run(runner: RunnerBuild, *args: object) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(runner.binary), *map(str, args)], capture_output=True, text=True, timeout=300)


def run_json(runner: RunnerBuild, *args: object) -> dict:
    proc = run(runner, *args)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)  # exactly one JSON document, nothing else on stdout


def inprocess_json(model: Path, *args: object) -> dict:
    proc = subprocess.run([sys.executable, "-m", "device_runners.inprocess", "--model", str(model),
                           *map(str, args)], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


@pytest.mark.parametrize("api", ["compiled_model", "interpreter"])
def test_json_has_every_field_with_sane_values(runner, tiny_models, api):
    model = tiny_models["dynamic_int8"]
    out = run_json(runner, "--model", model, "--api", api, "--threads", 2, "--decode", 8, "--reps", 3)
    assert set(out) == FIELDS
    assert (out["runner"], out["runner_version"], out["api"], out["runtime"]) == (
        "llm_runner", "0.1.0", api, "LiteRT")
    assert re.fullmatch(r"\d+\.\d+\.\d+.*", out["runtime_version"])
    assert (out["model"], out["model_bytes"]) == (str(model), model.stat().st_size)
    assert (out["threads"], out["prefill_len"], out["decode_len"], out["kv_len"]) == (2, PREFILL, 8, KV_LEN)
    assert (out["vocab"], out["num_layers"], out["warmup"], out["xnnpack"]) == (VOCAB, LAYERS, 1, True)
    assert out["init_ms"] > 0
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
    compiled = run_json(runner, "--model", model, *workload)["tokens"]
    assert len(compiled) == KV_LEN - PREFILL
    assert run_json(runner, "--model", model, "--api", "interpreter", *workload)["tokens"] == compiled
    reference = inprocess_json(model, *workload)
    assert reference["tokens"] == compiled
    assert set(reference) == FIELDS


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
], ids=["no-value", "no-model", "unknown-flag", "not-a-number", "zero-threads", "zero-reps", "bad-api",
        "bad-token-list"])
def test_bad_flags_exit_2_with_usage(runner, args):
    proc = run(runner, *args)
    assert proc.returncode == 2
    assert proc.stdout == ""
    assert proc.stderr.startswith("error: ")
    for flag in ("--model", "--prefill", "--decode", "--threads", "--warmup", "--reps", "--api",
                 "--prompt-tokens"):
        assert flag in proc.stderr


@pytest.mark.parametrize("args, message", [
    (["--prefill", "16"], "does not match the model's prefill length 32"),
    (["--decode", str(KV_LEN - PREFILL + 1)], "exceeds the KV cache length 64"),
    (["--prompt-tokens", "1,2,3"], "the model's prefill length is 32"),
    (["--prompt-tokens", ",".join([str(VOCAB)] * PREFILL)], "outside the vocabulary of 1000"),
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


def test_android_build_without_ndk_says_what_is_missing(monkeypatch, tmp_path):
    monkeypatch.delenv("ANDROID_NDK_HOME", raising=False)
    with pytest.raises(RuntimeError, match="ANDROID_NDK_HOME"):
        build_runner("android-arm64", tmp_path)
