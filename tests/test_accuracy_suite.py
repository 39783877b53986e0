"""`pytest suites/ -m accuracy` end to end: cells per model (reauthoring, conversion, drift per recipe), every
figure stored with the run whether it passes or not, the report's accuracy table, and a failing bound."""

import json

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
