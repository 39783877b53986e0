"""Gemma3 1B, text decoder: interleaved sliding-window (local) and global attention layers with their own rope
bases, per-head RMS norms on q and k, norms before and after both attention and MLP, zero-centred RMS norms
(applied as 1 + w), embeddings scaled by sqrt(hidden), head tied to the embedding.

Runs on litert-torch's Gemma3 `Decoder` (per-layer rope and sliding masks, norm after attention before the
residual add); the layer pattern, window and rope bases are read from the config dict.
"""

from litert_torch.generative.examples.gemma3 import decoder
from litert_torch.generative.layers import model_config as cfg

from models.spec import Family, decoder_config

# google/gemma-3-1b-it config.json. No layer_types, no tie_word_embeddings: Gemma3TextConfig derives the first
# from sliding_window_pattern and defaults the second to tied.
HF_FULL = {
    "model_type": "gemma3_text", "hidden_size": 1152, "num_hidden_layers": 26, "num_attention_heads": 4,
    "num_key_value_heads": 1, "head_dim": 256, "intermediate_size": 6912, "vocab_size": 262144,
    "max_position_embeddings": 32768, "rms_norm_eps": 1e-6, "hidden_activation": "gelu_pytorch_tanh",
    "rope_theta": 1000000, "rope_local_base_freq": 10000, "rope_scaling": None, "sliding_window": 512,
    "sliding_window_pattern": 6, "query_pre_attn_scalar": 256, "attn_logit_softcapping": None,
    "final_logit_softcapping": None, "attention_bias": False,
}
# Six layers keep the published pattern (five local, the sixth global). A window of 8 < the 24-token prompt of the
# reauthoring check, so prefill and every decode step cut keys off. MQA, head_dim 256 (= query_pre_attn_scalar) and
# the full model's 6× MLP as published.
HF_TINY = {"hidden_size": 256, "num_hidden_layers": 6, "num_attention_heads": 4, "num_key_value_heads": 1,
           "intermediate_size": 1536, "vocab_size": 2048, "max_position_embeddings": 1024, "sliding_window": 8}

_LOCAL, _GLOBAL = "sliding_attention", "full_attention"  # transformers' layer_types names
_ATTN_TYPE = {_LOCAL: cfg.AttentionType.LOCAL_SLIDING, _GLOBAL: cfg.AttentionType.GLOBAL}
_DEFAULT_PATTERN = 6  # Gemma3TextConfig's default sliding_window_pattern
_DEFAULT_THETA = {_GLOBAL: 1_000_000.0, _LOCAL: 10_000.0}  # Gemma3TextConfig.default_theta


def layer_types(hf: dict) -> list[str]:
    """Per layer "sliding_attention" or "full_attention": `layer_types` when the dict has it (configs written by
    transformers 5), else every `sliding_window_pattern`-th layer global, as Gemma3TextConfig derives it."""
    n = hf["num_hidden_layers"]
    types = hf.get("layer_types")
    if types is None:
        pattern = hf.get("sliding_window_pattern", _DEFAULT_PATTERN)
        types = [_GLOBAL if (i + 1) % pattern == 0 else _LOCAL for i in range(n)]
    if len(types) != n or not set(types) <= set(_ATTN_TYPE):
        raise ValueError(f"layer_types must be {n} of {', '.join(_ATTN_TYPE)}; got {types}")
    return list(types)


def rope_bases(hf: dict) -> dict[str, float]:
    """Rope base per layer type. Published configs give rope_theta (global) and rope_local_base_freq (local);
    transformers 5 folds both into rope_parameters keyed by layer type, which a re-saved config.json carries."""
    params = hf.get("rope_parameters")
    if params is None:
        if hf.get("rope_scaling") is not None:  # e.g. Gemma3 4B's linear ×8 on global layers
            raise ValueError(f"rope_scaling {hf['rope_scaling']} is not supported (litert-torch's rope has none)")
        return {_GLOBAL: hf.get("rope_theta", _DEFAULT_THETA[_GLOBAL]),
                _LOCAL: hf.get("rope_local_base_freq", _DEFAULT_THETA[_LOCAL])}
    if any(p.get("rope_type", "default") != "default" for p in params.values()):
        raise ValueError(f"rope_parameters {params} are not supported (only rope_type 'default')")
    return {t: params[t].get("rope_theta", _DEFAULT_THETA[t]) for t in _ATTN_TYPE}


