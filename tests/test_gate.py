"""The release gate on stored results: the significance test, the thresholds file, baseline pairing, the
`gate` command's exit codes and the baseline it records. Synthetic samples; the real suites are in
test_gate_e2e.py."""

import os
import random
import re
import subprocess
import sys

import pytest
import sqlalchemy as sa

from harness.gate.config import GateConfigError, config_from, load_config
from harness.gate.verdicts import accuracy_verdicts, run_verdicts
from harness.measure import stats
from harness.measure.metrics import CellResult
from harness.store.schema import verdicts
from harness.store.store import Store
from tests.conftest import REPO, run_cli
from tests.fake_results import CELLS, add_run


def _noise(center: float, n: int, seed: int, pct: float = 2.0) -> list[float]:
    rng = random.Random(seed)
    return [center * (1 + rng.gauss(0, pct / 100)) for _ in range(n)]


def test_compare_needs_both_a_significant_test_and_a_large_enough_effect():
    base = _noise(100, 10, seed=1)
    slower = stats.compare(base, _noise(80, 10, seed=2), higher_is_better=True)
    assert slower.verdict == "regression" and slower.p_value < 0.01 and slower.delta_pct < -15
    assert stats.compare(base, _noise(120, 10, seed=3), higher_is_better=True).verdict == "improvement"
    assert stats.compare(base, _noise(120, 10, seed=3), higher_is_better=False).verdict == "regression"  # latency
    # 2 % apart with 40 samples a side: the test alone would fire, the effect size (5 %) does not.
    tiny_shift = stats.compare(_noise(100, 40, 4, 0.5), _noise(98, 40, 5, 0.5), higher_is_better=True)
    assert tiny_shift.p_value < 0.001 and tiny_shift.verdict == "unchanged"
    # 30 % apart on two samples a side: no test can reach p < 0.05 there (issue 12: the gate used to call this
    # "unchanged"); separated ranges decide, and overlapping ones are inconclusive, never unchanged.
    two = stats.compare([100, 101], [70, 71], higher_is_better=True)
    assert two.verdict == "regression" and two.fails and "needs >= 4 per run" in two.note
    overlap = stats.compare([100, 101, 60], [70, 71, 102], higher_is_better=True)
    assert overlap.verdict == "inconclusive" and overlap.fails and "smallest p 0.1" in overlap.note
    # Identical samples: nothing differs (U's variance is zero).
    same = stats.compare([5.0] * 5, [5.0] * 5, higher_is_better=True)
    assert same.p_value == 1.0 and same.verdict == "unchanged"


def test_three_reps_see_a_2x_slowdown_and_pass_honest_reruns():
    """Issue 12: with --reps 3 an exact test never goes below p = 0.1, so a halved speed passed as unchanged."""
    halved = stats.compare([100, 101, 102], [50, 51, 50.5], higher_is_better=True)
    assert halved.verdict == "regression" and halved.fails and halved.p_value >= 0.05
    assert stats.compare([100, 101, 102], [10, 11, 12], True).verdict == "regression"  # the 89 %
    honest = [stats.compare(_noise(100, 3, s, 2), _noise(100, 3, s + 1000, 2), True) for s in range(200)]
    assert sum(c.fails for c in honest) <= 2


def test_honest_reruns_never_fire_and_a_real_shift_always_does():
    """Across many seeded reruns with 3 % noise (the CV limit), same-build pairs stay unchanged; a 15 %
    slowdown is caught every time."""
    false_alarms = sum(stats.compare(_noise(100, 5, s, 3), _noise(100, 5, s + 1000, 3), True).significant
                       for s in range(200))
    caught = sum(stats.compare(_noise(100, 5, s, 3), _noise(85, 5, s + 1000, 3), True).verdict == "regression"
                 for s in range(200))
    assert false_alarms <= 2 and caught >= 190


def test_thresholds_file_merges_matching_rules_in_order(tmp_path):
    path = tmp_path / "gate.toml"
    path.write_text("""
[[rule]]
min_decode_tok_s = 10
min_effect_pct = 5
[[rule]]
model = "*-tiny"
device = "host"
min_decode_tok_s = 1000
[[rule]]
quant = "dynamic_int?"
max_peak_rss_mb = 64
""")
    config = load_config(path)
    tiny_int8 = config.settings_for({"model": "tinyllama-tiny", "quant": "dynamic_int8", "device": "host"})
    assert tiny_int8["min_decode_tok_s"] == 1000 and tiny_int8["max_peak_rss_mb"] == 64
    assert tiny_int8["min_effect_pct"] == 5 and tiny_int8["alpha"] == stats.ALPHA
    full = config.settings_for({"model": "tinyllama-full", "quant": "none", "device": "pixel8"})
    assert full["min_decode_tok_s"] == 10 and "max_peak_rss_mb" not in full


