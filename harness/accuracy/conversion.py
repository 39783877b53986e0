"""Conversion check: does the .tflite compute what the PyTorch model it came from computes? Signatures, I/O
names/shapes/dtypes, one copy of the weights, and the runner's workload (prefill, then greedy decode steps) in
both, held to max(CONVERSION_ATOL, NOISE_FACTOR × the model's own fp32 noise floor).
"""

from __future__ import annotations

import numpy as np
import torch
from litert_torch.generative.layers import kv_cache as kv_utils

from harness.accuracy.drift import run_prompts
from harness.accuracy.reauthoring import prompt_tokens
from harness.artifacts.cache import Artifact, ensure_artifact
from harness.artifacts.recipe import Recipe, kv_len_for
from models.spec import ModelSpec
from models.weights import build_model

CONVERSION_PREFILL = 32
CONVERSION_DECODE = 16
CONVERSION_ATOL = 1e-4
# The conversion bound is max(CONVERSION_ATOL, NOISE_FACTOR × the model's own fp32 noise floor): how far the
# PyTorch logits move when every weight is perturbed by half an fp32 ulp. A model whose activations amplify
# rounding (Gemma3's q/k norms: floor 2.9e-4 at full size) moves further than 1e-4 from fp32 rounding alone.
# XNNPACK's diff measured 1.2-2.5x the floor on 12 models (9 tiny, 3 full); a wrong weight or op is orders of
# magnitude above it (tests/test_accuracy.py: another seed's file).
NOISE_FACTOR = 4.0
SIZE_TOLERANCE = 0.05  # file vs one copy of the parameters at 4 bytes each


def expected_signatures(config, prefill_len: int, kv_len: int) -> dict[str, dict[str, dict]]:
    """signature → {"inputs"|"outputs": {name: (shape, dtype)}} that the runner and LiteRT-LM rely on."""
    kv = {}
    for i in range(config.num_layers):
        attn = config.block_config(i).attn_config
        shape = (1, kv_len, attn.num_query_groups, attn.head_dim)
        kv |= {f"kv_cache_k_{i}": (shape, "float32"), f"kv_cache_v_{i}": (shape, "float32")}
    return {
        "prefill": {"inputs": {"tokens": ((1, prefill_len), "int32"), "input_pos": ((prefill_len,), "int32"), **kv},
                    "outputs": dict(kv)},
        "decode": {"inputs": {"tokens": ((1, 1), "int32"), "input_pos": ((1,), "int32"), **kv},
                   "outputs": {"logits": ((1, 1, config.vocab_size), "float32"), **kv}},
    }


def actual_signatures(interpreter) -> dict[str, dict[str, dict]]:
    found = {}
    for name in interpreter.get_signature_list():
        runner = interpreter.get_signature_runner(name)
        found[name] = {side: {k: (tuple(int(d) for d in v["shape"]), v["dtype"].__name__)
                              for k, v in details.items()}
                       for side, details in (("inputs", runner.get_input_details()),
                                             ("outputs", runner.get_output_details()))}
    return found


def signature_mismatches(expected: dict, actual: dict) -> list[str]:
    problems = []
    if set(actual) != set(expected):
        problems.append(f"signatures {sorted(actual)}, expected {sorted(expected)}")
    for sig in set(expected) & set(actual):
        for side in ("inputs", "outputs"):
            want, have = expected[sig][side], actual[sig][side]
            problems += [f"{sig} {side[:-1]} {n!r} missing" for n in sorted(set(want) - set(have))]
            problems += [f"{sig} {side[:-1]} {n!r} unexpected" for n in sorted(set(have) - set(want))]
            problems += [f"{sig} {side[:-1]} {n!r} is {have[n][0]} {have[n][1]}, expected {want[n][0]} {want[n][1]}"
                         for n in sorted(set(want) & set(have)) if have[n] != want[n]]
    return problems


@torch.inference_mode()
def _torch_generate(model, config, prompt: list[int], kv_len: int, steps: int) -> tuple[list, list[int]]:
    """The workload of harness.accuracy.drift.run_prompts in PyTorch: prefill prompt[:-1], then `steps` greedy decode
    steps, the first feeding prompt[-1]."""
    prefill_len = len(prompt) - 1
    kv = kv_utils.KVCache.from_model_config(kv_len, config)
    kv = model(torch.tensor([prompt[:-1]], dtype=torch.int), torch.arange(prefill_len, dtype=torch.int),
               kv)["kv_cache"]
    logits, tokens, token = [], [], prompt[-1]
    for step in range(steps):
        out = model(torch.tensor([[token]], dtype=torch.int), torch.tensor([prefill_len + step], dtype=torch.int), kv)
        logits.append(out["logits"][0, -1].numpy())
        kv, token = out["kv_cache"], int(out["logits"][0, -1].argmax())
        tokens.append(token)
    return logits, tokens


