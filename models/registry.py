"""Name → family table. Adding a family: one file in families/ exporting a Family, one row here."""

from models.families import gemma, gemma3, llama32, phi2, qwen, smollm2, tinyllama
from models.spec import DEFAULT_SEED, SIZES, Family, ModelSpec

FAMILIES: dict[str, Family] = {f.name: f for f in (
    tinyllama.FAMILY,
    llama32.FAMILY,
    qwen.QWEN25,
    qwen.QWEN3,
    smollm2.SMOLLM2_135M,
    smollm2.SMOLLM2_360M,
    phi2.FAMILY,
    gemma.FAMILY,
    gemma3.FAMILY,
)}


def get_family(name: str) -> Family:
    try:
        return FAMILIES[name]
    except KeyError:
        raise ValueError(f"unknown model {name!r}; known models: {', '.join(sorted(FAMILIES))}") from None


def get_spec(name: str, size: str = "tiny", checkpoint_dir=None, seed: int = DEFAULT_SEED) -> ModelSpec:
    if size not in SIZES:
        raise ValueError(f"unknown size {size!r}; sizes: {', '.join(SIZES)}")
    return ModelSpec(get_family(name), size, checkpoint_dir, seed)
