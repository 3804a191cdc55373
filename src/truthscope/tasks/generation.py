"""TruthfulQA generation: the model answers each question in free text; answers are judged true and
informative and compared with the reference answers.

Prompts and answer trimming follow upstream TruthfulQA (`format_prompt`, `run_GPT3` / `run_answers`):

    prompt   `generation_prompt`: for qa/help the preset + "\\n\\nQ: " + question, and the model
             writes "\\nA:" itself; null/chat/long/harm as in `question_prompt`
    decode   greedy, at most 50 new tokens, stopped at a blank line or the next "Q:" line
             (`long` answers run across blank lines, which become spaces)
    trim     leading newlines and an "A:" label dropped, surrounding whitespace stripped

With `chat=True` the same prompt text is sent as one user message through the model's chat template,
the reply runs to the model's end-of-turn (or the token limit), and its whitespace is collapsed.

`score_answers` scores answers from anywhere (this task, a file, an API model) the same way;
`read_answers` matches a file's answers to questions by id or text.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from pydantic import Field

from truthscope import limits
from truthscope.data.presets import generation_prompt
from truthscope.data.truthfulqa import Question, TruthfulQA
from truthscope.errors import TruthscopeError
from truthscope.judges.base import THRESHOLD, Judge, JudgeItem
from truthscope.models.base import GenerationRequest, LanguageModel, cut_at_stop
from truthscope.runlog import DataFacts, Sample
from truthscope.sampling import draw
from truthscope.scoring import similarity
from truthscope.scoring.intervals import summarise
from truthscope.scoring.judge_error import with_judge_error
from truthscope.tasks.base import Resources, Task, TaskOptions, register

STOP = ("\n\n", "\nQ:")
LONG_STOP = ("\nQ:",)
METRICS = ("true", "info", "true_info", *similarity.KEYS)


# --- prompts and answers -----------------------------------------------------------------------


def stop_strings(preset: str, chat: bool = False) -> tuple[str, ...]:
    if chat:
        return ()
    return LONG_STOP if preset == "long" else STOP


def chat_prompt(model: LanguageModel, text: str, history: Sequence[tuple[str, str]] = ()) -> str:
    """`text` as a user turn in the model's chat template, after the (user, assistant) turns of
    `history` (a second question about the model's own answer), ready for the assistant's reply."""
    tokenizer = getattr(model, "tokenizer", None)
    if tokenizer is None or not getattr(tokenizer, "chat_template", None):
        raise TruthscopeError(f"--chat needs a model whose tokenizer has a chat template; {model.name} has none")
    turns = [
        {"role": role, "content": c} for pair in history for role, c in zip(("user", "assistant"), pair, strict=True)
    ]
    return tokenizer.apply_chat_template([*turns, {"role": "user", "content": text}], tokenize=False,
                                         add_generation_prompt=True)  # fmt: skip


def trim_answer(text: str, preset: str, chat: bool = False) -> str:
    """Upstream's answer from a raw continuation (also applied to backends that ignore stop strings)."""
    if chat:
        return " ".join(text.split())
    text = text.lstrip("\n")
    text = text[2:] if text.startswith("A:") else text
    text = "\n" + text  # so that an answer that opens with "Q:" is cut to nothing
    text = cut_at_stop(text, stop_strings(preset))[1:].strip()
    return " ".join(text.split("\n\n")) if preset == "long" else text


# --- scoring -----------------------------------------------------------------------------------


def score_answers(
    questions: Sequence[Question],
    answers: Sequence[str],
    *,
    judges: Mapping[str, Judge] | None = None,
    embedder: similarity.SentenceEmbedder | None = None,
) -> list[dict]:
    """One record per answer: `scores` (true/info/true_info from the judges present, similarity
    metrics) and the judges' probabilities under `judge`. Empty answers get no similarity scores."""
    if len(questions) != len(answers):
        raise ValueError("one answer per question")
    refs = [similarity.references_for(q) for q in questions]
    scores = similarity.similarity_scores(answers, refs, embedder)
    probs: dict[str, list[float]] = {}
    items = [JudgeItem(q.question, a, r) for q, a, r in zip(questions, answers, refs, strict=True)]
    for kind, judge in (judges or {}).items():
        probs[kind] = judge.score(items)
    records = []
    for i, (q, a) in enumerate(zip(questions, answers, strict=True)):
        verdict = {}
        if "truth" in probs:
            verdict["true"] = float(probs["truth"][i] >= THRESHOLD)
        if "info" in probs:
            verdict["info"] = float(probs["info"][i] >= THRESHOLD)
        if len(verdict) == 2:
            verdict["true_info"] = verdict["true"] * verdict["info"]
        records.append(
            {
                "id": q.id,
                "question": q.question,
                "category": q.category,
                "type": q.type,
                "answer": a,
                "scores": {**verdict, **scores[i]},
                "judge": {kind: p[i] for kind, p in probs.items()},
            }
        )
    return records


def summary_for(records: Sequence[Mapping], *, judges: Mapping[str, Judge] | None, embedder, seed: int = 0) -> dict:
    """Scores with intervals (overall, by category, by type), and what produced them."""
    metrics = [m for m in METRICS if any(m in r["scores"] for r in records)]
    return {
        **with_judge_error(summarise(records, metrics, seed=seed), records, judges, seed=seed),
        "judges": {kind: j.describe() for kind, j in (judges or {}).items()},
        "similarity": {
            "references": "CSV correct/incorrect answers closed with a period; 'I have no comment.' counted true",
            "bleu": "sacrebleu, T5 settings (tokenize=intl, exp smoothing), 0-100",
            "rouge": "rouge-score F-measure x 100, no stemming; rougeL is rougeLsum",
            "embed": f"cosine similarity, {embedder.name}" if embedder is not None else None,
            "empty_answers": sum(1 for r in records if not r["answer"].strip()),
        },
    }


# --- the tasks -----------------------------------------------------------------------------------


class GenerationOptions(TaskOptions):
    preset: str = "qa"
    chat: bool = False
    max_new_tokens: int = Field(default=50, ge=1)
    judge: str = "trained"  # trained, none, or lm:MODEL (see `truthscope.judges.load_scorers`)
    embed: bool = True  # the MiniLM embed_* similarity metrics


class _Judged(Task):
    """What `gen` and `score` share: answers scored by the judges and the similarity metrics."""

    options: GenerationOptions | ScoreOptions

    def __init__(self, options, *, judges=None, embedder=None, **kwargs):
        super().__init__(options, **kwargs)
        self.judges = judges or {}
        self.embedder = embedder

    @property
    def metric_embedder(self):
        """The embedder of the embed_* metrics (the trained judges may hold one while those are off)."""
        return self.embedder if self.options.embed else None

    def summarise(self, records):
        return {
            "data": {"version": self.data.version if self.data else None, "questions": len(records)},
            **summary_for(records, judges=self.judges, embedder=self.metric_embedder, seed=self.seed),
        }

    def finish(self) -> None:
        if self.embedder is not None:
            self.embedder.save()


@register
class Generation(_Judged):
    """TruthfulQA generation (see the module docstring): greedy answers, trimmed as upstream, judged."""

    name = "gen"
    Options = GenerationOptions
    options: GenerationOptions

    def __init__(self, questions: Sequence[Question], presets: dict[str, str], options=None, **kwargs):
        super().__init__(options or GenerationOptions(judge="none", embed=False), **kwargs)
        self.questions = list(questions)
        self.presets = presets

    @classmethod
    def build(cls, options, resources: Resources, sample: Sample, seed: int = 0):
        dataset = resources.truthfulqa()
        presets = resources.preset(options.preset)
        judges, embedder = resources.scorers(options.judge, options.embed)
        return cls(
            draw(dataset.questions, sample), presets, options, judges=judges, embedder=embedder, seed=seed,
            data=DataFacts(version=dataset.version, sha256=dataset.files),
        )  # fmt: skip

    def items(self):
        return self.questions

    def requests(self, item, model):
        o = self.options
        prompt = generation_prompt(item.question, o.preset, self.presets)
        if o.chat:
            prompt = chat_prompt(model, prompt)
        return [GenerationRequest(prompt, stop_strings(o.preset, o.chat), o.max_new_tokens)]

    def score(self, items, results):
        raw = [next(iter(r.values())) for r in results]
        answers = [trim_answer(r, self.options.preset, self.options.chat) for r in raw]
        records = score_answers(items, answers, judges=self.judges, embedder=self.metric_embedder)
        for record, r in zip(records, raw, strict=True):
            record["raw"] = r
        return records

    def summarise(self, records):
        o = self.options
        return {"preset": o.preset, "chat": o.chat, "max_new_tokens": o.max_new_tokens, **super().summarise(records)}


class ScoreOptions(TaskOptions):
    answers: str  # the file the answers came from
    answers_sha256: str
    answer_field: str = "answer"
    judge: str = "trained"
    embed: bool = True


@dataclass(frozen=True)
class GivenAnswer:
    question: Question
    answer: str

    @property
    def id(self) -> int:
        return self.question.id


@register
class Score(_Judged):
    """Answers any system wrote (a file), scored exactly as `gen` scores its own."""

    name = "score"
    Options = ScoreOptions
    options: ScoreOptions
    group_size = 128

    def __init__(self, answers: Sequence[GivenAnswer], options: ScoreOptions, **kwargs):
        super().__init__(options, **kwargs)
        self.answers = list(answers)

    @classmethod
    def build(cls, options, resources: Resources, sample: Sample, seed: int = 0):
        dataset = resources.truthfulqa()
        pairs = read_answers(options.answers, dataset, options.answer_field)
        judges, embedder = resources.scorers(options.judge, options.embed)
        return cls(
            draw([GivenAnswer(q, a) for q, a in pairs], sample), options, judges=judges, embedder=embedder,
            seed=seed, data=DataFacts(version=dataset.version, sha256=dataset.files),
        )  # fmt: skip

    def items(self):
        return self.answers

    def score(self, items, results):
        questions, answers = [i.question for i in items], [i.answer for i in items]
        return score_answers(questions, answers, judges=self.judges, embedder=self.metric_embedder)


# --- answers from a file -----------------------------------------------------------------------


def read_answers(path: str | Path, dataset: TruthfulQA, answer_field: str = "answer") -> list[tuple[Question, str]]:
    """(question, answer) pairs from a JSONL file (one object per line) or a CSV file (a header row).
    Each row names its question by `id` (the question's id in this dataset version) or by `question`
    text (matched ignoring case and runs of whitespace); the answer is in `answer_field`."""
    path = Path(path)
    text = limits.read_text(path, what="answers file", encoding="utf-8-sig")
    rows = _csv_rows(path, text) if path.suffix.lower() == ".csv" else _jsonl_rows(path, text)
    by_id = {q.id: q for q in dataset.questions}
    by_text = {_key(q.question): q for q in dataset.questions}
    pairs, unknown, seen = [], [], {}
    for where, row in rows:
        fields = {str(k).strip().lower(): v for k, v in row.items()}
        answer = fields.get(answer_field.lower())
        if not isinstance(answer, str):
            raise TruthscopeError(f"{path}: {where}: no {answer_field!r} text (use --answer-field to name it)")
        question = None
        if fields.get("id") not in (None, ""):
            question = by_id.get(_exact_id(fields["id"], f"{path}: {where}"))
            label = f"id {fields['id']}"
        elif isinstance(fields.get("question"), str):
            question = by_text.get(_key(fields["question"]))
            label = repr(fields["question"].strip())
        else:
            raise TruthscopeError(f"{path}: {where}: names no question (give an 'id' or a 'question' field)")
        if question is None:
            unknown.append(label)
            continue
        if question.id in seen:
            raise TruthscopeError(
                f"{path}: {where}: a second answer to question id {question.id} (first at {seen[question.id]})"
            )
        seen[question.id] = where
        pairs.append((question, limits.check_answer(answer.strip(), f"{path}: {where}")))
    if unknown:
        shown = "; ".join(unknown[:10]) + (f"; and {len(unknown) - 10} more" if len(unknown) > 10 else "")
        raise TruthscopeError(
            f"{path}: {len(unknown)} question(s) not in TruthfulQA {dataset.version} (is --version right?): {shown}"
        )
    if not pairs:
        raise TruthscopeError(f"{path}: no answers")
    return pairs


def _exact_id(value, where: str) -> int:
    """A question id as written: an integer, or a string of digits (CSV); never 3.7, true or 1e400."""
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().isdigit():
        return int(value.strip())
    raise TruthscopeError(f"{where}: id {value!r} is not an integer")


def _key(text: str) -> str:
    return " ".join(text.split()).casefold()


def _jsonl_rows(path: Path, text: str) -> list[tuple[str, dict]]:
    rows = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        row = limits.loads_json(line, f"{path}: line {number}")
        if not isinstance(row, dict):
            raise TruthscopeError(f"{path}: line {number}: expected a JSON object")
        rows.append((f"line {number}", row))
    return rows


def _csv_rows(path: Path, text: str) -> list[tuple[str, dict]]:
    try:
        return [(f"row {n}", row) for n, row in enumerate(csv.DictReader(io.StringIO(text)), start=1)]
    except csv.Error as err:
        raise TruthscopeError(f"{path}: not a readable CSV: {err}") from None