@torch.inference_mode()
def noise_floor(model, config, prompt: list[int], kv_len: int, steps: int, reference: list) -> float:
    """Max |Δlogit| of the same workload after scaling every weight by 1 + 2**-24·N(0, 1) (seeded). The
    model is perturbed in place: call it last."""
    gen = torch.Generator().manual_seed(0)
    for p in {p.data_ptr(): p for p in model.parameters()}.values():  # a tied weight is perturbed once
        p.mul_(1 + 2.0**-24 * torch.randn(p.shape, generator=gen))
    logits, _ = _torch_generate(model, config, prompt, kv_len, steps)
    return max(float(np.abs(a - b).max()) for a, b in zip(logits, reference, strict=True))


def check_conversion(spec: ModelSpec, prefill_len: int = CONVERSION_PREFILL,
                     steps: int = CONVERSION_DECODE) -> dict:
    """The fp32 .tflite the harness ships vs the PyTorch model it was converted from."""
    kv_len = kv_len_for(prefill_len, steps)
    artifact: Artifact = ensure_artifact(spec, Recipe("none", prefill_len, kv_len))
    config = spec.config()
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_path=str(artifact.path))
    actual = actual_signatures(interpreter)
    del interpreter  # run_prompts loads its own; two interpreters need not sit in memory together
    failures = signature_mismatches(expected_signatures(config, prefill_len, kv_len), actual)
    model = build_model(spec, kv_len)
    # A tied head shares the embedding's storage but is a Parameter of its own: count each storage once.
    params = sum(p.numel() for p in {p.data_ptr(): p for p in model.parameters()}.values())
    size_ratio = artifact.meta["bytes"] / (4 * params)
    if not 1 - SIZE_TOLERANCE <= size_ratio <= 1 + SIZE_TOLERANCE:
        failures.append(f"file is {size_ratio:.3f}× one fp32 copy of the {params:,} parameters "
                        f"(expected within {SIZE_TOLERANCE:.0%})")
    prompt = prompt_tokens(config.vocab_size, prefill_len + 1, seed=1)
    ref_logits, ref_tokens = _torch_generate(model, config, prompt, kv_len, steps)
    floor = noise_floor(model, config, prompt, kv_len, steps, ref_logits)
    del model
    atol = max(CONVERSION_ATOL, NOISE_FACTOR * floor)
    figures = {"fp32_noise_floor": floor, "atol": atol}
    if not failures:  # a file with the wrong signatures cannot run the workload
        (logits,), _ = run_prompts(artifact.path, [np.array(prompt, np.int32)], steps)
        tokens = [int(row.argmax()) for row in logits]
        agree = next((i for i, (a, b) in enumerate(zip(tokens, ref_tokens, strict=True)) if a != b), steps)
        diffs = [float(np.abs(a - b).max()) for a, b in zip(logits[:agree + 1], ref_logits[:agree + 1], strict=True)]
        figures |= {"decode_max_diff": max(diffs), "greedy_identical": tokens == ref_tokens,
                    "greedy_agree_until": agree, "tokens": tokens}
        if not figures["decode_max_diff"] <= atol:  # NaN fails too
            failures.append(f"decode_max_diff {figures['decode_max_diff']:.3g} > {atol:.3g} (max of "
                            f"{CONVERSION_ATOL:g} and {NOISE_FACTOR:g}x the fp32 noise floor {floor:.2g})")
        if tokens != ref_tokens:
            failures.append(f"greedy tokens differ from step {agree} of {steps}")
    return {"check": "conversion", "model": spec.name, "artifact": str(artifact.path), "sha256": artifact.sha256,
            "file_bytes": artifact.meta["bytes"], "params": params, "size_ratio": size_ratio,
            "prefill_len": prefill_len, "kv_len": kv_len, "decode_steps": steps, "signatures": sorted(actual),
            **figures, "failures": failures, "passed": not failures}
