"""TinyLlama-1.1B: Llama-2 architecture with grouped-query attention (32 query heads, 4 KV heads)."""

from litert_torch.generative.utilities import model_builder

from models.families import llama_style
from models.spec import Family

# TinyLlama/TinyLlama-1.1B-Chat-v1.0 config.json
HF_FULL = {
    "model_type": "llama", "hidden_size": 2048, "num_hidden_layers": 22, "num_attention_heads": 32,
    "num_key_value_heads": 4, "intermediate_size": 5632, "vocab_size": 32000, "max_position_embeddings": 2048,
    "rms_norm_eps": 1e-5, "rope_theta": 10000.0, "hidden_act": "silu", "tie_word_embeddings": False,
}
# Same head ratio (8 query heads per KV head), gated SiLU MLP and untied head. ffn 768 rather than
# 2.75 × 256 = 704: int4 block-128 quantization needs every dim divisible by 128.
HF_TINY = {"hidden_size": 256, "num_hidden_layers": 2, "num_attention_heads": 8, "num_key_value_heads": 1,
           "intermediate_size": 768, "vocab_size": 2048, "max_position_embeddings": 1024}

FAMILY = Family(
    name="tinyllama",
    source="TinyLlama/TinyLlama-1.1B-Chat-v1.0",
    hf_full=HF_FULL,
    hf_tiny=HF_TINY,
    to_config=llama_style.to_config,
    tensor_names=model_builder.TENSOR_NAMES_WITH_SEPARATE_LM_HEAD,
)
