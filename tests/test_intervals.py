import numpy as np
import pytest

from truthscope.scoring.intervals import bootstrap_mean, summarise


def test_bootstrap_interval_brackets_mean_and_is_reproducible():
    values = np.random.default_rng(1).random(200)
    a, b = bootstrap_mean(values, seed=3), bootstrap_mean(values, seed=3)
    assert a == b
    assert a["ci_low"] < a["mean"] < a["ci_high"]
    # the standard error of a mean of 200 uniforms is ~0.02: the 95% interval is ~0.08 wide
    assert 0.05 < a["ci_high"] - a["ci_low"] < 0.12


def test_bootstrap_constant_and_single_values():
    assert bootstrap_mean([1.0, 1.0, 1.0]) == {"mean": 1.0, "ci_low": 1.0, "ci_high": 1.0, "n": 3}
    assert bootstrap_mean([0.25])["ci_low"] == 0.25
    with pytest.raises(ValueError):
        bootstrap_mean([])


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
