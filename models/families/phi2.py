"""Phi-2: parallel attention and MLP off one LayerNorm, partial rotary embedding (40 % of each head), biases
everywhere (q/k/v, output, MLP, LM head), plain GELU-tanh MLP, untied head."""

from litert_torch.generative.examples.phi import phi2
from litert_torch.generative.layers import model_config as cfg

from models.spec import Family, decoder_config

# microsoft/phi-2 config.json (the transformers-native version, model_type "phi")
HF_FULL = {
    "model_type": "phi", "hidden_size": 2560, "num_hidden_layers": 32, "num_attention_heads": 32,
    "num_key_value_heads": 32, "intermediate_size": 10240, "vocab_size": 51200, "max_position_embeddings": 2048,
    "layer_norm_eps": 1e-5, "partial_rotary_factor": 0.4, "rope_theta": 10000.0, "rope_scaling": None,
    "hidden_act": "gelu_new", "qk_layernorm": False, "tie_word_embeddings": False,
}
# head_dim stays 80, so the rotary part is 0.4 × 80 = 32 dims in both implementations (a head_dim whose 40 % is
# fractional or odd would be truncated and split differently). Hidden 640 = 8 × 80 is the smallest width that is a
# multiple of 128 with such heads; 4× MLP as the full model.
HF_TINY = {"hidden_size": 640, "num_hidden_layers": 2, "num_attention_heads": 8, "num_key_value_heads": 8,
           "intermediate_size": 2560, "vocab_size": 2048, "max_position_embeddings": 1024}

_TANH_GELU = ("gelu_new", "gelu_pytorch_tanh")  # both the tanh approximation


def to_config(hf: dict) -> cfg.ModelConfig:
    if hf["hidden_act"] not in _TANH_GELU:
        raise ValueError(f"hidden_act {hf['hidden_act']!r} is not mapped; mapped: {', '.join(_TANH_GELU)}")
    if hf.get("rope_scaling") is not None or hf.get("qk_layernorm") or hf.get("tie_word_embeddings"):
        raise ValueError("rope_scaling, qk_layernorm and a tied head are not supported by this mapping")
    head_dim = hf["hidden_size"] // hf["num_attention_heads"]
    rotary_dims = head_dim * hf["partial_rotary_factor"]
    # litert-torch rotates the first int(p × head_dim) dims as two halves; HF does the same only when that is a
    # whole, even number of dims.
    if rotary_dims != int(rotary_dims) or int(rotary_dims) % 2:
        raise ValueError(f"partial_rotary_factor × head_dim = {rotary_dims}: must be a whole, even number of dims")
    norm = cfg.NormalizationConfig(type=cfg.NormalizationType.LAYER_NORM, epsilon=hf["layer_norm_eps"])
    block = cfg.TransformerBlockConfig(
        attn_config=cfg.AttentionConfig(
            num_heads=hf["num_attention_heads"],
            head_dim=head_dim,
            num_query_groups=hf["num_key_value_heads"],
            rotary_base=int(hf["rope_theta"]),
            rotary_percentage=hf["partial_rotary_factor"],
            qkv_use_bias=True,
            output_proj_use_bias=True,
        ),
        ff_config=cfg.FeedForwardConfig(
            type=cfg.FeedForwardType.SEQUENTIAL,
            activation=cfg.ActivationConfig(cfg.ActivationType.GELU_TANH),
            intermediate_size=hf["intermediate_size"],
            use_bias=True,
        ),
        pre_attention_norm_config=norm,
        parallel_residual=True,  # x + attn(ln(x)) + mlp(ln(x)): one norm per layer
    )
    return decoder_config(hf, block, norm, lm_head_use_bias=True, lm_head_share_weight_with_embedding=False)


FAMILY = Family(
    name="phi2",
    source="microsoft/phi-2",
    hf_full=HF_FULL,
    hf_tiny=HF_TINY,
    to_config=to_config,
    tensor_names=phi2.TENSOR_NAMES,  # fc1/fc2, self_attn.dense, model.final_layernorm, lm_head with bias
)
