"""Slopes within a family, paired differences between models, category flags, the above-chance
contrast, preset comparisons and confident falsehoods, on synthetic data whose answer is known.
Runs are built in memory in the schema-2 log layout; one old-layout run shows old logs still load.
The null checks of every finding are in test_nulls.py."""

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
from truthscope.analysis.scaling import benjamini_hochberg, sign_flip_p


def test_fit_slope_arithmetic_with_two_models_is_the_difference_over_the_log_size_ratio():
    """The arithmetic only: the tables never call it on fewer than three models of one family."""
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


def model_block(model, params, family=None, non_embedding=None):
    return {
        "spec": model,
        "label": model,
        "params": params,
        "non_embedding_params": non_embedding,
        "family": family,
        "dtype": "float32",
        "quantisation": None,
        "description": None,
    }


def mc_config(model, params, preset, family=None, non_embedding=None):
    return {
        "schema": 2,
        "task": "mc",
        "options": {"preset": preset, "protocol": "harness"},
        "model": model_block(model, params, family, non_embedding),
        "data": {"version": "2021", "sha256": {}},
        "sample": {"how": "all", "n": None, "seed": 0},
        "seed": 0,
        "sweep": None,
    }


def mc_run(model, params, preset, scores_by_id, categories, answers=None, family=None, non_embedding=None):
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
    summary = {"task": "mc", "scores": {"mc1": {"mean": 0.0}, "mc2": {"mean": 0.0}}}
    config = mc_config(model, params, preset, family, non_embedding)
    return Run(Path(f"/runs/{model}-{preset}"), config, records, summary)


def statements_run(model, params, correct_by_id, kinds, family=None, non_embedding=None):
    records = [
        {"id": i, "set": "s", "kind": kinds[i], "label": 1, "margin": 0.0, "scores": {"accuracy": c}}
        for i, c in correct_by_id.items()
    ]
    config = {
        "schema": 2,
        "task": "statements",
        "options": {"sets": ["s"]},
        "model": model_block(model, params, family, non_embedding),
        "data": None,
        "sample": {"how": "all", "n": None, "seed": 0},
        "seed": 0,
        "sweep": None,
    }
    return Run(Path(f"/runs/{model}-statements"), config, records, {"scores": {"accuracy": {"mean": 0.0}}})


def old_layout_statements_run(model, params, correct_by_id, kinds):
    records = [
        {"id": i, "set": "s", "kind": kinds[i], "correct": c, "label": 1, "margin": 0.0}
        for i, c in correct_by_id.items()
    ]
    config = {"task": "statements", "model": model, "model_label": model, "params": params, "sets": ["s"]}
    return Run(Path(f"/runs/{model}-statements"), config, records, {"scores": {"accuracy": {"mean": 0.0}}})


def test_run_reads_the_new_layout_and_the_old_one():
    new = mc_run("smollm2-135m", 134_515_008, "qa", {0: 1.0}, {0: "c"}, family="llama", non_embedding=106_168_128)
    assert (new.model, new.spec, new.params, new.non_embedding_params) == (
        "smollm2-135m",
        "smollm2-135m",
        134_515_008,
        106_168_128,
    )
    assert (new.family, new.preset, new.protocol, new.version, new.schema) == ("llama", "qa", "harness", "2021", 2)
    assert new.values("mc1") == {0: 1.0}
    old_config = {
        "task": "mc",
        "model": "smollm2-135m",
        "model_label": "smol",
        "params": 134_515_008,
        "preset": "help",
        "protocol": "upstream",
        "version": "2021",
        "limit": 40,
    }
    old = Run(Path("/runs/old"), old_config, [{"id": 3, "scores": {"mc1": 0.0}}], {"scores": {"mc1": {}}})
    assert (old.model, old.spec, old.params, old.preset, old.protocol, old.version, old.limit) == (
        "smol",
        "smollm2-135m",
        134_515_008,
        "help",
        "upstream",
        "2021",
        40,
    )
    assert old.family is None and old.non_embedding_params is None and old.schema == 1
    statements = old_layout_statements_run("s", 10, {0: True, 1: False}, {0: "verifier", 1: "verifier"})
    assert statements.values("accuracy") == {0: 1.0, 1: 0.0}
    assert statements.sets == ("s",) and statements.setting == ("statements", None, None, None, None, None, ("s",))
    new_statements = statements_run("s", 10, {0: 1.0, 1: 0.0}, {0: "verifier", 1: "verifier"})
    assert new_statements.values("accuracy") == {0: 1.0, 1: 0.0}
    assert new_statements.setting == statements.setting


