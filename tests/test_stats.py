"""The statistics module against distributions whose answers are known."""

import numpy as np
import pytest

from harness.measure import stats


def test_known_normal_sample_moments():
    xs = np.random.default_rng(1).normal(100.0, 2.0, size=5000)
    s = stats.summarize(xs)
    assert s["median"] == pytest.approx(100.0, abs=0.15)
    assert s["stdev"] == pytest.approx(2.0, rel=0.05)
    assert s["cv_pct"] == pytest.approx(2.0, rel=0.05)
    assert s["mad"] * 1.4826 == pytest.approx(2.0, rel=0.05)  # scaled MAD estimates σ


def test_small_exact_values():
    s = stats.summarize([1.0, 2.0, 3.0, 4.0, 100.0])
    assert (s["median"], s["mad"], s["min"], s["max"], s["n"]) == (3.0, 1.0, 1.0, 100.0, 5)
    assert s["outliers"] == [4]


def test_bootstrap_ci_covers_the_true_median_about_95_percent_of_the_time():
    rng = np.random.default_rng(7)
    trials = 300
    hits = 0
    for _ in range(trials):
        low, high = stats.bootstrap_ci(rng.normal(50.0, 5.0, size=30), resamples=1000)
        hits += low <= 50.0 <= high
    assert 0.88 <= hits / trials <= 0.99


def test_bootstrap_ci_is_reproducible_and_brackets_the_median():
    xs = [10.0, 11.0, 9.5, 10.2, 10.8, 9.9]
    assert stats.bootstrap_ci(xs) == stats.bootstrap_ci(xs)
    low, high = stats.bootstrap_ci(xs)
    assert low <= stats.summarize(xs)["median"] <= high


def test_tight_samples_are_stable():
    xs = np.random.default_rng(3).normal(200.0, 1.0, size=10)
    s = stats.summarize(xs)
    assert s["stable"] and len(s["outliers"]) <= 1  # a small-n MAD may flag one tail sample


def test_bimodal_samples_from_a_slowdown_are_unstable():
    xs = [200.0, 201.0, 199.5, 200.4, 120.0, 118.0, 121.0, 200.2, 119.0, 200.8]
    s = stats.summarize(xs)
    assert not s["stable"] and "CV" in s["verdict"]


def test_one_stray_sample_in_ten_is_flagged_but_tolerated():
    xs = [100.0, 100.2, 99.9, 100.1, 100.0, 99.8, 100.3, 100.1, 99.9, 104.0]
    s = stats.summarize(xs)
    assert s["outliers"] == [9] and s["stable"]


def test_two_strays_in_ten_make_it_unstable():
    xs = [100.0, 100.2, 99.9, 100.1, 100.0, 99.8, 100.3, 100.1, 104.0, 104.5]
    assert not stats.summarize(xs, cv_limit_pct=10)["stable"]


def test_too_few_samples_are_not_trusted():
    assert not stats.summarize([5.0, 5.0])["stable"]


def test_empty_is_an_error():
    with pytest.raises(ValueError):
        stats.summarize([])


def test_roofline_calls_a_share_over_100_percent_cache_resident():
    """Issue 12: a model that fits in the caches printed a 183 % share of memory bandwidth."""
    import dataclasses

    from device_runners.runners.report import Bandwidth, RunnerReport
    from harness.measure.roofline import roofline

    report = RunnerReport("llm_runner", "0.1.0", "compiled_model", "LiteRT", "2.23.0", "m.tflite", 2_000_000, 2,
                          32, 16, 0, 128, 1000, 2, 65_536, 1_000_000, 1, 10.0, 5.0, [], [], [], 1, 1,
                          Bandwidth(10.0, 9.0, 1 << 30, 2, [10.0]), True)
    fits = roofline(report, decode_tok_s=18_300.0, prefill_s=0.01, compute=None)  # 1.07 MB × 18.3k/s = 19.5 GB/s
    assert fits["cache_resident"] is True and fits["decode_bandwidth_share"] is None
    streams = roofline(report, decode_tok_s=4_000.0, prefill_s=0.01, compute=None)
    assert streams["cache_resident"] is False
    assert streams["decode_bandwidth_share"] == pytest.approx(1_065_536 * 4_000 / 1e9 / 10.0)
    unprobed = roofline(dataclasses.replace(report, bandwidth=None), 18_300.0, 0.01, None)
    assert unprobed["decode_bandwidth_share"] is None and unprobed["cache_resident"] is False
