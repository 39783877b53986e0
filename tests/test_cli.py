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


_READERS = [["report", "--out", "{tmp}/out"], ["gate"], ["export"], ["store", "import"]]


@pytest.mark.parametrize("command", _READERS[:3], ids=lambda c: c[0])
def test_read_only_commands_refuse_a_missing_database_and_create_none(tmp_path, command):
    typo = tmp_path / "typo" / "results.db"
    out = run_cli(*(a.format(tmp=tmp_path) for a in command), "--results-db", str(typo), timeout=120)
    assert out.returncode == 1, out.stderr
    assert f"no results database at {typo}" in _one_line(out.stderr)
    assert not typo.parent.exists()


@pytest.mark.parametrize("command", _READERS, ids=lambda c: c[0])
def test_a_corrupt_database_is_one_line_naming_it(tmp_path, command):
    corrupt = tmp_path / "results.db"
    corrupt.write_bytes(b"these are not the pages of a SQLite database\n" * 200)
    out = run_cli(*(a.format(tmp=tmp_path) for a in command), "--results-db", str(corrupt), timeout=120)
    assert out.returncode == 1 and "Traceback" not in out.stderr, out.stderr
    line = _one_line(out.stderr)
    assert str(corrupt) in line and "file is not a database" in line


def _stored(tmp_path: Path) -> str:
    from harness.store.store import Store
    from tests.fake_results import add_run

    db = str(tmp_path / "results.db")
    add_run(Store(db), "nightly")
    return db


def test_out_under_a_regular_file_is_one_line_naming_it(tmp_path):
    db, blocker = _stored(tmp_path), tmp_path / "a-file"
    blocker.write_text("in the way\n")
    out = run_cli("export", "--results-db", db, "--out", str(blocker / "results.csv"), timeout=120)
    assert out.returncode == 1 and "Traceback" not in out.stderr, out.stderr
    assert f"cannot write {blocker / 'results.csv'}" in _one_line(out.stderr)
    out = run_cli("report", "--results-db", db, "--out", str(blocker / "reports"), timeout=120)
    assert out.returncode == 1 and "Traceback" not in out.stderr, out.stderr
    assert f"folder {blocker / 'reports'}: {blocker} is a file, not a folder" in _one_line(out.stderr)


def test_store_import_stores_spilled_cells_once(tmp_path):
    from harness.measure.metrics import CellResult
    from harness.store import spill
    from harness.store.store import Store

    db = _stored(tmp_path)
    store = Store(db)
    values = {"run_id": 1, "created_at": "2026-01-02T03:04:05+00:00",
              **CellResult(model="spilled", quant="none", device="host", status="ok", decode_tok_s=77.0).row()}
    spill.write(store.spill_dir, "results", {"id": 1}, values, RuntimeError("database is locked"))
    stray = tmp_path / "stray.json"
    stray.write_text("{}")

    out = run_cli("store", "import", "--results-db", db, timeout=120)
    assert out.returncode == 0, out.stderr
    assert f"1 spilled rows imported into {store.url}" in out.stdout
    assert store.results_frame(1).set_index("model").loc["spilled", "decode_tok_s"] == 77.0
    out = run_cli("store", "import", "--results-db", db, timeout=120)  # nothing left: nothing twice
    assert out.returncode == 0 and "0 spilled rows imported" in out.stdout and len(store.results_frame(1)) == 3
    out = run_cli("store", "import", "--results-db", db, str(stray), timeout=120)
    assert out.returncode == 1 and f"{stray}: not a spill file" in _one_line(out.stderr)
