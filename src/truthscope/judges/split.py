"""The frozen, question-held-out test split of the labelled answers (both judges share it).

A fifth of the 817 TruthfulQA (2021) questions is held out: every question text is hashed with the
split's seed, SHA-256("truthscope-judge-split:<seed>\\n<question>"), and the questions with the lowest
hashes form the test part. The choice depends on the question texts only, not on any file's order.
All labelled answers to a held-out question (truth and info) are test answers; the judges train,
and cross-validate every design choice, on the rest only.

The split is packaged as `test_split.json`: the held-out questions (sorted) and the SHA-256 of that
list, checked whenever the file is read. A trained judge records the split's SHA-256 and is refused
when it does not match (`TrainedJudge.load`).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from truthscope.errors import TruthscopeError

SPLIT_FILE = Path(__file__).with_name("test_split.json")
TEST_FRACTION = 0.2
SPLIT_SEED = 0


def question_key(question: str, seed: int = SPLIT_SEED) -> str:
    return hashlib.sha256(f"truthscope-judge-split:{seed}\n{question.strip()}".encode()).hexdigest()


def list_sha256(questions: Iterable[str]) -> str:
    """SHA-256 of the held-out questions, sorted, one per line (UTF-8)."""
    return hashlib.sha256("\n".join(sorted(questions)).encode()).hexdigest()


@dataclass(frozen=True)
class Split:
    questions: frozenset[str]  # the held-out (test) question texts
    sha256: str
    fraction: float = TEST_FRACTION
    seed: int = SPLIT_SEED
    n_questions: int = 0  # how many questions the split was drawn from

    def is_test(self, questions: Iterable[str]) -> np.ndarray:
        """[n] bool: whether each question (text) is held out."""
        return np.array([q.strip() in self.questions for q in questions], dtype=bool)

    def describe(self) -> dict:
        return {
            "sha256": self.sha256,
            "fraction": self.fraction,
            "seed": self.seed,
            "test_questions": len(self.questions),
            "of_questions": self.n_questions,
            "grouped_by": "question",
        }

    def to_json(self) -> dict:
        return {**self.describe(), "questions": sorted(self.questions)}


def make_split(questions: Iterable[str], fraction: float = TEST_FRACTION, seed: int = SPLIT_SEED) -> Split:
    """Hold out round(fraction * n) of the distinct questions: those with the lowest seeded hashes."""
    unique = sorted({q.strip() for q in questions})
    if not 0 < fraction < 1:
        raise ValueError("fraction must be between 0 and 1")
    n_test = round(fraction * len(unique))
    held = frozenset(sorted(unique, key=lambda q: question_key(q, seed))[:n_test])
    return Split(held, list_sha256(held), fraction, seed, len(unique))


def load_split(path: str | Path | None = None) -> Split:
    """The packaged split (or the one at `path`), its list checked against its recorded SHA-256."""
    path = Path(path) if path is not None else SPLIT_FILE
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
        questions, recorded = raw["questions"], raw["sha256"]
    except (OSError, json.JSONDecodeError, KeyError, TypeError) as err:
        raise TruthscopeError(f"{path}: cannot read the judges' test split ({err})") from None
    if list_sha256(questions) != recorded or len(set(questions)) != len(questions):
        raise TruthscopeError(
            f"{path}: the held-out question list does not match its recorded SHA-256 {recorded[:12]}...; "
            "the frozen judge test split has been altered (reinstall truthscope)"
        )
    return Split(
        frozenset(questions), recorded, raw.get("fraction", TEST_FRACTION), raw.get("seed", SPLIT_SEED),
        raw.get("of_questions", 0),
    )  # fmt: skip


def write_split(split: Split, path: str | Path = SPLIT_FILE) -> Path:
    path = Path(path)
    path.write_text(json.dumps(split.to_json(), indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    return path
