"""Reauthoring check: does the litert-torch model compute what the `transformers` model it was reauthored from
computes, with the same weights (a checkpoint read through the family's remap), in fp32? Logits over the prompt
(prefill), logits of every decode step that reads the KV cache, and greedy generation.

Random weights give logits with small top-1 margins, so identical greedy tokens are a sharp test: a 1e-3
error flips tokens within a few steps.
"""

from __future__ import annotations

import dataclasses
import tempfile
from pathlib import Path

import torch
from litert_torch.generative.layers import kv_cache as kv_utils

from harness.accuracy.drift import make_prompts
from models import hf_reference
from models.spec import ModelSpec
from models.weights import build_model

PROMPT_LEN = 24  # > Gemma3's tiny sliding window, so the window is exercised
GENERATE = 32  # greedy tokens compared in the reauthoring check
REFERENCE_SEED = 20241  # not models.spec.DEFAULT_SEED: the weights must come through the remap, not the seed


def prompt_tokens(vocab: int, length: int, seed: int = 0) -> list[int]:
    """drift's seeded prompt, as a list, avoiding the special ids at the bottom of the vocabulary."""
    return make_prompts(vocab, 1, length, seed, low=3)[0].tolist()


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
