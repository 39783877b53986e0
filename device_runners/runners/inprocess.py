"""In-process reference for llm_runner on ai_edge_litert's CompiledModel.

Runs the same workload as the native runner (device_runners/native) and
returns the same JSON fields, so the two can be compared on one file: reset
the KV cache, prefill P prompt tokens, fill the cache to --depth with untimed
prefill chunks, then D greedy decode steps, the first re-feeding the last
filled token (at depth 0, the last prompt token at position P-1). The model
is loaded twice (cold, then warm init) unless --no-warm-init; there is no
bandwidth probe here ("bandwidth" is null). As in the native
compiled_model path, one TensorBuffer per KV tensor is bound as both the
signature's input and its output, so the cache is updated in place.

The buffers are CompiledModel-created (managed) ones:
TensorBuffer.create_from_host_memory makes 1-D buffers, which the runtime
refuses for these fixed-shape inputs ("Cannot auto-resize tensor tokens: no
dims_signature exists"). Tokens are written and logits read through the
buffers' write/read copies, which are small next to a decode step.

    python -m device_runners.runners.inprocess --model M.tflite --threads 2
"""

from __future__ import annotations

import argparse
import gc
import importlib.metadata
import json
import mmap
import resource
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from device_runners.runners.report import RunnerReport, Sample
from harness.common.options import default, first_default

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


def kv_cache_length(k_shape: list[int], v_shape: list[int]) -> int:
    """KV cache length from layer 0's K and V shapes, as the native runner reads it (engine.cc KvCacheLength):
    [1, kv_len, heads, head_dim] for both (litert-torch's default layout), or K [1, heads, kv_len, head_dim]
    with V [1, heads, head_dim, kv_len] (its transposed layout, which LiteRT-LM's engine needs)."""
    if len(k_shape) == 4 and k_shape == v_shape:
        return int(k_shape[1])
    if len(k_shape) == len(v_shape) == 4 and k_shape[1] == v_shape[1] and k_shape[2:] == v_shape[:1:-1]:
        return int(k_shape[2])
    raise ValueError(f"KV cache shapes K {k_shape}, V {v_shape} are neither the default nor the transposed layout")


def _default_token(position: int, vocab: int) -> int:
    """Token at `position` of the default prompt; the --depth fill continues it past the prompt."""
    return 1 + (position * 7919) % (vocab - 1)


def weight_bytes(model_path: str | Path) -> int:
    """Bytes of the constant buffers the model's tensors use (each buffer once: prefill and decode share
    them), read from the flatbuffer through a read-only mapping, so the weights themselves are not read."""
    from ai_edge_litert import schema_py_generated as schema

    with open(model_path, "rb") as f, mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as data:
        model = schema.Model.GetRootAs(data, 0)
        used = {model.Subgraphs(s).Tensors(t).Buffer()
                for s in range(model.SubgraphsLength()) for t in range(model.Subgraphs(s).TensorsLength())}
        total = 0
        for index in used - {0}:  # buffer 0 is the empty sentinel
            buffer = model.Buffers(index)
            total += buffer.Size() or buffer.DataLength()  # Size: a buffer stored past the flatbuffer (> 2 GB)
        return total


def _vmhwm_kb() -> int | None:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    except OSError:
        pass
    return None


