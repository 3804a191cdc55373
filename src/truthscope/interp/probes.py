"""Linear truth probes on activation arrays: grouped splits, three ways to fit, and how well they do.

Every probe is the same object, a `LinearProbe`: score(x) = w . (x - mean) / scale + b, positive
meaning "true". The three methods differ only in how w and b are found:

    logistic    scikit-learn logistic regression on standardised features (supervised)
    mass_mean   w = mean(true) - mean(false), threshold half-way between the two class means
                (Marks & Tegmark); no fitting at all, hence hard to overfit
    ccs         Contrast-Consistent Search (Burns et al.): a sigmoid probe trained only to make the
                two members of each contrast pair consistent (p(a) = 1 - p(b)) and confident

CCS is label-free: each item becomes its own contrast pair, the item followed by " True" and by
" False" (`CONTRAST_SUFFIXES`), read at the last token; no label forms a pair or enters the
objective. Each side is standardised separately (Burns et al.), so the probe cannot simply read
"the text ends in True". The training labels only choose the sign afterwards (`orient`): CCS cannot
tell "true" from "false". Its features are the pairs, [n, 2, d] (`features_of`).

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


# --- what to read, and where --------------------------------------------------------------------


def parse_methods(text: str, allowed: Sequence[str] = METHODS, exactly_one: bool = False) -> list[str]:
    """A comma list of probe methods, checked (a `ValueError` names the allowed ones)."""
    chosen = [m.strip() for m in text.split(",") if m.strip()]
    if not chosen or any(m not in allowed for m in chosen) or (exactly_one and len(chosen) != 1):
        raise ValueError(f"--methods: choose {'one of' if exactly_one else 'from'} {', '.join(allowed)}")
    return chosen


def parse_layers(text: str, total: int, site: str = "resid_post") -> list[str]:
    """Hook names for `--layers` ('all' or a comma list of layer indices) at `site`."""
    from truthscope.interp.hooks import SITES

    if site not in SITES:
        raise ValueError(f"--site: choose one of {', '.join(SITES)}")
    if text.strip() == "all":
        chosen = list(range(total))
    else:
        try:
            chosen = [int(x) for x in text.split(",") if x.strip()]
        except ValueError:
            raise ValueError(f"--layers: expected 'all' or integers separated by commas, got {text!r}") from None
        if not chosen or any(not 0 <= i < total for i in chosen):
            raise ValueError(f"--layers: the model has layers 0..{total - 1}")
    return [f"blocks.{i}.{site}" for i in chosen]


def features_of(s, hook: str, method: str) -> np.ndarray:
    """What `method` reads of set `s` at `hook`: one vector per item, or for CCS its contrast pair."""
    if method == "ccs":
        contrast = getattr(s, "contrast", None)
        if not contrast:
            raise ValueError(f"{getattr(s, 'name', 'this set')}: CCS needs contrast-pair features")
        return contrast[hook]
    return s.features[hook]


# --- splits ------------------------------------------------------------------------------------


def grouped_split(groups: Sequence | np.ndarray, test_fraction: float, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
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


def answer_key(text: str) -> str:
    """An answer as compared across questions: case, spacing and a closing period ignored."""
    return " ".join(text.lower().split()).rstrip(".")


def drop_shared_answers(texts: Sequence[str], train: np.ndarray, test: np.ndarray) -> np.ndarray:
    """`train` without the items whose answer string is also a test item's ("I have no comment." is
    an answer of 111 questions): a probe must not be scored on a string it was trained on."""
    held = {answer_key(texts[int(i)]) for i in test}
    return np.array([i for i in train if answer_key(texts[int(i)]) not in held], dtype=np.int64)


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
    return LinearProbe("logistic", model.coef_[0].copy(), float(np.asarray(model.intercept_)[0]), mean, scale)


def fit_mass_mean(x: np.ndarray, y: np.ndarray, groups=None, seed: int = 0) -> LinearProbe:
    """Difference of class means, thresholded at the midpoint (score in raw units, no scaling)."""
    x, y = np.asarray(x, dtype=np.float64), np.asarray(y)
    mu_true, mu_false = x[y == 1].mean(axis=0), x[y == 0].mean(axis=0)
    weight = mu_true - mu_false
    midpoint = (mu_true + mu_false) / 2
    return LinearProbe("mass_mean", weight, float(-weight @ midpoint), np.zeros_like(weight), np.ones_like(weight))


# --- CCS, label-free -------------------------------------------------------------------------------

CONTRAST_SUFFIXES = (" True", " False")  # the two members of every item's contrast pair


@dataclass(frozen=True)
class ContrastProbe:
    """CCS on a contrast pair per item: x+ (the item followed by " True") and x- (by " False"), each
    side standardised on its own (Burns et al.), so what tells the two sides apart ("True" vs "False")
    is removed and only what varies with the item's truth is left. score = p(x+) - p(x-), positive
    meaning "true" (the same decision as Burns' (p(x+) + 1 - p(x-)) / 2 > 1/2)."""

    method: str
    weight: np.ndarray  # [d]
    bias: float
    mean: np.ndarray  # [2, d]: per side
    scale: np.ndarray  # [2, d]

    def _p(self, x: np.ndarray) -> np.ndarray:
        z = (np.asarray(x, dtype=np.float64) - self.mean) / self.scale  # [n, 2, d]
        from scipy.special import expit

        return expit(z @ self.weight + self.bias)  # [n, 2]

    def scores(self, x: np.ndarray) -> np.ndarray:
        p = self._p(x)
        return p[:, 0] - p[:, 1]

    def direction(self) -> np.ndarray:
        raw = self.weight / self.scale[0]
        return raw / np.linalg.norm(raw)

    def flipped(self) -> ContrastProbe:
        return ContrastProbe(self.method, -self.weight, -self.bias, self.mean, self.scale)


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


def train_ccs(pairs: np.ndarray, seed: int = 0, restarts: int = 4) -> ContrastProbe:
    """CCS from contrast pairs alone ([n, 2, d]: x+ and x- of each item): no labels are read. The
    best of `restarts` random starts (lowest loss); its sign is arbitrary (see `orient`)."""
    import torch

    pairs = np.asarray(pairs, dtype=np.float64)
    if pairs.ndim != 3 or pairs.shape[1] != 2:
        raise ValueError("CCS needs contrast pairs shaped [n, 2, d]")
    mean = pairs.mean(axis=0)
    scale = pairs.std(axis=0)
    scale = np.where(scale > 1e-8, scale, 1.0)
    z = torch.tensor((pairs - mean) / scale, dtype=torch.float32)
    generator = torch.Generator().manual_seed(seed)
    _, weight, bias = min((_ccs_restart(z[:, 0], z[:, 1], generator) for _ in range(restarts)), key=lambda r: r[0])
    return ContrastProbe("ccs", weight, bias, mean, scale)


def orient(probe: ContrastProbe, pairs: np.ndarray, y: np.ndarray) -> ContrastProbe:
    """CCS finds a direction up to sign: the training labels pick it (one bit, after training)."""
    return probe if accuracy(probe.scores(pairs), y) >= 0.5 else probe.flipped()


def fit_ccs(x: np.ndarray, y: np.ndarray, groups=None, seed: int = 0, restarts: int = 4) -> ContrastProbe:
    """`train_ccs` on the pairs (labels unread), then `orient` by the labels."""
    return orient(train_ccs(x, seed, restarts), x, np.asarray(y))


Probe = LinearProbe | ContrastProbe
FITTERS: dict[str, Callable[..., Probe]] = {"logistic": fit_logistic, "mass_mean": fit_mass_mean, "ccs": fit_ccs}


def fit_probe(method: str, x: np.ndarray, y: np.ndarray, groups=None, seed: int = 0) -> Probe:
    if method not in FITTERS:
        raise ValueError(f"unknown probe method {method!r}; known: {', '.join(FITTERS)}")
    return FITTERS[method](x, y, groups=groups, seed=seed)


# --- metrics -----------------------------------------------------------------------------------


def accuracy(scores: np.ndarray, labels: np.ndarray) -> float:
    return float(((np.asarray(scores) > 0) == (np.asarray(labels) == 1)).mean())


def evaluate(probe: Probe, x: np.ndarray, y: np.ndarray) -> dict:
    s = probe.scores(x)
    return {"accuracy": accuracy(s, y), "auroc": auroc(s.tolist(), np.asarray(y).tolist()), "n": int(len(y))}


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
        aurocs.append(auroc(probe.scores(x[val]).tolist(), y[val].tolist()) or 0.5)
    return int(np.argmax(aurocs)), aurocs


# --- per-layer results and the generalisation matrix ------------------------------------------------


def probe_layers(
    sets: Sequence,
    hooks: Sequence[str],
    methods: Sequence[str],
    test_fraction: float = 0.5,
    seed: int = 0,
    splits: dict | None = None,
):
    """Train a probe per (dataset, hook, method) on the dataset's training groups and test it on the
    held-out groups of every dataset (the diagonal is the in-distribution score).

    `sets` are `ActivationSet`s (anything with `name`, `features`, `labels`, `groups`). Returns
    (rows, splits, probes): one row per (train set, test set, hook, method), each set's
    (train, test) indices, and the fitted probes keyed by (set, hook, method). `splits` overrides
    the grouped split of the sets it names (say, TruthfulQA with shared answers dropped)."""
    splits = {s.name: grouped_split(s.groups, test_fraction, seed) for s in sets} | dict(splits or {})
    rows, probes = [], {}
    for train_set in sets:
        train, _ = splits[train_set.name]
        y, groups = train_set.labels, train_set.groups
        for hook in hooks:
            for method in methods:
                probe = fit_probe(method, features_of(train_set, hook, method)[train], y[train], groups[train], seed)
                probes[train_set.name, hook, method] = probe
                for test_set in sets:
                    test = splits[test_set.name][1]
                    result = evaluate(probe, features_of(test_set, hook, method)[test], test_set.labels[test])
                    rows.append(
                        {"train": train_set.name, "test": test_set.name, "hook": hook, "method": method, **result}
                    )
    return rows, splits, probes


def choose_probe(s, train: np.ndarray, hooks: Sequence[str], methods: Sequence[str], seed: int = 0) -> dict:
    """The probe (method and hook) with the best validation AUROC on an inner grouped split of the
    training items of `s`, refitted on all of them: {"probe", "method", "hook", "validation_auroc",
    "candidates"}."""
    y, groups = s.labels, s.groups
    candidates = []
    for method in methods:
        features = [features_of(s, h, method)[train] for h in hooks]
        index, aurocs = select_layer(features, y[train], groups[train], method, seed)
        candidates.append({"method": method, "hook": hooks[index], "validation_auroc": aurocs[index]})
    best = max(candidates, key=lambda c: c["validation_auroc"])
    x = features_of(s, best["hook"], best["method"])[train]
    probe = fit_probe(best["method"], x, y[train], groups[train], seed)
    return {"probe": probe, **best, "candidates": candidates}


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
    return hooks[int(np.argmax(mean))], {name: dict(zip(hooks, v, strict=True)) for name, v in per_set.items()}


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
