"""The multiple-choice task end to end on a mock model: requests, scores, records, resume."""

import json
import math

import pytest

from truthscope.data import load_presets, load_truthfulqa
from truthscope.models import MockModel
from truthscope.runlog import RunLog, read_run
from truthscope.tasks.base import evaluate
from truthscope.tasks.multiple_choice import MultipleChoice, MultipleChoiceOptions, answer_sets, close_with_period


def run_multiple_choice(model, dataset, presets, run, questions_per_call=None, **options):
    task = MultipleChoice(dataset.questions, presets, MultipleChoiceOptions(**options), data=_facts(dataset))
    return evaluate(task, model, run, group_size=questions_per_call)


def _facts(dataset):
    from truthscope.tasks.multiple_choice import dataset_facts

    return dataset_facts(dataset)


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
    [all_answers, letters, swapped, cloze] = answer_sets(q, "upstream", "qa", load_presets(data_dir))
    assert all(a.endswith(".") for a in all_answers.answers)
    assert all_answers.answers[all_answers.best_index] == close_with_period(q.best_answer)
    assert sum(all_answers.labels) == len(
        {close_with_period(a) for a in q.correct_answers} | {close_with_period(q.best_answer)}
    )
    assert (letters.name, swapped.name, cloze.name) == ("mc0", "mc0_swapped", "mc0_cloze")
    assert swapped.labels == letters.labels[::-1] and letters.answers == swapped.answers == ("A", "B")
    assert letters.context.startswith(load_presets(data_dir)["qa"])  # MC0 respects the preset
    assert cloze.context == all_answers.context and set(cloze.answers) == {a for a, _ in q.mc0_targets}


class AlwaysA:
    """Prefers the letter "A" whatever the question: no knowledge at all."""

    name = "always-a"

    def loglikelihood(self, requests):
        from truthscope.models.base import Loglikelihood

        return [Loglikelihood(-0.1 if r.continuation == " A" else -5.0, False, 1) for r in requests]


def test_an_always_a_model_scores_exactly_chance_on_mc0(v2025, data_dir, tmp_path):
    from dataclasses import replace

    small = replace(v2025, questions=v2025.questions[:40])
    summary = run_multiple_choice(AlwaysA(), small, load_presets(data_dir), RunLog(tmp_path, {}))
    assert summary["scores"]["mc0_acc"]["mean"] == 0.5  # one order per question gave 0.508 at seed 0
    assert summary["scores"]["mc0"]["mean"] == pytest.approx(0.5)


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
    summary = run_multiple_choice(MockModel(logprobs=table), small, load_presets(data_dir), run)
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
    assert summary["data"]["questions"] == 30
    assert set(summary["by_type"]) <= {"Adversarial", "Non-Adversarial"}
    config, records, stored = read_run(tmp_path / "run")
    assert [r["id"] for r in records] == sorted(q.id for q in small.questions)
    assert stored["scores"] == summary["scores"]


def test_2025_run_has_binary_scores(v2025, data_dir, tmp_path):
    from dataclasses import replace

    small = replace(v2025, questions=v2025.questions[:10])
    summary = run_multiple_choice(MockModel(), small, load_presets(data_dir), RunLog(tmp_path, {}))
    assert {"mc0", "mc0_acc", "mc0_cloze", "mc0_cloze_acc", "mc1", "mc2", "mc3"} == set(summary["scores"])
    assert all(0.0 <= v["mean"] <= 1.0 for v in summary["scores"].values())


def test_resume_after_a_cut_line_gives_identical_records(v2021, data_dir, tmp_path):
    from dataclasses import replace

    small = replace(v2021, questions=v2021.questions[:50])
    presets = load_presets(data_dir)
    run_multiple_choice(MockModel(), small, presets, RunLog(tmp_path / "whole", {}), questions_per_call=8)
    whole = (tmp_path / "whole" / "records.jsonl").read_text()

    # a run that died mid-write: two groups recorded, the third cut in the middle of a line
    partial = tmp_path / "partial"
    run_multiple_choice(
        MockModel(),
        replace(small, questions=small.questions[:24]),
        presets,
        RunLog(partial, {}),
        questions_per_call=8,
    )
    lines = (partial / "records.jsonl").read_text().splitlines(keepends=True)
    (partial / "records.jsonl").write_text("".join(lines[:19]) + lines[19][:40])
    (partial / "summary.json").unlink()

    model = MockModel()
    summary = run_multiple_choice(model, small, presets, RunLog(partial, {}), questions_per_call=8)
    assert summary["resumed_with"] == 19
    assert (partial / "records.jsonl").read_text() == whole
    assert model.calls == 5  # 7 groups of 8: groups 1-2 skipped, 3 (partly recorded) to 7 computed


def test_other_arguments_cannot_resume_a_run(tmp_path):
    from truthscope.errors import TruthscopeError

    RunLog(tmp_path, {"model": "a", "preset": "qa"})
    with pytest.raises(TruthscopeError, match="preset differ"):
        RunLog(tmp_path, {"model": "a", "preset": "help"})
    json.loads((tmp_path / "config.json").read_text())  # untouched


def test_a_run_folder_from_an_older_truthscope_is_refused_with_a_way_out(tmp_path):
    from truthscope.errors import TruthscopeError

    (tmp_path / "config.json").write_text(json.dumps({"task": "mc", "model": "a"}))
    with pytest.raises(TruthscopeError, match="older truthscope.*new --out"):
        RunLog(tmp_path, {"task": "mc", "model": "a"})


def test_a_backend_returning_too_few_results_is_an_error(v2021, data_dir, tmp_path):
    from dataclasses import replace

    from truthscope.errors import TruthscopeError

    class Short(MockModel):
        def loglikelihood(self, requests):
            return super().loglikelihood(requests)[:-1]

    small = replace(v2021, questions=v2021.questions[:3])
    with pytest.raises(TruthscopeError, match="returned .* results for"):
        run_multiple_choice(Short(), small, load_presets(data_dir), RunLog(tmp_path, {}))


def test_records_need_an_integer_id_and_scores(tmp_path):
    from truthscope.errors import TruthscopeError

    run = RunLog(tmp_path, {})
    for bad in ({"id": "3", "scores": {}}, {"id": 1}, {"id": 2, "scores": {"x": "high"}}):
        with pytest.raises(TruthscopeError, match="not a record"):
            run.append([bad])
