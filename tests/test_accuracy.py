"""Accuracy checks (harness/accuracy/, models/hf_reference.py, models/checkpoint.py): every family against its
transformers reference and its own .tflite, user checkpoints through the remap, and the errors a bad checkpoint gets.

As litgpt's test_against_hf_*: one parametrized test per check over every registered family's tiny config.
"""

from __future__ import annotations

import dataclasses
import json

import pytest
import torch
from safetensors.torch import load_file, save_file

from harness.accuracy import conversion, reauthoring
from models import checkpoint, hf_reference
from models.registry import FAMILIES, get_spec
from models.weights import build_model
from tests.conftest import run_cli


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_against_hf_reauthoring(family):
    result = reauthoring.check_reauthoring(get_spec(family, "tiny"))
    assert result["passed"], result["failures"]
    assert result["prefill_max_diff"] <= FAMILIES[family].atol and result["decode_max_diff"] <= FAMILIES[family].atol
    assert result["greedy_identical"] and len(result["tokens"]) == reauthoring.GENERATE
    assert result["decode_steps_compared"] == reauthoring.GENERATE


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_against_tflite_conversion(family):
    result = conversion.check_conversion(get_spec(family, "tiny"))
    assert result["passed"], result["failures"]
    assert result["signatures"] == ["decode", "prefill"]
    assert abs(result["size_ratio"] - 1) <= conversion.SIZE_TOLERANCE
    assert result["greedy_identical"] and len(result["tokens"]) == conversion.CONVERSION_DECODE
    # Every tiny family sits well under 1e-4, so the bound is the 1e-4; a zero floor would mean the
    # perturbation did nothing.
    assert 0 < result["fp32_noise_floor"] < conversion.CONVERSION_ATOL / conversion.NOISE_FACTOR
    assert result["atol"] == conversion.CONVERSION_ATOL


def test_conversion_check_catches_a_different_model(monkeypatch):
    """The .tflite of another seed against this seed's PyTorch model: the check must fail on the logits."""
    real = conversion.ensure_artifact
    monkeypatch.setattr(conversion, "ensure_artifact",
                        lambda spec, recipe: real(dataclasses.replace(spec, seed=7), recipe))
    result = conversion.check_conversion(get_spec("tinyllama", "tiny"))
    assert not result["passed"] and result["decode_max_diff"] > result["atol"]
    assert "noise floor" in result["failures"][0]


def test_reauthoring_check_catches_a_wrong_remap():
    """Swap the two norms of every block in the remap: the check must fail (it can fail)."""
    family = FAMILIES["tinyllama"]
    names = family.tensor_names
    swapped = dataclasses.replace(names, pre_attn_norm=names.post_attn_norm, post_attn_norm=names.pre_attn_norm)
    spec = dataclasses.replace(get_spec("tinyllama", "tiny"), family=dataclasses.replace(family, tensor_names=swapped))
    result = reauthoring.check_reauthoring(spec)
    assert not result["passed"] and result["prefill_max_diff"] > family.atol


def test_signature_mismatches_are_named():
    config = get_spec("tinyllama", "tiny").config()
    expected = conversion.expected_signatures(config, 32, 128)
    actual = json.loads(json.dumps(expected))  # a deep copy, with lists where tuples were
    actual = {sig: {side: {k: (tuple(v[0]), v[1]) for k, v in d.items()} for side, d in s.items()}
              for sig, s in actual.items()}
    assert conversion.signature_mismatches(expected, actual) == []
    actual["decode"]["outputs"]["logits"] = ((1, 1, 99), "float32")
    del actual["prefill"]["inputs"]["input_pos"]
    problems = conversion.signature_mismatches(expected, actual)
    assert "prefill input 'input_pos' missing" in problems
    assert "decode output 'logits' is (1, 1, 99) float32, expected (1, 1, 2048) float32" in problems


