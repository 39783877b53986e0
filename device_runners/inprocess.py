"""In-process reference for llm_runner on ai_edge_litert's CompiledModel.

Runs the same workload as the native runner (device_runners/native) and
returns the same JSON fields, so the two can be compared on one file: reset
the KV cache, prefill P prompt tokens, then D greedy decode steps, the first
re-feeding the last prompt token at position P-1. As in the native
compiled_model path, one TensorBuffer per KV tensor is bound as both the
signature's input and its output, so the cache is updated in place.

The buffers are CompiledModel-created (managed) ones:
TensorBuffer.create_from_host_memory makes 1-D buffers, which the runtime
refuses for these fixed-shape inputs ("Cannot auto-resize tensor tokens: no
dims_signature exists"). Tokens are written and logits read through the
buffers' write/read copies, which are small next to a decode step.

    python -m device_runners.inprocess --model M.tflite --threads 2
"""

from __future__ import annotations

import argparse
import importlib.metadata
import json
import resource
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

RUNNER_VERSION = "0.1.0"
_KV_PREFIXES = ("kv_cache_k_", "kv_cache_v_")


def _signature_keys(signatures: dict[str, Any]) -> tuple[str, str]:
    """(prefill, decode) keys: 'prefill', or the one key starting with it."""
    prefill = [k for k in signatures if k == "prefill"] or [
        k for k in signatures if k.startswith("prefill")
    ]
    if len(prefill) != 1 or "decode" not in signatures:
        raise ValueError(f"expected signatures 'prefill' and 'decode', found: {list(signatures)}")
    return prefill[0], "decode"


def _vmhwm_kb() -> int | None:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    except OSError:
        pass
    return None


def run_inprocess(
    model_path: str | Path,
    prefill: int | None = None,
    decode: int = 32,
    threads: int = 4,
    warmup: int = 1,
    reps: int = 5,
    prompt_tokens: list[int] | None = None,
) -> dict[str, Any]:
    """Benchmarks `model_path` in this process; returns llm_runner's JSON fields.

    `prefill`, when given, must equal the prefill signature's length.
    """
    from ai_edge_litert.compiled_model import CompiledModel
    from ai_edge_litert.options import CpuOptions, Options

    path = str(model_path)
    t0 = time.perf_counter()
    model = CompiledModel.from_file(
        path, options=Options(cpu_options=CpuOptions(num_threads=threads))
    )
    prefill_key, decode_key = _signature_keys(model.get_signature_list())

    inputs = {key: model.get_input_tensor_details(key) for key in (prefill_key, decode_key)}
    outputs = {key: model.get_output_tensor_details(key) for key in (prefill_key, decode_key)}
    kv = {
        name: model.create_input_buffer_by_name(prefill_key, name)
        for name in inputs[prefill_key]
        if name.startswith(_KV_PREFIXES)
    }

    def bind(key: str, details: dict[str, Any], create: Callable[[str, str], Any]) -> dict[str, Any]:
        # The KV buffers serve as input and output of both signatures.
        return {name: kv.get(name) or create(key, name) for name in details}

    prefill_in = bind(prefill_key, inputs[prefill_key], model.create_input_buffer_by_name)
    prefill_out = bind(prefill_key, outputs[prefill_key], model.create_output_buffer_by_name)
    decode_in = bind(decode_key, inputs[decode_key], model.create_input_buffer_by_name)
    decode_out = bind(decode_key, outputs[decode_key], model.create_output_buffer_by_name)
    p = int(np.prod(inputs[prefill_key]["tokens"]["shape"]))
    kv_len = int(inputs[prefill_key]["kv_cache_k_0"]["shape"][1])  # [1, kv_len, heads, head_dim]
    vocab = int(np.prod(outputs[decode_key]["logits"]["shape"]))
    prefill_in["input_pos"].write(np.arange(p, dtype=np.int32))
    kv_zeros = {name: np.zeros(inputs[prefill_key][name]["shape"], np.float32) for name in kv}
    init_ms = (time.perf_counter() - t0) * 1000.0

    if prefill is not None and prefill != p:
        raise ValueError(f"--prefill {prefill} does not match the model's prefill length {p}")
    if p + decode > kv_len:
        raise ValueError(f"prefill {p} + decode {decode} exceeds the KV cache length {kv_len}")
    if prompt_tokens is None:
        prompt = np.array([1 + (i * 7919) % (vocab - 1) for i in range(p)], np.int32)
    elif len(prompt_tokens) != p or not all(0 <= t < vocab for t in prompt_tokens):
        raise ValueError(f"--prompt-tokens needs {p} tokens in [0, {vocab})")
    else:
        prompt = np.array(prompt_tokens, np.int32)

    samples = []
    tokens: list[int] = []
    for rep in range(warmup + reps):
        for name, buffer in kv.items():
            buffer.write(kv_zeros[name])
        tokens = []
        start = time.perf_counter()
        prefill_in["tokens"].write(prompt)
        model.run_by_name(prefill_key, prefill_in, prefill_out)
        prefill_s = time.perf_counter() - start

        token, pos = int(prompt[-1]), p - 1
        decode_s = first_step_s = 0.0
        for step in range(decode):
            step_start = time.perf_counter()
            decode_in["tokens"].write(np.array([token], np.int32))
            decode_in["input_pos"].write(np.array([pos], np.int32))
            model.run_by_name(decode_key, decode_in, decode_out)
            token = int(np.argmax(decode_out["logits"].read(vocab, np.float32)))
            step_s = time.perf_counter() - step_start
            if step == 0:
                first_step_s = step_s
            decode_s += step_s
            pos += 1
            tokens.append(token)
        if rep >= warmup:
            samples.append(
                {
                    "prefill_s": prefill_s,
                    "prefill_tok_s": p / prefill_s,
                    "decode_s": decode_s,
                    "decode_tok_s": decode / decode_s,
                    "ttft_ms": (prefill_s + first_step_s) * 1000.0,
                }
            )

    return {
        "runner": "inprocess",
        "runner_version": RUNNER_VERSION,
        "api": "compiled_model",
        "runtime": "LiteRT",
        "runtime_version": importlib.metadata.version("ai-edge-litert"),
        "model": path,
        "model_bytes": Path(path).stat().st_size,
        "threads": threads,
        "prefill_len": p,
        "decode_len": decode,
        "kv_len": kv_len,
        "vocab": vocab,
        "num_layers": sum(name.startswith("kv_cache_k_") for name in kv),
        "warmup": warmup,
        "init_ms": init_ms,
        "samples": samples,
        "tokens": tokens,
        "peak_rss_kb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,
        "vmhwm_kb": _vmhwm_kb(),
        "xnnpack": True,
    }


def _token_list(text: str) -> list[int]:
    try:
        return [int(t) for t in text.split(",")]
    except ValueError as e:
        raise argparse.ArgumentTypeError(f"not a comma-separated token list: {text!r}") from e


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m device_runners.inprocess", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--model", required=True)
    parser.add_argument("--prefill", type=int)
    parser.add_argument("--decode", type=int, default=32)
    parser.add_argument("--threads", type=int, default=4)
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--api", choices=["compiled_model"], default="compiled_model")
    parser.add_argument("--prompt-tokens", type=_token_list)
    args = parser.parse_args(argv)
    if not Path(args.model).is_file():
        print(f"error: cannot load model file '{args.model}': no such file", file=sys.stderr)
        return 3
    try:
        result = run_inprocess(
            args.model, args.prefill, args.decode, args.threads, args.warmup, args.reps, args.prompt_tokens
        )
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
