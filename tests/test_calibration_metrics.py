"""Calibration metrics on hand-computed cases, against scikit-learn where it has the metric, and
their nulls (a confidence that carries nothing about correctness)."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn.calibration import calibration_curve

from truthscope.scoring import calibration as cal


def test_a_perfectly_calibrated_signal_has_ece_zero():
    # 10 questions at 0.2 with 2 right, 10 at 0.7 with 7 right
    p = [0.2] * 10 + [0.7] * 10
    y = [1, 1] + [0] * 8 + [1] * 7 + [0] * 3
    assert cal.ece(p, y) == pytest.approx(0.0, abs=1e-12)
    assert cal.ece(p, y, strategy="quantile") == pytest.approx(0.0, abs=1e-12)
    m = cal.murphy(p, y)
    assert m["reliability"] == pytest.approx(0.0, abs=1e-12)
    assert m["within_bin"] == pytest.approx(0.0, abs=1e-12)


def test_a_known_reliability_diagram():
    p = [0.05, 0.15, 0.15, 0.95, 0.95, 0.95, 0.95]
    y = [0, 1, 0, 1, 1, 1, 0]
    bins = cal.reliability(p, y, n_bins=10)
    assert [(b["bin"], b["n"]) for b in bins] == [(0, 1), (1, 2), (9, 4)]
    assert [b["accuracy"] for b in bins] == [0.0, 0.5, 0.75]
    assert [b["confidence"] for b in bins] == pytest.approx([0.05, 0.15, 0.95])
    # ECE by hand: (1 * 0.05 + 2 * 0.35 + 4 * 0.2) / 7
    assert cal.ece(p, y) == pytest.approx((0.05 + 0.7 + 0.8) / 7)


def test_an_inner_edge_goes_to_the_lower_bin_as_in_scikit_learn():
    assert cal.bin_ids([0.1, 0.5, 1.0, 0.0], n_bins=10).tolist() == [0, 4, 9, 0]


@settings(max_examples=60, deadline=None)
@given(st.integers(0, 2**32 - 1), st.integers(2, 15), st.sampled_from(["uniform", "quantile"]))
def test_the_bins_equal_scikit_learns_calibration_curve(seed, n_bins, strategy):
    rng = np.random.default_rng(seed)
    p = np.round(rng.random(80), 2)  # rounded, so values land on edges and tie
    y = (rng.random(80) < p).astype(int)
    if y.min() == y.max():
        y[0] = 1 - y[0]
    prob_true, prob_pred = calibration_curve(y, p, n_bins=n_bins, strategy=strategy)
    bins = cal.reliability(p, y, n_bins, strategy)
    assert [b["accuracy"] for b in bins] == pytest.approx(prob_true.tolist())
    assert [b["confidence"] for b in bins] == pytest.approx(prob_pred.tolist())


@settings(max_examples=60, deadline=None)
@given(st.integers(0, 2**32 - 1), st.sampled_from(["uniform", "quantile"]))
def test_murphys_decomposition_adds_up_to_the_brier_score(seed, strategy):
    rng = np.random.default_rng(seed)
    p = rng.random(50)
    y = (rng.random(50) < p).astype(int)
    m = cal.murphy(p, y, 10, strategy)
    total = m["reliability"] - m["resolution"] + m["uncertainty"] + m["within_bin"]
    assert total == pytest.approx(cal.brier(p, y), abs=1e-12)
    assert cal.brier(p, y) == pytest.approx(np.mean((p - y) ** 2))


def test_constant_confidence_has_auroc_one_half_and_aurc_equal_to_the_error_rate():
    y = [1, 0, 0, 1, 1]
    assert cal.auroc([0.6] * 5, y) == 0.5
    assert cal.aurc([0.6] * 5, y) == pytest.approx(0.4)
    assert cal.auroc([0.6] * 5, [1] * 5) is None  # one class: undefined, not a number


def test_risk_coverage_and_aurc_by_hand():
    p = [0.9, 0.8, 0.3, 0.1]
    y = [1, 0, 1, 0]
    thresholds, coverage, risk = cal.risk_coverage(p, y)
    assert thresholds.tolist() == [0.9, 0.8, 0.3, 0.1]
    assert coverage.tolist() == [0.25, 0.5, 0.75, 1.0]
    assert risk.tolist() == pytest.approx([0.0, 0.5, 1 / 3, 0.5])
    assert cal.aurc(p, y) == pytest.approx((0 + 0.5 + 1 / 3 + 0.5) / 4)
    # a perfect ranking has the smallest area: the errors come last
    assert cal.aurc([0.9, 0.1, 0.8, 0.3], y) < cal.aurc(p, y)


def test_abstention_ends_at_answering_nothing():
    p, t, i = [0.9, 0.5, 0.2], [1, 0, 0], [1, 1, 1]
    rows = cal.abstention(p, t, i, [0.0, 0.3, 0.6, 1.1])
    assert [r["coverage"] for r in rows] == pytest.approx([1, 2 / 3, 1 / 3, 0])
    assert [r["true"] for r in rows] == pytest.approx([1 / 3, 2 / 3, 1, 1])
    assert [r["info"] for r in rows] == pytest.approx([1, 2 / 3, 1 / 3, 0])
    assert rows[-1]["true_info"] == 0
    # dropping the two false answers buys 2/3 truth for 2/3 informativeness
    assert cal.truth_per_info(rows) == pytest.approx(1.0)


def test_bad_input_is_refused():
    with pytest.raises(ValueError):
        cal.ece([1.2], [1])
    with pytest.raises(ValueError):
        cal.ece([0.5], [0.5])
    with pytest.raises(ValueError):
        cal.ece([0.5, 0.2], [1])


def test_null_a_confidence_independent_of_correctness_discriminates_at_chance():
    rng = np.random.default_rng(3)
    p = rng.random(400)
    y = (rng.random(400) < 0.4).astype(int)
    s = cal.calibration_summary(p, y, n_resamples=300)
    auc = s["metrics"]["auroc"]
    assert auc["ci_low"] < 0.5 < auc["ci_high"]
    # answering the most confident first does not lower the risk: AURC covers the error rate
    a = s["metrics"]["aurc"]
    assert a["ci_low"] < 1 - y.mean() < a["ci_high"]
    # abstaining on such a signal buys truth at the random-abstention rate (1 - true) / info
    rows = cal.abstention(p, y, np.ones_like(y), np.linspace(0, 1, 21))
    random_rate = (1 - y.mean()) / 1.0
    assert cal.truth_per_info(rows) == pytest.approx(random_rate, abs=0.35)


def test_a_signal_that_tracks_correctness_is_seen():
    rng = np.random.default_rng(4)
    p = rng.random(400)
    y = (rng.random(400) < p).astype(int)  # calibrated by construction
    s = cal.calibration_summary(p, y, n_resamples=300)
    assert s["metrics"]["auroc"]["ci_low"] > 0.6
    assert s["metrics"]["ece"]["value"] < 0.1
    assert s["reliability"]["uniform"][0]["bin"] == 0


@settings(max_examples=60, deadline=None)
@given(st.integers(0, 2**32 - 1), st.integers(2, 60))
def test_the_bootstraps_fast_auroc_and_brier_equal_scikit_learns(seed, n):
    rng = np.random.default_rng(seed)
    p = np.round(rng.random(n), 1)  # many ties
    y = (rng.random(n) < 0.5).astype(int)
    fast = cal.point_metrics(p, y)
    assert fast["brier"] == pytest.approx(cal.brier(p, y))
    if y.min() == y.max():
        assert fast["auroc"] is None and cal.auroc(p, y) is None
    else:
        assert fast["auroc"] == pytest.approx(cal.auroc(p, y))


def _quantile_thresholds(p):
    return sorted({0.0, *np.quantile(p, np.linspace(0, 1, 21)).tolist(), float(np.nextafter(p.max(), 2))})


def test_held_out_threshold_null_a_confidence_unrelated_to_truth_buys_nothing_out_of_sample():
    """In-sample, the best of 22 thresholds always shows some truth beyond random abstention (the
    maximum of noise); chosen on the other half of the questions, a confidence that carries nothing
    about truth buys nothing: the interval covers 0."""
    rng = np.random.default_rng(3)
    n = 800
    true, info = rng.random(n) < 0.4, rng.random(n) < 0.9
    confidence = rng.random(n)
    in_sample = cal.best_threshold(cal.abstention(confidence, true, info, _quantile_thresholds(confidence)))
    held = cal.cross_fitted_abstention(confidence, true, info, _quantile_thresholds, seed=0)
    assert in_sample["excess_true"] > 0
    assert held["excess_true"]["ci_low"] < 0 < held["excess_true"]["ci_high"]
    assert held["excess_true"]["value"] < in_sample["excess_true"]
    assert len(held["taus"]) == 2


def test_held_out_threshold_keeps_a_real_signal():
    rng = np.random.default_rng(4)
    n = 800
    true, info = rng.random(n) < 0.4, np.ones(n, dtype=bool)
    confidence = np.clip(true * 0.3 + rng.random(n) * 0.7, 0, 1)  # true answers tend to be more confident
    held = cal.cross_fitted_abstention(confidence, true, info, _quantile_thresholds, seed=0)
    assert held["excess_true"]["ci_low"] > 0.05
    assert 0 < held["coverage"] < 1
    again = cal.cross_fitted_abstention(confidence, true, info, _quantile_thresholds, seed=0)
    assert again == held
