"""`pytest suites/ -m accuracy` end to end: cells per model (reauthoring, conversion, drift per recipe), every
figure stored with the run whether it passes or not, the report's accuracy table, and a failing bound."""

import json

import pytest

from harness.store.store import Store
from tests.test_suites_e2e import run_suites

ACCURACY = ["-m", "accuracy", "--models", "tinyllama,smollm2-135m", "--quant", "dynamic_int8"]


def test_accuracy_suite_stores_every_check(tmp_path):
    out = run_suites(tmp_path, *ACCURACY)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    assert "6 passed" in out.stdout and "accuracy" in out.stdout
    frame = Store(str(tmp_path / "results.db")).accuracy_frame()
    cells = sorted(zip(frame["model"], frame["check"], frame["quant"], strict=True))
    assert cells == sorted((m, c, q) for m in ("tinyllama-tiny", "smollm2-135m-tiny")
                           for c, q in (("reauthoring", "none"), ("conversion", "none"), ("drift", "dynamic_int8")))
    assert frame["passed"].all()
    metrics = [json.loads(m) for m in frame["metrics"]]
    assert all(0 <= m["top1_agreement"] <= 1 for m in metrics if "top1_agreement" in m)
    assert all(m["prefill_max_diff"] <= 1e-4 for m in metrics if "prefill_max_diff" in m)
    report = (tmp_path / "report" / "run-1.html").read_text()
    assert 'id="accuracy"' in report and report.count("smollm2-135m-tiny") >= 3


def test_a_broken_drift_bound_fails_its_cell_and_is_stored(tmp_path):
    thresholds = tmp_path / "strict.toml"
    thresholds.write_text("[drift.dynamic_int8]\nmin_top1 = 0.0\nmax_mean_kl = 1e-12\nmax_abs_logit = 10.0\n"
                          "max_size_ratio = 1.0\n")
    out = run_suites(tmp_path, "-m", "accuracy", "--models", "tinyllama", "--quant", "dynamic_int8",
                     "--accuracy-thresholds", str(thresholds), "-k", "drift")
    assert out.returncode == 1, out.stdout[-3000:]
    assert "mean_kl" in out.stdout and "max_mean_kl 1e-12" in out.stdout
    (row,) = Store(str(tmp_path / "results.db")).accuracy_frame().to_dict("records")
    assert not row["passed"] and "max_mean_kl" in row["failures"] and json.loads(row["metrics"])["mean_kl"] > 1e-12


def test_bad_thresholds_file_is_a_usage_error(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text("[drift.dynamic_int9]\nmin_top1 = 0.5\n")
    out = run_suites(tmp_path, "-m", "accuracy", "--accuracy-thresholds", str(bad))
    assert out.returncode == 4 and "--accuracy-thresholds" in out.stderr and "dynamic_int9" in out.stderr


def test_agreement_cells_come_per_device_other_than_the_host():
    from harness.accuracy.agreement import agreeing_steps
    from harness.run.settings import Settings

    cells = Settings(devices=("host", "pixel8"), accuracy_models=("tinyllama",), quants=("none", "dynamic_int8"))
    agreement = [c for c in cells.accuracy_cells() if c.check == "agreement"]
    assert [(c.quant, c.device, c.stored_check) for c in agreement] == [
        ("none", "pixel8", "agreement:pixel8"), ("dynamic_int8", "pixel8", "agreement:pixel8")]
    assert agreement[0].id == "tinyllama-tiny-agreement-none-pixel8"
    assert not [c for c in Settings(devices=("host",)).accuracy_cells() if c.check == "agreement"]
    assert agreeing_steps([1, 2, 3], [1, 2, 4]) == 2 and agreeing_steps([1, 2], [1, 2]) == 2


def _report(tokens: list[int], tops: list[tuple[list[int], list[float]]]):
    from device_runners.runners.report import RunnerReport, TopStep

    return RunnerReport("llm_runner", "0.1.0", "compiled_model", "LiteRT", "2.23.0", "m.tflite", 1, 1, 32,
                        len(tokens), 0, 64, 100, 1, 1, 1, 0, 1.0, None, [], tokens,
                        [TopStep(ids, logits) for ids, logits in tops], 1, None, None, True)


def test_agreement_passes_a_near_tie_within_the_recipes_error_and_fails_the_rest():
    from harness.accuracy.agreement import judge_agreement

    host = _report([5, 7], [([5, 6], [1.00, 0.90]), ([7, 3], [1.000, 0.995])])
    reference = _report([5, 7], [([5, 6], [1.02, 0.91]), ([7, 3], [1.010, 0.990])])  # the recipe's error: 0.02
    # The device flips step 1 where host and device both see a gap of 0.004: a near tie within 0.02.
    tie = judge_agreement(host, _report([5, 3], [([5, 6], [1.001, 0.90]), ([3, 7], [0.999, 0.995])]),
                          reference, "arm")
    assert tie["failures"] == [] and tie["steps_equal"] == 1 and tie["near_ties"][0]["step"] == 1
    assert tie["bound"] == pytest.approx(0.02) and tie["max_logit_diff"] == pytest.approx(0.005)
    # Logits that move by more than the recipe's own error: a kernel computing something else.
    off = judge_agreement(host, _report([5, 7], [([5, 6], [1.30, 0.90]), ([7, 3], [1.0, 0.995])]), reference, "arm")
    assert len(off["failures"]) == 1 and "more than the recipe's own error" in off["failures"][0]
    # A flip to a token the host ranks far below (outside its top k): no near tie.
    far = judge_agreement(host, _report([5, 9], [([5, 6], [1.0, 0.90]), ([9, 7], [1.0, 0.999])]), reference, "arm")
    assert any("no near tie" in f for f in far["failures"])
    # A float artifact has no error of its own: the bound is 1e-4 of the logit scale.
    strict = judge_agreement(host, _report([5, 7], [([5, 6], [1.001, 0.90]), ([7, 3], [1.0, 0.995])]), None, "arm")
    assert strict["bound"] == pytest.approx(1e-4) and strict["failures"]
