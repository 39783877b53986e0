"""Does the model we ship compute what the original computes? Two checks, each returning JSON-able figures.

- reauthoring: the litert-torch model vs the `transformers` model it was reauthored from, same weights (a
  checkpoint read through the family's remap), fp32: logits over the prompt (prefill), logits of every decode
  step that reads the KV cache, and greedy generation.
- conversion: the .tflite vs the PyTorch model it came from: signatures, I/O names/shapes/dtypes, one copy of
  the weights, and the same workload the runner does (prefill, then greedy decode steps) in both.

Random weights give logits with small top-1 margins, so identical greedy tokens are a sharp test: a 1e-3
error flips tokens within a few steps.
"""

from __future__ import annotations

import dataclasses
import tempfile
from pathlib import Path

import numpy as np
import torch
from litert_torch.generative.layers import kv_cache as kv_utils

from harness.artifacts import Artifact, Recipe, ensure_artifact, kv_len_for
from harness.drift import make_prompts, run_prompts
from models import hf_reference
from models.spec import ModelSpec, build_model

PROMPT_LEN = 24  # > Gemma3's tiny sliding window, so the window is exercised
GENERATE = 32  # greedy tokens compared in the reauthoring check
CONVERSION_PREFILL = 32
CONVERSION_DECODE = 16
REFERENCE_SEED = 20241  # not models.spec.DEFAULT_SEED: the weights must come through the remap, not the seed
CONVERSION_ATOL = 1e-4
# The conversion bound is max(CONVERSION_ATOL, NOISE_FACTOR × the model's own fp32 noise floor): how far the
# PyTorch logits move when every weight is perturbed by half an fp32 ulp. A model whose activations amplify
# rounding (Gemma3's q/k norms: floor 2.9e-4 at full size) moves further than 1e-4 from fp32 rounding alone.
# XNNPACK's diff measured 1.2-2.5x the floor on 12 models (9 tiny, 3 full); a wrong weight or op is orders of
# magnitude above it (tests/test_accuracy.py: another seed's file).
NOISE_FACTOR = 4.0
SIZE_TOLERANCE = 0.05  # file vs one copy of the parameters at 4 bytes each


def prompt_tokens(vocab: int, length: int, seed: int = 0) -> list[int]:
    """drift's seeded prompt, as a list, avoiding the special ids at the bottom of the vocabulary."""
    return make_prompts(vocab, 1, length, seed, low=3)[0].tolist()


# --- reauthoring ---------------------------------------------------------------------------------------------

def _ours_generate(model: torch.nn.Module, config, prompt: list[int], steps: int) -> tuple[list, list[int]]:
    """Prefill logits [T, V] and `steps` greedy decode steps with the reauthored model's KV cache."""
    kv = kv_utils.KVCache.from_model_config(len(prompt) + steps, config)
    out = model(torch.tensor([prompt], dtype=torch.int), torch.arange(len(prompt), dtype=torch.int), kv)
    logits, kv = [out["logits"][0]], out["kv_cache"]
    tokens = []
    for step in range(steps):
        tokens.append(int(logits[-1][-1].argmax()))
        pos = torch.tensor([len(prompt) + step], dtype=torch.int)
        out = model(torch.tensor([[tokens[-1]]], dtype=torch.int), pos, kv)
        logits.append(out["logits"][0])
        kv = out["kv_cache"]
    return logits, tokens


def _hf_generate(model: torch.nn.Module, prompt: list[int], steps: int) -> tuple[list, list[int]]:
    out = model(input_ids=torch.tensor([prompt]), use_cache=True)
    logits, cache, tokens = [out.logits[0]], out.cache, []
    for _ in range(steps):
        tokens.append(int(logits[-1][-1].argmax()))
        out = model(input_ids=torch.tensor([[tokens[-1]]]), cache=cache, use_cache=True)
        logits.append(out.logits[0])
        cache = out.cache
    return logits, tokens


def _compare(ours: list, ref: list, ours_tokens: list[int], ref_tokens: list[int]) -> dict:
    """Max |Δlogit| over the prompt, and over the decode steps up to the first token the two disagree on
    (after it they are fed different tokens and their logits are no longer comparable)."""
    agree = next((i for i, (a, b) in enumerate(zip(ours_tokens, ref_tokens, strict=True)) if a != b),
                 len(ref_tokens))
    decode = [float((o - r).abs().max()) for o, r in zip(ours[1:agree + 1], ref[1:agree + 1], strict=True)]
    return {
        "prefill_max_diff": float((ours[0] - ref[0]).abs().max()),
        "decode_max_diff": max(decode, default=0.0),
        "decode_steps_compared": len(decode),
        "greedy_identical": ours_tokens == ref_tokens,
        "greedy_agree_until": agree,
        "tokens": ours_tokens,
        "reference_tokens": ref_tokens,
    }


@torch.inference_mode()
def check_reauthoring(spec: ModelSpec, steps: int = GENERATE) -> dict:
    """Reauthored vs transformers on the same weights. With no spec.checkpoint_dir, a reference with its own
    seeded weights is saved to a temporary checkpoint and loaded back through the remap."""
    with tempfile.TemporaryDirectory(prefix="litert-bench-ref-") as tmp:
        if spec.checkpoint_dir is None:
            ref_dir = hf_reference.save_reference(spec.family, spec.size, REFERENCE_SEED, Path(tmp))
            source = f"transformers reference, seed {REFERENCE_SEED}"
        else:
            ref_dir, source = Path(spec.checkpoint_dir), str(spec.checkpoint_dir)
        ours_spec = dataclasses.replace(spec, checkpoint_dir=ref_dir)
        config = ours_spec.config()
        prompt = prompt_tokens(config.vocab_size, PROMPT_LEN)
        model = build_model(ours_spec, kv_len=PROMPT_LEN + steps)
        ours = _ours_generate(model, config, prompt, steps)
        del model
        ref = _hf_generate(hf_reference.load_reference(ref_dir), prompt, steps)
    figures = _compare(*ours[:1], *ref[:1], ours[1], ref[1])
    atol = spec.family.atol
    # `not x <= atol` rather than `x > atol`: a NaN figure (a model that computes NaN) must fail too.
    failures = [f"{k} {figures[k]:.3g} > {atol:g}" for k in ("prefill_max_diff", "decode_max_diff")
                if not figures[k] <= atol]
    if not figures["greedy_identical"]:
        failures.append(f"greedy tokens differ from step {figures['greedy_agree_until']} of {steps}")
    return {"check": "reauthoring", "model": spec.name, "weights": source, "atol": atol, "prompt_len": len(prompt),
            "decode_steps": steps, **figures, "failures": failures, "passed": not failures}


# --- conversion ----------------------------------------------------------------------------------------------

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
    """The workload of harness.drift.run_prompts in PyTorch: prefill prompt[:-1], then `steps` greedy decode
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
