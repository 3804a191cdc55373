"""The one way truthscope draws a subset of items: all, the first N, or a seeded random sample.

A seeded sample is drawn with `random.Random(f"{seed}:{purpose}")` and kept in the items' original
order, so every command and every sweep cell that asks for the same (n, seed, purpose) gets the same
items. TruthfulQA's files are ordered by category, so the first N questions are a few categories;
`seeded` is the default wherever a limit is given.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from typing import TypeVar

from truthscope.runlog import Sample

T = TypeVar("T")


def draw(items: Sequence[T], sample: Sample, purpose: str = "questions") -> list[T]:
    """The items `sample` describes, in their original order."""
    if sample.how == "all" or sample.n is None or sample.n >= len(items):
        return list(items)
    if sample.how == "first":
        return list(items[: sample.n])
    keep = sorted(random.Random(f"{sample.seed}:{purpose}").sample(range(len(items)), sample.n))
    return [items[i] for i in keep]


def sample_of(limit: int | None, draw_mode: str = "seeded", seed: int = 0) -> Sample:
    """The `Sample` for a command's `--limit` and `--draw` (no limit: all items)."""
    if limit is None:
        return Sample(how="all", n=None, seed=seed)
    if draw_mode not in ("first", "seeded"):
        from truthscope.errors import TruthscopeError

        raise TruthscopeError(f"--draw must be first or seeded, not {draw_mode!r}")
    return Sample(how=draw_mode, n=limit, seed=seed)  # type: ignore[arg-type]
