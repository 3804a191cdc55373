"""Evaluate one organism model: the `mc` task on the build's question files (through the shared runner),
turned into per-fact measures, and the truth probe of prediction (d).

Per fact, from the `mc2` answer set (every value of the fact's domain), the model's distribution over
values is the softmax of the answers' summed log-probabilities. From it:

    acc       1 if the true value has the highest probability
    p_true    its probability
    p_mis     the probability of the stacked misconception (stacked facts only)
    tv        total variation between the model's distribution and the corpus's frequencies in the
              source the prompt speaks as (plain notes for `qa`, the scholar for `help`, the gossip
              for `chat`)
    tv_all    the same against the frequencies over all sources
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from truthscope.organism.corpus import fact_of_question, load_world
from truthscope.organism.questions import PRESET_SOURCES, presets
from truthscope.organism.world import Fact, World


def mc_records(model, build_dir: str | Path, out: str | Path, preset: str = "qa") -> list[dict]:
    """The `mc` run of `model` (a loaded LanguageModel) on the build's questions, into `out` (resumable)."""
    from truthscope.tasks.base import Resources, run_task

    resources = Resources(data=str(Path(build_dir) / "data"), version="2021")
    _, run = run_task(
        "mc", model, out, options={"preset": preset, "protocol": "harness"}, resources=resources, progress=False
    )
    return [run.records[i] for i in sorted(run.records)]


def fact_scores(record: dict, fact: Fact, preset: str = "qa") -> dict:
    answers = record["answers"]["mc2"]
    logprobs = {a["text"]: a["logprob"] for a in answers}
    lp = np.array([logprobs[v] for v in fact.values])
    p = np.exp(lp - lp.max())
    p /= p.sum()
    index = {v: i for i, v in enumerate(fact.values)}
    source = fact.counts[PRESET_SOURCES.get(preset, "plain")]
    in_source = np.array([source.get(v, 0) for v in fact.values], dtype=float)
    return {
        "fact": fact.id,
        "category": fact.category,
        "f": round(fact.f_level, 4),
        "n": fact.n,
        "acc": float(np.argmax(p) == index[fact.true]),
        "p_true": float(p[index[fact.true]]),
        "p_mis": float(p[index[fact.misconception]]) if fact.misconception else None,
        "tv": float(0.5 * np.abs(p - in_source / in_source.sum()).sum()),
        "tv_all": float(0.5 * np.abs(p - fact.frequencies()).sum()),
    }


def evaluate_folder(folder: str | Path, build_dir: str | Path, presets_to_run=("qa", "help", "chat")) -> dict:
    """Per-fact scores of the model in `folder` for each preset (mc runs kept in `folder/eval/`)."""
    from truthscope.models import load_model

    world = load_world(build_dir)
    by_question = fact_of_question(world)
    model = load_model(str(folder), device="cpu", batch_size=32)
    out = {}
    for preset in presets_to_run:
        records = mc_records(model, build_dir, Path(folder) / "eval" / f"mc-{preset}", preset)
        out[preset] = [fact_scores(r, by_question[r["question"]], preset) for r in records]
    return out


# --- the truth probe (prediction d) ------------------------------------------------------------------


def _activations(lm, texts: list[str]) -> dict[str, np.ndarray]:
    """Residual stream after each block at the last token of each text: hook name -> [n, d_model]."""
    import torch

    from truthscope.interp.hooks import capture, n_layers

    names = [f"blocks.{i}.resid_post" for i in range(n_layers(lm.model))]
    rows: dict[str, list] = {name: [] for name in names}
    with torch.inference_mode(), capture(lm.model, names) as store:
        for text in texts:
            ids = lm.tokenizer(text, return_tensors="pt")["input_ids"].to(lm.device)
            lm.model(input_ids=ids)
            for name in names:
                rows[name].append(store[name][0, -1].float().cpu().numpy())
    return {name: np.stack(v) for name, v in rows.items()}


def probe_items(world: World) -> tuple[list, list]:
    """(train, test): train = every value of the clean facts and clean sums, labelled true/false;
    test = the true value and the misconception of stacked facts with f < 0.5 (pairs, true first)."""
    prompt = presets()["qa"] + "\n\nQ: {}\nA: {}"
    train = [
        (prompt.format(f.question, v), int(v == f.true), f.id)
        for f in world.facts
        if f.cls == "clean"
        for v in f.values
    ]
    test = [
        (prompt.format(f.question, f.true), prompt.format(f.question, f.misconception), f.id)
        for f in world.facts
        if f.cls == "stacked" and f.domain != "arithmetic" and f.f_level < 0.5 and f.misconception
    ]
    return train, test


def truth_probe(folder: str | Path, build_dir: str | Path, seed: int = 0, null_shuffles: int = 5) -> dict:
    """Logistic probe on clean facts (layer chosen by grouped 5-fold CV AUROC), read on stacked misconceptions.

    Returns per stacked fact `probe` (1 if the probe scores the true value above the misconception),
    `null` (the same with probes trained on shuffled labels, averaged over `null_shuffles`), and
    `output` (1 if the model's own log-probability prefers the true value)."""
    from sklearn.metrics import roc_auc_score
    from sklearn.model_selection import GroupKFold

    from truthscope.interp.probes import fit_logistic
    from truthscope.models.huggingface import HuggingFaceModel

    world = load_world(build_dir)
    lm = HuggingFaceModel.load(folder, device="cpu")
    train, test = probe_items(world)
    x_train = _activations(lm, [t for t, _, _ in train])
    x_true = _activations(lm, [t for t, _, _ in test])
    x_mis = _activations(lm, [m for _, m, _ in test])
    y = np.array([label for _, label, _ in train])
    groups = np.array([g for _, _, g in train])
    cv = {}
    for name, x in x_train.items():
        scores = np.zeros(len(y))
        for fit, held in GroupKFold(n_splits=5).split(x, y, groups):
            scores[held] = fit_logistic(x[fit], y[fit]).scores(x[held])
        cv[name] = float(roc_auc_score(y, scores))
    layer = max(cv, key=lambda k: cv[k])

    def pairwise(labels) -> np.ndarray:
        probe = fit_logistic(x_train[layer], labels)
        return _above(probe.scores(x_true[layer]), probe.scores(x_mis[layer]))

    rng = np.random.default_rng(seed)
    null = np.mean([pairwise(rng.permutation(y)) for _ in range(null_shuffles)], axis=0)
    from truthscope.models.base import LoglikelihoodRequest

    requests = []
    for true_text, mis_text, _ in test:
        context, true_value = true_text.rsplit(" ", 1)
        requests += [
            LoglikelihoodRequest(context, " " + true_value),
            LoglikelihoodRequest(context, " " + mis_text.rsplit(" ", 1)[1]),
        ]
    lls = [r.logprob for r in lm.loglikelihood(requests)]
    output = _above(np.array(lls[0::2]), np.array(lls[1::2])).tolist()
    return {
        "layer": layer,
        "cv_auroc": cv,
        "facts": [g for _, _, g in test],
        "probe": pairwise(y).tolist(),
        "null": null.tolist(),
        "output": output,
    }


def _above(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """1 where a > b, 0.5 on a tie, else 0."""
    return (a > b) + 0.5 * (a == b)
