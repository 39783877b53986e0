"""What an artifact is converted with: the quantization recipes, the KV cache layouts, the lengths. Light (no
torch), so the gate, the exports and the option checks can name recipes without loading the converter."""

from __future__ import annotations

import dataclasses

QUANTS = ("none", "fp16", "weight_only_int8", "dynamic_int8", "dynamic_int4_block32", "dynamic_int4_block128")
# KV cache layouts of the export: "default" is litert-torch's [1, kv_len, heads, head_dim] for K and V (the
# benchmark artifacts); "transposed" is K [1, heads, kv_len, head_dim], V [1, heads, head_dim, kv_len], the one
# LiteRT-LM's engine reads its context length from (bundles: harness/artifacts/bundle.py).
KV_LAYOUTS = ("default", "transposed")
@dataclasses.dataclass(frozen=True)
class Recipe:
    quant: str = "dynamic_int8"
    prefill_len: int = 128
    kv_len: int = 256
    kv_layout: str = "default"

    def __post_init__(self) -> None:
        if self.quant not in QUANTS:
            raise ValueError(f"unknown quantization {self.quant!r}; known: {', '.join(QUANTS)}")
        if self.kv_layout not in KV_LAYOUTS:
            raise ValueError(f"unknown KV cache layout {self.kv_layout!r}; known: {', '.join(KV_LAYOUTS)}")
        if not 0 < self.prefill_len < self.kv_len:
            raise ValueError(f"need 0 < prefill length ({self.prefill_len}) < kv length ({self.kv_len})")


def kv_len_for(prefill_len: int, decode_len: int, multiple: int = 128) -> int:
    """Smallest multiple of `multiple` that holds the prompt and every decoded token."""
    need = prefill_len + decode_len
    return -(-need // multiple) * multiple
