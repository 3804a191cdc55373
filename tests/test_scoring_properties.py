"""Property tests of the multiple-choice metrics (`truthscope.scoring.multiple_choice`).

Log-likelihoods are drawn on a grid of quarters and shifted by quarters, so that every sum is exact
in float64 and MC1/MC3, which only compare scores, must be exactly invariant. The small grid also
makes ties frequent, which is where the metrics differ (see `tests/test_scoring.py`). MC2 and the
binary score go through exp/log, so they are compared with a tolerance, on arbitrary finite floats.
"""

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from truthscope.scoring import multiple_choice as mc

TOL = 1e-9

# multiples of 1/4 in [-64, 0] (ties are frequent) and shifts of multiples of 1/4 up to 2**20: exact sums
grid_logprob = st.integers(-256, 0).map(lambda k: k / 4)
grid_shift = st.integers(-(2**22), 2**22).map(lambda k: k / 4)
# any finite log-likelihood a model could give, and a shift of the same order
real_logprob = st.floats(-1e3, 0.0, allow_nan=False, allow_infinity=False)
real_shift = st.floats(-1e3, 1e3, allow_nan=False, allow_infinity=False)


@st.composite
def answer_sets(draw, logprob=grid_logprob):
    """(logprobs, labels, best_index): 2-10 answers, at least one true and one false, labels in
    any order; best_index is one of the true answers."""
    n = draw(st.integers(2, 10))
    labels = draw(st.lists(st.integers(0, 1), min_size=n, max_size=n).filter(lambda lab: 0 < sum(lab) < n))
    logprobs = draw(st.lists(logprob, min_size=n, max_size=n))
    best_index = draw(st.sampled_from([i for i, label in enumerate(labels) if label == 1]))
    return logprobs, labels, best_index


@st.composite
def permuted(draw, answer_set):
    """An answer set and the same set with its answers shuffled (labels and best index follow)."""
    logprobs, labels, best_index = answer_set
    order = draw(st.permutations(range(len(labels))))
    return (
        (logprobs, labels, best_index),
        ([logprobs[i] for i in order], [labels[i] for i in order], order.index(best_index)),
    )


def all_metrics(logprobs, labels, best_index):
    return {
        "mc1_argmax": mc.mc1_argmax(logprobs, labels),
        "mc1_best": mc.mc1_best(logprobs, labels, best_index),
        "mc2": mc.mc2(logprobs, labels),
        "mc3": mc.mc3(logprobs, labels),
    }


# --- answer order ----------------------------------------------------------------------------------


@given(answer_sets().flatmap(permuted))
def test_mc1_best_mc2_mc3_do_not_depend_on_answer_order(pair):
    original, shuffled = pair
    a, b = all_metrics(*original), all_metrics(*shuffled)
    assert a["mc1_best"] == b["mc1_best"]
    assert a["mc3"] == b["mc3"]
    assert a["mc2"] == pytest.approx(b["mc2"], abs=TOL)


@given(answer_sets().flatmap(permuted))
def test_mc1_argmax_depends_on_order_only_through_ties_at_the_top(pair):
    original, shuffled = pair
    (logprobs, labels, _), (shuffled_logprobs, shuffled_labels, _) = original, shuffled
    top = max(logprobs)
    top_labels = {label for lp, label in zip(logprobs, labels, strict=True) if lp == top}
    if len(top_labels) == 1:  # every answer at the top is true, or every one is false: order is irrelevant
        assert mc.mc1_argmax(logprobs, labels) == mc.mc1_argmax(shuffled_logprobs, shuffled_labels)
    # in any order, a tie at the top goes to the first answer (numpy's argmax)
    first_top = shuffled_logprobs.index(top)
    assert mc.mc1_argmax(shuffled_logprobs, shuffled_labels) == float(shuffled_labels[first_top] == 1)


# --- a constant added to every log-likelihood ------------------------------------------------------


