"""Statistics of repeated measurements, in one place for the suites, the gate and the reports.

Every figure the harness reports is a median over repetitions (warmup discarded by the runner), with its
spread: MAD and standard deviation, the coefficient of variation, a bootstrap 95 % confidence interval of the
median, the samples that look like outliers, and a verdict on whether the figure is stable enough to trust.
Two runs' samples of a figure are compared with a significance test plus a minimum effect size (compare).
"""

from __future__ import annotations

import dataclasses
import math
import statistics
from collections.abc import Sequence

import numpy as np

# A figure whose samples spread more than this (CV, %) is not a clean measurement.
CV_LIMIT_PCT = 3.0
# Robust z-score (|x - median| / (1.4826 · MAD)) above which a sample is flagged as an outlier.
OUTLIER_Z = 3.5
# Share of outliers above which the whole figure is unstable (one stray sample of ten is tolerated).
OUTLIER_SHARE_LIMIT = 0.15
_MAD_TO_SIGMA = 1.4826  # MAD × this estimates σ for normally distributed samples
BOOTSTRAP_RESAMPLES = 2000


def mad(xs: Sequence[float]) -> float:
    """Median absolute deviation from the median (unscaled)."""
    med = statistics.median(xs)
    return statistics.median(abs(x - med) for x in xs)


def bootstrap_ci(xs: Sequence[float], level: float = 0.95, resamples: int = BOOTSTRAP_RESAMPLES,
                 seed: int = 0) -> tuple[float, float]:
    """Percentile-bootstrap confidence interval of the median (seeded: the same samples give the same CI)."""
    data = np.asarray(xs, dtype=float)
    if len(data) < 2:
        return (float(data[0]), float(data[0]))
    rng = np.random.default_rng(seed)
    medians = np.median(data[rng.integers(0, len(data), size=(resamples, len(data)))], axis=1)
    tail = (1 - level) / 2 * 100
    low, high = np.percentile(medians, [tail, 100 - tail])
    return float(low), float(high)


def outliers(xs: Sequence[float], z: float = OUTLIER_Z) -> list[int]:
    """Indices of samples whose robust z-score exceeds z (none when the MAD is zero)."""
    med, spread = statistics.median(xs), mad(xs) * _MAD_TO_SIGMA
    if spread == 0:
        return []
    return [i for i, x in enumerate(xs) if abs(x - med) / spread > z]


def verdict(n: int, cv_pct: float, n_outliers: int, cv_limit_pct: float = CV_LIMIT_PCT) -> tuple[bool, str]:
    """(stable, reason). Too few samples, a wide spread or many outliers make a figure untrustworthy."""
    if n < 3:
        return False, f"only {n} sample(s): at least 3 are needed to judge the spread"
    if math.isnan(cv_pct) or cv_pct > cv_limit_pct:
        return False, f"CV {cv_pct:.1f} % exceeds {cv_limit_pct:g} %"
    if n_outliers / n > OUTLIER_SHARE_LIMIT:
        return False, f"{n_outliers} of {n} samples are outliers"
    return True, f"CV {cv_pct:.1f} % within {cv_limit_pct:g} %"


def summarize(samples: Sequence[float], cv_limit_pct: float = CV_LIMIT_PCT) -> dict:
    """Median and spread of one metric's samples, with a stability verdict."""
    xs = [float(x) for x in samples]
    if not xs:
        raise ValueError("no samples to summarize")
    mean = statistics.fmean(xs)
    stdev = statistics.stdev(xs) if len(xs) > 1 else 0.0
    cv_pct = 100.0 * stdev / mean if mean else math.nan
    flagged = outliers(xs)
    stable, reason = verdict(len(xs), cv_pct, len(flagged), cv_limit_pct)
    ci_low, ci_high = bootstrap_ci(xs)
    return {
        "n": len(xs),
        "median": statistics.median(xs),
        "mean": mean,
        "stdev": stdev,
        "mad": mad(xs),
        "cv_pct": cv_pct,
        "ci95": [ci_low, ci_high],
        "min": min(xs),
        "max": max(xs),
        "outliers": flagged,
        "stable": stable,
        "verdict": reason,
    }


# The gate and the reports call a change real only when both hold: the samples differ (Mann–Whitney U,
# two-sided, p below ALPHA) and the median moved by at least MIN_EFFECT_PCT of the baseline's median.
# The test alone fires on tiny shifts once there are many samples; the effect size alone fires on noise.
ALPHA = 0.05
MIN_EFFECT_PCT = 5.0


