"""What changes between models: slopes within a family, otherwise paired differences.

A slope against log10(size) is fitted only on at least three models of one family (size =
non-embedding parameters when the logs record them: a small model's embedding matrix is mostly
vocabulary, so total counts overstate how much larger one small model is than another). Two models,
or models of different or unknown families, give per pair the paired difference B - A over the items
both scored, and never a direction "with size": a family, data or training difference between them
is inseparable from size.

Every model answers the same items, so each bootstrap replicate resamples items (questions,
statements) once for all models. The interval says how much an estimate depends on which questions
were asked; it cannot say how much it depends on which models were picked.

Category flags use a sign-flip test per category (exact where possible) on the paired per-item
statistic, with Benjamini-Hochberg across categories; categories with fewer than `min_items`
questions get neither an interval nor a flag. The imitative-vs-competence contrast puts TruthfulQA
and the statement controls on one above-chance scale, (score - chance) / (1 - chance), before
subtracting.

A slope is in score units per 10x size.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence

import numpy as np
from scipy.stats import binomtest

from truthscope.analysis.runs import Run, by_setting, by_size, mixed_families, shared_values, size_axis
from truthscope.scoring.intervals import N_RESAMPLES, bootstrap_mean, mean_interval

MIN_FAMILY_MODELS = 3  # models of one family needed before a slope (or a direction with size)
ALPHA = 0.05  # the false discovery rate of the category flags


def fit_slope(
    values: Mapping[str, Mapping[int, float]],
    params: Mapping[str, int | None],
    *,
    n_resamples: int = N_RESAMPLES,
    seed: int = 0,
    level: float = 0.95,
) -> dict:
    """{slope, ci_low, ci_high, n_items, n_models, intercept} of mean score vs log10(params).

    `values` maps each model to {item id: score}; only items every model scored are used. Needs two
    models of different sizes and at least one shared item. This is the arithmetic only: the tables
    below call it on at least MIN_FAMILY_MODELS models of one family, never on two."""
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
    replicates = _mean_replicates(weights @ y, n_resamples, seed)
    return slope, float(means.mean() - slope * x.mean()), replicates, len(items)


def _interval(replicates: np.ndarray, level: float) -> tuple[float, float]:
    alpha = (1 - level) / 2
    low, high = np.quantile(replicates, [alpha, 1 - alpha])
    return float(low), float(high)


def _mean_replicates(per_item: np.ndarray, n_resamples: int, seed: int) -> np.ndarray:
    """Bootstrap replicates of the mean of `per_item` (items resampled with replacement)."""
    rng = np.random.default_rng(seed)
    n = len(per_item)
    return np.concatenate(
        [
            per_item[rng.integers(0, n, size=(min(500, n_resamples - start), n))].mean(axis=1)
            for start in range(0, n_resamples, 500)
        ]
    )


def direction(fit: Mapping) -> str:
    """Of a slope within a family: 'rises' / 'falls' when the interval excludes zero, else 'no
    detectable change'."""
    if fit["ci_low"] > 0:
        return "rises"
    if fit["ci_high"] < 0:
        return "falls"
    return "no detectable change"


def difference_word(d: Mapping) -> str:
    """Of a paired difference B - A: 'higher' / 'lower' (B than A) when the interval excludes zero."""
    if d["ci_low"] > 0:
        return "higher"
    if d["ci_high"] < 0:
        return "lower"
    return "no detectable difference"


# --- tests for category flags ---------------------------------------------------------------------


