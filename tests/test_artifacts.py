"""Conversion: two signatures sharing one copy of the weights, every recipe, and the content-addressed cache."""

import time

import pytest
from ai_edge_litert.interpreter import Interpreter

from harness.artifacts.cache import cache_key, ensure_artifact
from harness.artifacts.recipe import QUANTS, Recipe
from models.registry import get_spec
from models.weights import build_model

pytestmark = pytest.mark.conversion


def test_fp32_file_has_prefill_and_decode_sharing_one_copy_of_the_weights(tiny_artifact):
    art = tiny_artifact("none", prefill=32, decode=16)
    signatures = Interpreter(model_path=str(art.path)).get_signature_list()
    assert set(signatures) == {"prefill", "decode"}
    kv = {f"kv_cache_{kind}_{i}" for kind in "kv" for i in range(2)}
    assert set(signatures["prefill"]["inputs"]) == kv | {"tokens", "input_pos"}
    assert set(signatures["decode"]["outputs"]) == kv | {"logits"}
    params = sum(p.numel() for p in build_model(get_spec("tinyllama", "tiny"), kv_len=128).parameters())
    # One fp32 copy of the parameters plus a little graph and constants: two copies would be ~2x.
    assert 1.0 < art.meta["bytes"] / (4 * params) < 1.1


def test_decode_signature_shapes(tiny_artifact):
    runner = Interpreter(model_path=str(tiny_artifact("none").path)).get_signature_runner("decode")
    inputs, outputs = runner.get_input_details(), runner.get_output_details()
    assert list(inputs["tokens"]["shape"]) == [1, 1]
    assert list(inputs["kv_cache_k_0"]["shape"]) == [1, 128, 1, 32]  # kv_len 128, 1 KV head, head_dim 32
    assert list(outputs["logits"]["shape"]) == [1, 1, 2048]


@pytest.mark.parametrize("quant", [q for q in QUANTS if q != "none"])
def test_every_recipe_converts_and_shrinks_the_file(tiny_artifact, quant):
    fp32 = tiny_artifact("none").meta["bytes"]
    art = tiny_artifact(quant)
    assert set(Interpreter(model_path=str(art.path)).get_signature_list()) == {"prefill", "decode"}
    assert art.meta["bytes"] < 0.6 * fp32  # fp16 halves it, int8 quarters it, int4 goes further


@pytest.mark.parametrize("family, quant", [("tinyllama", q) for q in QUANTS if q != "none"]
                         + [("gemma3", "dynamic_int8")])
def test_quantizing_the_float_artifact_gives_the_one_step_conversions_bytes(family, quant, tmp_path):
    """Export once, quantize many: the cached recipe, made from the float artifact, equals what a whole
    conversion with the recipe writes, byte for byte."""
    import json
    import subprocess
    import sys

    from harness.common.files import REPO_ROOT, sha256_file

    spec, recipe = get_spec(family, "tiny"), Recipe(quant, 32, 128)
    art = ensure_artifact(spec, recipe)
    assert art.meta["quantized_from"] == ensure_artifact(spec, Recipe("none", 32, 128)).sha256
    one_step = tmp_path / "one_step.tflite"
    job = {"family": family, "size": "tiny", "checkpoint_dir": None, "seed": spec.seed,
           "recipe": {"quant": quant, "prefill_len": 32, "kv_len": 128, "kv_layout": "default"},
           "lightweight": False, "out": str(one_step)}
    subprocess.run([sys.executable, "-m", "harness.artifacts.convert_worker", json.dumps(job)], cwd=REPO_ROOT,
                   check=True, capture_output=True, timeout=600)
    assert sha256_file(one_step) == art.sha256


def test_two_recipes_of_a_new_model_export_it_once(tmp_path):
    spec = get_spec("tinyllama", "tiny", seed=11)  # weights no other test converts: an empty cache for it
    log_path = tmp_path / "log.txt"
    with log_path.open("w") as log:
        int8 = ensure_artifact(spec, Recipe("dynamic_int8", 16, 64), log=log)
        int4 = ensure_artifact(spec, Recipe("dynamic_int4_block32", 16, 64), log=log)
    lines = log_path.read_text().splitlines()
    assert [line.split(" quant=")[0] for line in lines if line.startswith(("converting ", "quantizing "))] == [
        f"converting {spec.name}", f"quantizing {spec.name}", f"quantizing {spec.name}"]
    root = ensure_artifact(spec, Recipe("none", 16, 64))
    assert int8.meta["quantized_from"] == int4.meta["quantized_from"] == root.sha256
    assert int8.sha256 != int4.sha256
    # Each child's phases: a line each in the log, and in meta.json with their time and peak memory.
    phases = [p["phase"] for p in root.meta["convert_phases"]]
    assert phases[0] == "build model" and phases[-1] == "write flatbuffer"
    assert {"convert > Torch Export: prefill", "convert > Torch Export: decode"} <= set(phases)
    assert [p["phase"] for p in int8.meta["convert_phases"]] == ["quantize"]
    assert all(p["peak_rss_mb"] > 0 and p["seconds"] >= 0 for p in root.meta["convert_phases"])
    assert f"  [{spec.name}] convert: " in log_path.read_text()
    assert "oneDNN custom operations" not in log_path.read_text()  # the import noise is kept from the log


