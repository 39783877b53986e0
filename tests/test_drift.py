"""Quantization drift (harness/accuracy/drift.py, thresholds.py): figures on tiny TinyLlama, the thresholds file,
the judge, and the accuracy table of the results store."""

import json
import math

import numpy as np
import pytest
import sqlalchemy as sa
from scipy.special import softmax
from scipy.stats import entropy

from harness.accuracy.drift import check_drift, compare_logits, make_prompts, measure_drift, run_prompts
from harness.accuracy.thresholds import (
    BOUNDS,
    DEFAULT_FILE,
    ThresholdsError,
    judge,
    load_thresholds,
    recipe_thresholds,
)
from harness.artifacts.recipe import QUANTS
from harness.store.store import Store
from models.registry import get_spec

pytestmark = pytest.mark.accuracy

INT4 = "dynamic_int4_block32"


@pytest.fixture(scope="module")
def drift():
    """drift(quant) → figures of tinyllama tiny, measured once per module (prefill 32 / 16 steps: the same
    artifacts as the conversion tests, so a session converts each recipe once)."""
    measured: dict[str, dict] = {}

    def get(quant: str) -> dict:
        if quant not in measured:
            measured[quant] = measure_drift(get_spec("tinyllama", "tiny"), quant)
        return measured[quant]

    return get


# ---------------------------------------------------------------------------------------------- figures


def test_fp32_against_itself_is_identical(drift):
    fig = drift("none")
    assert fig["fp32_sha256"] == fig["quant_sha256"]
    assert (fig["top1_agreement"], fig["mean_kl"], fig["max_abs_logit_diff"], fig["size_ratio"]) == (1, 0, 0, 1)
    assert fig["n_steps"] == 48 and fig["fp32_logit_std"] > 0  # real logits, not an all-zero output


@pytest.mark.parametrize("quant", ["dynamic_int8", INT4])
def test_quantized_drift_is_sane_and_within_the_repositorys_bounds(drift, quant):
    fig = drift(quant)
    assert fig["fp32_sha256"] != fig["quant_sha256"] and fig["n_steps"] == 48
    assert 0.0 <= fig["top1_agreement"] <= 1.0
    assert 0.0 < fig["mean_kl"] <= fig["max_kl"]  # quantization moves the distributions, a little
    assert 0.0 < fig["max_abs_logit_diff"] < 10 * fig["fp32_logit_std"]
    assert fig["size_ratio"] == fig["quant_bytes"] / fig["fp32_bytes"]
    assert judge(fig, recipe_thresholds(quant)) == [], "accuracy.toml's bounds no longer hold on tinyllama tiny"


def test_precision_orders_drift_and_size(drift):
    fp16, int8, int4 = drift("fp16"), drift("dynamic_int8"), drift(INT4)
    assert fp16["mean_kl"] * 100 < int8["mean_kl"] < int4["mean_kl"]
    assert fp16["max_abs_logit_diff"] * 10 < int8["max_abs_logit_diff"] < int4["max_abs_logit_diff"]
    assert fp16["top1_agreement"] >= int8["top1_agreement"] >= int4["top1_agreement"]
    assert int4["size_ratio"] < int8["size_ratio"] < fp16["size_ratio"] < 1.0


def test_teacher_forcing_feeds_the_given_tokens(tiny_artifact):
    path = tiny_artifact("none").path
    prompts = make_prompts(2048, 2, 33, seed=5)
    assert all(np.array_equal(a, b) for a, b in zip(prompts, make_prompts(2048, 2, 33, seed=5), strict=True))
    free, continuations = run_prompts(path, prompts, steps=6)
    assert [c.tolist() for c in continuations] == [[int(s.argmax()) for s in lg[:-1]] for lg in free]  # greedy
    forced, fed = run_prompts(path, prompts, steps=6, forced=continuations)
    assert all(np.array_equal(a, b) for a, b in zip(free, forced, strict=True))
    other = [(c + 1) % 2048 for c in continuations]
    diverted, fed = run_prompts(path, prompts, steps=6, forced=other)
    assert [f.tolist() for f in fed] == [o.tolist() for o in other]
    for a, b in zip(free, diverted, strict=True):
        assert np.array_equal(a[0], b[0])  # step 0 feeds the prompt's last token either way
        assert not np.allclose(a[1:], b[1:])  # later steps see the forced tokens


