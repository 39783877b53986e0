"""Benchmark: the native runner against LiteRT's own in-process loop (Python CompiledModel, KV cache bound in
place) on the same file, workload, threads and cores. The ratio is printed and kept with the test's report
properties; it is a figure to watch (target ≥ 1.0), not a pass/fail gate. What the test asserts is that both
computed the same thing: identical greedy tokens.

Not in the default run (it measures every cell a second time, a quarter of a warm `pytest suites/`): run it with
`pytest suites/ -m overhead`."""

import pytest

from harness.artifacts.cache import ensure_artifact
from harness.artifacts.recipe import Recipe
from models.registry import get_spec

pytestmark = [pytest.mark.performance, pytest.mark.overhead]


def test_native_runner_vs_inprocess_litert(cell, bench_session, record_property, capsys):
    bench = bench_session.device_bench(cell.device)  # the device's lock and cooldown, as every cell has
    if bench.device.transport.kind != "host":
        pytest.skip(f"the in-process LiteRT loop needs Python on the device; {cell.device} has none")
    s = bench_session.settings
    spec = get_spec(cell.model, cell.size, s.checkpoint_dir, s.seed)
    artifact = ensure_artifact(spec, Recipe(cell.quant, cell.prefill, cell.kv_len))
    workload = s.workload(cell)
    native = bench.measure(artifact.path, workload)
    inproc = bench.measure_inprocess(artifact.path, workload)

    ratio = native.median("decode_tok_s") / inproc.median("decode_tok_s")
    record_property("decode_ratio_native_over_inprocess", ratio)
    with capsys.disabled():
        print(f"\n{cell.id}: decode tok/s native {native.median('decode_tok_s'):.1f} vs in-process "
              f"{inproc.median('decode_tok_s'):.1f} → ratio {ratio:.3f}; prefill ratio "
              f"{native.median('prefill_tok_s') / inproc.median('prefill_tok_s'):.3f}")
    assert native.report.tokens == inproc.report.tokens