def _check_supported(hf: dict) -> None:
    """Fields the HF model honours that this mapping cannot express: fail rather than build a different model."""
    # litert-torch scales scores by 1/sqrt(head_dim) with no override; HF by query_pre_attn_scalar^-0.5.
    if hf.get("query_pre_attn_scalar", 256) != hf["head_dim"]:
        raise ValueError(f"query_pre_attn_scalar {hf.get('query_pre_attn_scalar', 256)} must equal head_dim "
                         f"{hf['head_dim']}")
    if hf.get("hidden_activation", "gelu_pytorch_tanh") != "gelu_pytorch_tanh":
        raise ValueError(f"hidden_activation {hf['hidden_activation']!r} is not mapped")
    # The Decoder applies no final softcap; attention softcap is unused by Gemma3 and left unmapped.
    unsupported = ("attn_logit_softcapping", "final_logit_softcapping", "attention_bias", "use_bidirectional_attention")
    if any(hf.get(k) for k in unsupported):
        raise ValueError(f"{', '.join(k for k in unsupported if hf.get(k))} not supported by this mapping")
    if not hf.get("tie_word_embeddings", True):
        raise ValueError("litert-torch's Gemma3 Decoder always ties the head to the embedding")


def to_config(hf: dict) -> cfg.ModelConfig:
    _check_supported(hf)
    norm = cfg.NormalizationConfig(type=cfg.NormalizationType.RMS_NORM, epsilon=hf["rms_norm_eps"],
                                   zero_centered=True)
    ff = cfg.FeedForwardConfig(
        type=cfg.FeedForwardType.GATED,
        activation=cfg.ActivationConfig(cfg.ActivationType.GELU_TANH),
        intermediate_size=hf["intermediate_size"],
        pre_ff_norm_config=norm,
        post_ff_norm_config=norm,
    )
    bases = rope_bases(hf)

    def block(layer_type: str) -> cfg.TransformerBlockConfig:
        attn = cfg.AttentionConfig(
            num_heads=hf["num_attention_heads"],
            head_dim=hf["head_dim"],
            num_query_groups=hf["num_key_value_heads"],
            rotary_base=int(bases[layer_type]),
            rotary_percentage=1.0,
            # Split q/k/v per head before the q/k norms, so they normalise each head (HF: RMSNorm(head_dim)); the
            # loader then has to concatenate [q; k; v] rather than interleave them per KV group.
            qkv_transpose_before_split=True,
            qkv_fused_interleaved=False,
            query_norm_config=norm,
            key_norm_config=norm,
            # Both keep the `sliding_window` most recent positions, the query's own included (key > query − window).
            sliding_window_size=hf["sliding_window"],
            attn_type=_ATTN_TYPE[layer_type],
        )
        return cfg.TransformerBlockConfig(attn_config=attn, ff_config=ff, pre_attention_norm_config=norm,
                                          post_attention_norm_config=norm)

    return decoder_config(hf, [block(t) for t in layer_types(hf)], norm,
                          embedding_scale=hf["hidden_size"] ** 0.5, lm_head_share_weight_with_embedding=True)


FAMILY = Family(
    name="gemma3",
    source="google/gemma-3-1b-it",
    hf_full=HF_FULL,
    hf_tiny=HF_TINY,
    to_config=to_config,
    tensor_names=decoder.TENSOR_NAMES_SEP_QKV,  # adds q_norm/k_norm and pre/post feedforward norms; tied head
    model_class=decoder.Decoder,
)
