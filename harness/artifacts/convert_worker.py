"""Conversion worker, run as a child process by harness.artifacts.cache:
`python -m harness.artifacts.convert_worker JOB_JSON`.

Builds the reauthored model and exports exactly two signatures that share one copy of the weights:
`prefill` (tokens [1, P]) and `decode` (tokens [1, 1]), each with the KV cache as inputs and outputs, in
litert-torch's default layout or, for bundles that LiteRT-LM's engine runs, its transposed one.

A float export also writes, beside its file (OUT.recipes.json), the ai-edge-quantizer recipe that litert-torch
translates each quantization to for this model: harness/artifacts/quantize_worker.py makes the model's other
recipes from the float file with them, without importing torch or litert-torch.

Full-size weights live in a mapped file (models/weights_file.py), and each phase's time and peak memory are
printed and kept beside the output (OUT.phases.json → meta.json) by harness/artifacts/phases.py.
"""

import gc
import json
import sys
from pathlib import Path

import torch
from litert_torch._convert import interface as litert_converter
from litert_torch.generative.layers import kv_cache as kv_utils
from litert_torch.generative.utilities import converter, export_config

from harness.artifacts.phases import PhaseLog, follow_litert_phases
from models.registry import get_spec

_KV_LAYOUTS = {"default": kv_utils.KV_LAYOUT_DEFAULT, "transposed": kv_utils.KV_LAYOUT_TRANSPOSED}


def signatures(model: torch.nn.Module, config, prefill_len: int, kv_len: int,
               kv_layout: str = "default") -> list[tuple[str, torch.nn.Module, dict]]:
    """(name, module, sample kwargs) of the two signatures an artifact holds: what `export` converts, and what
    harness/artifacts/graph.py exports with torch.export to count the authored model's ops."""
    # Prefill returns only the KV cache (no logits): the first token's logits come from the first decode step.
    # The default layout is what ExportConfig() and KVCache.from_model_config use unless told otherwise, so
    # naming it here leaves the default artifacts' bytes as they were.
    layout = _KV_LAYOUTS[kv_layout]
    module = converter.ExportableModule(model, export_config=export_config.ExportConfig(kvcache_layout=layout)).eval()
    kv = kv_utils.KVCache.from_model_config(kv_len, config, kv_layout=layout)
    return [
        ("prefill", module, {
            "tokens": torch.zeros((1, prefill_len), dtype=torch.int),
            "input_pos": torch.arange(prefill_len, dtype=torch.int),
            "kv_cache": kv,
        }),
        ("decode", module, {
            "tokens": torch.zeros((1, 1), dtype=torch.int),
            "input_pos": torch.tensor([0], dtype=torch.int),
            "kv_cache": kv,
        }),
    ]


def export(model: torch.nn.Module, config, quant: str, prefill_len: int, kv_len: int, lightweight: bool,
           kv_layout: str = "default"):
    """The converted model (litert-torch's LiteRTModel), not yet written: the caller frees the torch module first."""
    conv = litert_converter.Converter()
    for name, module, sample in signatures(model, config, prefill_len, kv_len, kv_layout):
        conv.add_signature(name, module, sample_kwargs=sample)
    recipe = converter.get_quant_recipe_from_flag(quant, config)
    return conv.convert(quant_config=recipe, lightweight_conversion=lightweight)


def quant_recipes(config) -> dict[str, list]:
    """{quant: the ai-edge-quantizer recipe (JSON-able) that litert-torch's one-step conversion would use}."""
    from litert_torch.quantize import translate_recipe

    from harness.artifacts.recipe import QUANTS

    return {quant: translate_recipe.translate_to_ai_edge_recipe(
                converter.get_quant_recipe_from_flag(quant, config).generative_recipe)
            for quant in QUANTS if quant != "none"}


def main(job: dict) -> None:
    from models.weights import build_model

    spec = get_spec(job["family"], job["size"], job["checkpoint_dir"], job["seed"])
    recipe = job["recipe"]
    if job.get("recipes_only"):  # for a float artifact cached before recipes were kept beside it
        Path(job["out"]).write_text(json.dumps(quant_recipes(spec.config())))
        return
    out = Path(job["out"])
    with PhaseLog(spec.name) as log:
        follow_litert_phases(log)
        with log.phase("build model"):
            model = build_model(spec, recipe["kv_len"], weights_folder=out.parent)
        with log.phase("convert"):
            converted = export(model, spec.config(), recipe["quant"], recipe["prefill_len"], recipe["kv_len"],
                               job["lightweight"], recipe.get("kv_layout", "default"))
        # Not needed to write the file, so freed; measured, this lowers no peak (README, "Conversion memory"):
        # dense lowering peaks before the write, and lightweight constants are these very tensors.
        del model
        gc.collect()
        with log.phase("write flatbuffer"):
            converted.export(str(out))
        if recipe["quant"] == "none":
            Path(f"{out}.recipes.json").write_text(json.dumps(quant_recipes(spec.config())))
    Path(f"{out}.phases.json").write_text(json.dumps(log.phases))


if __name__ == "__main__":
    main(json.loads(sys.argv[1]))
