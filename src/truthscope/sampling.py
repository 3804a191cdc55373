"""The one way truthscope draws a subset of items: all, the first N, or a seeded random sample.

A seeded sample is drawn with `random.Random(f"{seed}:{purpose}")` and kept in the items' original
order, so every command and every sweep cell that asks for the same (n, seed, purpose) gets the same
items. TruthfulQA's files are ordered by category, so the first N questions are a few categories;
`seeded` is the default wherever a limit is given.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Hashable, Sequence
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


def draw_groups(items: Sequence[T], sample: Sample, group_of: Callable[[T], Hashable], purpose: str) -> list[T]:
    """Whole groups of items, at least `sample.n` items (the last group may add a few): all, the first
    groups in order, or a seeded random set of groups (the same seed convention as `draw`). Returned
    grouped, groups in the order of their first item, items in their original order."""
    groups: dict[Hashable, list[T]] = {}
    for item in items:
        groups.setdefault(group_of(item), []).append(item)
    order = list(groups)
    if sample.how != "all" and sample.n is not None:
        if sample.how == "seeded":
            random.Random(f"{sample.seed}:{purpose}").shuffle(order)
        keep, count = set(), 0
        for key in order:
            if count >= sample.n:
                break
            keep.add(key)
            count += len(groups[key])
        order = [key for key in groups if key in keep]
    return [item for key in order for item in groups[key]]


def sample_of(limit: int | None, draw_mode: str = "seeded", seed: int = 0) -> Sample:
    """The `Sample` for a command's `--limit` and `--draw` (no limit: all items)."""
    if limit is None:
        return Sample(how="all", n=None, seed=seed)
    if draw_mode not in ("first", "seeded"):
        from truthscope.errors import TruthscopeError

        raise TruthscopeError(f"--draw must be first or seeded, not {draw_mode!r}")
    return Sample(how=draw_mode, n=limit, seed=seed)  # type: ignore[arg-type]
