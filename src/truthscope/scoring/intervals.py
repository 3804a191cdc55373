"""Means with seeded percentile-bootstrap 95% intervals, overall and per group."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence

import numpy as np

N_RESAMPLES = 2000


def bootstrap_mean(values: Sequence[float], n_resamples: int = N_RESAMPLES, seed: int = 0, level: float = 0.95) -> dict:
    """{"mean", "ci_low", "ci_high", "n"}; the interval of one value is that value."""
    x = np.asarray(values, dtype=np.float64)
    if x.size == 0:
        raise ValueError("no values")
    mean = float(x.mean())
    if x.size == 1:
        return {"mean": mean, "ci_low": mean, "ci_high": mean, "n": 1}
    rng = np.random.default_rng(seed)
    resampled = x[rng.integers(0, x.size, size=(n_resamples, x.size))].mean(axis=1)
    alpha = (1 - level) / 2
    low, high = np.quantile(resampled, [alpha, 1 - alpha])
    return {"mean": mean, "ci_low": float(low), "ci_high": float(high), "n": int(x.size)}


def summarise(records: Iterable[Mapping], metrics: Sequence[str], seed: int = 0) -> dict:
    """`scores` overall plus `by_category` and `by_type`, from records that carry
    `category`, `type` and a `scores` map."""
    records = list(records)

    def block(rows: list[Mapping]) -> dict:
        out = {}
        for m in metrics:
            values = [r["scores"][m] for r in rows if r["scores"].get(m) is not None]
            if values:
                out[m] = bootstrap_mean(values, seed=seed)
        return out

    grouped: dict[str, dict[str, list]] = {"category": defaultdict(list), "type": defaultdict(list)}
    for r in records:
        for key in grouped:
            grouped[key][r[key]].append(r)
    return {
        "scores": block(records),
        "by_category": {k: block(v) for k, v in sorted(grouped["category"].items())},
        "by_type": {k: block(v) for k, v in sorted(grouped["type"].items())},
    }
