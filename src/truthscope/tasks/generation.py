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
import json
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

from tqdm import tqdm

from truthscope.data.presets import generation_prompt
from truthscope.data.truthfulqa import Question, TruthfulQA
from truthscope.errors import TruthscopeError
from truthscope.judges.base import THRESHOLD, Judge, JudgeItem
from truthscope.models.base import GenerationRequest, LanguageModel, cut_at_stop
from truthscope.runlog import RunLog
from truthscope.scoring import similarity
from truthscope.scoring.intervals import summarise

STOP = ("\n\n", "\nQ:")
LONG_STOP = ("\nQ:",)
METRICS = ("true", "info", "true_info", *similarity.KEYS)


# --- prompts and answers -----------------------------------------------------------------------


def stop_strings(preset: str, chat: bool = False) -> tuple[str, ...]:
    if chat:
        return ()
    return LONG_STOP if preset == "long" else STOP


def chat_prompt(model: LanguageModel, text: str) -> str:
    """`text` as one user turn in the model's chat template, ready for the assistant's reply."""
    tokenizer = getattr(model, "tokenizer", None)
    if tokenizer is None or not getattr(tokenizer, "chat_template", None):
        raise TruthscopeError(f"--chat needs a model whose tokenizer has a chat template; {model.name} has none")
    return tokenizer.apply_chat_template(
        [{"role": "user", "content": text}], tokenize=False, add_generation_prompt=True
    )


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
    items = [JudgeItem(q.question, a, r) for q, a, r in zip(questions, answers, refs)]
    for kind, judge in (judges or {}).items():
        probs[kind] = judge.score(items)
    records = []
    for i, (q, a) in enumerate(zip(questions, answers)):
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
        **summarise(records, metrics, seed=seed),
        "judges": {kind: j.describe() for kind, j in (judges or {}).items()},
        "similarity": {
            "references": "CSV correct/incorrect answers closed with a period; 'I have no comment.' counted true",
            "bleu": "sacrebleu, T5 settings (tokenize=intl, exp smoothing), 0-100",
            "rouge": "rouge-score F-measure x 100, no stemming; rougeL is rougeLsum",
            "embed": f"cosine similarity, {embedder.name}" if embedder is not None else None,
            "empty_answers": sum(1 for r in records if not r["answer"].strip()),
        },
    }


# --- the task ----------------------------------------------------------------------------------


def run_generation(
    model: LanguageModel,
    dataset: TruthfulQA,
    presets: dict[str, str],
    run: RunLog,
    *,
    preset: str = "qa",
    chat: bool = False,
    max_new_tokens: int = 50,
    judges: Mapping[str, Judge] | None = None,
    embedder: similarity.SentenceEmbedder | None = None,
    seed: int = 0,
    questions_per_call: int = 64,
    progress: bool = True,
) -> dict:
    """Answer and score every question not yet in `run`, one call of `questions_per_call` questions
    at a time (the model batches inside a call); return the summary, also written to the run.

    `judges` ({"truth": ..., "info": ...}, see `judges.load_judges`) give true/info/true_info; without
    them only similarity metrics are computed. `embedder` adds the embed_* metrics."""
    if preset not in presets:
        raise TruthscopeError(f"unknown preset {preset!r}; known: {', '.join(sorted(presets))}")
    started = time.time()
    questions = list(dataset.questions)
    already = sum(run.done(q.id) for q in questions)
    stop = stop_strings(preset, chat)
    generate_seconds = 0.0
    groups = [questions[i : i + questions_per_call] for i in range(0, len(questions), questions_per_call)]
    with tqdm(total=len(questions), initial=already, desc=f"gen {model.name}", unit="q", disable=not progress) as bar:
        for group in groups:
            todo = [q for q in group if not run.done(q.id)]
            if not todo:
                continue
            prompts = [generation_prompt(q.question, preset, presets) for q in todo]
            if chat:
                prompts = [chat_prompt(model, p) for p in prompts]
            t0 = time.time()
            raw = model.generate([GenerationRequest(p, stop, max_new_tokens) for p in prompts])
            generate_seconds += time.time() - t0
            answers = [trim_answer(r, preset, chat) for r in raw]
            records = score_answers(todo, answers, judges=judges, embedder=embedder)
            for record, r in zip(records, raw):
                record["raw"] = r
            run.append(records)
            bar.update(len(todo))
    records = [run.records[q.id] for q in questions]
    summary = {
        "task": "gen",
        "model": model.name,
        "preset": preset,
        "chat": chat,
        "max_new_tokens": max_new_tokens,
        "data": {"version": dataset.version, "questions": len(questions), "sha256": dataset.files},
        **summary_for(records, judges=judges, embedder=embedder, seed=seed),
        **run.provenance(started, resumed_with=already),
        "generate_seconds": round(generate_seconds, 3),
    }
    run.finish(summary)
    return summary


