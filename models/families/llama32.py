"""Llama 3.2 1B: Llama with Llama 3's scaled RoPE (long wavelengths divided by 32), GQA 32/8, tied head."""

from litert_torch.generative.utilities import model_builder

from models.families import llama_style
from models.spec import Family

# meta-llama/Llama-3.2-1B config.json
HF_FULL = {
    "model_type": "llama", "hidden_size": 2048, "num_hidden_layers": 16, "num_attention_heads": 32,
    "num_key_value_heads": 8, "head_dim": 64, "intermediate_size": 8192, "vocab_size": 128256,
    "max_position_embeddings": 131072, "rms_norm_eps": 1e-5, "rope_theta": 500000.0, "hidden_act": "silu",
    "rope_scaling": {"rope_type": "llama3", "factor": 32.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
                     "original_max_position_embeddings": 8192},
    "tie_word_embeddings": True,
}
# Same head_dim 64, 4 query heads per KV head, same RoPE scaling.
HF_TINY = {"hidden_size": 256, "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 1,
           "intermediate_size": 1024, "vocab_size": 2048}  # max_position_embeddings: HF wants it > 8192

FAMILY = Family(
    name="llama3.2",
    source="meta-llama/Llama-3.2-1B",
    hf_full=HF_FULL,
    hf_tiny=HF_TINY,
    to_config=llama_style.to_config,
    tensor_names=model_builder.TENSOR_NAMES,
)
