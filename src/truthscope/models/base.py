"""The model contract every task is written against.

A `LanguageModel` does two things: the log-likelihood of a continuation given a context, and greedy
generation with stop strings. Backends (Hugging Face, mock, a future API client) implement just that.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol, runtime_checkable


@dataclass(frozen=True)
class LoglikelihoodRequest:
    context: str
    continuation: str


@dataclass(frozen=True)
class Loglikelihood:
    logprob: float  # sum of the continuation tokens' log-probabilities (natural log)
    is_greedy: bool  # every continuation token is the argmax at its position
    n_tokens: int  # continuation length in tokens


@dataclass(frozen=True)
class GenerationRequest:
    prompt: str
    stop: tuple[str, ...] = ()  # the output is cut before the first of these
    max_new_tokens: int = 50


@runtime_checkable
class LanguageModel(Protocol):
    name: str

    def loglikelihood(self, requests: Sequence[LoglikelihoodRequest]) -> list[Loglikelihood]:
        """One result per request, in request order."""
        ...

    def generate(self, requests: Sequence[GenerationRequest]) -> list[str]:
        """Greedy continuation of each prompt, cut at its stop strings, in request order."""
        ...


def cut_at_stop(text: str, stop: Sequence[str]) -> str:
    """`text` up to (not including) the earliest occurrence of any stop string."""
    cut = len(text)
    for s in stop:
        if s and (i := text.find(s)) != -1:
            cut = min(cut, i)
    return text[:cut]