@pytest.mark.parametrize(("text", "message"), [
    ("[[rule]]\nmin_decode_toks = 5\n", "bad setting(s) ['min_decode_toks']"),
    ("[[rule]]\nmin_decode_tok_s = 'fast'\n", "bad setting(s) ['min_decode_tok_s']"),
    ("[limits]\nx = 1\n", "holds [[rule]] tables only, not limits"),
    ("rule = 5\n", "holds [[rule]] tables only"),
    ("[[rule]\n", "gate thresholds"),
])
def test_bad_thresholds_file_names_the_problem(tmp_path, text, message):
    path = tmp_path / "gate.toml"
    path.write_text(text)
    with pytest.raises(GateConfigError, match=re.escape(message)):
        load_config(path)


def test_repository_thresholds_file_loads():
    assert config_from(None).source == str(REPO / "gate.toml")


def test_limits_fail_a_cell_with_its_figures(tmp_path):
    store = Store(str(tmp_path / "r.db"))
    run = add_run(store, cells=[("tinyllama-tiny", "none", "host", 180_000.0, 800.0, 600.0)])
    verdict, = run_verdicts(store, run, None, config_from(None))
    assert not verdict.passed
    message = verdict.message()
    assert re.search(r"decode tok/s [\d.]+ tok/s < min 1,000 tok/s", message)
    assert "peak RSS 600 MB > max 512 MB" in message


def test_baseline_regression_fails_and_names_metric_delta_and_p_value(tmp_path):
    store = Store(str(tmp_path / "r.db"))
    base = add_run(store, "base", seed=1)
    slower = add_run(store, "slow", scale=0.7, seed=2)
    verdicts = run_verdicts(store, slower, base, config_from(None))
    assert [v.passed for v in verdicts] == [False, False]
    message = verdicts[0].message()
    assert "decode tok/s" in message and "vs baseline" in message and "-30." in message and "p=0.0079" in message
    assert "regression" in message and "TTFT" in message  # latency got worse too


def test_baseline_pairs_cells_by_workload_and_says_when_threads_differ(tmp_path):
    store = Store(str(tmp_path / "r.db"))
    base = add_run(store, seed=1)
    run = add_run(store, seed=2, threads=1, cells=[*CELLS, ("tinyllama-tiny", "fp16", "host", 1e5, 1e4, 70.0)])
    verdicts = run_verdicts(store, run, base, config_from(None))
    assert [v.baseline_id is not None for v in verdicts] == [True, True, False]
    assert verdicts[0].note == "baseline ran with 2 threads, this run with 1"
    assert verdicts[2].note == "no baseline cell of this workload" and verdicts[2].passed


def test_failed_cell_fails_the_gate(tmp_path):
    store = Store(str(tmp_path / "r.db"))
    run = store.start_run()
    store.add_result(run, CellResult(model="m", quant="none", device="host", status="failed",
                                     error="RunnerError: runner exited with code -11\nstderr tail: ..."))
    verdict, = run_verdicts(store, run, None, config_from(None))
    assert not verdict.passed and "cell failed: RunnerError: runner exited with code -11" in verdict.message()


def test_accuracy_drift_beyond_the_limit_fails(tmp_path):
    store = Store(str(tmp_path / "r.db"))
    base = add_run(store, seed=1, accuracy={"top1_agreement": 0.99})
    close = add_run(store, seed=1, accuracy={"top1_agreement": 0.985})
    far = add_run(store, seed=1, accuracy={"top1_agreement": 0.90})
    config = config_from(None)  # max_accuracy_drift = 0.02
    assert all(v.passed for v in accuracy_verdicts(store, close, base, config))
    verdict = accuracy_verdicts(store, far, base, config)[0]
    assert "accuracy top1_agreement 0.9 vs baseline 0.99 (drift 0.09 > 0.02)" in verdict.message()
    assert all(v.passed for v in accuracy_verdicts(store, base, far, config))  # better than the baseline: fine


