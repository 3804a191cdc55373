"""The model contract every task is written against.

A `LanguageModel` does two things: the log-likelihood of a continuation given a context, and
generation with stop strings (greedy, or sampled at a temperature with a seed).
Backends (Hugging Face, mock, API clients) implement just that.
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
    temperature: float = 0.0  # 0: greedy; above 0: sampled from softmax(logits / temperature)
    seed: int | None = None  # sampled requests: the random seed (required, so a run is reproducible)

    def __post_init__(self):
        if self.temperature < 0 or (self.temperature > 0 and self.seed is None):
            raise ValueError("a sampled GenerationRequest needs temperature > 0 and a seed")


@runtime_checkable
class LanguageModel(Protocol):
    name: str

    def loglikelihood(self, requests: Sequence[LoglikelihoodRequest]) -> list[Loglikelihood]:
        """One result per request, in request order."""
        ...

    def generate(self, requests: Sequence[GenerationRequest]) -> list[str]:
        """The continuation of each prompt (greedy, or sampled as the request says), cut at its stop
        strings, in request order."""
        ...


def cut_at_stop(text: str, stop: Sequence[str]) -> str:
    """`text` up to (not including) the earliest occurrence of any stop string."""
    cut = len(text)
    for s in stop:
        if s and (i := text.find(s)) != -1:
            cut = min(cut, i)
    return text[:cut]
