"""truthscope's trained judges (`--judge trained`, the default): a small network over
`judges.features`, trained on the paper's labels (`truthscope judge train`, minutes on a CPU). The
cross-encoder of `judges.crossencoder` (`--judge crossencoder`) is the other trained design.

A judge is saved as two plain files under `cache_dir()/judges/<kind>/`, loaded without pickle:

    weights.npz   feature means and scales, then each layer's weights and biases (numpy arrays)
    judge.json    identity, training data SHA-256, test split SHA-256, feature version, agreement

A judge trains on the labelled answers to the questions outside the frozen test split
(`judges.split`); the held-out fifth is touched once, after training, for the figures it reports
(`test_split`, also what `truthscope judge eval` prints). Within the training part, K-fold
cross-validation grouped by question (all answers to one question in the same fold) measures
design choices on out-of-fold predictions (`cross_validation`). Both are given for all labelled
answers and for those that are not verbatim reference answers.

Loading refuses a judge trained on other labels than the data folder's (`TRUTHSCOPE_DATA`, else the
packaged copy) or on another test split: its test figures would not be held out.
"""

from __future__ import annotations

import json
import os
import tempfile
import time
import zipfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import NoReturn

import numpy as np

from truthscope.cache import file_sha256
from truthscope.errors import CacheError, TruthscopeError
from truthscope.judges.base import THRESHOLD, JudgeItem, check_kind
from truthscope.judges.features import FEATURE_NAMES, FEATURE_VERSION, judge_features
from truthscope.judges.labels import LabelledSet, labels_sha256, load_labelled
from truthscope.judges.split import Split, load_split
from truthscope.paths import cache_dir
from truthscope.runlog import write_json_atomic
from truthscope.scoring.similarity import SentenceEmbedder

HIDDEN = (64,)  # one hidden layer; () gives logistic regression (3 points less accurate)
N_FOLDS = 5


def judge_dir(kind: str) -> Path:
    return cache_dir() / "judges" / check_kind(kind)


@dataclass(frozen=True)
class Network:
    """Standardise, ReLU hidden layers, logistic output."""

    mean: np.ndarray  # [n_features]
    scale: np.ndarray  # [n_features]
    weights: tuple[np.ndarray, ...]  # [n_in, n_out] per layer
    biases: tuple[np.ndarray, ...]  # [n_out] per layer

    def predict_proba(self, x: np.ndarray) -> np.ndarray:
        h = (np.asarray(x, dtype=np.float64) - self.mean) / self.scale
        for i, (w, b) in enumerate(zip(self.weights, self.biases, strict=True)):
            h = h @ w + b
            if i < len(self.weights) - 1:
                h = np.maximum(h, 0.0)
        return 1.0 / (1.0 + np.exp(-h[:, 0]))

    def arrays(self) -> dict[str, np.ndarray]:
        out = {"mean": self.mean, "scale": self.scale}
        for i, (w, b) in enumerate(zip(self.weights, self.biases, strict=True)):
            out[f"w{i}"], out[f"b{i}"] = w, b
        return out

    @classmethod
    def from_arrays(cls, arrays) -> Network:
        n_layers = sum(1 for k in arrays if k.startswith("w"))
        return cls(
            mean=arrays["mean"],
            scale=arrays["scale"],
            weights=tuple(arrays[f"w{i}"] for i in range(n_layers)),
            biases=tuple(arrays[f"b{i}"] for i in range(n_layers)),
        )


def fit_network(x: np.ndarray, y: np.ndarray, hidden: Sequence[int] = HIDDEN, seed: int = 0) -> Network:
    from sklearn.linear_model import LogisticRegression
    from sklearn.neural_network import MLPClassifier

    x = np.asarray(x, dtype=np.float64)
    mean, scale = x.mean(axis=0), x.std(axis=0)
    scale[scale < 1e-8] = 1.0  # constant features stay constant (zero) after scaling
    z = (x - mean) / scale
    if not hidden:
        model = LogisticRegression(C=0.1, max_iter=3000).fit(z, y)
        return Network(mean, scale, (model.coef_.T.copy(),), (model.intercept_.copy(),))
    model = MLPClassifier(
        hidden_layer_sizes=tuple(hidden),
        alpha=1e-2,
        early_stopping=True,  # a random 10% of the training rows decides when to stop
        n_iter_no_change=10,
        max_iter=300,
        random_state=seed,
    ).fit(z, y)
    return Network(mean, scale, tuple(w.copy() for w in model.coefs_), tuple(b.copy() for b in model.intercepts_))


