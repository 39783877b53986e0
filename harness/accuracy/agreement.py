"""Device agreement: does the device compute what the host computes? The same artifact runs on the device and on
the host with the same runner sources, prefill 32 and 16 greedy steps, and the runner prints each step's highest
logits (`--top-k`).

Two devices' kernels round differently (x86 and ARM int4/int8 kernels quantize activations their own way), so on
a quantized recipe their logits differ a little and, where two tokens nearly tie, the argmax may flip; after one
flip, free-running greedy paths part for good and say nothing more. So the check is made on one path:
1. the host decodes greedily, which gives the path H and its logits;
2. the device decodes with every step fed H's token (`--follow-tokens`), which gives its own argmax D_i and
   logits at every step of the same path;
3. the host's float artifact (recipe `none`) decodes the same path: the recipe's own error against float.
It passes when (a) the device's logits differ from the host's by no more than the recipe's own error (a floor of
1e-4 of the logit scale for float recipes, whose error is 0) and (b) every step where D_i != H_i is a near tie
within that bound on both sides. A wrong ARM kernel moves logits by far more than quantization does; a rounding
difference moves them by less. Measured on qemu-arm64, tiny models (README: "ARM64 and boards"). Whether the
free-running greedy tokens are identical is stored beside it.
"""

from __future__ import annotations

import dataclasses

from device_runners.runners.report import RunnerReport, TopStep
from harness.artifacts.cache import Artifact
from harness.measure.bench import Workload
from harness.measure.device_bench import DeviceBench

PREFILL = 32
DECODE = 16
TOP_K = 8
FLOAT_FLOOR = 1e-4  # of the logit scale: the bound where the recipe's own error is 0 (none, the float itself)


def agreeing_steps(a: list[int], b: list[int]) -> int:
    """How many greedy steps the two token lists share from the start."""
    return next((i for i, (x, y) in enumerate(zip(a, b, strict=False)) if x != y), min(len(a), len(b)))


def max_logit_difference(a: list[TopStep], b: list[TopStep]) -> float:
    """The largest |Δlogit| over the tokens that both sides list among a step's top k, over every step."""
    return max((abs(x.logits[i] - y.logit(t)) for x, y in zip(a, b, strict=True)
                for i, t in enumerate(x.ids) if t in y.ids), default=0.0)


@dataclasses.dataclass(frozen=True)
class Flip:
    """A step where the device's argmax is not the host's."""

    step: int
    host_token: int
    device_token: int
    host_gap: float | None  # host: logit(host's token) - logit(device's token); None: not in the host's top k
    device_gap: float | None  # device: logit(device's token) - logit(host's token)

    def near_tie(self, bound: float) -> bool:
        return (self.host_gap is not None and self.device_gap is not None
                and self.host_gap <= bound and self.device_gap <= bound)


def flips(host: RunnerReport, device: RunnerReport) -> list[Flip]:
    found = []
    for step, (h, d) in enumerate(zip(host.tokens, device.tokens, strict=True)):
        if h != d:
            hs, ds = host.top_logits[step], device.top_logits[step]
            host_other, device_other = hs.logit(d), ds.logit(h)
            found.append(Flip(step, h, d, None if host_other is None else hs.logits[0] - host_other,
                              None if device_other is None else ds.logits[0] - device_other))
    return found


def judge_agreement(host: RunnerReport, device: RunnerReport, reference: RunnerReport | None,
                    device_name: str) -> dict:
    """The figures and failures of one comparison: `device` ran on `host`'s greedy path (teacher-forced), and
    `reference` is the float artifact on the same path (None: the artifact is the float one)."""
    scale = max(abs(s.logits[0]) for s in host.top_logits)
    recipe_error = 0.0 if reference is None else max_logit_difference(host.top_logits, reference.top_logits)
    bound = max(recipe_error, FLOAT_FLOOR * scale)
    difference = max_logit_difference(host.top_logits, device.top_logits)
    found = flips(host, device)
    failures = []
    if difference > bound:
        failures.append(f"logits on {device_name} differ from the host's by up to {difference:.3g}, more than the "
                        f"recipe's own error against float ({bound:.3g}): a kernel computes something else")
    failures += [f"step {f.step}: {device_name} picks {f.device_token}, the host {f.host_token}, and that is no near "
                 f"tie (gaps host {f.host_gap}, device {f.device_gap}; bound {bound:.3g})"
                 for f in found if not f.near_tie(bound)]
    return {"max_logit_diff": difference, "bound": bound, "recipe_error": recipe_error, "logit_scale": scale,
            "steps_equal": len(host.tokens) - len(found), "near_ties": [dataclasses.asdict(f) for f in found],
            "failures": failures}


def check_agreement(model: str, device: DeviceBench, host: DeviceBench, artifact: Artifact,
                    reference: Artifact | None, threads: int = 1) -> dict:
    """`artifact` (of `model`) on `device` against the host runner, on the host's greedy path; `reference` is
    the same model's float artifact (None when `artifact` is it). JSON-able figures and failures."""
    # Only tokens and logits count here: no warmup, no probe, one repetition, no weight cache (which changes
    # where packed weights come from, not what is computed: tests/test_weight_cache.py).
    workload = Workload(prefill_len=artifact.meta["prefill_len"], decode_len=DECODE, threads=threads, warmup=0,
                        reps=1, bandwidth_probe_mb=0, top_k=TOP_K, weight_cache=False)
    here = host.measure(artifact.path, workload).report
    path = dataclasses.replace(workload, follow_tokens=tuple(here.tokens[:-1]))
    forced = device.measure(artifact.path, path).report
    free = device.measure(artifact.path, workload).report
    float_run = None if reference is None else host.measure(reference.path, path).report
    figures = judge_agreement(here, forced, float_run, device.device.name)
    return {"check": "agreement", "model": model, "device": device.device.name,
            "greedy_identical": free.tokens == here.tokens, "steps_agreeing": agreeing_steps(free.tokens, here.tokens),
            "tokens": free.tokens, "host_tokens": here.tokens, **figures,
            "device_runner": f"{forced.runner} {forced.runner_version}", "sha256": artifact.sha256,
            "passed": not figures["failures"]}