class _Loaded:
    """One CompiledModel with its signature buffers bound, the KV buffers in place."""

    def __init__(self, path: str, threads: int) -> None:
        from ai_edge_litert.compiled_model import CompiledModel
        from ai_edge_litert.options import CpuOptions, Options

        model = CompiledModel.from_file(path, options=Options(cpu_options=CpuOptions(num_threads=threads)))
        self.model = model
        self.prefill_key, self.decode_key = _signature_keys(model.get_signature_list())
        keys = (self.prefill_key, self.decode_key)
        inputs = {key: model.get_input_tensor_details(key) for key in keys}
        outputs = {key: model.get_output_tensor_details(key) for key in keys}
        self.kv = {name: model.create_input_buffer_by_name(self.prefill_key, name)
                   for name in inputs[self.prefill_key] if name.startswith(_KV_PREFIXES)}

        def bind(key: str, details: dict[str, Any], create: Callable[[str, str], Any]) -> dict[str, Any]:
            # The KV buffers serve as input and output of both signatures.
            return {name: self.kv.get(name) or create(key, name) for name in details}

        self.prefill_in = bind(self.prefill_key, inputs[self.prefill_key], model.create_input_buffer_by_name)
        self.prefill_out = bind(self.prefill_key, outputs[self.prefill_key], model.create_output_buffer_by_name)
        self.decode_in = bind(self.decode_key, inputs[self.decode_key], model.create_input_buffer_by_name)
        self.decode_out = bind(self.decode_key, outputs[self.decode_key], model.create_output_buffer_by_name)
        self.p = int(np.prod(inputs[self.prefill_key]["tokens"]["shape"]))
        self.kv_len = kv_cache_length(list(inputs[self.prefill_key]["kv_cache_k_0"]["shape"]),
                                      list(inputs[self.prefill_key]["kv_cache_v_0"]["shape"]))
        self.vocab = int(np.prod(outputs[self.decode_key]["logits"]["shape"]))
        self.kv_zeros = {name: np.zeros(inputs[self.prefill_key][name]["shape"], np.float32) for name in self.kv}
        self.kv_cache_bytes = sum(z.nbytes for z in self.kv_zeros.values())
        self.prefill_start = -1
        self._set_prefill_start(0)

    def _set_prefill_start(self, start: int) -> None:
        if start != self.prefill_start:
            self.prefill_in["input_pos"].write(np.arange(start, start + self.p, dtype=np.int32))
            self.prefill_start = start

    def reset_kv(self) -> None:
        for name, buffer in self.kv.items():
            buffer.write(self.kv_zeros[name])
        self._set_prefill_start(0)  # here, untimed, rather than in the timed prefill after a --depth fill

    def prefill(self, tokens: np.ndarray, start: int) -> None:
        self.prefill_in["tokens"].write(tokens)
        self._set_prefill_start(start)
        self.model.run_by_name(self.prefill_key, self.prefill_in, self.prefill_out)

    def decode(self, token: int, position: int) -> int:
        self.decode_in["tokens"].write(np.array([token], np.int32))
        self.decode_in["input_pos"].write(np.array([position], np.int32))
        self.model.run_by_name(self.decode_key, self.decode_in, self.decode_out)
        return int(np.argmax(self.decode_out["logits"].read(self.vocab, np.float32)))

    def fill_to_depth(self, prompt: np.ndarray, depth: int) -> int:
        """Untimed prefill chunks at P, 2P, ..., the last one ending at depth-1 (as llm_runner does);
        returns the token at the position before decode starts."""
        p = self.p

        def token_at(position: int) -> int:
            return int(prompt[position]) if position < p else _default_token(position, self.vocab)

        filled = p
        while filled < depth:
            start = min(filled, depth - p)
            self.prefill(np.array([token_at(start + i) for i in range(p)], np.int32), start)
            filled = start + p
        return token_at(max(p, depth) - 1)


def _timed_load(path: str, threads: int) -> tuple[_Loaded, float]:
    t0 = time.perf_counter()
    loaded = _Loaded(path, threads)
    return loaded, (time.perf_counter() - t0) * 1000.0