def grouped_folds(groups: np.ndarray, n_folds: int = N_FOLDS, seed: int = 0) -> list[tuple[np.ndarray, np.ndarray]]:
    """(train rows, test rows) per fold; each group (question) lies in exactly one test fold."""
    groups = np.asarray(groups)
    unique = np.unique(groups)
    if len(unique) < n_folds:
        raise ValueError(f"{len(unique)} groups cannot fill {n_folds} folds")
    order = np.random.default_rng(seed).permutation(unique)
    fold_of = {g: i % n_folds for i, g in enumerate(order)}
    assigned = np.array([fold_of[g] for g in groups])
    return [(np.flatnonzero(assigned != k), np.flatnonzero(assigned == k)) for k in range(n_folds)]


def agreement(labels: np.ndarray, probs: np.ndarray, threshold: float = THRESHOLD) -> dict:
    """Accuracy, balanced accuracy and AUROC of thresholded probabilities against human labels."""
    from sklearn.metrics import balanced_accuracy_score, roc_auc_score

    labels, probs = np.asarray(labels), np.asarray(probs)
    predicted = (probs >= threshold).astype(int)
    return {
        "accuracy": float((predicted == labels).mean()),
        "balanced_accuracy": float(balanced_accuracy_score(labels, predicted)),
        "auroc": float(roc_auc_score(labels, probs)) if len(np.unique(labels)) == 2 else None,
        "n": int(labels.size),
        "positive_rate": float(labels.mean()),
    }


def cross_validate(
    x: np.ndarray,
    data: LabelledSet,
    n_folds: int = N_FOLDS,
    hidden: Sequence[int] = HIDDEN,
    seed: int = 0,
    log: Callable[[str], None] = lambda _: None,
) -> dict:
    probs = np.zeros(len(data.labels))
    per_fold = []
    for k, (train, test) in enumerate(grouped_folds(data.groups, n_folds, seed)):
        net = fit_network(x[train], data.labels[train], hidden, seed)
        probs[test] = net.predict_proba(x[test])
        per_fold.append(agreement(data.labels[test], probs[test])["accuracy"])
        log(f"fold {k + 1}/{n_folds}: accuracy {per_fold[-1]:.4f}")
    model_answers = ~data.is_reference
    return {
        "folds": n_folds,
        "grouped_by": "question",
        "seed": seed,
        "all_answers": agreement(data.labels, probs),
        "non_reference_answers": agreement(data.labels[model_answers], probs[model_answers]),
        "fold_accuracy": per_fold,
    }


