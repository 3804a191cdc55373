"""Linear truth probes on activation arrays: grouped splits, three ways to fit, and how well they do.

Every probe is the same object, a `LinearProbe`: score(x) = w . (x - mean) / scale + b, positive
meaning "true". The three methods differ only in how w and b are found:

    logistic    scikit-learn logistic regression on standardised features (supervised)
    mass_mean   w = mean(true) - mean(false), threshold half-way between the two class means
                (Marks & Tegmark); no fitting at all, hence hard to overfit
    ccs         Contrast-Consistent Search (Burns et al.): a sigmoid probe trained only to make the
                two members of each contrast pair consistent (p(a) = 1 - p(b)) and confident

CCS needs contrast pairs (two items of which exactly one is true). Our data has no label-free
pairing for every set, so pairs are formed as (a true item, a false item) of the same question when
it has both, else of the same dataset, in random order. The labels are therefore used to form pairs
and to choose the probe's sign (CCS cannot tell "true" from "false"), never in its objective.

Splits are grouped: all items that share a group (the answers of one TruthfulQA question) land on
the same side, so a probe is never tested on a question whose other answers it was trained on.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from truthscope.tasks.statements import auroc

METHODS = ("logistic", "mass_mean", "ccs")


@dataclass(frozen=True)
class LinearProbe:
    method: str
    weight: np.ndarray  # [d], on standardised features
    bias: float
    mean: np.ndarray  # [d]
    scale: np.ndarray  # [d]

    def scores(self, x: np.ndarray) -> np.ndarray:
        """Log-odds that each row of x [n, d] is true (for CCS: its logit)."""
        return ((np.asarray(x, dtype=np.float64) - self.mean) / self.scale) @ self.weight + self.bias

    def direction(self) -> np.ndarray:
        """The unit vector in raw activation space along which the score grows fastest."""
        raw = self.weight / self.scale
        return raw / np.linalg.norm(raw)


# --- splits ------------------------------------------------------------------------------------


def grouped_split(groups: Sequence, test_fraction: float, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(train indices, test indices): a seeded random `test_fraction` of the distinct groups is held out."""
    if not 0 < test_fraction < 1:
        raise ValueError("test_fraction must be between 0 and 1")
    groups = np.asarray(groups)
    unique = np.unique(groups)
    if unique.size < 2:
        raise ValueError("need at least two groups to split")
    shuffled = np.random.default_rng(seed).permutation(unique)
    n_test = min(max(1, round(test_fraction * unique.size)), unique.size - 1)
    is_test = np.isin(groups, shuffled[:n_test])
    return np.flatnonzero(~is_test), np.flatnonzero(is_test)


# --- fitting -----------------------------------------------------------------------------------