def test_two_models_of_different_families_give_a_difference_never_a_slope():
    """smollm2-135m vs gemma3-270m: 2x apart in total parameters, but 106M vs 100M non-embedding
    (the difference is vocabulary) and different families. The old code fitted a slope per 10x
    (total) parameters and called it "falls with size"; now: gemma3 first (smaller without
    embeddings), one paired difference smollm2 - gemma3 with an interval, no fit, mixed families."""
    cats = {i: "c" for i in range(200)}
    runs = [
        mc_run(
            "gemma3-270m", 268_098_176, "qa", {i: float(i % 2) for i in range(200)}, cats, None, "gemma3", 100_000_000
        ),
        mc_run(
            "smollm2-135m",
            134_515_008,
            "qa",
            {i: float(i % 4 == 0) for i in range(200)},
            cats,
            None,
            "llama",
            106_000_000,
        ),
    ]
    (row,) = scaling_table(runs, {"mc": ("mc1",)})
    assert row["fits"] == [] and "fit" not in row
    assert row["axis"] == "non-embedding parameters"
    assert [m["model"] for m in row["models"]] == ["gemma3-270m", "smollm2-135m"]
    assert [m["size"] for m in row["models"]] == [100_000_000, 106_000_000]
    (d,) = row["differences"]
    assert (d["a"], d["b"], d["same_family"]) == ("gemma3-270m", "smollm2-135m", False)
    assert d["mean"] == pytest.approx(0.25 - 0.5) and d["ci_high"] < 0 and d["method"] == "bootstrap"
    assert row["mixed_families"]
    assert row["models"][0]["method"] == "wilson"


def test_two_models_of_one_family_still_get_no_slope():
    cats = {i: "c" for i in range(20)}
    runs = [
        mc_run("l", 10**9, "qa", {i: 0.0 for i in range(20)}, cats, family="llama", non_embedding=9 * 10**8),
        mc_run("s", 10**8, "qa", {i: 1.0 for i in range(20)}, cats, family="llama", non_embedding=9 * 10**7),
        mc_run("s", 10**8, "help", {i: 1.0 for i in range(20)}, cats, family="llama", non_embedding=9 * 10**7),
    ]  # the help preset has one model only: no row
    (row,) = scaling_table(runs, {"mc": ("mc1",)})
    assert [m["model"] for m in row["models"]] == ["s", "l"]
    assert row["preset"] == "qa" and row["fits"] == [] and not row["mixed_families"]
    assert row["differences"][0]["mean"] == pytest.approx(-1.0) and row["differences"][0]["same_family"]


def test_three_models_of_one_family_get_a_slope_on_non_embedding_parameters():
    """Scores fall by 0.1 per decade of non-embedding parameters; total parameters (inflated by a
    fixed embedding) are not decades apart, so a fit on them would give a different slope."""
    cats = {i: "c" for i in range(300)}
    rng = np.random.default_rng(0)
    base = rng.uniform(0.3, 0.7, size=300)
    sizes = {"a": 10**7, "b": 10**8, "c": 10**9}
    runs = [
        mc_run(m, n + 5 * 10**8, "qa", {i: base[i] - 0.1 * np.log10(n / 1e7) for i in range(300)}, cats, None, "f", n)
        for m, n in sizes.items()
    ]
    runs.append(mc_run("other", 2 * 10**8, "qa", {i: base[i] for i in range(300)}, cats, None, "g", 10**8))
    (row,) = scaling_table(runs, {"mc": ("mc1",)})
    (fit,) = row["fits"]
    assert fit["family"] == "f" and fit["models"] == ["a", "b", "c"] and fit["axis"] == "non-embedding parameters"
    assert fit["slope"] == pytest.approx(-0.1) and direction(fit) == "falls"
    assert row["mixed_families"]  # "other" is in the table, but not in the fit
    assert len(row["differences"]) == 3


def test_an_old_log_without_family_gets_no_slope_even_with_three_sizes():
    cats = {i: "c" for i in range(50)}
    runs = []
    for m, n in {"a": 10**7, "b": 10**8, "c": 10**9}.items():
        run = mc_run(m, n, "qa", {i: float(i % 2) for i in range(50)}, cats)
        config = {"task": "mc", "model": m, "model_label": m, "params": n, "preset": "qa", "protocol": "harness"}
        runs.append(Run(run.directory, config, run.records, run.summary))
    (row,) = scaling_table(runs, {"mc": ("mc1",)})
    assert row["fits"] == [] and row["axis"] == "parameters" and row["mixed_families"]
    assert [m["model"] for m in row["models"]] == ["a", "b", "c"]


def test_sign_flip_and_benjamini_hochberg():
    from scipy.stats import binomtest

    assert sign_flip_p([1, 1, 1, -1, 0, 0, 1, 1]) == pytest.approx(binomtest(5, 6, 0.5).pvalue)
    assert sign_flip_p([1.0, 2.0, 3.0]) == pytest.approx(2 / 8)  # +-1 +-2 +-3: |sum| >= 6 twice
    assert sign_flip_p([0.0, 0.0]) == 1.0
    many = np.random.default_rng(1).normal(0.5, 1.0, size=60)  # Monte Carlo branch
    assert sign_flip_p(many) < 0.01
    assert benjamini_hochberg([0.01, 0.04, 0.03, 0.5]) == pytest.approx([0.04, 0.04 * 4 / 3, 0.04 * 4 / 3, 0.5])


