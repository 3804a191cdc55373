"""Paired preset comparisons: the same model on the same questions under two prompts."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from truthscope.analysis.runs import Run
from truthscope.scoring.intervals import N_RESAMPLES, bootstrap_mean


def paired_difference(a: dict[int, float], b: dict[int, float], seed: int = 0, n_resamples: int = N_RESAMPLES) -> dict:
    """Mean of b - a over the items both scored, with a bootstrap interval over items. Pairing
    removes the between-question variance, which dominates: intervals are much narrower than the
    difference of two independent means would suggest."""
    items = sorted(set(a) & set(b))
    if not items:
        raise ValueError("no shared items")
    return bootstrap_mean([b[i] - a[i] for i in items], n_resamples=n_resamples, seed=seed)


def preset_effects(
    runs: Iterable[Run],
    baseline: str = "qa",
    metrics: Sequence[str] | None = None,
    seed: int = 0,
    n_resamples: int = N_RESAMPLES,
) -> list[dict]:
    """For each model and task, each preset against `baseline`: {model, params, task, metric,
    preset, baseline, mean, ci_low, ci_high, n}, where mean is score(preset) - score(baseline)."""
    groups: dict[tuple, dict[str, Run]] = {}
    for run in runs:
        if run.preset is None:
            continue
        key = (run.model, run.task, run.protocol, run.version)
        groups.setdefault(key, {})[run.preset] = run
    rows = []
    for (model, task, _, _), by_preset in groups.items():
        if baseline not in by_preset:
            continue
        base = by_preset[baseline]
        for preset, run in sorted(by_preset.items()):
            if preset == baseline:
                continue
            for metric in metrics or base.metrics():
                if metric not in run.metrics():
                    continue
                diff = paired_difference(base.values(metric), run.values(metric), seed=seed, n_resamples=n_resamples)
                rows.append(
                    {
                        "model": model,
                        "params": run.params,
                        "task": task,
                        "metric": metric,
                        "preset": preset,
                        "baseline": baseline,
                        **diff,
                    }
                )
    return sorted(rows, key=lambda r: (r["params"] or 0, r["model"], r["task"], r["preset"]))