def sign_flip_p(differences: Sequence[float] | np.ndarray, n_flips: int = 20_000, seed: int = 0) -> float:
    """Two-sided p-value of a zero mean for paired per-item differences, under the null that each
    difference is as likely to have either sign. Exact when the nonzero differences share one
    magnitude (0/1 scores: the exact sign test) or are at most 16; otherwise Monte Carlo with
    `n_flips` seeded sign vectors, p = (1 + hits) / (1 + n_flips)."""
    d = np.asarray(differences, dtype=np.float64)
    d = d[np.abs(d) > 1e-12]
    m = len(d)
    if m == 0:
        return 1.0
    magnitudes = np.abs(d)
    if np.allclose(magnitudes, magnitudes[0]):
        return float(binomtest(int((d > 0).sum()), m, 0.5).pvalue)
    observed = abs(d.sum()) - 1e-9 * magnitudes.sum()
    if m <= 16:
        signs = 1.0 - 2.0 * ((np.arange(2**m)[:, None] >> np.arange(m)) & 1)  # every sign vector
        return float(np.mean(np.abs(signs @ d) >= observed))
    rng = np.random.default_rng(seed)
    hits = 0
    for start in range(0, n_flips, 2000):
        signs = rng.choice((-1.0, 1.0), size=(min(2000, n_flips - start), m))
        hits += int((np.abs(signs @ d) >= observed).sum())
    return (1 + hits) / (1 + n_flips)


def benjamini_hochberg(pvalues: Sequence[float]) -> list[float]:
    """BH-adjusted p-values (q-values): flag those <= the false discovery rate wanted."""
    p = np.asarray(pvalues, dtype=np.float64)
    n = len(p)
    if n == 0:
        return []
    order = np.argsort(p)
    ranked = p[order] * n / np.arange(1, n + 1)
    adjusted = np.minimum.accumulate(ranked[::-1])[::-1]
    out = np.empty(n)
    out[order] = np.minimum(adjusted, 1.0)
    return [float(q) for q in out]


# --- which models may be compared how ---------------------------------------------------------------


def slope_families(runs: Iterable[Run]) -> dict[str, list[Run]]:
    """{family: its runs ordered by size} for each known family with at least MIN_FAMILY_MODELS
    models of distinct, known sizes: only these get a slope."""
    by_family: dict[str, list[Run]] = {}
    for run in runs:
        if run.family:
            by_family.setdefault(run.family, []).append(run)
    out = {}
    for family, members in sorted(by_family.items()):
        _, size = size_axis(members)
        if all(size.values()) and len(set(size.values())) == len(members) >= MIN_FAMILY_MODELS:
            out[family] = by_size(members)
    return out


def _per_item_differences(a: Mapping[int, float], b: Mapping[int, float]) -> np.ndarray:
    items = sorted(set(a) & set(b))
    return np.array([b[i] - a[i] for i in items], dtype=np.float64)


def _per_item_slopes(values: Mapping[str, Mapping[int, float]], size: Mapping[str, int | None]) -> np.ndarray:
    """Each shared item's own least-squares slope against log10(size); their mean is the slope."""
    models = list(values)
    items = sorted(set.intersection(*(set(values[m]) for m in models)))
    x = np.log10(np.array([size[m] for m in models], dtype=np.float64))
    xc = x - x.mean()
    y = np.array([[values[m][i] for i in items] for m in models], dtype=np.float64)
    return (xc / float(xc @ xc)) @ y


# --- tables -----------------------------------------------------------------------------------------


def scaling_table(
    runs: Iterable[Run],
    metrics: Mapping[str, Sequence[str]] | None = None,
    seed: int = 0,
    n_resamples: int = N_RESAMPLES,
) -> list[dict]:
    """One row per (setting, metric) with at least two models: each model's mean with its interval
    (Wilson for 0/1 scores) on the shared items; per consecutive pair by size the paired difference
    B - A; and a slope per family with at least MIN_FAMILY_MODELS models. Statements also get one row
    per kind of set. `metrics` ({task: [metric, ...]}) picks and orders the metrics of a task."""
    rows = []
    for group in by_setting(runs).values():
        if len(group) < 2:
            continue
        first = group[0]
        chosen = (metrics or {}).get(first.task)
        for metric in [m for m in chosen if m in first.metrics()] if chosen else first.metrics():
            rows.append(_row(group, metric, seed, n_resamples, task=first.task, preset=first.preset, group=None))
        if first.task == "statements":
            kinds = first.groups("kind")
            for kind in sorted(set(kinds.values())):
                items = {i: k for i, k in kinds.items() if k == kind}
                rows.append(
                    _row(group, "accuracy", seed, n_resamples, task="statements", preset=None, group=kind, items=items)
                )
    return [r for r in rows if r is not None]


