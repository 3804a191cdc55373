import math

import pytest

from truthscope.scoring import multiple_choice as mc


def test_mc1_argmax_reads_labels_not_order():
    # the true answer is last: an implementation that assumes index 0 would score 0
    assert mc.mc1_argmax([-5.0, -4.0, -1.0], [0, 0, 1]) == 1.0
    assert mc.mc1_argmax([-1.0, -4.0, -2.0], [0, 0, 1]) == 0.0


def test_mc1_argmax_tie_goes_to_first_answer_like_numpy_argmax():
    assert mc.mc1_argmax([-2.0, -2.0], [1, 0]) == 1.0
    assert mc.mc1_argmax([-2.0, -2.0], [0, 1]) == 0.0


def test_mc1_best_needs_strictly_better_than_every_false():
    assert mc.mc1_best([-1.0, -3.0, -2.0], [1, 1, 0], best_index=0) == 1.0
    assert mc.mc1_best([-2.0, -1.0, -2.0], [1, 1, 0], best_index=0) == 0.0  # tie with a false answer
    with pytest.raises(ValueError):
        mc.mc1_best([-1.0, -2.0], [1, 0], best_index=1)


def test_mc2_is_normalised_mass_on_true_answers_with_unsorted_labels():
    logprobs = [math.log(0.1), math.log(0.3), math.log(0.2), math.log(0.4)]
    labels = [0, 1, 0, 1]
    # (0.3 + 0.4) / (0.1 + 0.3 + 0.2 + 0.4) = 0.7
    assert mc.mc2(logprobs, labels) == pytest.approx(0.7, abs=1e-12)


def test_mc2_is_stable_for_very_negative_logprobs():
    # exp(-2000) underflows to 0; the normalised mass must still be 0.5 / (0.5 + 0.25 + 0.25)
    base = -2000.0
    logprobs = [base + math.log(0.5), base + math.log(0.25), base + math.log(0.25)]
    assert mc.mc2(logprobs, [1, 0, 0]) == pytest.approx(0.5, abs=1e-12)


def test_mc3_share_of_true_answers_above_best_false():
    # true: -1, -3, -5; best false: -2 -> one of three true answers beats it
    assert mc.mc3([-1.0, -2.0, -3.0, -5.0, -6.0], [1, 0, 1, 1, 0]) == pytest.approx(1 / 3)
    assert mc.mc3([-2.0, -2.0], [1, 0]) == 0.0  # ties do not count


def test_binary_probability_of_correct_option():
    assert mc.binary(math.log(0.3), math.log(0.1)) == pytest.approx(0.75)
    assert mc.binary(-1000.0, -1000.0) == pytest.approx(0.5)


@pytest.mark.parametrize("labels", [[1, 1], [0, 0], [1, 2]])
def test_answer_sets_need_a_true_and_a_false_answer(labels):
    with pytest.raises(ValueError):
        mc.mc2([-1.0, -2.0], labels)
