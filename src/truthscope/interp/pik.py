"""P(IK): does the model know, before it answers, whether its own answer will be true?

Kadavath et al. (2022) train a head to predict whether the model answers a question correctly. Here,
offline and without fine-tuning: a logistic probe on the activations at the last token of the
question prompt (the "A:" the model answers after), trained to predict whether the model's own greedy
answer (from a `calibration` run) was judged true. Out-of-fold: questions are split into `folds`
folds; for each, the layer is chosen by an inner cross-validation on the other folds only, the probe
is fitted there and predicts the held-out questions. Every question gets one prediction made without
its own label, so the predictions are a confidence signal like the others and are scored by
`truthscope.scoring.calibration`.

Two controls, run the same way:
    shuffled     the same pipeline with the labels permuted: AUROC at chance (0.5) or the pipeline
                 leaks
    text only    TF-IDF of the question text and a logistic regression: how much of "will I be
                 right" the question's wording alone predicts; P(IK) carries something internal only
                 where it beats this
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import KFold, cross_val_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from truthscope.data.presets import generation_prompt
from truthscope.errors import TruthscopeError
from truthscope.interp.activations import ProbeItem, load_activations
from truthscope.scoring.calibration import calibration_summary

C = 0.1  # strong L2: activations have ~600-2000 dimensions and a run a few hundred questions


def _probe():
    return make_pipeline(StandardScaler(), LogisticRegression(C=C, max_iter=2000))


def out_of_fold(
    features: Sequence[np.ndarray], y: np.ndarray, folds: int = 5, seed: int = 0
) -> tuple[np.ndarray, list[int]]:
    """P(label = 1) for every row from a probe that never saw it, and the layer chosen in each fold
    (by 3-fold inner cross-validated AUROC on that fold's training rows)."""
    y = np.asarray(y)
    out = np.full(len(y), np.nan)
    chosen = []
    for train, test in KFold(folds, shuffle=True, random_state=seed).split(y):
        if y[train].min() == y[train].max():  # one class to learn from: the base rate
            out[test] = float(y[train].mean())
            chosen.append(-1)
            continue
        inner = KFold(3, shuffle=True, random_state=seed + 1)
        scores = [
            float(np.nanmean(cross_val_score(_probe(), x[train], y[train], cv=inner, scoring="roc_auc")))
            for x in features
        ]
        best = int(np.nanargmax(scores)) if not np.all(np.isnan(scores)) else 0
        chosen.append(best)
        out[test] = _probe().fit(features[best][train], y[train]).predict_proba(features[best][test])[:, 1]
    return out, chosen


def text_only(texts: Sequence[str], y: np.ndarray, folds: int = 5, seed: int = 0) -> np.ndarray:
    """The text-only control: out-of-fold P(label = 1) from TF-IDF of the question text."""
    y = np.asarray(y)
    out = np.full(len(y), np.nan)
    for train, test in KFold(folds, shuffle=True, random_state=seed).split(y):
        if y[train].min() == y[train].max():
            out[test] = float(y[train].mean())
            continue
        model = make_pipeline(TfidfVectorizer(ngram_range=(1, 2), min_df=1), LogisticRegression(C=1.0, max_iter=2000))
        out[test] = model.fit([texts[i] for i in train], y[train]).predict_proba([texts[i] for i in test])[:, 1]
    return out


def pik_items(questions, records: dict, preset: str, presets: dict[str, str]) -> list[ProbeItem]:
    """One item per judged question: the prompt up to the model's turn, labelled by its answer's truth."""
    items = []
    for q in questions:
        record = records.get(q.id)
        if record is None or record.get("scores", {}).get("true") is None:
            continue
        context = generation_prompt(q.question, preset, presets)
        items.append(ProbeItem(q.id, int(record["scores"]["true"]), context, "\nA:", q.category))
    return items


def p_ik(lm, questions, records: dict, preset: str, presets: dict[str, str], hooks: Sequence[str], *,
         folds: int = 5, seed: int = 0, progress: bool = False) -> dict:  # fmt: skip
    """P(IK) for every judged question of a calibration run, with its calibration and both controls."""
    items = pik_items(questions, records, preset, presets)
    if len(items) < 2 * folds:
        raise TruthscopeError(f"P(IK) needs at least {2 * folds} judged questions, the run has {len(items)}")
    y = np.array([it.label for it in items])
    if y.min() == y.max():
        raise TruthscopeError("P(IK) needs both true and false answers; every judged answer has one label")
    acts = load_activations(lm, "pik", items, hooks, progress=progress)
    features = [acts.features[h].reshape(len(items), -1) for h in hooks]
    predicted, chosen = out_of_fold(features, y, folds, seed)
    shuffled_y = np.random.default_rng(seed).permutation(y)
    shuffled, _ = out_of_fold(features, shuffled_y, folds, seed)
    text = {q.id: q.question for q in questions}
    by_text = text_only([text[it.group] for it in items], y, folds, seed)
    return {
        "n": len(items),
        "hooks": list(hooks),
        "layer_chosen_per_fold": [hooks[i] if i >= 0 else None for i in chosen],
        "p_ik": {str(it.group): float(p) for it, p in zip(items, predicted, strict=True)},
        "calibration": calibration_summary(predicted, y, seed=seed),
        "controls": {
            "shuffled_labels": calibration_summary(shuffled, shuffled_y, seed=seed)["metrics"]["auroc"],
            "text_only": calibration_summary(by_text, y, seed=seed)["metrics"]["auroc"],
        },
        "method": f"logistic probe (C={C}, standardised) at the prompt's last token, {folds}-fold out-of-fold, "
        "layer by inner 3-fold AUROC",
    }
