import numpy as np
import pytest

from truthscope.scoring.intervals import bootstrap_mean, mean_interval, summarise, wilson_interval, wilson_mean


def test_bootstrap_interval_brackets_mean_and_is_reproducible():
    values = np.random.default_rng(1).random(200)
    a, b = bootstrap_mean(values, seed=3), bootstrap_mean(values, seed=3)
    assert a == b
    assert a["ci_low"] < a["mean"] < a["ci_high"]
    assert a["method"] == "bootstrap"
    # the standard error of a mean of 200 uniforms is ~0.02: the 95% interval is ~0.08 wide
    assert 0.05 < a["ci_high"] - a["ci_low"] < 0.12


def test_bootstrap_constant_and_single_values():
    assert bootstrap_mean([1.0, 1.0, 1.0]) == {
        "mean": 1.0,
        "ci_low": 1.0,
        "ci_high": 1.0,
        "n": 3,
        "method": "bootstrap",
    }
    assert bootstrap_mean([0.25])["ci_low"] == 0.25
    with pytest.raises(ValueError):
        bootstrap_mean([])


def test_wilson_matches_the_closed_form_and_scipy():
    from scipy.stats import binomtest

    low, high = wilson_interval(3, 10)
    expected = binomtest(3, 10).proportion_ci(confidence_level=0.95, method="wilson")
    assert (low, high) == pytest.approx((expected.low, expected.high), abs=1e-9)
    w = wilson_mean([1, 0, 0, 1])
    assert (w["ci_low"], w["ci_high"]) == wilson_interval(2, 4)
    assert w["method"] == "wilson" and w["n"] == 4 and w["mean"] == 0.5
    with pytest.raises(ValueError):
        wilson_mean([0.5, 1.0])


def test_a_single_proportion_has_a_real_interval():
    """One question answered right: the bootstrap said [1, 1]; Wilson says about [0.21, 1]."""
    s = summarise([{"category": "A", "type": "Adversarial", "scores": {"mc1": 1.0}}], ["mc1"])
    one = s["scores"]["mc1"]
    assert one["method"] == "wilson" and one["n"] == 1
    assert one["ci_high"] - one["ci_low"] > 0.5
    all_right = mean_interval([1.0] * 20)
    assert all_right["ci_high"] == 1.0 and all_right["ci_low"] < 0.9  # all agree, yet not certain


def test_wilson_covers_at_n_5_where_the_bootstrap_does_not():
    """p = 0.3, n = 5, 2000 seeded datasets: the 95% interval from `summarise` must contain p at
    least 90% of the time (Wilson: 0.97; the percentile bootstrap: about 0.8)."""
    rng = np.random.default_rng(0)
    p, n, trials = 0.3, 5, 2000
    covered = 0
    for k in rng.binomial(n, p, size=trials):
        records = [{"category": "c", "type": "t", "scores": {"mc1": float(i < k)}} for i in range(n)]
        interval = summarise(records, ["mc1"])["scores"]["mc1"]
        covered += interval["ci_low"] <= p <= interval["ci_high"]
    assert covered / trials >= 0.9


def test_summarise_groups_by_category_and_type():
    records = [
        {"category": "A", "type": "Adversarial", "scores": {"mc1": 1.0, "mc2": 0.5}},
        {"category": "A", "type": "Non-Adversarial", "scores": {"mc1": 0.0, "mc2": 0.5}},
        {"category": "B", "type": "Adversarial", "scores": {"mc1": 1.0, "mc2": 1.0}},
    ]
    s = summarise(records, ["mc1", "mc2"])
    assert s["scores"]["mc1"]["mean"] == pytest.approx(2 / 3)
    assert s["by_category"]["A"]["mc1"]["mean"] == 0.5
    assert s["by_category"]["B"]["mc2"]["n"] == 1
    assert s["by_type"]["Adversarial"]["mc1"]["mean"] == 1.0
    # mc1 is a proportion (Wilson) everywhere; mc2 is continuous (bootstrap) even in group B,
    # whose single value happens to be 1.0
    assert s["scores"]["mc1"]["method"] == s["by_category"]["B"]["mc1"]["method"] == "wilson"
    assert s["scores"]["mc2"]["method"] == s["by_category"]["B"]["mc2"]["method"] == "bootstrap"
    for entry in (s["scores"]["mc1"], s["scores"]["mc2"]):
        assert {"mean", "ci_low", "ci_high", "n", "method"} <= set(entry)