def _row(runs: list[Run], metric: str, seed: int, n_resamples: int, *, task, preset, group, items=None) -> dict | None:
    values = shared_values(runs, metric, items)
    if not any(values.values()):
        return None
    axis, size = size_axis(runs)
    fits = []
    for family, members in slope_families(runs).items():
        family_axis, family_size = size_axis(members)
        fit = fit_slope({r.model: values[r.model] for r in members}, family_size, seed=seed, n_resamples=n_resamples)
        fits.append({"family": family, "models": [r.model for r in members], "axis": family_axis, **fit})
    differences = []
    for a, b in zip(runs, runs[1:], strict=False):
        d = bootstrap_mean(_per_item_differences(values[a.model], values[b.model]), n_resamples, seed)
        same = a.family is not None and a.family == b.family
        differences.append({"a": a.model, "b": b.model, "same_family": same, **d})
    return {
        "task": task,
        "preset": preset,
        "metric": metric,
        "group": group,
        "axis": axis,
        "models": [
            {
                "model": r.model,
                "family": r.family,
                "params": r.params,
                "non_embedding_params": r.non_embedding_params,
                "size": size[r.model],
                **mean_interval(list(values[r.model].values()), seed=seed, n_resamples=n_resamples),
            }
            for r in runs
        ],
        "fits": fits,
        "differences": differences,
        "mixed_families": mixed_families(runs),
    }


def category_scaling(
    runs: Iterable[Run],
    metric: str,
    *,
    task: str = "mc",
    preset: str | None = "qa",
    min_items: int = 10,
    alpha: float = ALPHA,
    seed: int = 0,
    n_resamples: int = N_RESAMPLES,
) -> list[dict]:
    """Per category of the runs of one task and preset, the paired per-item statistic: each item's
    slope within the largest family with MIN_FAMILY_MODELS models (`measure` "slope"), otherwise
    the difference largest - smallest model by size (`measure` "difference"). Categories with at
    least `min_items` shared questions get a bootstrap interval and a sign-flip p-value; `q` is the
    Benjamini-Hochberg adjusted p-value across them and `flagged` means q <= alpha. Smaller
    categories get neither (`testable` False). `inverse` marks a flagged negative slope within a
    family; with a difference it is never set, as a difference is not a scaling claim."""
    chosen = by_size(r for r in runs if r.task == task and r.preset == preset)
    if len(chosen) < 2:
        return []
    families = slope_families(chosen)
    if families:
        family = max(families, key=lambda f: (len(families[f]), f))
        compared, measure = families[family], "slope"
        size = size_axis(compared)[1]
    else:
        family, compared, measure, size = None, [chosen[0], chosen[-1]], "difference", None
    categories = compared[0].groups("category")
    rows = []
    for number, category in enumerate(sorted(set(categories.values()))):
        items = {i: c for i, c in categories.items() if c == category}
        values = shared_values(compared, metric, items)
        n = len(next(iter(values.values())))
        if n == 0:
            continue
        if size is not None:  # a slope within one family
            per_item = _per_item_slopes(values, size)
        else:
            per_item = _per_item_differences(values[compared[0].model], values[compared[-1].model])
        testable = n >= min_items
        rows.append(
            {
                "category": category,
                "n_items": n,
                "means": {m: float(np.mean(list(v.values()))) for m, v in values.items()},
                "measure": measure,
                "family": family,
                "compared": [r.model for r in compared],
                "estimate": float(per_item.mean()),
                "interval": bootstrap_mean(per_item, n_resamples, seed) if testable else None,
                "p": sign_flip_p(per_item, seed=seed + number) if testable else None,
                "testable": testable,
            }
        )
    tested = [r for r in rows if r["testable"]]
    for row, q in zip(tested, benjamini_hochberg([r["p"] for r in tested]), strict=True):
        row["q"] = q
    for row in rows:
        row.setdefault("q", None)
        row["flagged"] = row["q"] is not None and row["q"] <= alpha
        row["inverse"] = row["flagged"] and measure == "slope" and row["estimate"] < 0
    return rows