def _standardiser(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    mean = x.mean(axis=0)
    scale = x.std(axis=0)
    return mean, np.where(scale > 1e-8, scale, 1.0)


def fit_logistic(x: np.ndarray, y: np.ndarray, groups=None, seed: int = 0, c: float = 0.1) -> LinearProbe:
    """L2-regularised logistic regression; `c` is small because d (~600-2000) is near n."""
    from sklearn.linear_model import LogisticRegression

    x = np.asarray(x, dtype=np.float64)
    mean, scale = _standardiser(x)
    model = LogisticRegression(C=c, max_iter=2000)
    model.fit((x - mean) / scale, y)
    return LinearProbe("logistic", model.coef_[0].copy(), float(model.intercept_[0]), mean, scale)


def fit_mass_mean(x: np.ndarray, y: np.ndarray, groups=None, seed: int = 0) -> LinearProbe:
    """Difference of class means, thresholded at the midpoint (score in raw units, no scaling)."""
    x, y = np.asarray(x, dtype=np.float64), np.asarray(y)
    mu_true, mu_false = x[y == 1].mean(axis=0), x[y == 0].mean(axis=0)
    weight = mu_true - mu_false
    midpoint = (mu_true + mu_false) / 2
    return LinearProbe("mass_mean", weight, float(-weight @ midpoint), np.zeros_like(weight), np.ones_like(weight))


def contrast_pairs(y: np.ndarray, groups: np.ndarray, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Index arrays (a, b), each pair one true and one false item in random order: matched within
    a group while it has both, the leftovers matched across the dataset."""
    rng = np.random.default_rng(seed)
    y, groups = np.asarray(y), np.asarray(groups)
    pairs, spare_true, spare_false = [], [], []
    for g in np.unique(groups):
        members = np.flatnonzero(groups == g)
        t, f = rng.permutation(members[y[members] == 1]), rng.permutation(members[y[members] == 0])
        k = min(t.size, f.size)
        pairs += list(zip(t[:k], f[:k]))
        spare_true += list(t[k:])
        spare_false += list(f[k:])
    spare_true, spare_false = rng.permutation(spare_true), rng.permutation(spare_false)
    pairs += list(zip(spare_true, spare_false))
    if not pairs:
        raise ValueError("CCS needs at least one true and one false item")
    pairs = np.array(pairs, dtype=np.int64)
    swap = rng.random(len(pairs)) < 0.5  # so "first of the pair" carries no truth signal
    pairs[swap] = pairs[swap][:, ::-1]
    return pairs[:, 0], pairs[:, 1]


def ccs_loss(w, bias, za, zb):
    """Burns et al.'s objective: p(a) should be 1 - p(b) (consistency), and not both near 1/2 (confidence)."""
    import torch

    pa, pb = torch.sigmoid(za @ w + bias), torch.sigmoid(zb @ w + bias)
    return ((pa - (1 - pb)) ** 2).mean() + (torch.minimum(pa, pb) ** 2).mean()


def _ccs_restart(za, zb, generator) -> tuple[float, np.ndarray, float]:
    import torch

    w = (torch.randn(za.shape[1], generator=generator) / za.shape[1] ** 0.5).requires_grad_(True)
    bias = torch.zeros(1, requires_grad=True)
    optimiser = torch.optim.LBFGS([w, bias], lr=0.5, max_iter=200, line_search_fn="strong_wolfe")

    def closure():
        optimiser.zero_grad()
        loss = ccs_loss(w, bias, za, zb)
        loss.backward()
        return loss

    optimiser.step(closure)
    with torch.no_grad():
        loss = float(ccs_loss(w, bias, za, zb))
    return loss, w.detach().double().numpy().copy(), float(bias.detach()[0])


def fit_ccs(x: np.ndarray, y: np.ndarray, groups=None, seed: int = 0, restarts: int = 4) -> LinearProbe:
    """The best of `restarts` random starts (lowest loss); the sign is then set by the labels."""
    import torch

    x, y = np.asarray(x, dtype=np.float64), np.asarray(y)
    groups = np.arange(len(y)) if groups is None else np.asarray(groups)
    mean, scale = _standardiser(x)
    z = torch.tensor((x - mean) / scale, dtype=torch.float32)
    a, b = contrast_pairs(y, groups, seed)
    generator = torch.Generator().manual_seed(seed)
    _, weight, bias = min((_ccs_restart(z[a], z[b], generator) for _ in range(restarts)), key=lambda r: r[0])
    probe = LinearProbe("ccs", weight, bias, mean, scale)
    if accuracy(probe.scores(x), y) < 0.5:  # CCS finds a direction up to sign; the labels pick it
        probe = LinearProbe("ccs", -weight, -bias, mean, scale)
    return probe


FITTERS: dict[str, Callable[..., LinearProbe]] = {"logistic": fit_logistic, "mass_mean": fit_mass_mean, "ccs": fit_ccs}


def fit_probe(method: str, x: np.ndarray, y: np.ndarray, groups=None, seed: int = 0) -> LinearProbe:
    if method not in FITTERS:
        raise ValueError(f"unknown probe method {method!r}; known: {', '.join(FITTERS)}")
    return FITTERS[method](x, y, groups=groups, seed=seed)


# --- metrics -----------------------------------------------------------------------------------


def accuracy(scores: np.ndarray, labels: np.ndarray) -> float:
    return float(((np.asarray(scores) > 0) == (np.asarray(labels) == 1)).mean())


def evaluate(probe: LinearProbe, x: np.ndarray, y: np.ndarray) -> dict:
    s = probe.scores(x)
    return {"accuracy": accuracy(s, y), "auroc": auroc(s, y), "n": int(len(y))}


def select_layer(
    features: Sequence[np.ndarray],
    y: np.ndarray,
    groups: np.ndarray,
    method: str,
    seed: int = 0,
    val_fraction: float = 0.25,
) -> tuple[int, list[float]]:
    """Choose a layer using the training items only: a grouped inner split, best validation AUROC.
    Returns (index into `features`, validation AUROC of each)."""
    inner_train, val = grouped_split(groups, val_fraction, seed + 1)
    aurocs = []
    for x in features:
        probe = fit_probe(method, x[inner_train], y[inner_train], groups[inner_train], seed)
        aurocs.append(auroc(probe.scores(x[val]), y[val]) or 0.5)
    return int(np.argmax(aurocs)), aurocs


# --- per-layer results and the generalisation matrix ------------------------------------------------


def probe_layers(
    sets: Sequence, hooks: Sequence[str], methods: Sequence[str], test_fraction: float = 0.5, seed: int = 0
):
    """Train a probe per (dataset, hook, method) on the dataset's training groups and test it on the
    held-out groups of every dataset (the diagonal is the in-distribution score).

    `sets` are `ActivationSet`s (anything with `name`, `features`, `labels`, `groups`). Returns
    (rows, splits, probes): one row per (train set, test set, hook, method), each set's
    (train, test) indices, and the fitted probes keyed by (set, hook, method)."""
    splits = {s.name: grouped_split(s.groups, test_fraction, seed) for s in sets}
    rows, probes = [], {}
    for train_set in sets:
        train, _ = splits[train_set.name]
        y, groups = train_set.labels, train_set.groups
        for hook in hooks:
            for method in methods:
                probe = fit_probe(method, train_set.features[hook][train], y[train], groups[train], seed)
                probes[train_set.name, hook, method] = probe
                for test_set in sets:
                    test = splits[test_set.name][1]
                    result = evaluate(probe, test_set.features[hook][test], test_set.labels[test])
                    rows.append(
                        {"train": train_set.name, "test": test_set.name, "hook": hook, "method": method, **result}
                    )
    return rows, splits, probes


def select_common_layer(sets: Sequence, hooks: Sequence[str], splits: dict, seed: int = 0) -> tuple[str, dict]:
    """The hook with the best mean validation AUROC of mass-mean probes across datasets, using
    training groups only (so the layer that headlines a result is not chosen on its test items)."""
    per_set = {}
    for s in sets:
        train = splits[s.name][0]
        features = [s.features[h][train] for h in hooks]
        _, aurocs = select_layer(features, s.labels[train], s.groups[train], "mass_mean", seed)
        per_set[s.name] = aurocs
    mean = np.mean([per_set[s.name] for s in sets], axis=0)
    return hooks[int(np.argmax(mean))], {name: dict(zip(hooks, v)) for name, v in per_set.items()}


def summarise_rows(rows: Sequence[dict], names: Sequence[str], methods: Sequence[str], common: str) -> dict:
    """Reshape `probe_layers` rows: per-layer held-out curves, scores at the common hook, the best
    layer on test (optimistic: chosen on the items it is scored on) and the generalisation matrix."""
    layers = {s: {m: {} for m in methods} for s in names}
    at_common = {}
    for r in rows:
        if r["train"] == r["test"]:
            layers[r["train"]][r["method"]][r["hook"]] = {k: r[k] for k in ("accuracy", "auroc", "n")}
        if r["hook"] == common:
            at_common[r["train"], r["test"], r["method"]] = r
    return {
        "common_hook": common,
        "at_common_hook": {
            s: {m: {k: at_common[s, s, m][k] for k in ("accuracy", "auroc")} for m in methods} for s in names
        },
        "best_on_test": {s: {m: _best(layers[s][m]) for m in methods} for s in names},
        "layers": layers,
        "generalisation": {
            "hook": common,
            "datasets": list(names),
            **{
                metric: {m: [[at_common[a, b, m][metric] for b in names] for a in names] for m in methods}
                for metric in ("accuracy", "auroc")
            },
        },
    }


def _best(per_hook: dict) -> dict:
    hook = max(per_hook, key=lambda h: per_hook[h]["accuracy"])
    return {"hook": hook, **per_hook[hook]}
