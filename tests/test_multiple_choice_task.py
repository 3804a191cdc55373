"""The multiple-choice task end to end on a mock model: requests, scores, records, resume."""

import json
import math

import pytest

from truthscope.data import load_presets, load_truthfulqa
from truthscope.models import MockModel
from truthscope.runlog import RunLog, read_run
from truthscope.tasks.multiple_choice import answer_sets, binary_answer_set, close_with_period, run_multiple_choice


@pytest.fixture(scope="module")
def v2021(data_dir):
    return load_truthfulqa(data_dir, "2021")


@pytest.fixture(scope="module")
def v2025(data_dir):
    return load_truthfulqa(data_dir, "2025")


def test_harness_protocol_uses_mc_targets_verbatim(v2021, data_dir):
    q = v2021.questions[0]
    sets = answer_sets(q, "harness", "qa", load_presets(data_dir))
    assert [s.name for s in sets] == ["mc1", "mc2"]
    assert sets[0].answers == tuple(a for a, _ in q.mc1_targets)
    assert sets[0].context.endswith(f"\n\nQ: {q.question}\nA:")


def test_upstream_protocol_closes_answers_and_finds_the_best(v2025, data_dir):
    q = v2025.questions[0]
    [all_answers, binary] = answer_sets(q, "upstream", "qa", load_presets(data_dir))
    assert all(a.endswith(".") for a in all_answers.answers)
    assert all_answers.answers[all_answers.best_index] == close_with_period(q.best_answer)
    assert sum(all_answers.labels) == len(
        {close_with_period(a) for a in q.correct_answers} | {close_with_period(q.best_answer)}
    )
    assert binary.name == "mc0"


def test_binary_order_is_seeded_per_question_and_varies(v2025):
    orders = [binary_answer_set(q, seed=0).labels for q in v2025.questions[:40]]
    assert orders == [binary_answer_set(q, seed=0).labels for q in v2025.questions[:40]]
    assert (1, 0) in orders and (0, 1) in orders  # the correct option is not always first


def _true_answers_likelier(dataset):
    """A mock that gives true answers log-prob -1 and false ones -3 (harness and binary letters)."""
    table = {}
    for q in dataset.questions:
        for targets in (q.mc1_targets, q.mc2_targets):
            for a, label in targets:
                table.setdefault(" " + a, -1.0 if label else -3.0)
    return table


def test_run_scores_and_summary(v2021, data_dir, tmp_path):
    from dataclasses import replace

    small = replace(v2021, questions=v2021.questions[:30])
    table = _true_answers_likelier(small)
    run = RunLog(tmp_path / "run", {"task": "mc"})
    summary = run_multiple_choice(MockModel(logprobs=table), small, load_presets(data_dir), run, progress=False)
    # answers shared between a true and a false list would break the oracle: skip those questions
    clean = [
        r
        for r in run.records.values()
        if all(a["logprob"] == (-1.0 if a["label"] else -3.0) for a in r["answers"]["mc2"] + r["answers"]["mc1"])
    ]
    assert clean and all(r["scores"]["mc1"] == 1.0 and r["scores"]["mc3"] == 1.0 for r in clean)
    for r in clean:
        n_true = sum(a["label"] for a in r["answers"]["mc2"])
        n_false = len(r["answers"]["mc2"]) - n_true
        expected = n_true * math.exp(-1) / (n_true * math.exp(-1) + n_false * math.exp(-3))
        assert r["scores"]["mc2"] == pytest.approx(expected)
    assert set(summary["scores"]) == {"mc1", "mc2", "mc3"}
    assert summary["data"]["questions"] == 30 and summary["data"]["sha256"]
    assert set(summary["by_type"]) <= {"Adversarial", "Non-Adversarial"}
    config, records, stored = read_run(tmp_path / "run")
    assert [r["id"] for r in records] == sorted(q.id for q in small.questions)
    assert stored["scores"] == summary["scores"]


def test_2025_run_has_binary_scores(v2025, data_dir, tmp_path):
    from dataclasses import replace

    small = replace(v2025, questions=v2025.questions[:10])
    summary = run_multiple_choice(MockModel(), small, load_presets(data_dir), RunLog(tmp_path, {}), progress=False)
    assert {"mc0", "mc0_acc", "mc1", "mc2", "mc3"} == set(summary["scores"])
    assert all(0.0 <= v["mean"] <= 1.0 for v in summary["scores"].values())


def test_resume_after_a_cut_line_gives_identical_records(v2021, data_dir, tmp_path):
    from dataclasses import replace

    small = replace(v2021, questions=v2021.questions[:50])
    presets = load_presets(data_dir)
    run_multiple_choice(
        MockModel(), small, presets, RunLog(tmp_path / "whole", {}), questions_per_call=8, progress=False
    )
    whole = (tmp_path / "whole" / "records.jsonl").read_text()

    # a run that died mid-write: two groups recorded, the third cut in the middle of a line
    partial = tmp_path / "partial"
    run_multiple_choice(
        MockModel(),
        replace(small, questions=small.questions[:24]),
        presets,
        RunLog(partial, {}),
        questions_per_call=8,
        progress=False,
    )
    lines = (partial / "records.jsonl").read_text().splitlines(keepends=True)
    (partial / "records.jsonl").write_text("".join(lines[:19]) + lines[19][:40])
    (partial / "summary.json").unlink()

    model = MockModel()
    summary = run_multiple_choice(model, small, presets, RunLog(partial, {}), questions_per_call=8, progress=False)
    assert summary["resumed_with"] == 19
    assert (partial / "records.jsonl").read_text() == whole
    assert model.calls == 5  # 7 groups of 8: groups 1-2 skipped, 3 (partly recorded) to 7 computed


def test_other_arguments_cannot_resume_a_run(tmp_path):
    from truthscope.errors import TruthscopeError

    RunLog(tmp_path, {"model": "a", "preset": "qa"})
    with pytest.raises(TruthscopeError, match="preset differ"):
        RunLog(tmp_path, {"model": "a", "preset": "help"})
    json.loads((tmp_path / "config.json").read_text())  # untouched
