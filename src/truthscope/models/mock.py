"""A deterministic model for tests: no weights, no tokenizer.

Log-likelihoods are a fixed pseudo-random function of (context, continuation), or taken from a
table; generations come from a table keyed by prompt substring, else a default answer.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence

from truthscope.models.base import GenerationRequest, Loglikelihood, LoglikelihoodRequest, cut_at_stop


class MockModel:
    def __init__(
        self,
        name: str = "mock",
        logprobs: Mapping[str, float] | None = None,
        answers: Mapping[str, str] | None = None,
        default_answer: str = " I have no comment.",
    ):
        self.name = name
        self.logprobs = dict(logprobs or {})  # continuation text -> log-probability
        self.answers = dict(answers or {})  # prompt substring -> generated text
        self.default_answer = default_answer
        self.calls = 0

    def loglikelihood(self, requests: Sequence[LoglikelihoodRequest]) -> list[Loglikelihood]:
        self.calls += 1
        results = []
        for r in requests:
            if r.continuation in self.logprobs:
                lp = self.logprobs[r.continuation]
            else:
                digest = hashlib.sha256(f"{r.context}\x00{r.continuation}".encode()).digest()
                lp = -1.0 - 20.0 * int.from_bytes(digest[:8], "big") / 2**64
            results.append(Loglikelihood(logprob=lp, is_greedy=False, n_tokens=max(1, len(r.continuation.split()))))
        return results

    def generate(self, requests: Sequence[GenerationRequest]) -> list[str]:
        self.calls += 1
        out = []
        for r in requests:
            text = next((a for key, a in self.answers.items() if key in r.prompt), self.default_answer)
            out.append(cut_at_stop(text, r.stop))
        return out