def test_compare_logits_against_scipy():
    rng = np.random.default_rng(0)
    ref = rng.normal(size=(5, 50))
    test = ref + rng.normal(scale=0.3, size=ref.shape)
    test[0] = ref[0]  # one step untouched: KL 0 there
    fig = compare_logits(ref, test)
    kl = [entropy(softmax(r), softmax(t)) for r, t in zip(ref, test, strict=True)]
    assert fig["mean_kl"] == pytest.approx(np.mean(kl), rel=1e-9)
    assert fig["max_kl"] == pytest.approx(max(kl), rel=1e-9)
    assert fig["max_abs_logit_diff"] == pytest.approx(np.abs(ref - test).max())
    assert fig["top1_agreement"] == np.mean(ref.argmax(1) == test.argmax(1))
    flipped = ref.copy()
    flipped[[0, 1], ref[:2].argmax(1)] = -100  # two of five steps lose their top token
    assert compare_logits(ref, flipped)["top1_agreement"] == pytest.approx(3 / 5)
    with pytest.raises(ValueError, match="one shape"):
        compare_logits(ref, test[:4])


# ---------------------------------------------------------------------------------------------- judge


_BOUNDS = {"min_top1": 0.7, "max_mean_kl": 1e-4, "max_abs_logit": 0.09, "max_size_ratio": 0.35}
_PASSING = {"top1_agreement": 0.9, "mean_kl": 5e-5, "max_abs_logit_diff": 0.05, "size_ratio": 0.28}


def test_judge_passes_figures_within_bounds():
    assert judge(_PASSING, _BOUNDS) == []
    assert judge(_PASSING | {"top1_agreement": 0.7}, _BOUNDS) == []  # a bound is inclusive


@pytest.mark.parametrize(("figure", "value", "expected"), [
    ("top1_agreement", 0.5, "top1_agreement 0.5 < min_top1 0.7"),
    ("mean_kl", 3e-4, "mean_kl 0.0003 > max_mean_kl 0.0001"),
    ("max_abs_logit_diff", 0.2, "max_abs_logit_diff 0.2 > max_abs_logit 0.09"),
    ("size_ratio", 0.51, "size_ratio 0.51 > max_size_ratio 0.35"),
    ("mean_kl", math.nan, "mean_kl is nan, not a number"),
])
def test_judge_flags_each_broken_bound(figure, value, expected):
    failures = judge(_PASSING | {figure: value}, _BOUNDS)
    assert len(failures) == 1 and failures[0].startswith(expected)


def test_judge_flags_a_missing_figure_and_every_broken_bound():
    figures = {k: v for k, v in _PASSING.items() if k != "size_ratio"} | {"top1_agreement": 0.1}
    failures = judge(figures, _BOUNDS)
    assert len(failures) == 2 and "size_ratio is None" in failures[1]
    with pytest.raises(ThresholdsError, match="unknown bound 'min_top_1'"):
        judge(_PASSING, {"min_top_1": 0.5})


# ---------------------------------------------------------------------------------------------- thresholds


def test_repository_file_bounds_every_recipe():
    table = load_thresholds()
    assert set(table) == set(QUANTS) and all(set(b) == set(BOUNDS) for b in table.values())
    assert DEFAULT_FILE.name == "accuracy.toml"
    # Wider types get tighter bounds.
    order = ["fp16", "dynamic_int8", "dynamic_int4_block32"]
    assert [table[q]["max_mean_kl"] for q in order] == sorted(table[q]["max_mean_kl"] for q in order)
    assert [table[q]["min_top1"] for q in order] == sorted((table[q]["min_top1"] for q in order), reverse=True)


def _write(tmp_path, text: str):
    path = tmp_path / "accuracy.toml"
    path.write_text(text)
    return path


_GOOD = "min_top1 = 0.7\nmax_mean_kl = 1e-4\nmax_abs_logit = 0.09\nmax_size_ratio = 0.35\n"


@pytest.mark.parametrize(("text", "message"), [
    ("[drift.dynamic_int9]\n" + _GOOD, r"\[drift.dynamic_int9\]: unknown recipe 'dynamic_int9'; valid: none, fp16"),
    ("[drift.dynamic_int8]\n" + _GOOD.replace("min_top1", "min_top_1"),
     r"unknown bound\(s\) min_top_1; valid: min_top1, max_mean_kl, max_abs_logit, max_size_ratio"),
    ("[drift.dynamic_int8]\n" + _GOOD.replace("max_size_ratio = 0.35\n", ""), r"missing bound\(s\) max_size_ratio"),
    ("[drift.dynamic_int8]\n" + _GOOD.replace("0.09", '"0.09"'), "max_abs_logit must be numbers"),
    ("[gate]\nx = 1\n", r"no \[drift.<recipe>\] tables"),
    ("[drift.dynamic_int8\n", "accuracy thresholds .*accuracy.toml: "),  # TOML syntax error, with the path
])
def test_bad_thresholds_file_names_what_is_wrong(tmp_path, text, message):
    with pytest.raises(ThresholdsError, match=message):
        load_thresholds(_write(tmp_path, text))