def run_inprocess(
    model_path: str | Path,
    prefill: int | None = None,
    decode: int = first_default("decode"),
    threads: int = first_default("threads"),
    warmup: int = default("warmup"),
    reps: int = default("reps"),
    prompt_tokens: list[int] | None = None,
    depth: int = 0,
    warm_init: bool = True,
) -> RunnerReport:
    """Benchmarks `model_path` in this process; returns what llm_runner reports.

    `prefill`, when given, must equal the prefill signature's length; decode starts at max(P, depth).
    """
    path = str(model_path)
    m, init_ms = _timed_load(path, threads)
    p, vocab = m.p, m.vocab
    if prefill is not None and prefill != p:
        raise ValueError(f"--prefill {prefill} does not match the model's prefill length {p}")
    if max(p, depth) + decode > m.kv_len:
        what = f"depth {depth}" if depth > p else f"prefill {p}"
        raise ValueError(f"{what} + decode {decode} exceeds the KV cache length {m.kv_len}")
    if prompt_tokens is None:
        prompt = np.array([_default_token(i, vocab) for i in range(p)], np.int32)
    elif len(prompt_tokens) != p or not all(0 <= t < vocab for t in prompt_tokens):
        raise ValueError(f"--prompt-tokens needs {p} tokens in [0, {vocab})")
    else:
        prompt = np.array(prompt_tokens, np.int32)
    init_warm_ms = None
    if warm_init:
        del m  # the first instance goes before the second is built, or both are resident
        gc.collect()
        m, init_warm_ms = _timed_load(path, threads)

    samples: list[Sample] = []
    tokens: list[int] = []
    for rep in range(warmup + reps):
        m.reset_kv()
        tokens = []
        start = time.perf_counter()
        m.prefill(prompt, 0)
        prefill_s = time.perf_counter() - start

        token = m.fill_to_depth(prompt, depth)
        pos = max(p, depth) - 1
        decode_s = first_step_s = 0.0
        for step in range(decode):
            step_start = time.perf_counter()
            token = m.decode(token, pos)
            step_s = time.perf_counter() - step_start
            if step == 0:
                first_step_s = step_s
            decode_s += step_s
            pos += 1
            tokens.append(token)
        if rep >= warmup:
            samples.append(Sample(prefill_s, p / prefill_s, decode_s, decode / decode_s,
                                  (prefill_s + first_step_s) * 1000.0))
    peak_rss_kb, vmhwm_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, _vmhwm_kb()

    return RunnerReport(
        runner="inprocess", runner_version=RUNNER_VERSION, api="compiled_model", runtime="LiteRT",
        runtime_version=importlib.metadata.version("ai-edge-litert"), model=path,
        model_bytes=Path(path).stat().st_size, threads=threads, prefill_len=p, decode_len=decode, depth=depth,
        kv_len=m.kv_len, vocab=vocab, num_layers=sum(name.startswith("kv_cache_k_") for name in m.kv),
        kv_cache_bytes=m.kv_cache_bytes, weight_bytes=weight_bytes(path), warmup=warmup, init_ms=init_ms,
        init_warm_ms=init_warm_ms, samples=samples, tokens=tokens, top_logits=[], peak_rss_kb=peak_rss_kb,
        vmhwm_kb=vmhwm_kb,
        bandwidth=None,  # no probe in the yardstick; llm_runner measures it
        xnnpack=True,  # with XNNPACK's defaults: no weight cache, fp32 arithmetic
    )


def _token_list(text: str) -> list[int]:
    try:
        return [int(t) for t in text.split(",")]
    except ValueError as e:
        raise argparse.ArgumentTypeError(f"not a comma-separated token list: {text!r}") from e


def _non_negative(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = -1
    if value < 0:
        raise argparse.ArgumentTypeError(f"expects an integer >= 0, got {text!r}")
    return value


def parser() -> argparse.ArgumentParser:
    """The native runner's command line (the flags the harness passes either runner)."""
    parser = argparse.ArgumentParser(
        prog="python -m device_runners.runners.inprocess", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--model", required=True)
    parser.add_argument("--prefill", type=int)
    parser.add_argument("--decode", type=int, default=first_default("decode"))
    parser.add_argument("--threads", type=int, default=first_default("threads"))
    parser.add_argument("--warmup", type=int, default=default("warmup"))
    parser.add_argument("--reps", type=int, default=default("reps"))
    parser.add_argument("--api", choices=["compiled_model"], default="compiled_model")
    parser.add_argument("--prompt-tokens", type=_token_list)
    parser.add_argument("--depth", type=_non_negative, default=0)
    # Accepted so the harness can call either runner with one argv; the probe lives in llm_runner only.
    parser.add_argument("--bandwidth-probe-mb", type=_non_negative, default=default("bandwidth_probe_mb"))
    parser.add_argument("--no-warm-init", dest="warm_init", action="store_false")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    if not Path(args.model).is_file():
        print(f"error: cannot load model file '{args.model}': no such file", file=sys.stderr)
        return 3
    try:
        result = run_inprocess(args.model, args.prefill, args.decode, args.threads, args.warmup, args.reps,
                               args.prompt_tokens, args.depth, args.warm_init)
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(json.dumps(result.to_json()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
