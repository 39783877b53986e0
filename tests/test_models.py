"""The model registry and weights: names, sizes, seeded random weights, checkpoint loading."""

import pytest
import torch

from models.registry import FAMILIES, get_spec
from models.weights import build_model


def test_unknown_model_lists_known_ones():
    with pytest.raises(ValueError, match=r"unknown model 'nope'; known models: .*tinyllama"):
        get_spec("nope")


def test_unknown_size_lists_sizes():
    with pytest.raises(ValueError, match="sizes: tiny, full"):
        get_spec("tinyllama", "huge")


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_tiny_has_the_architecture_of_full(family):
    full, tiny = FAMILIES[family].config("full"), FAMILIES[family].config("tiny")
    fa, ta = full.block_config(0).attn_config, tiny.block_config(0).attn_config
    assert fa.num_heads // fa.num_query_groups == ta.num_heads // ta.num_query_groups  # same GQA ratio
    assert full.block_config(0).ff_config.type == tiny.block_config(0).ff_config.type
    assert full.lm_head_share_weight_with_embedding == tiny.lm_head_share_weight_with_embedding
    assert tiny.num_layers < full.num_layers and tiny.embedding_dim <= full.embedding_dim
    assert tiny.vocab_size < full.vocab_size


def test_full_tinyllama_is_the_published_size():
    model = FAMILIES["tinyllama"].model_class(FAMILIES["tinyllama"].config("full"))
    params = sum(p.numel() for p in model.parameters())
    assert 1.09e9 < params < 1.11e9  # TinyLlama-1.1B: 1,100,048,384 parameters


def test_random_weights_are_reproducible_from_the_seed():
    a = build_model(get_spec("tinyllama", "tiny", seed=1), kv_len=64).state_dict()
    b = build_model(get_spec("tinyllama", "tiny", seed=1), kv_len=64).state_dict()
    c = build_model(get_spec("tinyllama", "tiny", seed=2), kv_len=64).state_dict()
    name = "transformer_blocks.0.atten_func.qkv_projection.weight"
    assert torch.equal(a[name], b[name]) and not torch.equal(a[name], c[name])


def test_fingerprint_changes_with_weights_source(tmp_path):
    (tmp_path / "model.safetensors").write_bytes(b"x")
    seeded = get_spec("tinyllama", "tiny", seed=1).fingerprint()
    assert seeded != get_spec("tinyllama", "tiny", seed=2).fingerprint()
    assert seeded["weights"] != get_spec("tinyllama", "tiny", checkpoint_dir=tmp_path).fingerprint()["weights"]


def test_checkpoint_dir_without_safetensors_is_a_clear_error(tmp_path):
    with pytest.raises(ValueError, match="holds no \\*.safetensors"):
        build_model(get_spec("tinyllama", "tiny", checkpoint_dir=tmp_path), kv_len=64)