@dataclasses.dataclass(frozen=True)
class Comparison:
    baseline_median: float
    median: float
    delta_pct: float  # signed change of the median, % of the baseline's median
    p_value: float | None  # None: too few samples on a side to test
    significant: bool
    verdict: str  # regression | improvement | unchanged | inconclusive
    # Set when the repetitions cannot reach significance at alpha: what the verdict rests on instead, and the
    # repetitions per side the test would need.
    note: str = ""
    worse: bool = False  # the median moved at least the minimum effect in the worse direction

    @property
    def fails(self) -> bool:
        """Whether a gate fails on it: a regression, or a worse median that too few repetitions leave undecided
        (a release gate cannot pass what it could not check)."""
        return self.verdict == "regression" or (self.verdict == "inconclusive" and self.worse)

    def describe(self, unit: str = "") -> str:
        p = "untested" if self.p_value is None else f"p={self.p_value:.3g}"
        note = f"; {self.note}" if self.note else ""
        return (f"{figure(self.median)}{unit} vs baseline {figure(self.baseline_median)}{unit} "
                f"({self.delta_pct:+.1f} %, {p}): {self.verdict}{note}")


def min_p_value(n1: int, n2: int) -> float:
    """The smallest two-sided p an exact Mann–Whitney U test can give for n1 vs n2 untied samples: the two
    orderings where one side lies wholly above the other, out of C(n1 + n2, n1)."""
    return min(1.0, 2 / math.comb(n1 + n2, n1))


def reps_needed(alpha: float = ALPHA) -> int:
    """Repetitions per side (both runs alike) with which the test can reach p < alpha at all."""
    n = 2
    while min_p_value(n, n) >= alpha:
        n += 1
    return n


def figure(x: float) -> str:
    """A measured value for people: 4 significant digits, thousands separated, never in e-notation."""
    return f"{x:,.0f}" if abs(x) >= 1000 else f"{x:.4g}"


def delta_pct(baseline: float, value: float) -> float:
    return 100.0 * (value - baseline) / baseline if baseline else math.nan


def compare(baseline: Sequence[float], candidate: Sequence[float], higher_is_better: bool,
            min_effect_pct: float = MIN_EFFECT_PCT, alpha: float = ALPHA) -> Comparison:
    """Is `candidate` really different from `baseline`? Samples of one metric, e.g. decode tok/s per rep.

    With a single value on a side (peak memory is one figure per run) there is nothing to test, and the
    verdict rests on the effect size alone: give such metrics a larger min_effect_pct. With too few
    repetitions for the test to reach alpha (3 vs 3 cannot go below p = 0.1), a change of at least the minimum
    effect counts when the two samples' ranges do not overlap, and is `inconclusive` when they do: never
    `unchanged` for a change the test could not have seen."""
    base, cand = [float(x) for x in baseline], [float(x) for x in candidate]
    if not base or not cand:
        raise ValueError("no samples to compare")
    base_med, cand_med = statistics.median(base), statistics.median(cand)
    delta = delta_pct(base_med, cand_med)
    big_enough = not math.isnan(delta) and abs(delta) >= min_effect_pct
    better = (delta > 0) == higher_is_better
    direction = "improvement" if better else "regression"
    worse = big_enough and not better
    if len(base) < 2 or len(cand) < 2:
        return Comparison(base_med, cand_med, delta, None, big_enough, direction if big_enough else "unchanged",
                          worse=worse)
    from scipy.stats import mannwhitneyu  # here: scipy.stats takes a second to import, most callers never test

    # Identical samples on both sides make U's variance zero (p is NaN): nothing differs.
    p = float(mannwhitneyu(base, cand, alternative="two-sided").pvalue)
    p_value = 1.0 if math.isnan(p) else p
    floor = min_p_value(len(base), len(cand))
    if floor < alpha or not big_enough:  # the test can decide, or the medians moved less than the minimum effect
        significant = big_enough and p_value < alpha
        return Comparison(base_med, cand_med, delta, p_value, significant, direction if significant else "unchanged",
                          worse=worse)
    separated = max(cand) < min(base) or min(cand) > max(base)
    power = (f"{len(base)} vs {len(cand)} repetitions cannot reach p < {alpha:g} (smallest p {floor:.2g}); "
             f"the test needs >= {reps_needed(alpha)} per run")
    if separated:
        return Comparison(base_med, cand_med, delta, p_value, True, direction,
                          f"judged on the effect and non-overlapping ranges: {power}", worse)
    return Comparison(base_med, cand_med, delta, p_value, False, "inconclusive",
                      f"{'worse' if worse else 'better'} by the minimum effect, but the ranges overlap and {power}",
                      worse)