def test_gate_command_exit_codes_summary_and_baseline_update(results_url, tmp_path):
    store = Store(results_url)
    base = add_run(store, "nightly", seed=1)
    honest = add_run(store, "nightly", seed=2)
    slow = add_run(store, "nightly", scale=0.7, seed=3)
    summary = tmp_path / "summary.md"

    def gate(*args: str):
        env = os.environ | {"GITHUB_STEP_SUMMARY": str(summary)}
        return subprocess.run([sys.executable, "-m", "harness", "gate", "--results-db", results_url, *args],
                              cwd=REPO, capture_output=True, text=True, env=env, timeout=120)

    out = gate("--run", str(honest), "--baseline", str(base), "--update-baseline", "release")
    assert out.returncode == 0, out.stdout + out.stderr
    assert "PASS: 2 cells" in out.stdout and "baseline 'release' is now run" in out.stdout
    assert store.resolve_run("release") == honest

    out = gate("--run", str(slow), "--baseline", "release", "--update-baseline", "release")
    assert out.returncode == 1
    assert "FAIL: 2 of 2 cells" in out.stdout and "decode tok/s" in out.stderr and "regression" in out.stderr
    assert store.resolve_run("release") == honest  # a failing run does not become the baseline
    markdown = summary.read_text()
    assert "release gate PASS" in markdown and "release gate FAIL" in markdown and "| FAIL |" in markdown

    out = gate("--baseline", "no-such-baseline")
    assert out.returncode == 2 and "baselines: release; labels: nightly" in out.stderr
    assert run_cli("gate", "--results-db", results_url, "--run", str(slow)).returncode == 0  # limits only: fine


def test_a_verdict_is_computed_once_and_read_back(tmp_path):
    """The first question judges and stores; asking again reads the stored verdict (a tampered row shows it is
    read, not recomputed); another baseline is another question, judged and stored in its turn."""
    store = Store(str(tmp_path / "r.db"))
    base = add_run(store, "base", seed=1)
    slower = add_run(store, "slow", scale=0.7, seed=2)
    config = config_from(None)
    first = run_verdicts(store, slower, base, config)
    stored = store.verdicts_frame(slower, base, config.digest)
    assert len(stored) == len(CELLS) and not stored["passed"].any()
    with store.engine.begin() as conn:  # mark the first cell's stored verdict passed, checks and all
        conn.execute(sa.update(verdicts).where(verdicts.c.id == int(stored["id"].iloc[0]))
                     .values(passed=True, checks="[]"))
    again = run_verdicts(store, slower, base, config)
    assert again[0].passed and again[0].checks == () and not again[1].passed
    assert [v.message() for v in again[1:]] == [v.message() for v in first[1:]]
    assert len(store.verdicts_frame(slower, base, config.digest)) == len(CELLS)  # nothing judged twice
    alone = run_verdicts(store, slower, None, config)  # limits alone: a new question
    assert len(store.verdicts_frame(slower, None, config.digest)) == len(CELLS)
    assert all(v.baseline_id is None for v in alone)


def test_gate_command_judges_an_accuracy_only_run_against_its_baseline(tmp_path):
    """Issue 12: the accuracy suite's rows were never read by the gate; an accuracy-only run was 'no results'."""
    db = str(tmp_path / "r.db")
    store = Store(db)
    runs = []
    for top1 in (0.99, 0.95):
        run = store.start_run("accuracy")
        store.add_accuracy(run, "tinyllama-tiny", "dynamic_int8", "drift", {"top1_agreement": top1, "mean_kl": 1e-4},
                           [])
        store.add_accuracy(run, "tinyllama-tiny", "none", "conversion", {"decode_max_diff": 1e-6}, [])
        store.finish_run(run)
        runs.append(run)
    out = run_cli("gate", "--results-db", db, "--run", str(runs[1]), "--baseline", str(runs[0]), timeout=120)
    assert out.returncode == 1, out.stdout + out.stderr
    assert "tinyllama-tiny · dynamic_int8 · drift" in out.stderr
    assert "accuracy top1_agreement 0.95 vs baseline 0.99 (drift 0.04 > 0.02)" in out.stderr
    same = run_cli("gate", "--results-db", db, "--run", str(runs[0]), "--baseline", str(runs[0]), timeout=120)
    assert same.returncode == 0, same.stdout + same.stderr