class FastJudge:
    def __init__(self, kind: str, network: Network, info: dict, embedder: SentenceEmbedder | None = None):
        self.kind = check_kind(kind)
        self.network = network
        self.info = info
        self.embedder = embedder  # MiniLM, loaded on first use when not given (share one between judges)

    @property
    def name(self) -> str:
        return f"truthscope-{self.kind}-judge-v{self.info['feature_version']}"

    def score(self, items: Sequence[JudgeItem]) -> list[float]:
        if not items:
            return []
        if self.embedder is None:
            self.embedder = SentenceEmbedder()
        return [float(p) for p in self.network.predict_proba(judge_features(items, self.embedder))]

    def describe(self) -> dict:
        return {"name": self.name, "kind": self.kind, "uses_references": True, **self.info}

    def save(self, directory: str | Path | None = None) -> Path:
        directory = Path(directory) if directory is not None else judge_dir(self.kind)
        directory.mkdir(parents=True, exist_ok=True)
        arrays = self.network.arrays()
        fd, tmp = tempfile.mkstemp(dir=directory, prefix=".weights.", suffix=".npz")
        try:
            with os.fdopen(fd, "wb") as f:
                # the keys are array names (mean, scale, w0, b0, ...), never savez's `allow_pickle`
                np.savez(f, **arrays)  # pyright: ignore[reportArgumentType]
            weights = {"sha256": file_sha256(tmp), "shapes": {k: list(v.shape) for k, v in arrays.items()}}
            os.replace(tmp, directory / "weights.npz")
        finally:
            Path(tmp).unlink(missing_ok=True)
        # judge.json lands last and names the weights by hash: a save cut between the two files
        # leaves a pair that `load` refuses, never one it mixes up
        write_json_atomic(directory / "judge.json", {"kind": self.kind, **self.info, "weights": weights})
        return directory

    @classmethod
    def load(cls, kind: str, directory: str | Path | None = None, embedder: SentenceEmbedder | None = None):
        directory = Path(directory) if directory is not None else judge_dir(kind)
        meta_path, weights_path = directory / "judge.json", directory / "weights.npz"
        if not meta_path.exists() or not weights_path.exists():
            raise TruthscopeError(
                f"no trained {kind} judge in {directory}; train it with `truthscope judge train --kind {kind}` "
                "(minutes on a CPU), or pass --judge none"
            )
        info = _read_info(meta_path, kind)
        if info.get("kind") != kind or info.get("feature_version") != FEATURE_VERSION:
            raise TruthscopeError(
                f"{directory} holds a judge this truthscope cannot use (kind {info.get('kind')!r}, feature "
                f"version {info.get('feature_version')!r}); retrain it with "
                f"`truthscope judge train --kind {kind}`"
            )
        check_provenance(kind, info, directory)
        network = _read_network(weights_path, info, kind)
        info.pop("kind")
        return cls(kind, network, info, embedder)


def _read_info(path: Path, kind: str) -> dict:
    try:
        info = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as err:
        raise CacheError(f"{path} is damaged ({err}); retrain the {kind} judge (`truthscope judge train`)") from None
    if not isinstance(info, dict):
        raise CacheError(f"{path} is not a judge's record; retrain the {kind} judge (`truthscope judge train`)")
    return info


def _read_network(path: Path, info: dict, kind: str) -> Network:
    """The network in `weights.npz`, after checking it is the file `judge.json` names (SHA-256) and
    that its arrays have the recorded shapes and chain into one output."""

    def refuse(problem: str) -> NoReturn:
        raise CacheError(f"{path}: {problem}; retrain the {kind} judge (`truthscope judge train`)")

    recorded = info.get("weights")
    if not isinstance(recorded, dict) or not isinstance(recorded.get("shapes"), dict):
        refuse("judge.json records no hash of these weights (saved by an older truthscope, or cut short)")
    if file_sha256(path) != recorded["sha256"]:
        refuse("its SHA-256 is not the one judge.json records (damaged, or from another save)")
    try:
        with np.load(path, allow_pickle=False) as stored:
            arrays = {k: stored[k] for k in stored.files}
        network = Network.from_arrays(arrays)
    except (OSError, ValueError, EOFError, KeyError, zipfile.BadZipFile) as err:
        refuse(f"unreadable ({err})")
    if {k: list(v.shape) for k, v in arrays.items()} != recorded["shapes"]:
        refuse("its arrays do not have the recorded shapes")
    width = network.mean.shape
    if network.scale.shape != width or info.get("n_features", width[0]) != width[0]:
        refuse(f"{width} features, judge.json says {info.get('n_features')}")
    for w, b in zip(network.weights, network.biases, strict=True):
        if w.ndim != 2 or w.shape[0] != width[0] or b.shape != (w.shape[1],):
            refuse("its layers do not chain")
        width = (w.shape[1],)
    if width != (1,) or not all(np.isfinite(a).all() for a in arrays.values()):
        refuse("not one finite output")
    return network


