"""Means with 95% intervals, overall and per group.

A proportion (every value 0 or 1) gets a Wilson score interval: the percentile bootstrap of a
proportion has zero width at n = 1 (and whenever all values agree) and covers only about two times
in three at n = 5. A continuous score (MC2, similarity) gets a seeded percentile bootstrap, and so
does every paired difference (analysis.presets, analysis.scaling). Each interval says which it is
under `method`.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence

import numpy as np
from scipy.stats import norm

N_RESAMPLES = 2000


def bootstrap_mean(
    values: Sequence[float] | np.ndarray, n_resamples: int = N_RESAMPLES, seed: int = 0, level: float = 0.95
) -> dict:
    """{"mean", "ci_low", "ci_high", "n", "method": "bootstrap"}: the percentile bootstrap over the
    values (for continuous scores and paired differences); the interval of one value is that value."""
    x = np.asarray(values, dtype=np.float64)
    if x.size == 0:
        raise ValueError("no values")
    mean = float(x.mean())
    if x.size == 1:
        return {"mean": mean, "ci_low": mean, "ci_high": mean, "n": 1, "method": "bootstrap"}
    rng = np.random.default_rng(seed)
    resampled = x[rng.integers(0, x.size, size=(n_resamples, x.size))].mean(axis=1)
    alpha = (1 - level) / 2
    low, high = np.quantile(resampled, [alpha, 1 - alpha])
    return {"mean": mean, "ci_low": float(low), "ci_high": float(high), "n": int(x.size), "method": "bootstrap"}


def wilson_interval(successes: int, n: int, level: float = 0.95) -> tuple[float, float]:
    """The Wilson score interval of a binomial proportion (closed form); never of zero width."""
    if n <= 0:
        raise ValueError("no values")
    if not 0 <= successes <= n:
        raise ValueError(f"{successes} successes out of {n}")
    z = float(norm.ppf(1 - (1 - level) / 2))
    p = successes / n
    denominator = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denominator
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denominator
    return max(0.0, min(p, centre - half)), min(1.0, max(p, centre + half))  # p inside despite rounding


def wilson_mean(values: Sequence[float] | np.ndarray, level: float = 0.95) -> dict:
    """{"mean", "ci_low", "ci_high", "n", "method": "wilson"} of 0/1 values."""
    x = np.asarray(values, dtype=np.float64)
    if x.size == 0:
        raise ValueError("no values")
    if not is_binary(x):
        raise ValueError("a Wilson interval needs values that are all 0 or 1")
    k = int(x.sum())
    low, high = wilson_interval(k, int(x.size), level)
    return {"mean": k / x.size, "ci_low": low, "ci_high": high, "n": int(x.size), "method": "wilson"}


def is_binary(values: Sequence[float] | np.ndarray) -> bool:
    x = np.asarray(values, dtype=np.float64)
    return bool(x.size) and bool(np.all((x == 0) | (x == 1)))


def mean_interval(
    values: Sequence[float] | np.ndarray, seed: int = 0, level: float = 0.95, n_resamples: int = N_RESAMPLES
) -> dict:
    """The interval of one mean: Wilson for a proportion (all values 0/1), else the bootstrap."""
    if is_binary(values):
        return wilson_mean(values, level)
    return bootstrap_mean(values, n_resamples=n_resamples, seed=seed, level=level)


def summarise(records: Iterable[Mapping], metrics: Sequence[str], seed: int = 0) -> dict:
    """`scores` overall plus `by_category` and `by_type`, from records that carry
    `category`, `type` and a `scores` map. A metric whose values are all 0/1 over the records is a
    proportion and gets Wilson intervals in every group; any other gets the bootstrap."""
    records = list(records)
    proportion = {m: is_binary([r["scores"][m] for r in records if r["scores"].get(m) is not None]) for m in metrics}

    def block(rows: list[Mapping]) -> dict:
        out = {}
        for m in metrics:
            values = [r["scores"][m] for r in rows if r["scores"].get(m) is not None]
            if values:
                out[m] = wilson_mean(values) if proportion[m] else bootstrap_mean(values, seed=seed)
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
