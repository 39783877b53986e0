"""How close a measurement comes to what the hardware allows.

Decode is bound by memory bandwidth: each token reads every weight at its stored precision plus the whole KV
cache (the export's shapes are static, so attention reads the full buffer at any depth). The runner measures
the device's streaming-read bandwidth on the same pinned cores in the same run; the share of it a decode
reaches is the figure to watch. Prefill is bound by compute: its achieved GFLOP/s is reported.
"""

from __future__ import annotations

from device_runners.runners.report import RunnerReport


def roofline(runner: RunnerReport, decode_tok_s: float, prefill_s: float, compute: dict | None) -> dict:
    """Roofline figures from the runner's report, the decode/prefill medians and the artifact's FLOP counts.

    Weights are the runner's count of the model's constant buffers (int4 scales included), else the file size.
    """
    bandwidth = runner.bandwidth.read_gb_s if runner.bandwidth else None
    kv_bytes = runner.kv_cache_bytes
    weight_bytes = runner.weight_bytes or runner.model_bytes
    bytes_per_token = weight_bytes + kv_bytes if kv_bytes is not None else None
    decode_gb_s = bytes_per_token * decode_tok_s / 1e9 if bytes_per_token else None
    prefill_flops = (compute or {}).get("prefill_flops")
    share = decode_gb_s / bandwidth if decode_gb_s and bandwidth else None
    # A model that fits in the caches reads faster than the streaming probe measured: a share over 100 % says
    # nothing about memory, so it is reported as cache-resident instead of as a share.
    cache_resident = share is not None and share > 1.0
    return {
        "bandwidth_gb_s": bandwidth,
        "decode_bytes_per_token": bytes_per_token,
        "decode_gb_s": decode_gb_s,
        "decode_bandwidth_share": None if cache_resident else share,
        "cache_resident": cache_resident,
        "prefill_gflop_s": prefill_flops / prefill_s / 1e9 if prefill_flops and prefill_s else None,
    }
