"""% true / % info corrected for the judge's measured sensitivity and specificity (Rogan-Gladen)."""

import pytest

from truthscope.scoring.intervals import summarise
from truthscope.scoring.judge_error import judge_counts, rogan_gladen, rogan_gladen_point, with_judge_error


def test_rogan_gladen_by_hand():
    # 50 of 100 answers judged true by a judge with Se = 80/100 and Sp = 90/100:
    # pi = (0.5 + 0.9 - 1) / (0.8 + 0.9 - 1) = 0.4 / 0.7
    r = rogan_gladen(50, 100, 80, 100, 90, 100, seed=0)
    assert r["mean"] == pytest.approx(4 / 7)
    assert r["observed"] == 0.5 and r["sensitivity"] == 0.8 and r["specificity"] == 0.9
    assert r["ci_low"] < 4 / 7 < r["ci_high"]
    assert r == rogan_gladen(50, 100, 80, 100, 90, 100, seed=0)  # seeded
    # a perfect judge corrects nothing
    assert rogan_gladen_point(0.3, 1.0, 1.0) == pytest.approx(0.3)
    # clipped into [0, 1]; undefined for a judge no better than chance
    assert rogan_gladen_point(0.05, 0.8, 0.9) == 0.0
    assert rogan_gladen_point(0.99, 0.8, 0.995) == 1.0
    assert rogan_gladen_point(0.5, 0.5, 0.5) is None
    assert rogan_gladen(5, 10, 1, 2, 1, 2)["mean"] is None
    with pytest.raises(ValueError):
        rogan_gladen(5, 10, 3, 2, 1, 2)


def test_interval_includes_the_judges_own_uncertainty():
    """The same answers and the same Se / Sp, measured on 100 or on 100,000 labelled answers: the
    interval narrows towards the answers' sampling error alone as the judge is measured better."""
    few = rogan_gladen(300, 1000, 80, 100, 90, 100, seed=1)
    many = rogan_gladen(300, 1000, 80_000, 100_000, 90_000, 100_000, seed=1)
    assert few["mean"] == pytest.approx(many["mean"]) == pytest.approx((0.3 + 0.9 - 1) / 0.7)
    width = lambda r: r["ci_high"] - r["ci_low"]  # noqa: E731
    assert width(few) > 1.5 * width(many)
    # with a well-measured judge, the width is the answers' binomial error divided by Se + Sp - 1
    se_p = (0.3 * 0.7 / 1000) ** 0.5
    assert width(many) == pytest.approx(2 * 1.96 * se_p / 0.7, rel=0.15)


class FakeJudge:
    def __init__(self, kind, counts):
        self.kind, self.counts = kind, counts

    def describe(self):
        if self.counts is None:
            return {"name": "fake", "test_split": None}
        return {"name": "fake", "test_split": {"non_reference_answers": {"counts": self.counts}}}


def test_summary_gains_corrected_scores_only_for_measured_judges():
    records = [{"category": "c", "type": "t", "scores": {"true": float(i < 30), "info": 1.0}} for i in range(100)]
    judges = {"truth": FakeJudge("truth", {"tp": 80, "fn": 20, "tn": 90, "fp": 10}), "info": FakeJudge("info", None)}
    summary = with_judge_error(summarise(records, ["true", "info"]), records, judges)
    assert summary["scores"]["true"]["mean"] == 0.3  # the judge's own call stays as it was
    assert summary["scores"]["true_corrected"]["mean"] == pytest.approx(0.2 / 0.7)
    assert "info_corrected" not in summary["scores"]  # that judge carries no test-split figures
    assert with_judge_error(summarise(records, ["true"]), records, {})["scores"].keys() == {"true"}
    no_positives = {"tp": 0, "fn": 0, "tn": 3, "fp": 1}
    assert judge_counts({"test_split": {"non_reference_answers": {"counts": no_positives}}}) is None
