"""SmolLM2 135M and 360M: Llama-shaped, GQA 3:1, tied head, RoPE base 1e5."""

from litert_torch.generative.utilities import model_builder

from models.families import llama_style
from models.spec import Family

_COMMON = {"model_type": "llama", "vocab_size": 49152, "max_position_embeddings": 8192, "rms_norm_eps": 1e-5,
           "rope_theta": 100000.0, "hidden_act": "silu", "tie_word_embeddings": True}
# HuggingFaceTB/SmolLM2-135M config.json
FULL_135M = {**_COMMON, "hidden_size": 576, "num_hidden_layers": 30, "num_attention_heads": 9,
             "num_key_value_heads": 3, "intermediate_size": 1536}
# HuggingFaceTB/SmolLM2-360M config.json
FULL_360M = {**_COMMON, "hidden_size": 960, "num_hidden_layers": 32, "num_attention_heads": 15,
             "num_key_value_heads": 5, "intermediate_size": 2560}
# Both keep head_dim 64 and 3 query heads per KV head; the 360M tiny is wider and deeper, as its original is.
TINY_135M = {"hidden_size": 384, "num_hidden_layers": 2, "num_attention_heads": 6, "num_key_value_heads": 2,
             "intermediate_size": 1024, "vocab_size": 2048, "max_position_embeddings": 1024}
TINY_360M = {**TINY_135M, "hidden_size": 768, "num_hidden_layers": 3, "num_attention_heads": 12,
             "num_key_value_heads": 4, "intermediate_size": 2048}

SMOLLM2_135M = Family(name="smollm2-135m", source="HuggingFaceTB/SmolLM2-135M", hf_full=FULL_135M,
                      hf_tiny=TINY_135M, to_config=llama_style.to_config, tensor_names=model_builder.TENSOR_NAMES)
SMOLLM2_360M = Family(name="smollm2-360m", source="HuggingFaceTB/SmolLM2-360M", hf_full=FULL_360M,
                      hf_tiny=TINY_360M, to_config=llama_style.to_config, tensor_names=model_builder.TENSOR_NAMES)