def run_scoring(
    pairs: Sequence[tuple[Question, str]],
    dataset: TruthfulQA,
    run: RunLog,
    *,
    source: str,
    judges: Mapping[str, Judge] | None = None,
    embedder: similarity.SentenceEmbedder | None = None,
    seed: int = 0,
    chunk: int = 128,
) -> dict:
    """Score given (question, answer) pairs into `run` (resumable); return the summary."""
    started = time.time()
    already = sum(run.done(q.id) for q, _ in pairs)
    todo = [(q, a) for q, a in pairs if not run.done(q.id)]
    for start in range(0, len(todo), chunk):
        part = todo[start : start + chunk]
        run.append(score_answers([q for q, _ in part], [a for _, a in part], judges=judges, embedder=embedder))
    records = [run.records[q.id] for q, _ in pairs]
    summary = {
        "task": "score",
        "source": source,
        "data": {"version": dataset.version, "questions": len(pairs), "sha256": dataset.files},
        **summary_for(records, judges=judges, embedder=embedder, seed=seed),
        **run.provenance(started, resumed_with=already),
    }
    run.finish(summary)
    return summary


# --- answers from a file -----------------------------------------------------------------------


def read_answers(path: str | Path, dataset: TruthfulQA, answer_field: str = "answer") -> list[tuple[Question, str]]:
    """(question, answer) pairs from a JSONL file (one object per line) or a CSV file (a header row).
    Each row names its question by `id` (the question's id in this dataset version) or by `question`
    text (matched ignoring case and runs of whitespace); the answer is in `answer_field`."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        raise TruthscopeError(f"{path}: file not found") from None
    except (OSError, UnicodeDecodeError) as err:
        raise TruthscopeError(f"{path}: cannot read: {err}") from None
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
            try:
                question = by_id.get(int(fields["id"]))
            except (TypeError, ValueError):
                raise TruthscopeError(f"{path}: {where}: id {fields['id']!r} is not an integer") from None
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
        pairs.append((question, answer.strip()))
    if unknown:
        shown = "; ".join(unknown[:10]) + (f"; and {len(unknown) - 10} more" if len(unknown) > 10 else "")
        raise TruthscopeError(
            f"{path}: {len(unknown)} question(s) not in TruthfulQA {dataset.version} (is --version right?): {shown}"
        )
    if not pairs:
        raise TruthscopeError(f"{path}: no answers")
    return pairs


def _key(text: str) -> str:
    return " ".join(text.split()).casefold()


def _jsonl_rows(path: Path, text: str) -> list[tuple[str, dict]]:
    rows = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as err:
            raise TruthscopeError(f"{path}: line {number}: not valid JSON ({err.msg})") from None
        if not isinstance(row, dict):
            raise TruthscopeError(f"{path}: line {number}: expected a JSON object")
        rows.append((f"line {number}", row))
    return rows


def _csv_rows(path: Path, text: str) -> list[tuple[str, dict]]:
    try:
        return [(f"row {n}", row) for n, row in enumerate(csv.DictReader(io.StringIO(text)), start=1)]
    except csv.Error as err:
        raise TruthscopeError(f"{path}: not a readable CSV: {err}") from None
