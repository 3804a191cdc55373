"""What a judge is: a function from (question, answer, references) to the probability that the answer
is true (kind "truth") or informative (kind "info"), plus a description recorded with the scores."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from truthscope.scoring.similarity import References

KINDS = ("truth", "info")
THRESHOLD = 0.5  # upstream thresholds GPT-judge's P(" yes") at 0.5


@dataclass(frozen=True)
class JudgeItem:
    question: str
    answer: str
    references: References  # the question's reference answers (used by the trained judges only)


@runtime_checkable
class Judge(Protocol):
    kind: str

    def score(self, items: Sequence[JudgeItem]) -> list[float]:
        """P(true) or P(informative) per item, in item order."""
        ...

    def describe(self) -> dict:
        """Identity and measured agreement with human labels, stored in every summary it scores."""
        ...


def check_kind(kind: str) -> str:
    from truthscope.errors import TruthscopeError

    if kind not in KINDS:
        raise TruthscopeError(f"unknown judge kind {kind!r}; choose one of {', '.join(KINDS)}")
    return kind
