"""LiteRT-LM's own benchmark as a runtime (device_runners/runners/litert_lm.py `engine_benchmark`): a tiny
TinyLlama int8 bundle in the engine's child process, its figures in a RunnerReport, its XNNPACK weight cache cold
then warm, its errors named, and a child that outlives its timeout or a Ctrl-C killed."""

from __future__ import annotations

import os
import shutil
import signal
import threading
import time
from pathlib import Path

import pytest

from device_runners.runners import litert_lm
from harness.artifacts import bundle
from harness.artifacts import tokenizer as tok
from harness.artifacts.cache import ensure_artifact
from harness.artifacts.recipe import Recipe, kv_len_for
from models.registry import get_spec
from tests.processes import ctrl_c_raises, gone, running

pytestmark = pytest.mark.conversion

PREFILL, DECODE, THREADS = 32, 16, 1
ENDLESS = 10**6  # repetitions no test waits for: the run ends by its timeout or a Ctrl-C


@pytest.fixture(scope="session")
def litertlm(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny TinyLlama, dynamic int8, KV cache in the transposed layout the engine reads, with its tokenizer."""
    spec = get_spec("tinyllama", "tiny")
    tokenizer = tok.ensure_tokenizer(tok.TokenizerSpec(vocab_size=spec.config().vocab_size))
    artifact = ensure_artifact(spec, Recipe("dynamic_int8", PREFILL, kv_len_for(PREFILL, DECODE),
                                            kv_layout="transposed"))
    return bundle.build_litertlm(artifact, tokenizer, tmp_path_factory.mktemp("bundles") / "m.litertlm")


@pytest.fixture
def own_bundle(litertlm: Path, tmp_path: Path) -> Path:
    """A copy in a folder of its own: its weight cache (written beside it) starts absent, and its path names the
    test's processes."""
    return Path(shutil.copy(litertlm, tmp_path / "own.litertlm"))


def test_benchmark_reports_the_engines_figures_per_repetition(own_bundle):
    cache = litert_lm.weight_cache_path(own_bundle)
    assert not cache.exists()
    report = litert_lm.engine_benchmark(own_bundle, PREFILL, DECODE, THREADS, reps=2, warmup=1, cpus=[0])
    assert (report.runner, report.api, report.runtime) == ("litert_lm.Benchmark", "litert-lm", "LiteRT-LM")
    assert report.runtime_version == report.runner_version and report.runtime_version.count(".") >= 1
    assert (report.prefill_len, report.decode_len, report.threads, report.warmup) == (PREFILL, DECODE, THREADS, 1)
    assert report.kv_len == PREFILL + DECODE  # the token budget the engine was given
    assert report.model == str(own_bundle) and report.model_bytes == own_bundle.stat().st_size
    assert len(report.samples) == 2
    for s in report.samples:
        assert s.prefill_tok_s > 0 and s.decode_tok_s > 0 and s.ttft_ms > 0
        assert s.prefill_s == pytest.approx(PREFILL / s.prefill_tok_s)
        assert s.decode_s == pytest.approx(DECODE / s.decode_tok_s)
    assert report.init_ms > 0 and report.init_warm_ms > 0
    assert report.peak_rss_kb > 0 and 0 < report.vmhwm_kb <= report.peak_rss_kb
    # What the engine does not tell stays empty.
    assert report.tokens == [] and report.top_logits == [] and report.bandwidth is None
    assert (report.vocab, report.num_layers, report.kv_cache_bytes, report.weight_bytes) == (None,) * 4
    assert report.xnnpack is True
    # The first run packed the weights and wrote the cache beside the bundle; a second call reads it.
    assert report.weight_cache == "cold" and cache.is_file()
    assert report.weight_cache_bytes == cache.stat().st_size > 0
    again = litert_lm.engine_benchmark(own_bundle, PREFILL, DECODE, THREADS, reps=1, warmup=0)
    assert again.weight_cache == "warm" and again.init_warm_ms is None and len(again.samples) == 1


def test_the_engines_shortened_decode_is_refused(litertlm):
    """Given fewer tokens than prefill + decode, the engine decodes what fits and says nothing."""
    with pytest.raises(litert_lm.EngineError) as failure:
        litert_lm.engine_benchmark(litertlm, PREFILL, DECODE, THREADS, reps=1, warmup=0,
                                   max_num_tokens=PREFILL + DECODE // 2)
    assert f"decode {DECODE // 2} tokens where {PREFILL}, {DECODE} were asked" in failure.value.reason


def test_a_missing_or_broken_bundle_is_named(tmp_path):
    missing = tmp_path / "missing.litertlm"
    with pytest.raises(litert_lm.EngineError) as failure:
        litert_lm.engine_benchmark(missing, PREFILL, DECODE, THREADS, reps=1)
    assert str(missing) in str(failure.value)
    assert f"NOT_FOUND: open() failed: {missing}: No such file or directory" in failure.value.reason

    broken = tmp_path / "broken.litertlm"
    broken.write_bytes(b"not a bundle")
    with pytest.raises(litert_lm.EngineError) as failure:
        litert_lm.engine_benchmark(broken, PREFILL, DECODE, THREADS, reps=1)
    assert str(broken) in str(failure.value) and "Invalid magic number" in failure.value.reason


def seen_running(marker: str, after_s: float) -> list[list[int]]:
    """The processes whose command line names `marker`, looked up once, `after_s` from now (in a thread)."""
    seen: list[list[int]] = []
    threading.Timer(after_s, lambda: seen.append(running(marker))).start()
    return seen


def test_a_timeout_kills_the_child(own_bundle):
    seen = seen_running(str(own_bundle), after_s=2)
    start = time.monotonic()
    with pytest.raises(litert_lm.EngineTimeout) as failure:
        litert_lm.engine_benchmark(own_bundle, PREFILL, DECODE, THREADS, reps=ENDLESS, timeout=3)
    assert 3 <= time.monotonic() - start < 10
    assert "no result within 3 s; killed" in str(failure.value)
    assert len(seen) == 1 and len(seen[0]) == 1  # the child was running, benchmarking
    assert gone(str(own_bundle), within_s=0)  # killed and reaped before engine_benchmark returned
    assert not Path(f"/proc/{seen[0][0]}").exists()  # no zombie either


def test_ctrl_c_kills_the_child(own_bundle):
    seen = seen_running(str(own_bundle), after_s=2)
    timer = threading.Timer(3, os.kill, (os.getpid(), signal.SIGINT))
    with ctrl_c_raises(), pytest.raises(KeyboardInterrupt):
        timer.start()
        try:
            litert_lm.engine_benchmark(own_bundle, PREFILL, DECODE, THREADS, reps=ENDLESS, timeout=60)
        finally:
            timer.cancel()
    assert len(seen) == 1 and len(seen[0]) == 1
    assert gone(str(own_bundle), within_s=0) and not Path(f"/proc/{seen[0][0]}").exists()
