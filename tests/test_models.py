"""The model registry and weights: names, sizes, seeded random weights, checkpoint loading."""

from pathlib import Path

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


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_skipping_torchs_random_init_leaves_the_seeded_weights_as_they_were(family):
    """build_model skips torch's own random init because init_random overwrites it: built with that init,
    every family's seeded model has the same parameters and buffers."""
    from models.weights import init_random

    spec = get_spec(family, "tiny", seed=5)
    reference = spec.family.model_class(spec.config(), mask_cache_size=64)
    init_random(reference, spec.seed)
    built = build_model(spec, kv_len=64).state_dict()
    expected = reference.eval().state_dict()
    assert built.keys() == expected.keys()
    for name, tensor in expected.items():
        assert torch.equal(built[name], tensor), name


def test_weights_mapped_from_a_file_keep_their_values_and_leave_no_file(tmp_path):
    from models.weights_file import move_weights_to_file

    spec = get_spec("gemma3", "tiny", seed=5)  # tied embedding and lm_head: one copy in the file
    before = {name: t.clone() for name, t in build_model(spec, kv_len=64).state_dict().items()}
    model = build_model(spec, kv_len=64)
    storages = {t.untyped_storage().data_ptr(): t.nbytes for t in model.parameters()}
    moved = move_weights_to_file(model, tmp_path, min_bytes=0)
    assert moved >= sum(storages.values())
    assert len({t.untyped_storage().data_ptr() for t in model.parameters()}) == len(storages)  # still tied
    assert list(tmp_path.iterdir()) == []  # unlinked once mapped
    maps = Path("/proc/self/maps").read_text()
    assert f"{tmp_path}/weights-" in maps and "(deleted)" in maps
    after = model.state_dict()
    for name, tensor in before.items():
        assert torch.equal(after[name], tensor), name
    # Random weights written after mapping (the conversion child's way) are the same weights too.
    mapped = build_model(spec, kv_len=64, weights_folder=tmp_path).state_dict()
    for name, tensor in before.items():
        assert torch.equal(mapped[name], tensor), name


@pytest.mark.parametrize("shape", [(7,), (16,), (33, 5), (1000, 128)])
def test_random_weights_drawn_in_place_equal_randn_times_scale(shape):
    """init_random draws in place (normal_, mul_) what it once drew as randn(...) * 0.02: same weights, same
    artifacts, so the cache key's weights tag stays."""
    expected = torch.randn(shape, generator=torch.Generator().manual_seed(3)) * 0.02
    drawn = torch.empty(shape).normal_(generator=torch.Generator().manual_seed(3)).mul_(0.02)
    assert torch.equal(drawn, expected)


def test_weights_mapped_for_drawing_keep_the_buffers_init_computed(tmp_path):
    """keep_values=False leaves out only the matrices init_random draws next: a large buffer (a mask, a rope
    table) keeps the values the module's __init__ computed."""
    from models.weights_file import move_weights_to_file

    class WithMask(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.proj = torch.nn.Linear(512, 1024)
            self.register_buffer("mask", torch.full((1024, 1024), float("-inf")).triu(1))

    model = WithMask()
    mask = model.mask.clone()
    move_weights_to_file(model, tmp_path, keep_values=False)
    assert torch.equal(model.mask, mask)
    assert not model.proj.weight.any()  # the drawn matrix: zeros until init_random writes it
