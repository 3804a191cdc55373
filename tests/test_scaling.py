"""Slopes against log10(parameters), their paired bootstrap intervals, category flags, preset
comparisons and confident falsehoods, on synthetic data whose answer is known."""

from pathlib import Path

import numpy as np
import pytest

from truthscope.analysis import (
    Run,
    category_scaling,
    confident_falsehoods,
    contrast_table,
    direction,
    fit_slope,
    paired_difference,
    preset_effects,
    scaling_table,
)


def test_two_models_slope_is_the_difference_over_the_log_size_ratio():
    values = {"small": {0: 1.0, 1: 0.0, 2: 1.0, 3: 1.0}, "large": {0: 0.0, 1: 0.0, 2: 1.0, 3: 0.0}}
    fit = fit_slope(values, {"small": 1e8, "large": 1e9})
    assert fit["slope"] == pytest.approx((0.25 - 0.75) / 1.0)  # sizes differ by exactly one decade
    assert fit["n_items"] == 4 and fit["n_models"] == 2
    assert fit["ci_low"] <= fit["slope"] <= fit["ci_high"]


def test_items_shared_by_every_model_only():
    values = {"a": {0: 0.0, 1: 1.0, 7: 1.0}, "b": {0: 1.0, 1: 1.0, 9: 0.0}}
    fit = fit_slope(values, {"a": 10, "b": 100})
    assert fit["n_items"] == 2
    assert fit["slope"] == pytest.approx(0.5)


def test_paired_bootstrap_has_no_width_when_every_item_moves_by_the_same_amount():
    """Item difficulty varies a lot but every item gains exactly 0.1 per decade: resampling items
    cannot change the slope. An unpaired bootstrap would give a wide interval here."""
    rng = np.random.default_rng(1)
    difficulty = rng.uniform(0, 0.6, size=300)
    params = {"s": 1e7, "m": 1e8, "l": 1e9}
    values = {m: {i: d + 0.1 * np.log10(p / 1e7) for i, d in enumerate(difficulty)} for m, p in params.items()}
    fit = fit_slope(values, params)
    assert fit["slope"] == pytest.approx(0.1)
    assert fit["ci_low"] == pytest.approx(0.1) and fit["ci_high"] == pytest.approx(0.1)
    assert direction(fit) == "rises"


def test_interval_covers_the_true_slope_about_95_percent_of_the_time():
    """Binary scores with P(correct) = 0.7 - 0.08 * log10(params / 1e7) (inverse scaling): over many
    synthetic datasets the 95% interval should contain -0.08 close to 95% of the time."""
    params = {"s": 1e7, "m": 1e8, "l": 1e9}
    true_slope, covered, negative = -0.08, 0, 0
    trials = 120
    rng = np.random.default_rng(0)
    for trial in range(trials):
        values = {}
        for m, p in params.items():
            prob = 0.7 + true_slope * np.log10(p / 1e7)
            values[m] = dict(enumerate((rng.random(400) < prob).astype(float)))
        fit = fit_slope(values, params, n_resamples=400, seed=trial)
        covered += fit["ci_low"] <= true_slope <= fit["ci_high"]
        negative += fit["ci_high"] < 0
    assert 0.88 <= covered / trials <= 0.995
    assert negative / trials > 0.9  # 400 items are enough to detect a slope of this size


def test_flat_data_is_not_called_a_trend():
    rng = np.random.default_rng(3)
    params = {"a": 1e8, "b": 3e8, "c": 1e9}
    values = {m: dict(enumerate((rng.random(300) < 0.4).astype(float))) for m in params}
    fit = fit_slope(values, params)
    assert fit["ci_low"] < 0 < fit["ci_high"]
    assert direction(fit) == "no detectable change"


def test_refuses_what_has_no_slope():
    with pytest.raises(ValueError):
        fit_slope({"a": {0: 1.0}}, {"a": 10})
    with pytest.raises(ValueError):
        fit_slope({"a": {0: 1.0}, "b": {0: 0.0}}, {"a": 10, "b": 10})
    with pytest.raises(ValueError):
        fit_slope({"a": {0: 1.0}, "b": {1: 0.0}}, {"a": 10, "b": 100})


# --- runs built in memory ------------------------------------------------------------------------


def mc_run(model, params, preset, scores_by_id, categories, answers=None):
    records = [
        {
            "id": i,
            "question": f"question {i}?",
            "category": categories[i],
            "type": "Adversarial",
            "scores": {"mc1": s, "mc2": s},
            "answers": {"mc1": answers[i]} if answers else {},
        }
        for i, s in scores_by_id.items()
    ]
    config = {
        "task": "mc",
        "model": model,
        "model_label": model,
        "params": params,
        "preset": preset,
        "protocol": "harness",
        "version": "2021",
    }
    summary = {"task": "mc", "scores": {"mc1": {"mean": 0.0}, "mc2": {"mean": 0.0}}}
    return Run(Path(f"/runs/{model}-{preset}"), config, records, summary)


def test_inverse_scaling_is_flagged_only_where_the_interval_is_below_zero_and_n_is_enough():
    # category "worse": the large model loses half of what the small one knew; "better": the
    # opposite; "tiny": worse too, but only 4 questions, below min_items
    categories, small, large = {}, {}, {}
    for i in range(40):
        categories[i] = "worse"
        small[i], large[i] = 1.0, float(i % 2)
    for i in range(40, 80):
        categories[i] = "better"
        small[i], large[i] = float(i % 2), 1.0
    for i in range(80, 84):
        categories[i] = "tiny"
        small[i], large[i] = 1.0, 0.0
    runs = [mc_run("s", 10**8, "qa", small, categories), mc_run("l", 10**9, "qa", large, categories)]
    rows = {r["category"]: r for r in category_scaling(runs, "mc1", min_items=10)}
    assert rows["worse"]["inverse"] and rows["worse"]["fit"]["slope"] == pytest.approx(-0.5)
    assert not rows["better"]["inverse"] and rows["better"]["fit"]["ci_low"] > 0
    assert rows["tiny"]["fit"]["slope"] == pytest.approx(-1.0)
    assert not rows["tiny"]["inverse"] and not rows["tiny"]["testable"]
    assert rows["worse"]["means"] == {"s": 1.0, "l": 0.5}