def test_float_artifact_cached_without_its_recipes_still_roots_its_quantizations():
    from harness.artifacts.cache import RECIPES_FILE

    spec = get_spec("tinyllama", "tiny")
    root = ensure_artifact(spec, Recipe("none", 16, 64))
    (root.path.parent / RECIPES_FILE).unlink()  # as a harness before export-once left it
    art = ensure_artifact(spec, Recipe("weight_only_int8", 16, 64))
    assert art.meta["quantized_from"] == root.sha256 and (root.path.parent / RECIPES_FILE).is_file()
    assert set(Interpreter(model_path=str(art.path)).get_signature_list()) == {"prefill", "decode"}


def test_second_request_converts_nothing(tiny_artifact):
    first = tiny_artifact("dynamic_int8")
    start = time.monotonic()
    again = tiny_artifact("dynamic_int8")
    assert again.path == first.path and again.sha256 == first.sha256
    assert time.monotonic() - start < 1.0


def test_cache_key_covers_what_changes_the_bytes():
    spec = get_spec("tinyllama", "tiny")
    base = cache_key(spec, Recipe("dynamic_int8", 32, 128))[0]
    assert base == cache_key(get_spec("tinyllama", "tiny"), Recipe("dynamic_int8", 32, 128))[0]
    assert base != cache_key(spec, Recipe("fp16", 32, 128))[0]
    assert base != cache_key(spec, Recipe("dynamic_int8", 64, 128))[0]
    assert base != cache_key(spec, Recipe("dynamic_int8", 32, 256))[0]
    assert base != cache_key(get_spec("tinyllama", "tiny", seed=7), Recipe("dynamic_int8", 32, 128))[0]
    assert cache_key(spec, Recipe())[1]["tools"]["litert-torch"]  # tool versions are part of the key
    # The float artifact is converted; every recipe is quantized from it. Full-size floats convert lightweight.
    full = get_spec("tinyllama", "full")
    assert "quantized_from_float" not in cache_key(spec, Recipe("none", 32, 128))[1]
    assert cache_key(spec, Recipe("dynamic_int8", 32, 128))[1]["quantized_from_float"]
    assert cache_key(full, Recipe("dynamic_int8"))[1]["quantized_from_float"]
    assert cache_key(full, Recipe("none"))[1]["lightweight"]
    assert not cache_key(spec, Recipe("none", 32, 128))[1]["lightweight"]


def test_unknown_quant_lists_the_known_ones():
    with pytest.raises(ValueError, match="known: none, fp16, weight_only_int8, dynamic_int8"):
        Recipe("int3")


def test_unreadable_checkpoint_is_named_and_leaves_no_artifact(tmp_path):
    with pytest.raises(ValueError, match="cannot read .*model.safetensors"):
        # A checkpoint dir whose safetensors file is garbage: refused before conversion, nothing is cached.
        (tmp_path / "model.safetensors").write_bytes(b"not a safetensors file")
        ensure_artifact(get_spec("tinyllama", "tiny", checkpoint_dir=tmp_path), Recipe("none", 8, 128))
    assert not list((tmp_path.parent).glob("**/model.tflite.partial"))


def test_a_session_converts_what_its_cells_need_first_two_at_a_time(tmp_path):
    """BenchSession.prepare (what `pytest suites/` does after collection): every artifact its cells and accuracy
    checks open is cached before the first cell, each converted once though two conversions run at a time."""
    from harness.run.session import BenchSession
    from harness.run.settings import Settings

    settings = Settings(models=("tinyllama",), accuracy_models=("tinyllama",), quants=("none", "dynamic_int8"),
                        prefill=(16,), decode=(16,), seed=17)  # weights no other test converts
    session = BenchSession(settings)
    cells, checks = settings.cells(), settings.accuracy_cells()
    log_path = tmp_path / "log.txt"
    with log_path.open("w") as log:
        session.prepare(cells, checks, jobs=2, log=log)
    started = [line.split(" ...")[0] for line in log_path.read_text().splitlines()
               if line.startswith(("converting ", "quantizing "))]
    assert len(started) == len(set(started)) == 4  # fp32 and int8 at the cells' lengths and at the checks'
    with log_path.open("w") as log:  # now everything the cells open is there: nothing converts
        for spec, recipe in session.artifacts_needed(cells, checks):
            ensure_artifact(spec, recipe, log=log)
    assert "converting" not in log_path.read_text() and "quantizing" not in log_path.read_text()
