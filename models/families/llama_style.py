"""HF config.json → litert-torch ModelConfig for the Llama-shaped families (Llama, TinyLlama, SmolLM, Qwen).

They differ only in fields config.json already carries (dims, GQA groups, rope base and scaling, tied head)
and in two switches the HF classes hard-code rather than configure: Qwen2's q/k/v biases and Qwen3's
per-head q/k RMS norms. Families pass those as keyword arguments.
"""

import functools

import torch
from litert_torch.generative.examples.llama.llama import _build_llama3_rope_cache
from litert_torch.generative.layers import model_config as cfg
from litert_torch.generative.layers import rotary_position_embedding

from models.spec import decoder_config

_ACTIVATIONS = {"silu": cfg.ActivationType.SILU, "gelu_pytorch_tanh": cfg.ActivationType.GELU_TANH}


def activation(hf: dict) -> cfg.ActivationConfig:
    name = hf.get("hidden_act", "silu")
    if name not in _ACTIVATIONS:
        raise ValueError(f"hidden_act {name!r} is not mapped; mapped: {', '.join(_ACTIVATIONS)}")
    return cfg.ActivationConfig(_ACTIVATIONS[name])


def head_dim(hf: dict) -> int:
    return hf.get("head_dim") or hf["hidden_size"] // hf["num_attention_heads"]


def rope(hf: dict):
    """RoPE builder: the plain one, or Llama 3's frequency-dependent scaling from config.json's rope_scaling."""
    scaling = hf.get("rope_scaling") or {}
    kind = scaling.get("rope_type", scaling.get("type", "default"))
    if kind == "default":
        return rotary_position_embedding.build_rope
    if kind != "llama3":
        raise ValueError(f"rope_scaling type {kind!r} is not mapped; mapped: default, llama3")
    return functools.partial(
        _build_llama3_rope_cache, condense_ratio=1, dtype=torch.float32, device=torch.device("cpu"),
        factor=scaling["factor"], low_freq_factor=scaling["low_freq_factor"],
        high_freq_factor=scaling["high_freq_factor"], max_seq_len=scaling["original_max_position_embeddings"],
    )


def to_config(hf: dict, *, qkv_bias: bool = False, qk_norm: bool = False) -> cfg.ModelConfig:
    norm = cfg.NormalizationConfig(type=cfg.NormalizationType.RMS_NORM, epsilon=hf["rms_norm_eps"])
    block = cfg.TransformerBlockConfig(
        attn_config=cfg.AttentionConfig(
            num_heads=hf["num_attention_heads"],
            head_dim=head_dim(hf),
            num_query_groups=hf["num_key_value_heads"],
            rotary_base=int(hf["rope_theta"]),
            rotary_percentage=1.0,
            qkv_use_bias=qkv_bias or hf.get("attention_bias", False),
            output_proj_use_bias=hf.get("attention_bias", False),
            query_norm_config=norm if qk_norm else cfg.NormalizationConfig(),
            key_norm_config=norm if qk_norm else cfg.NormalizationConfig(),
            # Per-head norms need q, k and v as [.., heads, head_dim] before the split, and the loader then
            # concatenates the q/k/v weights rather than interleaving them per KV group.
            qkv_transpose_before_split=qk_norm,
            qkv_fused_interleaved=not qk_norm,
        ),
        ff_config=cfg.FeedForwardConfig(
            type=cfg.FeedForwardType.GATED,
            activation=activation(hf),
            intermediate_size=hf["intermediate_size"],
            use_bias=hf.get("mlp_bias", False),
        ),
        pre_attention_norm_config=norm,
        post_attention_norm_config=norm,
    )
    return decoder_config(hf, block, norm, build_rope=rope(hf),
                          lm_head_share_weight_with_embedding=hf.get("tie_word_embeddings", False))