@pytest.fixture
def user_checkpoint(tmp_path):
    """A checkpoint as a user would bring it: a transformers model with weights of its own, saved locally."""
    return hf_reference.save_reference(FAMILIES["tinyllama"], "tiny", seed=777, out=tmp_path / "ckpt")


def test_user_checkpoint_verifies_through_the_remap(user_checkpoint):
    """The CLI on a user's checkpoint: the remap, not the harness's seed, makes the two models agree."""
    out = run_cli("verify", "--model", "tinyllama", "--size", "tiny", "--checkpoint-dir", str(user_checkpoint),
                  "--checks", "reauthoring")
    assert out.returncode == 0, out.stderr[-2000:]
    doc = json.loads(out.stdout)
    (check,) = doc["checks"]
    assert doc["passed"] and check["weights"] == str(user_checkpoint) and check["prefill_max_diff"] <= 1e-4
    tokens = torch.tensor([[5, 17, 301, 42]], dtype=torch.int)
    seeded, loaded = (build_model(get_spec("tinyllama", "tiny", checkpoint_dir=c), kv_len=64)
                      for c in (None, user_checkpoint))
    from litert_torch.generative.layers import kv_cache as kv_utils

    with torch.no_grad():
        logits = [m(tokens, torch.arange(4, dtype=torch.int), kv_utils.KVCache.from_model_config(
            64, m.config))["logits"] for m in (seeded, loaded)]
    assert (logits[0] - logits[1]).abs().max() > 0.01  # the seeded weights are not the checkpoint's


def test_checkpoint_with_a_missing_tensor_names_it(user_checkpoint):
    tensors = load_file(user_checkpoint / "model.safetensors")
    del tensors["model.layers.1.mlp.down_proj.weight"]
    save_file(tensors, user_checkpoint / "model.safetensors", metadata={"format": "pt"})
    out = run_cli("verify", "--model", "tinyllama", "--checkpoint-dir", str(user_checkpoint), "--checks",
                  "reauthoring")
    assert out.returncode == 2
    assert "lacks tensor 'model.layers.1.mlp.down_proj.weight' (expected shape [256, 768]" in out.stderr


def test_checkpoint_with_a_misshaped_tensor_names_it(user_checkpoint):
    tensors = load_file(user_checkpoint / "model.safetensors")
    tensors["model.layers.0.self_attn.k_proj.weight"] = torch.zeros(64, 256)
    save_file(tensors, user_checkpoint / "model.safetensors", metadata={"format": "pt"})
    out = run_cli("verify", "--model", "tinyllama", "--checkpoint-dir", str(user_checkpoint), "--checks",
                  "conversion")
    assert out.returncode == 2
    assert ("tensor 'model.layers.0.self_attn.k_proj.weight' has shape [64, 256], expected [32, 256] "
            "for tinyllama-tiny") in out.stderr


def test_full_size_checkpoint_for_a_tiny_spec_says_which_dims_differ(tmp_path):
    hf_reference.save_reference(FAMILIES["tinyllama"], "tiny", seed=5, out=tmp_path)
    config = json.loads((tmp_path / "config.json").read_text())
    (tmp_path / "config.json").write_text(json.dumps({**config, "hidden_size": 2048}))
    spec = get_spec("qwen3", "tiny", checkpoint_dir=tmp_path)
    with pytest.raises(checkpoint.CheckpointError,
                       match=r"config.json differs: model_type=llama \(ours qwen3\), hidden_size=2048 \(ours 256\)"):
        checkpoint.check_checkpoint(spec)


def test_verify_unknown_family_lists_the_known_ones():
    out = run_cli("verify", "--model", "gpt5")
    assert out.returncode == 2 and "known models:" in out.stderr
    assert all(name in out.stderr for name in FAMILIES)


def test_verify_unknown_check_lists_the_valid_ones():
    out = run_cli("verify", "--model", "tinyllama", "--checks", "vibes")
    assert out.returncode == 2 and "valid: reauthoring, conversion, drift" in out.stderr