def test_missing_file_or_recipe_is_named(tmp_path):
    with pytest.raises(ThresholdsError, match=r"nope.toml: no such file"):
        load_thresholds(tmp_path / "nope.toml")
    path = _write(tmp_path, "[drift.dynamic_int8]\n" + _GOOD + "[other_check]\nx = 1\n")  # other tables ignored
    assert recipe_thresholds("dynamic_int8", path)["max_abs_logit"] == 0.09
    with pytest.raises(ThresholdsError, match=r"no \[drift.fp16\] \(add a table for it\); the file has: dynamic_int8"):
        recipe_thresholds("fp16", path)
    with pytest.raises(ThresholdsError, match=r"no \[drift.int3\] \(unknown recipe; valid: none, fp16"):
        recipe_thresholds("int3", path)
    # A bad file stops the check before it converts anything (this would take seconds otherwise).
    with pytest.raises(ThresholdsError, match="no such file"):
        check_drift(get_spec("tinyllama", "tiny"), "dynamic_int8", tmp_path / "nope.toml")


# ---------------------------------------------------------------------------------------------- store


def test_accuracy_rows_round_trip(results_url):
    store = Store(results_url)
    run, other = store.start_run("acc"), store.start_run("other")
    metrics = {"top1_agreement": 0.9375, "mean_kl": 3.6e-5, "fp32_sha256": "a" * 64, "n_steps": 48}
    failures = ["mean_kl 0.0003 > max_mean_kl 0.0001", "size_ratio 0.51 > max_size_ratio 0.35"]
    first = store.add_accuracy(run, "tinyllama-tiny", "dynamic_int8", "drift", metrics, [])
    second = store.add_accuracy(run, "tinyllama-tiny", "fp16", "drift", metrics, failures)
    store.add_accuracy(other, "tinyllama-tiny", "none", "reauthoring", {"max_abs": 1e-6}, [])
    # Committed as added: a second connection sees the rows.
    frame = Store(results_url).accuracy_frame(run).set_index("id")
    assert list(frame.index) == [first, second] and set(frame["label"]) == {"acc"}
    assert bool(frame.loc[first, "passed"]) and not frame.loc[second, "passed"]
    assert frame.loc[second, "failures"].split("\n") == failures and frame.loc[first, "failures"] == ""
    assert json.loads(frame.loc[first, "metrics"]) == metrics
    assert list(frame["check"]) == ["drift", "drift"] and list(frame["quant"]) == ["dynamic_int8", "fp16"]
    assert len(store.accuracy_frame()) == 3 and list(store.accuracy_frame(other)["check"]) == ["reauthoring"]


def test_older_accuracy_table_gets_its_missing_columns(tmp_path):
    """A database whose accuracy table predates a column is brought up to date in place."""
    path = tmp_path / "old.db"
    engine = sa.create_engine(f"sqlite:///{path}")
    with engine.begin() as conn:
        conn.execute(sa.text("CREATE TABLE accuracy (id INTEGER PRIMARY KEY, run_id INTEGER NOT NULL, "
                             "created_at DATETIME NOT NULL, model VARCHAR(200) NOT NULL, "
                             "quant VARCHAR(64) NOT NULL, \"check\" VARCHAR(64) NOT NULL, passed BOOLEAN NOT NULL)"))
    engine.dispose()
    store = Store(str(path))
    row = store.add_accuracy(store.start_run(), "m", "fp16", "drift", {"mean_kl": 1e-8}, ["x"])
    rec = store.accuracy_frame().set_index("id").loc[row]
    assert json.loads(rec["metrics"]) == {"mean_kl": 1e-8} and rec["failures"] == "x"


def test_model_override_replaces_some_bounds_of_one_model(tmp_path):
    from harness.accuracy.thresholds import DEFAULT_FILE, recipe_thresholds

    base = recipe_thresholds("dynamic_int8")
    gemma3 = recipe_thresholds("dynamic_int8", model="gemma3-tiny")
    assert gemma3["max_mean_kl"] > base["max_mean_kl"] and gemma3["max_size_ratio"] == base["max_size_ratio"]
    assert recipe_thresholds("dynamic_int8", model="tinyllama-tiny") == base
    bad = tmp_path / "bad.toml"
    bad.write_text(DEFAULT_FILE.read_text() + '\n[drift_model."x-tiny".int3]\nmin_top1 = 0.5\n')
    with pytest.raises(ValueError, match="unknown recipe 'int3'"):
        recipe_thresholds("dynamic_int8", bad)