def test_categories_are_flagged_by_a_corrected_test_and_small_ones_never():
    # category "worse": the second model loses half of what the first knew; "better": the
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
    runs = [
        mc_run("s", 10**8, "qa", small, categories, family="llama", non_embedding=10**8),
        mc_run("l", 10**9, "qa", large, categories, family="gemma3", non_embedding=10**9),
    ]
    rows = {r["category"]: r for r in category_scaling(runs, "mc1", min_items=10)}
    worse, better, tiny = rows["worse"], rows["better"], rows["tiny"]
    assert worse["measure"] == "difference" and worse["compared"] == ["s", "l"]
    assert worse["estimate"] == pytest.approx(-0.5) and worse["interval"]["ci_high"] < 0
    assert worse["p"] < 1e-5 and worse["flagged"] and better["flagged"]
    assert not worse["inverse"]  # a difference between two models is not inverse scaling
    assert tiny["estimate"] == pytest.approx(-1.0)
    assert not tiny["testable"] and tiny["interval"] is None and tiny["p"] is None and not tiny["flagged"]
    assert worse["means"] == {"s": 1.0, "l": 0.5}


def test_inverse_scaling_by_category_within_a_family():
    categories = {i: "worse" if i < 30 else "flat" for i in range(60)}
    sizes = {"a": 10**7, "b": 10**8, "c": 10**9}
    runs = []
    for k, (m, n) in enumerate(sizes.items()):
        scores = {i: (float(i % 3 >= k) if i < 30 else float(i % 2)) for i in range(60)}
        runs.append(mc_run(m, n, "qa", scores, categories, family="f", non_embedding=n))
    rows = {r["category"]: r for r in category_scaling(runs, "mc1", min_items=10)}
    assert rows["worse"]["measure"] == "slope" and rows["worse"]["family"] == "f"
    assert rows["worse"]["estimate"] == pytest.approx(-1 / 3)
    assert rows["worse"]["flagged"] and rows["worse"]["inverse"]
    assert not rows["flat"]["flagged"] and rows["flat"]["p"] == 1.0


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
    assert result["p_asymmetry"] == pytest.approx(1.0) and result["mixed_families"]


def four_answers(i):
    return [{"text": f"a{k}", "label": int(k == 0), "logprob": -1.0} for k in range(4)]


def test_contrast_is_on_the_above_chance_scale():
    """MC1 with four answers (chance 0.25) goes 0.25 -> 0.5; verifier accuracy (chance 0.5) goes
    0.5 -> 0.75. Raw, both rise by 0.25 and the old slope difference was 0. Above chance, MC1 goes
    0 -> 1/3 and the control 0 -> 1/2: TruthfulQA gains 1/6 less."""
    cats = {i: "c" for i in range(40)}
    kinds = {i: "verifier" for i in range(40)}
    options = {i: four_answers(i) for i in range(40)}
    runs = [
        mc_run("s", 10**8, "qa", {i: float(i % 4 == 0) for i in range(40)}, cats, options),
        mc_run("l", 10**9, "qa", {i: float(i % 2 == 0) for i in range(40)}, cats, options),
        statements_run("s", 10**8, {i: float(i % 2 == 0) for i in range(40)}, kinds),
        statements_run("l", 10**9, {i: float(i % 4 != 3) for i in range(40)}, kinds),
    ]
    (row,) = contrast_table(runs, "qa", metrics=("mc1",))
    assert row["measure"] == "difference" and row["models"] == ["s", "l"]
    assert row["chance"] == {"truthfulqa": {"s": 0.25, "l": 0.25}, "statements": 0.5}
    assert row["truthfulqa"] == pytest.approx(1 / 3) and row["control"] == pytest.approx(1 / 2)
    assert row["mean"] == pytest.approx(1 / 3 - 1 / 2)
    assert row["ci_low"] <= row["mean"] <= row["ci_high"]
    assert row["mixed_families"]  # family not recorded


def test_contrast_within_a_family_is_a_slope_difference_on_the_same_scale():
    cats = {i: "c" for i in range(40)}
    kinds = {i: "verifier" for i in range(40)}
    options = {i: four_answers(i) for i in range(40)}
    runs = []
    for k, (m, n) in enumerate({"a": 10**7, "b": 10**8, "c": 10**9}.items()):
        runs.append(mc_run(m, n, "qa", {i: 0.25 + 0.25 * k for i in range(40)}, cats, options, "f", n))
        runs.append(statements_run(m, n, {i: 0.5 + 0.25 * k for i in range(40)}, kinds, "f", n))
    (row,) = contrast_table(runs, "qa", metrics=("mc1",))
    assert row["measure"] == "slope" and row["family"] == "f" and not row["mixed_families"]
    assert row["truthfulqa"] == pytest.approx(1 / 3) and row["control"] == pytest.approx(1 / 2)
    assert row["mean"] == pytest.approx(-1 / 6) and row["ci_low"] == pytest.approx(-1 / 6)
