"""How well a confidence signal tracks being right: calibration, discrimination, selective answering.

Pure functions of `confidence` (each in [0, 1]) and `correct` (each 0 or 1), one pair per question.

    reliability   the reliability diagram: per bin, its count, mean confidence and accuracy. Bins are
                  equal-width ("uniform") or equal-mass ("quantile") and are assigned exactly as
                  scikit-learn's `calibration_curve` assigns them (a value on an inner edge goes to
                  the lower bin), so the non-empty bins equal its output (tested).
    ece           expected calibration error: sum over bins of (bin count / n) * |accuracy - confidence|
    brier         scikit-learn's `brier_score_loss`
    murphy        Murphy's decomposition over the same bins: reliability - resolution + uncertainty,
                  plus the within-bin term that makes it exact when confidences vary inside a bin
    auroc         scikit-learn's `roc_auc_score` of confidence for correctness (None with one class)
    risk_coverage answer the most confident first: at each distinct confidence threshold, the share
                  answered (coverage) and the error rate among them (risk). Tied confidences enter
                  together, so the curve does not depend on the order of ties.
    aurc          the area under the risk-coverage curve (a step integral over coverage); with no
                  ties, the mean of the risk after each question (Geifman et al. 2019)
    abstention    answering "I have no comment." below a threshold tau: % true, % informative and %
                  true-and-informative over tau (the refusal is true and uninformative, as TruthfulQA
                  scores it); the best tau buys the most truth beyond abstaining at random

scikit-learn has no ECE, Murphy decomposition or risk-coverage curve; those are written here on
the library's binning. `calibration_summary` bootstraps every metric over questions (each question one
resampling unit, so the interval is grouped by question).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import numpy as np
from scipy.stats import rankdata
from sklearn.metrics import brier_score_loss, roc_auc_score

Strategy = Literal["uniform", "quantile"]
N_BINS = 10


def _arrays(confidence, correct) -> tuple[np.ndarray, np.ndarray]:
    p = np.asarray(confidence, dtype=np.float64)
    y = np.asarray(correct, dtype=np.float64)
    if p.shape != y.shape or p.ndim != 1 or p.size == 0:
        raise ValueError("confidence and correct must be non-empty and of one length")
    if np.any(~np.isfinite(p)) or np.any((p < 0) | (p > 1)):
        raise ValueError("confidence must lie in [0, 1]")
    if np.any((y != 0) & (y != 1)):
        raise ValueError("correct must be 0 or 1")
    return p, y


def bin_ids(confidence, n_bins: int = N_BINS, strategy: Strategy = "uniform") -> np.ndarray:
    """The bin of each confidence, as scikit-learn's `calibration_curve` assigns it."""
    p = np.asarray(confidence, dtype=np.float64)
    if strategy == "quantile":
        edges = np.percentile(p, np.linspace(0, 100, n_bins + 1))
    elif strategy == "uniform":
        edges = np.linspace(0.0, 1.0, n_bins + 1)
    else:
        raise ValueError(f"unknown binning {strategy!r}: uniform or quantile")
    return np.searchsorted(edges[1:-1], p)


def reliability(confidence, correct, n_bins: int = N_BINS, strategy: Strategy = "uniform") -> list[dict]:
    """The non-empty bins, in order: {"bin", "n", "confidence", "accuracy"}."""
    p, y = _arrays(confidence, correct)
    ids = bin_ids(p, n_bins, strategy)
    n = np.bincount(ids, minlength=n_bins)
    conf = np.bincount(ids, weights=p, minlength=n_bins)
    acc = np.bincount(ids, weights=y, minlength=n_bins)
    return [
        {"bin": int(b), "n": int(n[b]), "confidence": float(conf[b] / n[b]), "accuracy": float(acc[b] / n[b])}
        for b in np.flatnonzero(n)
    ]


def ece(confidence, correct, n_bins: int = N_BINS, strategy: Strategy = "uniform") -> float:
    p, y = _arrays(confidence, correct)
    ids = bin_ids(p, n_bins, strategy)
    gap = np.bincount(ids, weights=p - y, minlength=n_bins)  # per bin: n * (confidence - accuracy)
    return float(np.abs(gap).sum() / p.size)


def brier(confidence, correct) -> float:
    p, y = _arrays(confidence, correct)
    return float(brier_score_loss(y, p, pos_label=1))


