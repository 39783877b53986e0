"""Qwen2.5-0.5B (q/k/v biases) and Qwen3-0.6B (no biases, per-head RMS norm on q and k, head_dim 128 ≠
hidden / heads). Both Llama-shaped with tied heads; the switches HF hard-codes are passed to the mapping."""

import dataclasses
import functools

from litert_torch.generative.utilities import model_builder

from models.families import llama_style
from models.spec import Family

# Qwen/Qwen2.5-0.5B-Instruct config.json
QWEN25_FULL = {
    "model_type": "qwen2", "hidden_size": 896, "num_hidden_layers": 24, "num_attention_heads": 14,
    "num_key_value_heads": 2, "intermediate_size": 4864, "vocab_size": 151936, "max_position_embeddings": 32768,
    "rms_norm_eps": 1e-6, "rope_theta": 1000000.0, "hidden_act": "silu", "tie_word_embeddings": True,
}
# Keeps 14 query heads on 2 KV heads and head_dim 64 (so hidden stays 896); small MLP, 2 layers.
QWEN25_TINY = {"num_hidden_layers": 2, "intermediate_size": 768, "vocab_size": 2048, "max_position_embeddings": 1024}

# Qwen/Qwen3-0.6B config.json
QWEN3_FULL = {
    "model_type": "qwen3", "hidden_size": 1024, "num_hidden_layers": 28, "num_attention_heads": 16,
    "num_key_value_heads": 8, "head_dim": 128, "intermediate_size": 3072, "vocab_size": 151936,
    "max_position_embeddings": 40960, "rms_norm_eps": 1e-6, "rope_theta": 1000000.0, "hidden_act": "silu",
    "attention_bias": False, "tie_word_embeddings": True,
}
# head_dim stays 128 with hidden 256, so q_proj is 256 → 512, as the full model's 1024 → 2048.
QWEN3_TINY = {"hidden_size": 256, "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 2,
              "intermediate_size": 768, "vocab_size": 2048, "max_position_embeddings": 1024}

QWEN3_NAMES = dataclasses.replace(model_builder.TENSOR_NAMES, attn_query_norm="model.layers.{}.self_attn.q_norm",
                                  attn_key_norm="model.layers.{}.self_attn.k_norm")

QWEN25 = Family(
    name="qwen2.5",
    source="Qwen/Qwen2.5-0.5B-Instruct",
    hf_full=QWEN25_FULL,
    hf_tiny=QWEN25_TINY,
    to_config=functools.partial(llama_style.to_config, qkv_bias=True),
    tensor_names=model_builder.TENSOR_NAMES,
)

QWEN3 = Family(
    name="qwen3",
    source="Qwen/Qwen3-0.6B",
    hf_full=QWEN3_FULL,
    hf_tiny=QWEN3_TINY,
    to_config=functools.partial(llama_style.to_config, qk_norm=True),
    tensor_names=QWEN3_NAMES,
)
