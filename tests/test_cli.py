"""`python -m harness`: the commands a script or CI calls, and their errors."""

import json
from pathlib import Path

import pytest

from tests.conftest import run_cli


def _one_line(stderr: str) -> str:
    lines = [line for line in stderr.strip().splitlines() if line.startswith("error:")]
    assert len(lines) == 1, stderr
    return lines[0]


def test_convert_prints_the_cached_artifact_path(tiny_artifact):
    expected = tiny_artifact("dynamic_int8", prefill=32, decode=16).path
    out = run_cli("convert", "--model", "tinyllama", "--size", "tiny", "--quant", "dynamic_int8",
                  "--prefill", "32", "--decode", "16")
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == str(expected)


@pytest.mark.parametrize(("args", "listing"), [
    (["convert", "--model", "gpt5"], "known models: gemma, gemma3, llama3.2, phi2, qwen2.5, qwen3, smollm2-135m"),
    (["convert", "--model", "tinyllama", "--quant", "int3"], "known: none, fp16, weight_only_int8, dynamic_int8"),
    (["convert", "--model", "tinyllama", "--size", "huge"], "sizes: tiny, full"),
    (["bench", "x.tflite", "--device", "pixel99"], "known devices: adb-test-device, android, galaxy-s24"),
])
def test_unknown_names_are_usage_errors_listing_the_valid_ones(args, listing):
    out = run_cli(*args)
    assert out.returncode == 2
    assert listing in out.stderr


def test_bench_json_has_medians_and_samples(tiny_artifact):
    art = tiny_artifact("dynamic_int8", prefill=32, decode=16)
    out = run_cli("bench", str(art.path), "--device", "host", "--decode", "16", "--threads", "2", "--reps", "3",
                  "--json")
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout)
    for key in ("prefill_tok_s", "decode_tok_s", "ttft_ms", "init_ms", "peak_rss_mb"):
        assert result[key] > 0, key
    assert len(result["samples"]) == 3 and result["runner"]["prefill_len"] == 32  # read from meta.json
    assert result["decode_tok_s"] == sorted(s["decode_tok_s"] for s in result["samples"])[1]  # the median
    assert result["threads"] == 2 and len(result["cpus"]) == 2


def test_bench_missing_model_is_one_line_naming_the_file(tmp_path):
    missing = tmp_path / "nope.tflite"
    out = run_cli("bench", str(missing), "--prefill", "32")
    assert out.returncode == 1
    assert str(missing) in _one_line(out.stderr)


def test_bench_corrupt_model_is_one_line_naming_the_file(tmp_path):
    corrupt = tmp_path / "corrupt.tflite"
    corrupt.write_bytes(b"\x00" * 64 + b"definitely not a flatbuffer")
    out = run_cli("bench", str(corrupt), "--prefill", "32")
    assert out.returncode == 1
    line = _one_line(out.stderr)
    assert str(corrupt) in line and "cannot load model file" in line


def test_bundle_command_writes_a_litertlm_and_lists_its_sections(tmp_path):
    out = run_cli("bundle", "--model", "tinyllama", "--format", "litertlm", "--out", str(tmp_path))
    assert out.returncode == 0, out.stderr[-2000:]
    doc = json.loads(out.stdout.strip().splitlines()[-1])
    assert Path(doc["bundle"]).is_file() and Path(doc["bundle"]).parent == tmp_path
    kinds = [s["type"] for s in doc["contents"]["sections"]]
    assert "TFLiteModel" in kinds and "SP_Tokenizer" in kinds


def test_bundle_unknown_format_lists_the_valid_ones():
    out = run_cli("bundle", "--model", "tinyllama", "--format", "gguf")
    assert out.returncode == 2 and "valid: litertlm, task" in out.stderr