def murphy(confidence, correct, n_bins: int = N_BINS, strategy: Strategy = "uniform") -> dict[str, float]:
    """brier = reliability - resolution + uncertainty + within_bin (within_bin = 0 when every bin holds
    one confidence value)."""
    p, y = _arrays(confidence, correct)
    ids = bin_ids(p, n_bins, strategy)
    base = y.mean()
    rel = res = within = 0.0
    for b in np.unique(ids):
        inside = ids == b
        w, pb, ob = inside.mean(), p[inside], y[inside].mean()
        rel += w * (pb.mean() - ob) ** 2
        res += w * (ob - base) ** 2
        # what makes it exact: the bin's mean of (p - pbar)^2 - 2 (p - pbar)(y - obar)
        within += w * float(np.mean((pb - pb.mean()) ** 2 - 2 * (pb - pb.mean()) * (y[inside] - ob)))
    return {
        "reliability": float(rel),
        "resolution": float(res),
        "uncertainty": float(base * (1 - base)),
        "within_bin": float(within),
    }


def auroc(confidence, correct) -> float | None:
    p, y = _arrays(confidence, correct)
    if y.min() == y.max():
        return None
    return float(roc_auc_score(y, p))


def risk_coverage(confidence, correct) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(thresholds, coverage, risk), most confident first; answering every question whose confidence
    is at least the threshold."""
    p, y = _arrays(confidence, correct)
    order = np.argsort(-p, kind="stable")
    p, y = p[order], y[order]
    answered = np.arange(1, p.size + 1, dtype=np.float64)
    errors = np.cumsum(1 - y)
    last = np.flatnonzero(np.append(p[1:] != p[:-1], True))  # the last question of each tied run
    return p[last], answered[last] / p.size, errors[last] / answered[last]


def aurc(confidence, correct) -> float:
    _, coverage, risk = risk_coverage(confidence, correct)
    steps = np.diff(np.concatenate([[0.0], coverage]))
    return float(np.sum(steps * risk))


def abstention(confidence, true, info, thresholds: Sequence[float]) -> list[dict]:
    """Per threshold tau: questions with confidence < tau get "I have no comment." (true, not
    informative); the others keep their answer's judged truth and informativeness."""
    p, t = _arrays(confidence, true)
    _, i = _arrays(confidence, info)
    rows = []
    for tau in thresholds:
        keep = p >= tau
        rows.append(
            {
                "tau": float(tau),
                "coverage": float(keep.mean()),
                "true": float(np.where(keep, t, 1.0).mean()),
                "info": float(np.where(keep, i, 0.0).mean()),
                "true_info": float(np.where(keep, t * i, 0.0).mean()),
            }
        )
    return rows


def with_excess(rows: Sequence[dict]) -> list[dict]:
    """The rows with `excess_true`: % true beyond what abstaining at random would give at the same %
    informative. Abstaining at random on a share c of answers gives true t0 + c (1 - t0) and info
    i0 (1 - c), so at informativeness i it gives t0 + (i0 - i) (1 - t0) / i0 (t0, i0: answering all)."""
    t0, i0 = rows[0]["true"], rows[0]["info"]
    return [{**r, "excess_true": r["true"] - random_abstention_true(t0, i0, r["info"])} for r in rows]


def random_abstention_true(t0: float, i0: float, info: float) -> float:
    """% true that abstaining at random gives at informativeness `info`, from answering everything
    (% true t0, % informative i0)."""
    return t0 + (i0 - info) * ((1 - t0) / i0 if i0 > 0 else 0.0)


def best_threshold(rows: Sequence[dict]) -> dict:
    """The row with the most truth beyond random abstention (ties: the larger coverage). No
    threshold can raise % true-and-informative itself (a refusal is never informative), so "best"
    is measured against the random-abstention line."""
    return max(with_excess(rows), key=lambda r: (round(r["excess_true"], 12), r["coverage"]))


def truth_per_info(rows: Sequence[dict]) -> float | None:
    """Truth gained per unit of informativeness given up, from answering everything (the first row,
    tau = 0) to the best threshold; None when that threshold abstains on nothing informative.
    Abstaining at random buys (1 - true) / info: the null."""
    first, best = rows[0], best_threshold(rows)
    if first["info"] - best["info"] <= 0:
        return None
    return (best["true"] - first["true"]) / (first["info"] - best["info"])