def check_provenance(
    kind: str, info: dict, directory: str | Path, split: Split | None = None, retrain: str | None = None
) -> None:
    """Refuse a judge whose recorded test split or training labels are not the current ones;
    `retrain`: the command the message suggests (default: the trained judge's)."""
    from truthscope.paths import data_dir

    split = split or load_split()
    recorded_split = (info.get("split") or {}).get("sha256")
    recorded_data = (info.get("trained_on") or {}).get("sha256")
    try:
        expected_data = labels_sha256(data_dir(), kind)
    except TruthscopeError:
        expected_data = None  # no labels in the data folder to compare with: nothing to refuse on
    problems = []
    if recorded_split != split.sha256:
        problems.append(
            f"its test split SHA-256 is {_short(recorded_split)}, the packaged split's {_short(split.sha256)}"
        )
    if expected_data is not None and recorded_data != expected_data:
        problems.append(
            f"its training labels' SHA-256 is {_short(recorded_data)}, finetune_{kind}.jsonl's {_short(expected_data)}"
        )
    if problems:
        raise TruthscopeError(
            f"the {kind} judge in {directory} was trained on other data ({'; '.join(problems)}); "
            f"retrain it with `{retrain or f'truthscope judge train --kind {kind}'}`"
        )


def _short(digest: str | None) -> str:
    return "not recorded" if not digest else digest[:12]


def train_judge(
    kind: str,
    data_dir: str | Path,
    *,
    n_folds: int = N_FOLDS,
    hidden: Sequence[int] = HIDDEN,
    seed: int = 0,
    embedder: SentenceEmbedder | None = None,
    split: Split | None = None,
    log: Callable[[str], None] = lambda _: None,
) -> FastJudge:
    """Train on the questions outside the frozen test `split` (default: the packaged one): grouped
    cross-validation within them, then a fit on all of them; then the test figures, measured once.
    Returns the judge (not saved)."""
    from truthscope.judges.evaluate import evaluate

    started = time.time()
    split = split or load_split()
    data = load_labelled(data_dir, kind)
    embedder = embedder or SentenceEmbedder()
    test_rows = split.is_test(data.questions)
    train, test = data.subset(~test_rows), data.subset(test_rows)
    log(
        f"{len(data.labels)} labelled answers to {len(np.unique(data.groups))} questions; training on "
        f"{len(train.labels)} ({len(np.unique(train.groups))} questions), holding out {len(test.labels)} "
        f"({len(np.unique(test.groups))} questions, split {split.sha256[:12]}); computing features"
    )
    x_all = judge_features(data.items, embedder)
    x, x_test = x_all[~test_rows], x_all[test_rows]
    features_seconds = time.time() - started
    log(f"features in {features_seconds:.0f}s; {n_folds}-fold cross-validation grouped by question, on the train part")
    cv = cross_validate(x, train, n_folds, hidden, seed, log) if n_folds > 1 else None
    network = fit_network(x, train.labels, hidden, seed)
    held_out = None
    if len(test.labels):
        probs = network.predict_proba(x_test)
        held_out = evaluate(test.labels, probs, test.groups, test.is_reference, seed=seed)
        log(f"test split: accuracy {held_out['all_answers']['accuracy']['mean']:.4f} on {len(test.labels)} answers")
    info = {
        "feature_version": FEATURE_VERSION,
        "n_features": len(FEATURE_NAMES),
        "classifier": f"MLP{tuple(hidden)}" if hidden else "logistic regression",
        "embedder": embedder.name,
        "threshold": THRESHOLD,
        "trained_on": {
            "path": data.path, "sha256": data.sha256, "n": int(len(train.labels)),
            "questions": int(len(np.unique(train.groups))), "rows": "answers to questions outside the test split",
        },
        "split": split.describe(),
        "cross_validation": cv,
        "test_split": held_out,
        "train_seconds": round(time.time() - started, 1),
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }  # fmt: skip
    return FastJudge(kind, network, info, embedder)
