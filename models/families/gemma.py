"""Gemma 2B (Gemma 1): multi-query attention (8 query heads, 1 KV head) with head_dim 256, GeGLU MLP,
zero-centred RMS norms (weight stored as w, applied as 1 + w), embeddings scaled by sqrt(hidden), tied head."""

from litert_torch.generative.layers import model_config as cfg
from litert_torch.generative.utilities import model_builder

from models.spec import Family, decoder_config

# google/gemma-2b config.json. It carries no tie_word_embeddings: GemmaConfig's default (tied) applies.
HF_FULL = {
    "model_type": "gemma", "hidden_size": 2048, "num_hidden_layers": 18, "num_attention_heads": 8,
    "num_key_value_heads": 1, "head_dim": 256, "intermediate_size": 16384, "vocab_size": 256000,
    "max_position_embeddings": 8192, "rms_norm_eps": 1e-6, "rope_theta": 10000.0, "rope_scaling": None,
    "hidden_act": "gelu", "attention_bias": False,
}
# Same MQA (8 query heads on 1 KV head), the real head_dim 256 (what the attention kernels see; 8 × 256 ≠ hidden 256,
# which the explicit head_dim allows) and the full model's 8× MLP ratio.
HF_TINY = {"hidden_size": 256, "num_hidden_layers": 2, "num_attention_heads": 8, "num_key_value_heads": 1,
           "intermediate_size": 2048, "vocab_size": 2048, "max_position_embeddings": 1024}

# The released configs say "gelu", but Gemma was trained with the tanh approximation; transformers' GemmaConfig
# rewrites "gelu" to "gelu_pytorch_tanh" for that reason, and so do we.
_TANH_GELU = ("gelu", "gelu_pytorch_tanh")


def to_config(hf: dict) -> cfg.ModelConfig:
    if hf["hidden_act"] not in _TANH_GELU:
        raise ValueError(f"hidden_act {hf['hidden_act']!r} is not mapped; mapped: {', '.join(_TANH_GELU)}")
    if hf.get("rope_scaling") is not None or hf.get("attention_bias"):
        raise ValueError("rope_scaling and attention_bias are not supported by this mapping")
    if not hf.get("tie_word_embeddings", True):
        raise ValueError("Gemma's head is tied to the embedding; tie_word_embeddings=False is not mapped")
    norm = cfg.NormalizationConfig(type=cfg.NormalizationType.RMS_NORM, epsilon=hf["rms_norm_eps"],
                                   zero_centered=True)
    block = cfg.TransformerBlockConfig(
        attn_config=cfg.AttentionConfig(
            num_heads=hf["num_attention_heads"],
            head_dim=hf["head_dim"],
            num_query_groups=hf["num_key_value_heads"],
            rotary_base=int(hf["rope_theta"]),
            rotary_percentage=1.0,
        ),
        ff_config=cfg.FeedForwardConfig(
            type=cfg.FeedForwardType.GATED,
            activation=cfg.ActivationConfig(cfg.ActivationType.GELU_TANH),
            intermediate_size=hf["intermediate_size"],
        ),
        pre_attention_norm_config=norm,
        post_attention_norm_config=norm,  # HF's post_attention_layernorm is the norm before the MLP
    )
    return decoder_config(hf, block, norm, embedding_scale=hf["hidden_size"] ** 0.5,
                          lm_head_share_weight_with_embedding=True)


FAMILY = Family(
    name="gemma",
    source="google/gemma-2b",
    hf_full=HF_FULL,
    hf_tiny=HF_TINY,
    to_config=to_config,
    tensor_names=model_builder.TENSOR_NAMES,  # Llama's layout; no lm_head (tied)
)
