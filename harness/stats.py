"""Statistics of repeated measurements, in one place for the suites, the gate and the reports."""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence


def summarize(samples: Sequence[float]) -> dict[str, float | int | None]:
    """Median and spread of one metric's samples (warmup already discarded by the runner)."""
    xs = [float(x) for x in samples]
    if not xs:
        raise ValueError("no samples to summarize")
    median = statistics.median(xs)
    mean = statistics.fmean(xs)
    stdev = statistics.stdev(xs) if len(xs) > 1 else 0.0
    return {
        "n": len(xs),
        "median": median,
        "mean": mean,
        "stdev": stdev,
        "cv_pct": 100.0 * stdev / mean if mean else math.nan,
        "min": min(xs),
        "max": max(xs),
    }
