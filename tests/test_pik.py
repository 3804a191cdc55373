"""P(IK)'s out-of-fold probe and its controls on synthetic activations where the truth is known."""

import numpy as np

from truthscope.interp.pik import out_of_fold, pik_items, text_only
from truthscope.scoring.calibration import auroc


def test_null_random_activations_predict_at_chance():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 200)
    features = [rng.normal(size=(200, 10)) for _ in range(3)]
    predicted, chosen = out_of_fold(features, y, folds=5, seed=0)
    assert not np.isnan(predicted).any() and len(chosen) == 5
    assert abs(auroc(predicted, y) - 0.5) < 0.1


def test_a_layer_that_encodes_the_label_is_found_and_predicts_it():
    rng = np.random.default_rng(1)
    y = rng.integers(0, 2, 200)
    noise = [rng.normal(size=(200, 10)) for _ in range(3)]
    signal = rng.normal(size=(200, 10))
    signal[:, 3] += 1.5 * (2 * y - 1)
    predicted, chosen = out_of_fold([*noise, signal], y, folds=5, seed=0)
    assert chosen == [3] * 5
    assert auroc(predicted, y) > 0.8


def test_out_of_fold_means_no_row_predicts_itself():
    # a feature that is the row's own label would be perfect in-sample; labels drawn at random with
    # a row-unique feature (one-hot) cannot be learned out of fold
    y = np.random.default_rng(2).integers(0, 2, 60)
    one_hot = np.eye(60)
    predicted, _ = out_of_fold([one_hot], y, folds=5, seed=0)
    assert auroc(predicted, y) < 0.75


def test_text_only_control_reads_wording_and_nothing_else():
    rng = np.random.default_rng(3)
    y = rng.integers(0, 2, 200)
    worded = [("alpha " if label else "beta ") + f"question {i}" for i, label in enumerate(y)]
    assert auroc(text_only(worded, y), y) > 0.95
    plain = [f"question {i}" for i in range(200)]
    assert abs(auroc(text_only(plain, y), y) - 0.5) < 0.15


def test_pik_items_take_the_judged_questions_only(data_dir):
    from truthscope.data import load_presets, load_truthfulqa

    questions = load_truthfulqa(data_dir, "2021").questions[:4]
    records = {
        questions[0].id: {"scores": {"true": 1.0}},
        questions[2].id: {"scores": {"true": 0.0}},
        questions[3].id: {"scores": {}},  # not judged
    }
    items = pik_items(questions, records, "qa", load_presets(data_dir))
    assert [(it.group, it.label) for it in items] == [(questions[0].id, 1), (questions[2].id, 0)]
    assert items[0].context.endswith(questions[0].question) and items[0].continuation == "\nA:"