def cross_fitted_abstention(
    confidence, true, info, thresholds_of, *, folds: int = 2, seed: int = 0, n_resamples: int = 1000
) -> dict:
    """The best threshold without choosing it on the answers it is judged on: questions are dealt
    into `folds` seeded folds, each fold abstains below the threshold that `best_threshold` picks on
    the other folds (candidates `thresholds_of(confidence)` there), and the pooled decisions give
    coverage, % true, % informative and the truth beyond random abstention (`with_excess`'s line
    through answering everything), the last with a percentile-bootstrap interval over questions.
    In-sample, `best_threshold` is optimistic: it is the maximum over thresholds of noisy excesses."""
    p, t = _arrays(confidence, true)
    _, i = _arrays(confidence, info)
    fold = np.random.default_rng(seed).permutation(p.size) % folds
    keep = np.zeros(p.size, dtype=bool)
    taus = []
    for f in range(folds):
        train = fold != f
        rows = abstention(p[train], t[train], i[train], thresholds_of(p[train]))
        taus.append(best_threshold(rows)["tau"])
        keep[fold == f] = p[fold == f] >= taus[-1]
    said_true, said_info = np.where(keep, t, 1.0), np.where(keep, i, 0.0)

    def excess(idx) -> float:
        line = random_abstention_true(t[idx].mean(), i[idx].mean(), said_info[idx].mean())
        return float(said_true[idx].mean() - line)

    rng = np.random.default_rng([seed, 1])
    draws = [excess(rng.integers(0, p.size, p.size)) for _ in range(n_resamples)]
    low, high = np.quantile(draws, [0.025, 0.975])
    return {
        "folds": folds,
        "taus": taus,
        "coverage": float(keep.mean()),
        "true": float(said_true.mean()),
        "info": float(said_info.mean()),
        "true_info": float((said_true * said_info).mean()),
        "excess_true": {"value": excess(np.arange(p.size)), "ci_low": float(low), "ci_high": float(high)},
    }


METRICS = ("ece", "ece_quantile", "brier", "auroc", "aurc")


def rank_auroc(confidence, correct) -> float | None:
    """AUROC as the Mann-Whitney statistic on average ranks: equal to scikit-learn's `roc_auc_score`
    (tested) without its input checks, which dominate a bootstrap's time."""
    p, y = _arrays(confidence, correct)
    positives = int(y.sum())
    negatives = p.size - positives
    if positives == 0 or negatives == 0:
        return None
    ranks = rankdata(p)
    return float((ranks[y == 1].sum() - positives * (positives + 1) / 2) / (positives * negatives))


def point_metrics(confidence, correct, n_bins: int = N_BINS) -> dict[str, float | None]:
    p, y = _arrays(confidence, correct)
    return {
        "ece": ece(p, y, n_bins, "uniform"),
        "ece_quantile": ece(p, y, n_bins, "quantile"),
        "brier": float(np.mean((p - y) ** 2)),  # = brier(); the library's checks cost more than the sum
        "auroc": rank_auroc(p, y),
        "aurc": aurc(p, y),
    }


def calibration_summary(
    confidence, correct, *, n_bins: int = N_BINS, seed: int = 0, n_resamples: int = 1000, level: float = 0.95
) -> dict:
    """Every metric with a percentile-bootstrap interval over questions, the Murphy decomposition,
    the reliability diagram (both binnings) and the risk-coverage curve. A resample where a metric is
    undefined (AUROC with one class) is left out of that metric's interval, and counted."""
    p, y = _arrays(confidence, correct)
    point = {**point_metrics(p, y, n_bins), "brier": brier(p, y), "auroc": auroc(p, y)}  # the library's
    rng = np.random.default_rng(seed)
    draws: dict[str, list[float]] = {m: [] for m in METRICS}
    for _ in range(n_resamples):
        idx = rng.integers(0, p.size, p.size)
        for m, v in point_metrics(p[idx], y[idx], n_bins).items():
            if v is not None:
                draws[m].append(v)
    alpha = (1 - level) / 2
    metrics = {}
    for m in METRICS:
        values = np.asarray(draws[m])
        low, high = np.quantile(values, [alpha, 1 - alpha]) if values.size else (np.nan, np.nan)
        metrics[m] = {
            "value": point[m],
            "ci_low": None if not values.size else float(low),
            "ci_high": None if not values.size else float(high),
            "undefined_resamples": n_resamples - int(values.size),
        }
    thresholds, coverage, risk = risk_coverage(p, y)
    return {
        "n": int(p.size),
        "accuracy": float(y.mean()),
        "mean_confidence": float(p.mean()),
        "bins": n_bins,
        "resamples": n_resamples,
        "metrics": metrics,
        "murphy": murphy(p, y, n_bins),
        "reliability": {s: reliability(p, y, n_bins, s) for s in ("uniform", "quantile")},
        "risk_coverage": {
            "threshold": thresholds.tolist(),
            "coverage": coverage.tolist(),
            "risk": risk.tolist(),
        },
    }
