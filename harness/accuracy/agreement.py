"""Device agreement: does the device compute what the host computes? The same artifact runs on the device and
on the host with the same runner sources, one repetition of a short greedy decode each; the tokens must be
identical. On `qemu-arm64` it checks the ARM build and LiteRT's ARM kernels; on a phone or a board it tells a
team that the device computes what the host computes.
"""

from __future__ import annotations

from harness.artifacts.cache import Artifact
from harness.measure.bench import Workload
from harness.measure.device_bench import DeviceBench

PREFILL = 32
DECODE = 16


def agreeing_steps(a: list[int], b: list[int]) -> int:
    """How many greedy steps the two token lists share from the start."""
    return next((i for i, (x, y) in enumerate(zip(a, b, strict=False)) if x != y), min(len(a), len(b)))


def check_agreement(model: str, device: DeviceBench, host: DeviceBench, artifact: Artifact,
                    threads: int = 1) -> dict:
    """Greedy tokens of `artifact` (of `model`) on `device` against the host runner's; JSON-able figures and
    failures."""
    # One untimed-looking repetition: only the tokens count here, so no warmup, no probe.
    workload = Workload(prefill_len=artifact.meta["prefill_len"], decode_len=DECODE, threads=threads, warmup=0,
                        reps=1, bandwidth_probe_mb=0)
    there = device.measure(artifact.path, workload).report
    here = host.measure(artifact.path, workload).report
    steps = agreeing_steps(there.tokens, here.tokens)
    identical = there.tokens == here.tokens and len(there.tokens) == DECODE
    failures = [] if identical else [
        f"greedy tokens on {device.device.name} differ from the host's at step {steps}: "
        f"{there.tokens[steps:steps + 4]} vs {here.tokens[steps:steps + 4]}"]
    return {"check": "agreement", "model": model, "device": device.device.name, "greedy_identical": identical,
            "steps_agreeing": steps, "tokens": there.tokens, "host_tokens": here.tokens,
            "device_runner": f"{there.runner} {there.runner_version}", "sha256": artifact.sha256,
            "failures": failures, "passed": not failures}
