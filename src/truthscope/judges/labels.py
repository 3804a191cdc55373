"""The paper's human labels for training judges: `finetune_truth.jsonl` / `finetune_info.jsonl`.

Each line is `{"prompt": "Q: <question>\\nA: <answer>\\nTrue:", "completion": " yes" | " no"}` (`Helpful:`
for info). Questions are matched to the 2021 CSV, which supplies each question's reference answers.
About a third of the labelled answers are the references themselves (`is_reference`): measured
agreement is reported on all answers and on the others, which look like what a model writes.
The judges train on the questions outside the frozen test split (`judges.split`) and are reported on it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from truthscope.data.files import read_data
from truthscope.data.truthfulqa import load_truthfulqa
from truthscope.errors import DataError
from truthscope.judges.base import JudgeItem, check_kind
from truthscope.judges.features import words
from truthscope.scoring.similarity import references_for

SUFFIX = {"truth": "\nTrue:", "info": "\nHelpful:"}


@dataclass(frozen=True)
class LabelledSet:
    kind: str
    path: str
    sha256: str
    items: tuple[JudgeItem, ...]
    labels: np.ndarray  # [n] 1 = true / informative
    groups: np.ndarray  # [n] question id (2021 CSV row): cross-validation folds never split one
    is_reference: np.ndarray  # [n] the answer is one of its question's reference answers

    def subset(self, rows: np.ndarray) -> LabelledSet:
        """The rows `rows` (indices or a boolean mask), in order; path and hash stay the whole file's."""
        index = np.flatnonzero(rows) if np.asarray(rows).dtype == bool else np.asarray(rows, dtype=np.int64)
        return LabelledSet(
            self.kind, self.path, self.sha256, tuple(self.items[i] for i in index),
            self.labels[index], self.groups[index], self.is_reference[index],
        )  # fmt: skip

    @property
    def questions(self) -> list[str]:
        return [it.question for it in self.items]


def labels_sha256(data_dir: str | Path, kind: str) -> str:
    """SHA-256 of `finetune_<kind>.jsonl`'s plain bytes (as `load_labelled` records it)."""
    from truthscope.data.files import data_file_sha256

    return data_file_sha256(data_dir, f"truthfulqa/finetune_{check_kind(kind)}.jsonl")


def load_labelled(data_dir: str | Path, kind: str) -> LabelledSet:
    check_kind(kind)
    # finetune_*.jsonl, or finetune_*.jsonl.gz as the packaged copy stores them; the hash is of the plain bytes
    data = read_data(data_dir, f"truthfulqa/finetune_{kind}.jsonl", encoding="utf-8")
    path = data.path
    questions = {q.question: q for q in load_truthfulqa(data_dir, "2021")}
    items, labels, groups, is_reference = [], [], [], []
    for number, line in enumerate(data.text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
            prompt, completion = row["prompt"], row["completion"].strip()
        except (json.JSONDecodeError, KeyError, TypeError, AttributeError):
            raise DataError(f"{path}: line {number}: expected {{'prompt': ..., 'completion': ...}}") from None
        if not (prompt.startswith("Q: ") and prompt.endswith(SUFFIX[kind]) and "\nA: " in prompt):
            raise DataError(f"{path}: line {number}: prompt is not 'Q: ...\\nA: ...{SUFFIX[kind]!r}'")
        if completion not in ("yes", "no"):
            raise DataError(f"{path}: line {number}: completion must be ' yes' or ' no', not {completion!r}")
        text, answer = prompt[3 : -len(SUFFIX[kind])].split("\nA: ", 1)
        question = questions.get(text.strip())
        if question is None:
            raise DataError(f"{path}: line {number}: question {text.strip()!r} is not in the 2021 TruthfulQA.csv")
        refs = references_for(question)
        normalised = words(answer)
        items.append(JudgeItem(question.question, answer.strip(), refs))
        labels.append(completion == "yes")
        groups.append(question.id)
        is_reference.append(any(normalised == words(r) for r in (*refs.true, *refs.false)))
    return LabelledSet(
        kind=kind,
        path=str(path),
        sha256=data.sha256,
        items=tuple(items),
        labels=np.array(labels, dtype=np.int64),
        groups=np.array(groups, dtype=np.int64),
        is_reference=np.array(is_reference, dtype=bool),
    )