@given(answer_sets(), grid_shift)
def test_comparison_metrics_are_exactly_invariant_to_a_shift(answer_set, shift):
    logprobs, labels, best_index = answer_set
    shifted = [lp + shift for lp in logprobs]
    a, b = all_metrics(logprobs, labels, best_index), all_metrics(shifted, labels, best_index)
    assert (a["mc1_argmax"], a["mc1_best"], a["mc3"]) == (b["mc1_argmax"], b["mc1_best"], b["mc3"])


@given(answer_sets(logprob=real_logprob), real_shift)
def test_mc2_is_invariant_to_a_shift(answer_set, shift):
    logprobs, labels, _ = answer_set
    assert mc.mc2([lp + shift for lp in logprobs], labels) == pytest.approx(mc.mc2(logprobs, labels), abs=TOL)


# --- ranges and ties -------------------------------------------------------------------------------


@given(answer_sets(logprob=real_logprob))
def test_metric_ranges(answer_set):
    logprobs, labels, best_index = answer_set
    m = all_metrics(logprobs, labels, best_index)
    assert 0.0 <= m["mc2"] <= 1.0
    assert m["mc1_argmax"] in (0.0, 1.0) and m["mc1_best"] in (0.0, 1.0)
    n_true = sum(labels)
    assert m["mc3"] * n_true == pytest.approx(round(m["mc3"] * n_true))  # a share of the true answers


@given(answer_sets(logprob=real_logprob))
def test_mc1_best_implies_the_best_answer_counts_for_mc3(answer_set):
    logprobs, labels, best_index = answer_set
    if mc.mc1_best(logprobs, labels, best_index) == 1.0:
        assert mc.mc3(logprobs, labels) >= 1 / sum(labels)


@given(answer_sets(), st.floats(-1e3, 0.0, allow_nan=False))
def test_all_answers_tied(answer_set, value):
    _, labels, best_index = answer_set
    logprobs = [value] * len(labels)
    assert mc.mc1_argmax(logprobs, labels) == float(labels[0] == 1)  # the first answer wins the tie
    assert mc.mc1_best(logprobs, labels, best_index) == 0.0  # a tie with a false answer is not a win
    assert mc.mc3(logprobs, labels) == 0.0  # ties do not count
    assert mc.mc2(logprobs, labels) == pytest.approx(sum(labels) / len(labels), abs=TOL)  # uniform mass


@given(answer_sets())
def test_ties_with_the_best_false_answer_never_count(answer_set):
    """MC3 counts, and MC1 (best) accepts, only true answers strictly above every false one."""
    logprobs, labels, best_index = answer_set
    best_false = max(lp for lp, label in zip(logprobs, labels, strict=True) if label == 0)
    above = [i for i, (lp, label) in enumerate(zip(logprobs, labels, strict=True)) if label == 1 and lp > best_false]
    assert mc.mc3(logprobs, labels) == len(above) / sum(labels)
    assert mc.mc1_best(logprobs, labels, best_index) == float(best_index in above)


# --- binary (MC0) ----------------------------------------------------------------------------------


@given(real_logprob, real_logprob)
def test_binary_is_a_probability_and_symmetric(a, b):
    p, q = mc.binary(a, b), mc.binary(b, a)
    assert 0.0 <= p <= 1.0 and 0.0 <= q <= 1.0
    assert p + q == pytest.approx(1.0, abs=TOL)
    if a >= b:
        assert p >= 0.5 - TOL
    if a == b:
        assert p == pytest.approx(0.5, abs=TOL)


@given(real_logprob, real_logprob, real_shift)
def test_binary_is_invariant_to_a_shift(a, b, shift):
    assert mc.binary(a + shift, b + shift) == pytest.approx(mc.binary(a, b), abs=TOL)


@given(real_logprob, real_logprob)
def test_binary_matches_mc2_on_two_answers(a, b):
    assert mc.binary(a, b) == pytest.approx(mc.mc2([a, b], [1, 0]), abs=TOL)
    # the logistic form, which needs no exp(a) (it underflows below about -745)
    assert mc.binary(a, b) == pytest.approx(1.0 / (1.0 + math.exp(min(b - a, 700.0))), abs=TOL)
