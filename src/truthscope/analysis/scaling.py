"""Score against log10(parameters): a least-squares slope with a paired bootstrap 95% interval.

Every model answers the same items, so the bootstrap resamples items (questions, statements) once
per replicate and refits the slope on the models' means over that resample. The interval therefore
says how much the slope depends on which questions were asked; it cannot say how much it depends on
which models were picked: with two models the slope is their difference over the size ratio, and a
family or training difference between them is folded into it.

The slope is in score units per 10x parameters.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

import numpy as np

from truthscope.analysis.runs import Run, by_setting, shared_values
from truthscope.scoring.intervals import N_RESAMPLES, bootstrap_mean


def fit_slope(
    values: Mapping[str, Mapping[int, float]],
    params: Mapping[str, float],
    *,
    n_resamples: int = N_RESAMPLES,
    seed: int = 0,
    level: float = 0.95,
) -> dict:
    """{slope, ci_low, ci_high, n_items, n_models, intercept} of mean score vs log10(params).

    `values` maps each model to {item id: score}; only items every model scored are used. Needs two
    models of different sizes and at least one shared item."""
    slope, intercept, replicates, n_items = _slope_and_replicates(values, params, n_resamples, seed)
    low, high = _interval(replicates, level)
    return {
        "slope": slope,
        "ci_low": low,
        "ci_high": high,
        "intercept": intercept,
        "n_items": n_items,
        "n_models": len(values),
    }


def slope_difference(
    a: Mapping[str, Mapping[int, float]],
    b: Mapping[str, Mapping[int, float]],
    params: Mapping[str, float],
    *,
    n_resamples: int = N_RESAMPLES,
    seed: int = 0,
    level: float = 0.95,
) -> dict:
    """Slope of `a` minus slope of `b` (same models, different items, e.g. TruthfulQA questions and
    verifier statements), with an interval from resampling each item set independently."""
    slope_a, _, replicates_a, _ = _slope_and_replicates(a, params, n_resamples, seed)
    slope_b, _, replicates_b, _ = _slope_and_replicates(b, params, n_resamples, seed + 1)
    low, high = _interval(replicates_a - replicates_b, level)
    return {"mean": slope_a - slope_b, "ci_low": low, "ci_high": high}


def _slope_and_replicates(values, params, n_resamples: int, seed: int):
    models = list(values)
    if len(models) < 2:
        raise ValueError("a slope needs at least two models")
    x = np.log10(np.array([params[m] for m in models], dtype=np.float64))
    if np.ptp(x) == 0:
        raise ValueError("all models have the same parameter count")
    items = sorted(set.intersection(*(set(values[m]) for m in models)))
    if not items:
        raise ValueError("no item scored by every model")
    y = np.array([[values[m][i] for i in items] for m in models], dtype=np.float64)  # [model, item]
    xc = x - x.mean()
    weights = xc / float(xc @ xc)  # slope = means @ weights (least squares on centred x)
    means = y.mean(axis=1)
    slope = float(means @ weights)
    # per-item slopes are linear in the item scores, so a replicate's slope is the mean of the
    # resampled items' own slopes: [item] instead of [resample, model, item] in memory
    item_slopes = weights @ y
    rng = np.random.default_rng(seed)
    replicates = np.concatenate(
        [
            item_slopes[rng.integers(0, len(items), size=(min(500, n_resamples - start), len(items)))].mean(axis=1)
            for start in range(0, n_resamples, 500)
        ]
    )
    return slope, float(means.mean() - slope * x.mean()), replicates, len(items)


def _interval(replicates: np.ndarray, level: float) -> tuple[float, float]:
    alpha = (1 - level) / 2
    low, high = np.quantile(replicates, [alpha, 1 - alpha])
    return float(low), float(high)


def direction(fit: Mapping) -> str:
    """'rises' / 'falls' when the interval excludes zero, else 'flat (no detectable change)'."""
    if fit["ci_low"] > 0:
        return "rises"
    if fit["ci_high"] < 0:
        return "falls"
    return "no detectable change"


def scaling_table(runs: Iterable[Run], metrics: Mapping[str, Sequence[str]] | None = None, seed: int = 0) -> list[dict]:
    """One row per (setting, metric) with at least two sized models: each model's mean with its
    interval on the shared items, and the slope. Statements also get one row per kind of set.
    `metrics` ({task: [metric, ...]}) picks and orders the metrics of a task (default: all)."""
    rows = []
    for group in by_setting(runs).values():
        sized = [r for r in group if r.params]
        if len({r.params for r in sized}) < 2:
            continue
        first = sized[0]
        chosen = (metrics or {}).get(first.task)
        for metric in [m for m in chosen if m in first.metrics()] if chosen else first.metrics():
            rows.append(_row(sized, metric, seed, task=first.task, preset=first.preset, group=None))
        if first.task == "statements":
            kinds = first.groups("kind")
            for kind in sorted(set(kinds.values())):
                items = {i: k for i, k in kinds.items() if k == kind}
                rows.append(_row(sized, "accuracy", seed, task="statements", preset=None, group=kind, items=items))
    return [r for r in rows if r is not None]


def _row(runs: list[Run], metric: str, seed: int, *, task, preset, group, items=None) -> dict | None:
    values = shared_values(runs, metric, items)
    if not any(values.values()):
        return None
    params = {r.model: r.params for r in runs}
    return {
        "task": task,
        "preset": preset,
        "metric": metric,
        "group": group,
        "models": [
            {"model": r.model, "params": r.params, **bootstrap_mean(list(values[r.model].values()), seed=seed)}
            for r in runs
        ],
        "fit": fit_slope(values, params, seed=seed),
    }


def category_scaling(
    runs: Iterable[Run], metric: str, *, task: str = "mc", preset: str | None = "qa", min_items: int = 10, seed: int = 0
) -> list[dict]:
    """Per-category slope of `metric` for the runs of one task and preset. `inverse` marks a slope
    whose whole interval is below zero, on categories with at least `min_items` shared questions (a
    category of three questions has a bootstrap interval too narrow to trust). With k categories
    about 0.025 k are flagged by chance alone: the report says so."""
    chosen = [r for r in runs if r.task == task and r.preset == preset and r.params]
    if len({r.params for r in chosen}) < 2:
        return []
    chosen.sort(key=lambda r: r.params)
    categories = chosen[0].groups("category")
    rows = []
    for category in sorted(set(categories.values())):
        items = {i: c for i, c in categories.items() if c == category}
        values = shared_values(chosen, metric, items)
        n = len(next(iter(values.values())))
        if n == 0:
            continue
        fit = fit_slope(values, {r.model: r.params for r in chosen}, seed=seed)
        rows.append(
            {
                "category": category,
                "n_items": n,
                "means": {m: float(np.mean(list(v.values()))) for m, v in values.items()},
                "fit": fit,
                "inverse": n >= min_items and fit["ci_high"] < 0,
                "testable": n >= min_items,
            }
        )
    return rows


def contrast_table(
    runs: Iterable[Run], baseline: str = "qa", metrics: Sequence[str] = ("mc1", "mc2"), seed: int = 0
) -> list[dict]:
    """The imitative-vs-competence contrast: the slope of each TruthfulQA metric (at `baseline`)
    minus the slope of statement accuracy, per kind of statement set, on the models that ran both."""
    runs = [r for r in runs if r.params]
    mc = {r.model: r for r in runs if r.task == "mc" and r.preset == baseline}
    # if statement runs differ in their sets, use the setting most models share
    settings: dict[tuple, dict[str, Run]] = {}
    for r in runs:
        if r.task == "statements":
            settings.setdefault(r.setting, {})[r.model] = r
    if not settings:
        return []
    statements = max(settings.values(), key=len)
    models = sorted(set(mc) & set(statements), key=lambda m: mc[m].params)
    params = {m: mc[m].params for m in models}
    if len(set(params.values())) < 2:
        return []
    kinds = statements[models[0]].groups("kind")
    rows = []
    for metric in [m for m in metrics if m in mc[models[0]].metrics()]:
        a = shared_values([mc[m] for m in models], metric)
        for kind in sorted(set(kinds.values())):
            items = {i: k for i, k in kinds.items() if k == kind}
            b = shared_values([statements[m] for m in models], "accuracy", items)
            rows.append(
                {"metric": metric, "preset": baseline, "kind": kind, **slope_difference(a, b, params, seed=seed)}
            )
    return rows
