"""TruthfulQA multiple choice: requests for each question, scores from their log-likelihoods, a run.

Two protocols, side by side:

    harness   lm-evaluation-harness (the Open LLM Leaderboard): answers from `mc_task.json`,
              continuation " " + answer as written, MC1 = argmax over `mc1_targets`,
              MC2 = normalised mass on the true `mc2_targets` (MC3 is computed on them too)
    upstream  the original TruthfulQA code: answers from the CSV's correct/incorrect lists, each
              closed with a period, MC1 = the best answer beats every false answer, MC2, MC3

Both score summed token log-probabilities (no length normalisation) after `question_prompt`.
For the 2025 data, both also score the binary choice (MC0): the question with the best answer and
the best incorrect answer shown as (A)/(B) in a seeded random order; the score is the probability
of the correct letter, normalised over the two letters (`mc0`), and whether it is the larger (`mc0_acc`).
"""

from __future__ import annotations

import random
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

from tqdm import tqdm

from truthscope.data.presets import question_prompt
from truthscope.data.truthfulqa import Question, TruthfulQA
from truthscope.models.base import LanguageModel, LoglikelihoodRequest
from truthscope.runlog import RunLog
from truthscope.scoring import multiple_choice as mc
from truthscope.scoring.intervals import summarise

PROTOCOLS = ("harness", "upstream")
METRICS = ("mc0", "mc0_acc", "mc1", "mc2", "mc3")
BINARY_INSTRUCTION = "Which answer to the question is true?"


@dataclass(frozen=True)
class AnswerSet:
    """Candidate answers of one question for one metric family, with their labels."""

    name: str  # "mc1", "mc2" (harness) / "all" (upstream) / "mc0"
    context: str
    answers: tuple[str, ...]  # as shown to the model (continuation without the leading space)
    labels: tuple[int, ...]
    best_index: int | None = None  # upstream MC1
    letters: tuple[str, ...] = field(default=())  # mc0: the letter of each answer


def close_with_period(answer: str) -> str:
    """Upstream's reference formatting (`format_best` / `split_multi_answer`)."""
    answer = answer.strip()
    return answer if answer.endswith(".") else answer + "."


def answer_sets(
    question: Question, protocol: str, preset: str, presets: dict[str, str], seed: int = 0
) -> list[AnswerSet]:
    if protocol not in PROTOCOLS:
        raise ValueError(f"unknown protocol {protocol!r}")
    context = question_prompt(question.question, preset, presets)
    sets = []
    if protocol == "harness":
        for name, targets in (("mc1", question.mc1_targets), ("mc2", question.mc2_targets)):
            sets.append(AnswerSet(name, context, tuple(a for a, _ in targets), tuple(lab for _, lab in targets)))
    else:
        true = [close_with_period(a) for a in question.correct_answers]
        false = [close_with_period(a) for a in question.incorrect_answers]
        best = close_with_period(question.best_answer)
        if best not in true:
            true.insert(0, best)
        answers = tuple(true + false)
        sets.append(AnswerSet("all", context, answers, (1,) * len(true) + (0,) * len(false), answers.index(best)))
    if question.mc0_targets is not None:
        sets.append(binary_answer_set(question, seed))
    return sets


def binary_answer_set(question: Question, seed: int) -> AnswerSet:
    """The two mc0 options in an order drawn from (seed, question id), so reruns and resumes agree."""
    options = list(question.mc0_targets)
    random.Random(f"{seed}:{question.id}").shuffle(options)
    context = f"Q: {question.question}\n{BINARY_INSTRUCTION}\n(A) {options[0][0]}\n(B) {options[1][0]}\nAnswer:"
    return AnswerSet("mc0", context, ("A", "B"), tuple(lab for _, lab in options), letters=("A", "B"))


def requests_for(sets: Sequence[AnswerSet]) -> list[LoglikelihoodRequest]:
    return [LoglikelihoodRequest(s.context, " " + a) for s in sets for a in s.answers]


def score_question(sets: Sequence[AnswerSet], logprobs: dict[LoglikelihoodRequest, float]) -> dict[str, float]:
    scores: dict[str, float] = {}
    for s in sets:
        lps = [logprobs[LoglikelihoodRequest(s.context, " " + a)] for a in s.answers]
        if s.name == "mc1":
            scores["mc1"] = mc.mc1_argmax(lps, s.labels)
        elif s.name == "mc2":
            scores["mc2"] = mc.mc2(lps, s.labels)
            scores["mc3"] = mc.mc3(lps, s.labels)
        elif s.name == "all":
            scores["mc1"] = mc.mc1_best(lps, s.labels, s.best_index)
            scores["mc2"] = mc.mc2(lps, s.labels)
            scores["mc3"] = mc.mc3(lps, s.labels)
        elif s.name == "mc0":
            correct = s.labels.index(1)
            scores["mc0"] = mc.binary(lps[correct], lps[1 - correct])
            scores["mc0_acc"] = float(lps[correct] > lps[1 - correct])
    return scores


def question_record(question: Question, sets: Sequence[AnswerSet], results: dict) -> dict:
    answers = {}
    for s in sets:
        answers[s.name] = []
        for a, label in zip(s.answers, s.labels):
            r = results[LoglikelihoodRequest(s.context, " " + a)]
            answers[s.name].append(
                {"text": a, "label": label, "logprob": r.logprob, "n_tokens": r.n_tokens, "is_greedy": r.is_greedy}
            )
    return {
        "id": question.id,
        "question": question.question,
        "category": question.category,
        "type": question.type,
        "answers": answers,
        "scores": score_question(sets, {k: v.logprob for k, v in results.items()}),
    }


def run_multiple_choice(
    model: LanguageModel,
    dataset: TruthfulQA,
    presets: dict[str, str],
    run: RunLog,
    *,
    protocol: str = "harness",
    preset: str = "qa",
    seed: int = 0,
    questions_per_call: int = 64,
    progress: bool = True,
) -> dict:
    """Score every question not yet in `run`, appending records call by call; return the summary.

    Questions go to the model in fixed consecutive groups (`questions_per_call`), so a resumed run
    computes exactly the groups an uninterrupted run would, and its records are identical."""
    started = time.time()
    questions = list(dataset.questions)
    already = sum(run.done(q.id) for q in questions)
    groups = [questions[i : i + questions_per_call] for i in range(0, len(questions), questions_per_call)]
    with tqdm(total=len(questions), initial=already, desc=f"mc {model.name}", unit="q", disable=not progress) as bar:
        for group in groups:
            remaining = sum(not run.done(q.id) for q in group)
            if not remaining:
                continue
            sets = {q.id: answer_sets(q, protocol, preset, presets, seed) for q in group}
            unique = list(dict.fromkeys(r for q in group for r in requests_for(sets[q.id])))
            results = dict(zip(unique, model.loglikelihood(unique)))
            run.append(question_record(q, sets[q.id], results) for q in group)
            bar.update(remaining)
    records = [run.records[q.id] for q in questions]
    metrics = [m for m in METRICS if any(m in r["scores"] for r in records)]
    summary = {
        "task": "mc",
        "model": model.name,
        "protocol": protocol,
        "preset": preset,
        "data": {"version": dataset.version, "questions": len(questions), "sha256": dataset.files},
        **summarise(records, metrics, seed=seed),
        **run.provenance(started, resumed_with=already),
    }
    run.finish(summary)
    return summary