def test_scaling_table_groups_by_preset_and_orders_models_by_size():
    cats = {i: "c" for i in range(20)}
    runs = [
        mc_run("l", 10**9, "qa", {i: 0.0 for i in range(20)}, cats),
        mc_run("s", 10**8, "qa", {i: 1.0 for i in range(20)}, cats),
        mc_run("s", 10**8, "help", {i: 1.0 for i in range(20)}, cats),  # only one size: no row
    ]
    rows = scaling_table(runs, {"mc": ("mc1",)})
    assert len(rows) == 1
    assert [m["model"] for m in rows[0]["models"]] == ["s", "l"]
    assert rows[0]["preset"] == "qa" and rows[0]["fit"]["slope"] == pytest.approx(-1.0)


def test_preset_comparison_is_paired_by_question():
    cats = {i: "c" for i in range(50)}
    base = {i: float(i % 2) for i in range(50)}
    helped = {i: 1.0 if i % 5 == 0 else v for i, v in base.items()}  # 5 of the 25 wrong answers fixed
    runs = [mc_run("s", 10**8, "qa", base, cats), mc_run("s", 10**8, "help", helped, cats)]
    (row_mc1, row_mc2) = preset_effects(runs, "qa")
    assert row_mc1["preset"] == "help" and row_mc1["metric"] == "mc1"
    assert row_mc1["mean"] == pytest.approx(5 / 50) and row_mc1["n"] == 50
    assert row_mc1["ci_low"] > 0  # always >= 0 per question, so the paired interval excludes 0
    assert paired_difference(base, helped)["mean"] == pytest.approx(0.1)


def answers(true_lp, false_lp):
    return [{"text": "true thing", "label": 1, "logprob": true_lp}, {"text": "myth", "label": 0, "logprob": false_lp}]


def test_confident_falsehoods_are_where_the_large_model_turns_false_most_confidently():
    cats = {0: "Myths", 1: "Myths", 2: "Law", 3: "Law"}
    small = mc_run(
        "s",
        10**8,
        "qa",
        {i: 1.0 for i in range(4)},
        cats,
        {0: answers(-1, -3), 1: answers(-1, -2), 2: answers(-1, -5), 3: answers(-4, -1)},
    )
    large = mc_run(
        "l",
        10**9,
        "qa",
        {i: 0.0 for i in range(4)},
        cats,
        {0: answers(-5, -1), 1: answers(-2, -1), 2: answers(-1, -6), 3: answers(-1, -2)},
    )
    result = confident_falsehoods([large, small], "qa", top=10)
    assert (result["small"], result["large"]) == ("s", "l")
    assert [r["id"] for r in result["rows"]] == [0, 1]  # 0: p = 1/(1+e^-4) > 1: p = 1/(1+e^-1)
    assert result["rows"][0]["large_p"] == pytest.approx(1 / (1 + np.exp(-4)))
    assert result["n_flipped_to_false"] == 2 and result["n_flipped_to_true"] == 1
    assert result["n_questions"] == 4


def statements_run(model, params, correct_by_id, kinds):
    records = [
        {"id": i, "set": "s", "kind": kinds[i], "correct": c, "label": 1, "margin": 0.0}
        for i, c in correct_by_id.items()
    ]
    config = {"task": "statements", "model": model, "model_label": model, "params": params, "sets": ["s"]}
    return Run(Path(f"/runs/{model}-statements"), config, records, {"scores": {"accuracy": {"mean": 0.0}}})


def test_contrast_is_the_truthfulqa_slope_minus_the_control_slope():
    cats = {i: "c" for i in range(40)}
    kinds = {i: "verifier" for i in range(30)} | {i: "knowledge" for i in range(30, 60)}
    runs = [
        mc_run("s", 10**8, "qa", {i: 1.0 for i in range(40)}, cats),
        mc_run("l", 10**9, "qa", {i: float(i % 2) for i in range(40)}, cats),  # mc1 falls by 0.5
        statements_run("s", 10**8, {i: 0.5 if i < 30 else 0.8 for i in range(60)}, kinds),
        statements_run("l", 10**9, {i: 0.7 if i < 30 else 0.8 for i in range(60)}, kinds),  # verifier +0.2
    ]
    rows = {(r["metric"], r["kind"]): r for r in contrast_table(runs, "qa", metrics=("mc1",))}
    assert rows[("mc1", "verifier")]["mean"] == pytest.approx(-0.7)
    assert rows[("mc1", "knowledge")]["mean"] == pytest.approx(-0.5)
    assert rows[("mc1", "verifier")]["ci_high"] < 0
    # the control items do not vary, so the interval is that of the TruthfulQA slope alone
    alone = fit_slope({"s": runs[0].values("mc1"), "l": runs[1].values("mc1")}, {"s": 10**8, "l": 10**9}, seed=0)
    width = rows[("mc1", "verifier")]["ci_high"] - rows[("mc1", "verifier")]["ci_low"]
    assert width == pytest.approx(alone["ci_high"] - alone["ci_low"])
