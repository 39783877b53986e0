"""Speed and memory of every cell: model × quant × device × lengths × threads × runtime.

Each cell is converted (or taken from the artifact cache), run by the native runner on its device (or, with
--runtime, by LiteRT-LM's engine or llama.cpp's llama-bench on the same weights) and stored the moment it
finishes. The test asserts that the measurement itself is sound (every repetition present,
positive rates, generated tokens in the vocabulary), then the release gate judges the figures: the limits of
gate.toml (or --gate FILE) and, with --baseline, a significant regression against the baseline run.
"""

import pytest

pytestmark = pytest.mark.performance


def test_prefill_and_decode(cell, measure, gate, bench_session):
    measured = measure(cell)
    runner = measured.measurement.report
    samples = runner.samples
    assert len(samples) == bench_session.settings.reps
    assert all(s.prefill_tok_s > 0 and s.decode_tok_s > 0 and s.ttft_ms > 0 for s in samples)
    assert runner.prefill_len == cell.prefill and runner.decode_len == cell.decode
    if cell.runtime == "litert":  # other runtimes' benchmarks report no tokens (LiteRT-LM, llama-bench)
        assert len(runner.tokens) == cell.decode
        assert all(0 <= t < runner.vocab for t in runner.tokens)
    if cell.runtime != "llama.cpp":  # llama-bench reports no memory
        assert measured.result.peak_rss_mb > 0
    gate(measured)