def above_chance(values: Mapping[int, float], chance: Mapping[int, float]) -> tuple[dict[int, float], float]:
    """({item: (score - c) / (1 - c)}, c), c the mean chance score over the items that have one:
    0 is guessing, 1 is every item right. Puts MC1 (chance about 0.2) and balanced true/false
    statements (chance 0.5) on one scale."""
    items = [i for i in values if i in chance]
    if not items:
        return {}, math.nan
    c = float(np.mean([chance[i] for i in items]))
    return {i: (values[i] - c) / (1 - c) for i in items}, c


def contrast_table(
    runs: Iterable[Run],
    baseline: str = "qa",
    metrics: Sequence[str] = ("mc1", "mc2"),
    seed: int = 0,
    n_resamples: int = N_RESAMPLES,
) -> list[dict]:
    """The imitative-vs-competence contrast, on the above-chance scale, on the models that ran both
    TruthfulQA (at `baseline`) and the statement controls, per kind of statement set: within a family
    of at least MIN_FAMILY_MODELS models the slope of TruthfulQA minus the slope of the control
    (`measure` "slope"); otherwise (largest - smallest by size) on TruthfulQA minus the same on the
    control (`measure` "difference"). Question and statement sets are resampled independently."""
    runs = list(runs)
    mc = {r.model: r for r in runs if r.task == "mc" and r.preset == baseline}
    # if statement runs differ in their sets, use the setting most models share
    settings: dict[tuple, dict[str, Run]] = {}
    for r in runs:
        if r.task == "statements":
            settings.setdefault(r.setting, {})[r.model] = r
    if not settings:
        return []
    statements = max(settings.values(), key=len)
    shared = by_size(mc[m] for m in set(mc) & set(statements))
    if len(shared) < 2:
        return []
    families = slope_families(shared)
    if families:
        family = max(families, key=lambda f: (len(families[f]), f))
        compared, measure = families[family], "slope"
    else:
        family, compared, measure = None, [shared[0], shared[-1]], "difference"
    models = [r.model for r in compared]
    axis, size = size_axis(compared)
    kinds = statements[models[0]].groups("kind")
    rows = []
    for metric in [m for m in metrics if m in mc[models[0]].metrics()]:
        a, chance_a = _normalised([mc[m] for m in models], metric)
        if a is None:
            continue
        for kind in sorted(set(kinds.values())):
            items = {i: k for i, k in kinds.items() if k == kind}
            b, _ = _normalised([statements[m] for m in models], "accuracy", items)
            if b is None:
                continue
            if measure == "slope":
                per_a, per_b = _per_item_slopes(a, size), _per_item_slopes(b, size)
            else:
                per_a = _per_item_differences(a[models[0]], a[models[-1]])
                per_b = _per_item_differences(b[models[0]], b[models[-1]])
            replicates = _mean_replicates(per_a, n_resamples, seed) - _mean_replicates(per_b, n_resamples, seed + 1)
            low, high = _interval(replicates, 0.95)
            rows.append(
                {
                    "metric": metric,
                    "preset": baseline,
                    "kind": kind,
                    "measure": measure,
                    "family": family,
                    "models": models,
                    "axis": axis if measure == "slope" else None,
                    "scale": "above chance: (score - chance) / (1 - chance)",
                    "chance": {"truthfulqa": chance_a, "statements": 0.5},
                    "truthfulqa": float(per_a.mean()),
                    "control": float(per_b.mean()),
                    "mean": float(per_a.mean() - per_b.mean()),
                    "ci_low": low,
                    "ci_high": high,
                    "mixed_families": mixed_families(compared),
                }
            )
    return rows


def _normalised(runs: list[Run], metric: str, items=None) -> tuple[dict | None, dict]:
    """{model: above-chance values on the items all runs scored}, {model: chance}; None when some
    run's records do not say what chance is."""
    values = shared_values(runs, metric, items)
    out, chance = {}, {}
    for run in runs:
        out[run.model], chance[run.model] = above_chance(values[run.model], run.chance(metric))
        if not out[run.model]:
            return None, {}
    common = set.intersection(*(set(v) for v in out.values()))
    return {m: {i: v[i] for i in sorted(common)} for m, v in out.items()}, chance
