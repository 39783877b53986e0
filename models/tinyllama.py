"""TinyLlama-1.1B: Llama-2 architecture with grouped-query attention (32 query heads, 4 KV heads).

Full config from TinyLlama/TinyLlama-1.1B-Chat-v1.0's config.json (hidden 2048, 22 layers, intermediate 5632,
vocab 32000, rope_theta 1e4, rms_norm_eps 1e-5, untied lm_head).
"""

from litert_torch.generative.layers import model_config as cfg
from litert_torch.generative.utilities import model_builder

from models.spec import Family


def _config(*, dim: int, layers: int, heads: int, kv_heads: int, ffn: int, vocab: int, ctx: int) -> cfg.ModelConfig:
    norm = cfg.NormalizationConfig(type=cfg.NormalizationType.RMS_NORM, epsilon=1e-5)
    block = cfg.TransformerBlockConfig(
        attn_config=cfg.AttentionConfig(
            num_heads=heads, head_dim=dim // heads, num_query_groups=kv_heads, rotary_base=10000, rotary_percentage=1.0
        ),
        ff_config=cfg.FeedForwardConfig(
            type=cfg.FeedForwardType.GATED,
            activation=cfg.ActivationConfig(cfg.ActivationType.SILU),
            intermediate_size=ffn,
        ),
        pre_attention_norm_config=norm,
        post_attention_norm_config=norm,
    )
    return cfg.ModelConfig(
        vocab_size=vocab,
        num_layers=layers,
        max_seq_len=ctx,
        embedding_dim=dim,
        block_configs=block,
        final_norm_config=norm,
        lm_head_share_weight_with_embedding=False,
    )


def full() -> cfg.ModelConfig:
    return _config(dim=2048, layers=22, heads=32, kv_heads=4, ffn=5632, vocab=32000, ctx=2048)


def tiny() -> cfg.ModelConfig:
    # Same head ratio (8 query heads per KV head), gated SiLU MLP and untied head; small enough for CI.
    # ffn 768 rather than 2.75 × 256 = 704: int4 block-128 quantization needs every dim divisible by 128.
    return _config(dim=256, layers=2, heads=8, kv_heads=1, ffn=768, vocab=2048, ctx=1024)


FAMILY = Family(
    name="tinyllama",
    source="TinyLlama/TinyLlama-1.1B-Chat-v1.0",
    full=full,
    tiny=tiny,
    tensor_names=model_builder.TENSOR_NAMES_WITH_SEPARATE_LM_HEAD,
)
