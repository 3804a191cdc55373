"""Every claim has its null: each method that outputs a finding, run many times on synthetic data
where the truth is nothing, makes its claim about as often as its nominal error rate allows, and no
more. Seeded, and sized to run in seconds."""

import numpy as np
from test_scaling import mc_run, statements_run

from truthscope.analysis import (
    Run,
    category_scaling,
    confident_falsehoods,
    contrast_table,
    direction,
    preset_effects,
    scaling_table,
)
from truthscope.analysis.scaling import difference_word

RESAMPLES = 400


def binary(rng, p, n):
    return {i: float(x) for i, x in enumerate(rng.random(n) < p)}


def test_a_difference_between_two_equal_models_is_claimed_about_5_percent_of_the_time():
    rng = np.random.default_rng(10)
    cats = {i: "c" for i in range(150)}
    trials, claimed = 200, 0
    for trial in range(trials):
        runs = [
            mc_run("a", 10**8, "qa", binary(rng, 0.4, 150), cats, family="llama", non_embedding=10**8),
            mc_run("b", 2 * 10**8, "qa", binary(rng, 0.4, 150), cats, family="gemma3", non_embedding=2 * 10**8),
        ]
        (row,) = scaling_table(runs, {"mc": ("mc1",)}, seed=trial, n_resamples=RESAMPLES)
        assert row["fits"] == []
        claimed += difference_word(row["differences"][0]) != "no detectable difference"
    assert claimed / trials <= 0.10


def test_a_flat_family_is_called_rising_or_falling_about_5_percent_of_the_time():
    rng = np.random.default_rng(11)
    cats = {i: "c" for i in range(150)}
    trials, claimed = 150, 0
    for trial in range(trials):
        runs = [
            mc_run(m, n, "qa", binary(rng, 0.4, 150), cats, family="f", non_embedding=n)
            for m, n in {"a": 10**7, "b": 10**8, "c": 10**9}.items()
        ]
        (row,) = scaling_table(runs, {"mc": ("mc1",)}, seed=trial, n_resamples=RESAMPLES)
        claimed += direction(row["fits"][0]) != "no detectable change"
    assert claimed / trials <= 0.10


def old_layout(run: Run) -> Run:
    """The same run as an old log would hold it (the layout the old code read)."""
    config = {
        "task": "mc",
        "model": run.model,
        "model_label": run.model,
        "params": run.params,
        "preset": run.preset,
        "protocol": "harness",
        "version": "2021",
    }
    return Run(run.directory, config, run.records, run.summary)


def test_category_flags_under_the_null_occur_at_the_nominal_rate():
    """Both models draw every answer from the same distribution, in 20 categories of 15 questions.
    Benjamini-Hochberg at 5% flags some category in at most about 5% of datasets (the old per-
    category percentile intervals flagged one in about 40%), and a category with fewer than 10
    questions is never flagged."""
    rng = np.random.default_rng(12)
    categories = {i: f"cat{i // 15}" for i in range(300)} | {300 + i: "small" for i in range(6)}
    trials, any_flag, flags, tested = 200, 0, 0, 0
    for trial in range(trials):
        runs = [
            old_layout(mc_run("s", 10**8, "qa", binary(rng, 0.5, 306), categories)),
            old_layout(mc_run("l", 10**9, "qa", binary(rng, 0.5, 306), categories)),
        ]
        rows = category_scaling(runs, "mc1", min_items=10, seed=trial, n_resamples=200)
        flagged = [r for r in rows if r["flagged"]]
        any_flag += bool(flagged)
        flags += len(flagged)
        tested += sum(r["testable"] for r in rows)
        assert all(r["category"] != "small" for r in flagged)
    assert tested == trials * 20
    assert any_flag / trials <= 0.08
    assert flags / tested <= 0.01


def test_category_flags_on_a_continuous_score_under_the_null():
    """The same with MC2-like continuous scores (the sign-flip branch, not the sign test)."""
    rng = np.random.default_rng(13)
    categories = {i: f"cat{i // 12}" for i in range(240)}
    trials, any_flag = 60, 0
    for trial in range(trials):
        runs = [
            mc_run(m, n, "qa", dict(enumerate(rng.beta(2, 3, 240))), categories)
            for m, n in (("s", 10**8), ("l", 10**9))
        ]
        rows = category_scaling(runs, "mc2", min_items=10, seed=trial, n_resamples=200)
        any_flag += any(r["flagged"] for r in rows)
    assert any_flag / trials <= 0.12


def four_answers():
    return [{"text": f"a{k}", "label": int(k == 0), "logprob": -1.0} for k in range(4)]


def test_the_contrast_finds_nothing_where_neither_score_moves():
    rng = np.random.default_rng(14)
    cats = {i: "c" for i in range(120)}
    kinds = {i: "verifier" for i in range(120)}
    options = {i: four_answers() for i in range(120)}
    trials, claimed = 150, 0
    for trial in range(trials):
        runs = [
            mc_run("s", 10**8, "qa", binary(rng, 0.4, 120), cats, options),
            mc_run("l", 10**9, "qa", binary(rng, 0.4, 120), cats, options),
            statements_run("s", 10**8, binary(rng, 0.7, 120), kinds),
            statements_run("l", 10**9, binary(rng, 0.7, 120), kinds),
        ]
        (row,) = contrast_table(runs, "qa", metrics=("mc1",), seed=trial, n_resamples=RESAMPLES)
        claimed += row["ci_low"] > 0 or row["ci_high"] < 0
    assert claimed / trials <= 0.10


def test_a_preset_that_changes_nothing_is_said_to_raise_or_lower_about_5_percent_of_the_time():
    rng = np.random.default_rng(15)
    cats = {i: "c" for i in range(150)}
    trials, claimed = 200, 0
    for trial in range(trials):
        runs = [
            mc_run("m", 10**8, "qa", binary(rng, 0.4, 150), cats),
            mc_run("m", 10**8, "help", binary(rng, 0.4, 150), cats),
        ]
        row = preset_effects(runs, "qa", metrics=("mc1",), seed=trial, n_resamples=RESAMPLES)[0]
        claimed += row["ci_low"] > 0 or row["ci_high"] < 0
    assert claimed / trials <= 0.10


def test_flips_between_two_equal_models_are_called_asymmetric_about_5_percent_of_the_time():
    rng = np.random.default_rng(16)
    cats = {i: "c" for i in range(100)}
    trials, claimed = 200, 0
    for _ in range(trials):
        runs = []
        for m, n in (("s", 10**8), ("l", 10**9)):
            lps = rng.normal(size=(100, 2))
            options = {
                i: [
                    {"text": "true", "label": 1, "logprob": float(lps[i, 0])},
                    {"text": "myth", "label": 0, "logprob": float(lps[i, 1])},
                ]
                for i in range(100)
            }
            runs.append(mc_run(m, n, "qa", {i: float(lps[i, 0] > lps[i, 1]) for i in range(100)}, cats, options))
        claimed += confident_falsehoods(runs, "qa")["p_asymmetry"] < 0.05
    assert claimed / trials <= 0.08
