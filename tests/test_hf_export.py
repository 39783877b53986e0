"""Our reauthored model's weights exported as a Hugging Face checkpoint (models/hf_export.py), for every family
in the registry: transformers computes our logits from it, our loader reads back the same parameters bit for
bit, a user checkpoint comes out as it went in, and the names are the ones the HF config describes."""

from __future__ import annotations

import dataclasses
import json

import pytest
import torch
from litert_torch.generative.utilities import loader as loading_utils
from safetensors.torch import load_file

from harness.accuracy.reauthoring import _hf_generate, _ours_generate, prompt_tokens
from models import hf_export, hf_reference
from models.checkpoint import checkpoint_shapes, expected_tensors
from models.registry import FAMILIES, get_spec
from models.weights import build_model

PROMPT, STEPS, KV_LEN = 12, 3, 16
SEED = 31  # the user checkpoints' seed: neither the harness's default seed nor the reauthoring check's


def parameters(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return dict(model.named_parameters(remove_duplicate=False))


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_transformers_runs_the_exported_weights_as_we_do(family, tmp_path):
    spec = get_spec(family, "tiny")  # seeded random weights
    out = hf_export.export_hf_checkpoint(spec, tmp_path / "hf")
    assert sorted(p.name for p in out.iterdir()) == ["config.json", "model.safetensors"]

    # The names and shapes the family's HF config describes, a tied head stored once as the embedding.
    assert checkpoint_shapes(out) == expected_tensors(spec.family, spec.size)
    config = json.loads((out / "config.json").read_text())
    assert config["model_type"] == spec.family.hf_config("tiny")["model_type"]
    assert config["architectures"][0].endswith("ForCausalLM")  # what convert_hf_to_gguf.py dispatches on

    config_ours = spec.config()
    prompt = prompt_tokens(config_ours.vocab_size, PROMPT)
    ours_model = build_model(spec, KV_LEN)
    with torch.inference_mode():
        ours, ours_tokens = _ours_generate(ours_model, config_ours, prompt, STEPS)
        ref, ref_tokens = _hf_generate(hf_reference.load_reference(out), prompt, STEPS)
    diff = max(float((o - r).abs().max()) for o, r in zip(ours, ref, strict=True))
    assert diff <= spec.family.atol and ours_tokens == ref_tokens

    # Read back through our loader, every parameter is the one exported, bit for bit.
    back = build_model(dataclasses.replace(spec, checkpoint_dir=out), KV_LEN)
    mine, theirs = parameters(ours_model), parameters(back)
    assert mine.keys() == theirs.keys()
    assert [n for n in mine if not torch.equal(mine[n], theirs[n])] == []


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_the_export_of_a_user_checkpoint_is_that_checkpoint(family, tmp_path):
    """The reference's weights are all distinct (noise on every norm and bias), so a swapped or dropped tensor
    would show."""
    source = hf_reference.save_reference(FAMILIES[family], "tiny", SEED, tmp_path / "user")
    spec = get_spec(family, "tiny", checkpoint_dir=source)
    out = hf_export.export_hf_checkpoint(spec, tmp_path / "hf")
    given, exported = load_file(source / "model.safetensors"), load_file(out / "model.safetensors")
    assert exported.keys() == given.keys()
    assert [n for n in given if not torch.equal(given[n], exported[n])] == []


def test_a_bf16_checkpoint_is_exported_in_bf16(tmp_path):
    """Our module holds fp32; each tensor goes back to the checkpoint's dtype, exactly (bf16 ⊂ fp32)."""
    model = hf_reference.build_reference(FAMILIES["qwen2.5"], "tiny", SEED).to(torch.bfloat16)
    model.save_pretrained(tmp_path / "user", safe_serialization=True)
    spec = get_spec("qwen2.5", "tiny", checkpoint_dir=tmp_path / "user")
    out = hf_export.export_hf_checkpoint(spec, tmp_path / "hf")
    given, exported = load_file(tmp_path / "user" / "model.safetensors"), load_file(out / "model.safetensors")
    assert {t.dtype for t in exported.values()} == {torch.bfloat16}
    assert all(torch.equal(given[n], exported[n]) for n in exported)


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_split_qkv_undoes_the_loaders_fusion(family):
    attn = get_spec(family, "tiny").config().block_config(0).attn_config
    fuse = loading_utils.ModelLoader("unused", None, custom_loader=dict)._fuse_qkv
    gen = torch.Generator().manual_seed(0)
    q_rows, kv_rows = attn.num_heads * attn.head_dim, attn.num_query_groups * attn.head_dim
    for trailing in ((24,), ()):  # a weight [rows, in] and a bias [rows]
        q, k, v = (torch.randn(rows, *trailing, generator=gen) for rows in (q_rows, kv_rows, kv_rows))
        parts = hf_export.split_qkv(fuse(attn, q, k, v), attn)
        assert all(torch.equal(a, b) and b.is_contiguous() for a, b in zip((q, k, v), parts, strict=True))


def test_the_state_dict_shares_the_models_memory_where_the_layouts_agree():
    """No copy of a full-size model: plain tensors are the parameters themselves; fused q/k/v are views unless
    the fusion interleaved two or more KV groups (Qwen2.5's 2; TinyLlama's tiny has one, Qwen3's is [q; k; v])."""
    for family, copied in (("qwen2.5", True), ("tinyllama", False), ("qwen3", False)):
        spec = get_spec(family, "tiny")
        model = build_model(spec, KV_LEN)
        tensors = hf_export.hf_state_dict(model, spec)
        assert tensors["model.embed_tokens.weight"].data_ptr() == model.tok_embedding.weight.data_ptr()
        fused = model.transformer_blocks[0].atten_func.qkv_projection.weight
        q = tensors["model.layers.0.self_attn.q_proj.weight"]
        assert (q.untyped_storage().data_ptr() != fused.untyped_storage().data_ptr()) is copied, family


def test_a_remap_that_leaves_a_tensor_out_is_refused(tmp_path):
    family = FAMILIES["tinyllama"]
    broken = dataclasses.replace(family, tensor_names=dataclasses.replace(family.tensor_names, final_norm=None))
    spec = dataclasses.replace(get_spec("tinyllama", "tiny"), family=broken)
    with pytest.raises(hf_export.ExportError, match=r"leaves HF tensors \['model.norm.weight'\] unmapped"):
        hf_export.export_hf_checkpoint(spec, tmp_path / "hf")


def test_a_folder_with_another_checkpoint_is_refused(tmp_path):
    (tmp_path / "model-00001-of-00002.safetensors").write_bytes(b"")
    with pytest.raises(FileExistsError, match="model-00001-of-00002.safetensors"):
        hf_export.export_hf_checkpoint(get_spec("tinyllama", "tiny"), tmp_path)
    assert not (tmp_path / "model.safetensors").exists()
