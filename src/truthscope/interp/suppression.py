"""Switch neurons off and measure what happens, against random neurons switched off the same way.

Conditions: `none` (the unmodified model), `selected` (the neurons under test), and `random_1..k`:
random sets with exactly the selected set's count in every layer, drawn from the other neurons.
Each is an edit of `blocks.{l}.mlp.neurons` (zero, or scale by a factor) at every position of every
forward pass, so it also acts inside `HuggingFaceModel.loglikelihood`'s cached passes.

Measured per condition, on the same items:

    truthfulqa  held-out questions: MC1, MC2 (lm-evaluation-harness protocol, `qa` preset) and MC0,
                the 2025 binary choice (`mc0` = normalised probability of the correct letter,
                `mc0_acc` = it is the larger)
    statements  Geometry-of-Truth sets (`tasks.statements`): accuracy (`{set}.accuracy`)
    neutral     text unrelated to truthfulness: language-modelling loss (nats per token) and
                KL(unmodified || modified) of the next-token distributions, averaged over tokens

Effects are paired by item: `selected - none`, and `selected - random`, where `random` is the mean
over the random sets for that item; each with a bootstrap interval and a t-test p-value over items.
`rank_p` is the share of random sets whose effect is at least as large in magnitude as the selected
set's ((1 + count) / (1 + k)): it needs k >= 19 to ever reach 0.05, so with few controls rely on the
paired interval, and read `rank_p` as "how unusual among the random sets".
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from scipy import stats
from tqdm import tqdm

from truthscope.data.truthfulqa import Question
from truthscope.errors import TruthscopeError
from truthscope.interp.hooks import Scale, Zero, dimensions, edit
from truthscope.interp.neurons import Neuron, per_layer_counts
from truthscope.runlog import RunLog
from truthscope.scoring.intervals import bootstrap_mean
from truthscope.tasks.multiple_choice import answer_sets, requests_for, score_question
from truthscope.tasks.statements import Statement, score_statements

MODES = ("zero", "scale")
MC_METRICS = ("mc1", "mc2", "mc0", "mc0_acc")

# Plain descriptive prose with nothing true-or-false at stake, for the side-effect measures.
NEUTRAL_TEXTS = (
    "The kettle clicked off and the kitchen went quiet. She poured the water over the tea leaves, waited a few "
    "minutes, and carried the cup to the table by the window, where the morning light fell across an open book.",
    "To repot a houseplant, water it the day before, then tip the pot on its side and ease the root ball out. "
    "Loosen the outer roots with your fingers, set the plant in a slightly larger pot, and fill around it with "
    "fresh soil, pressing gently as you go.",
    "The train left the station a little after nine. Fields slid past the windows, then a row of houses, a "
    "river, a bridge and a long line of trees. Most passengers read or slept; a child in the front seat counted "
    "the cows out loud.",
    "Our team meeting is moved to Thursday at two o'clock in the small conference room. Please bring your notes "
    "on the spring schedule, and let me know by Wednesday evening if you cannot attend so that we can plan around it.",
    "He laced his boots, checked the map once more and set off along the path that followed the stream. After an "
    "hour the trees thinned out, the path grew steeper, and the sound of the water faded behind him.",
    "Preheat the oven, then grease a baking tin and line it with paper. Beat the butter and sugar until pale, add "
    "the eggs one at a time, fold in the flour, and spread the mixture evenly before baking it until golden.",
)


@dataclass(frozen=True)
class Condition:
    name: str
    neurons: tuple[Neuron, ...]


def random_controls(
    neurons: Sequence[Neuron], d_mlp: int, n_controls: int, seed: int = 0, exclude: Sequence[Neuron] = ()
) -> list[tuple[Neuron, ...]]:
    """`n_controls` random neuron sets, each with the per-layer counts of `neurons`, drawn without
    replacement from the neurons of that layer that are neither in `neurons` nor in `exclude`."""
    taken: dict[int, set[int]] = {}
    for layer, index in (*neurons, *exclude):
        taken.setdefault(layer, set()).add(index)
    n_layers = 1 + max((layer for layer, _ in neurons), default=0)
    counts = dict(enumerate(per_layer_counts(neurons, n_layers)))
    rng = np.random.default_rng(seed)
    controls = []
    for _ in range(n_controls):
        chosen: list[Neuron] = []
        for layer, count in counts.items():
            if not count:
                continue
            pool = np.setdiff1d(np.arange(d_mlp), np.fromiter(taken.get(layer, ()), dtype=np.int64))
            if pool.size < count:
                raise TruthscopeError(f"layer {layer}: {count} random neurons needed, only {pool.size} others exist")
            chosen += [(layer, int(i)) for i in np.sort(rng.choice(pool, size=count, replace=False))]
        controls.append(tuple(chosen))
    return controls


def neuron_edits(neurons: Sequence[Neuron], mode: str = "zero", factor: float = 0.0) -> dict:
    """{hook name: intervention} that zeroes (or scales by `factor`) `neurons` at every position."""
    if mode not in MODES:
        raise TruthscopeError(f"unknown mode {mode!r}; choose one of {', '.join(MODES)}")
    by_layer: dict[int, list[int]] = {}
    for layer, index in neurons:
        by_layer.setdefault(layer, []).append(index)
    make = (lambda idx: Zero(index=idx)) if mode == "zero" else (lambda idx: Scale(index=idx, factor=factor))
    return {f"blocks.{layer}.mlp.neurons": make(sorted(idx)) for layer, idx in sorted(by_layer.items())}


# --- measurements under one condition ---------------------------------------------------------------


def truthfulqa_scores(lm, questions: Sequence[Question], presets: dict[str, str], seed: int = 0) -> list[dict]:
    sets = {q.id: answer_sets(q, "harness", "qa", presets, seed) for q in questions}
    unique = list(dict.fromkeys(r for q in questions for r in requests_for(sets[q.id])))
    logprobs = {r: res.logprob for r, res in zip(unique, lm.loglikelihood(unique))}
    out = []
    for q in questions:
        scores = score_question(sets[q.id], logprobs)
        out.append(
            {"item": f"q{q.id}", "category": q.category, "scores": {m: scores[m] for m in MC_METRICS if m in scores}}
        )
    return out


def statement_scores(lm, statements: Sequence[Statement]) -> list[dict]:
    return [
        {"item": f"{r['set']}:{r['row']}", "scores": {f"{r['set']}.accuracy": r["correct"]}}
        for r in score_statements(lm, statements)
    ]


def neutral_scores(lm, texts: Sequence[str], edits: dict) -> list[dict]:
    """Per text: mean next-token loss under `edits`, and mean KL(unmodified || edited)."""
    out = []
    for k, text in enumerate(texts):
        ids = torch.tensor([lm.tokenizer(text).input_ids], device=lm.device)
        with torch.inference_mode():
            base = torch.log_softmax(lm.model(input_ids=ids).logits[0, :-1].float(), -1)
            with edit(lm.model, edits):
                edited = torch.log_softmax(lm.model(input_ids=ids).logits[0, :-1].float(), -1)
        loss = -edited.gather(1, ids[0, 1:, None]).mean()
        kl = (base.exp() * (base - edited)).sum(-1).mean()
        out.append({"item": f"neutral:{k}", "scores": {"lm_loss": float(loss), "kl": float(kl)}})
    return out


# --- the run --------------------------------------------------------------------------------------


def run_suppression(
    lm,
    neurons: Sequence[Neuron],
    questions: Sequence[Question],
    presets: dict[str, str],
    statements: Sequence[Statement],
    run: RunLog,
    *,
    n_controls: int = 5,
    mode: str = "zero",
    factor: float = 0.0,
    exclude: Sequence[Neuron] = (),
    neutral: Sequence[str] = NEUTRAL_TEXTS,
    seed: int = 0,
    progress: bool = True,
) -> dict:
    """Measure every condition (resumable: one batch of records per condition and item kind)."""
    if not neurons:
        raise TruthscopeError(
            "no neurons to suppress (the find run selected none); --top N takes the N strongest candidates instead"
        )
    if n_controls < 1:
        raise TruthscopeError("need at least one random control set (5 or more advised)")
    started = time.time()
    dims = dimensions(lm.model)
    controls = random_controls(neurons, dims.d_mlp, n_controls, seed, exclude)
    conditions = [Condition("none", ()), Condition("selected", tuple(neurons))]
    conditions += [Condition(f"random_{k + 1}", c) for k, c in enumerate(controls)]
    kinds = [("truthfulqa", len(questions)), ("statements", len(statements)), ("neutral", len(neutral))]
    n_items = sum(n for _, n in kinds)

    with tqdm(total=len(conditions) * n_items, desc=f"suppression {lm.name}", disable=not progress) as bar:
        for c_index, condition in enumerate(conditions):
            edits = neuron_edits(condition.neurons, mode, factor)
            offset = c_index * n_items
            for kind, count in kinds:
                ids = range(offset, offset + count)
                offset += count
                if not count or all(run.done(i) for i in ids):
                    bar.update(count)
                    continue
                if kind == "neutral":
                    rows = neutral_scores(lm, neutral, edits)
                else:
                    with edit(lm.model, edits):
                        if kind == "truthfulqa":
                            rows = truthfulqa_scores(lm, questions, presets, seed)
                        else:
                            rows = statement_scores(lm, statements)
                run.append({"id": i, "condition": condition.name, "kind": kind, **row} for i, row in zip(ids, rows))
                bar.update(count)

    records = [run.records[i] for i in range(len(conditions) * n_items)]
    summary = {
        "task": "neurons.suppress",
        "model": lm.name,
        "mode": mode,
        "factor": factor if mode == "scale" else 0.0,
        "n_neurons": len(neurons),
        "neurons": [list(n) for n in neurons],
        "per_layer": per_layer_counts(neurons, dims.n_layers),
        "controls": [list(map(list, c)) for c in controls],
        "items": dict(kinds),
        **summarise_suppression(records, [c.name for c in conditions], seed),
        **run.provenance(started),
    }
    run.finish(summary)
    return summary


def summarise_suppression(records: Sequence[dict], conditions: Sequence[str], seed: int = 0) -> dict:
    """Per metric: each condition's mean (with interval) and the paired effects described above."""
    table: dict[str, dict[str, dict[str, float]]] = {}  # metric -> condition -> item -> value
    for r in records:
        for metric, value in r["scores"].items():
            table.setdefault(metric, {}).setdefault(r["condition"], {})[r["item"]] = value
    randoms = [c for c in conditions if c.startswith("random_")]
    by_metric = {}
    for metric, per_condition in table.items():
        items = sorted(per_condition["none"])
        values = {c: np.array([per_condition[c][i] for i in items]) for c in conditions}
        random_mean = np.mean([values[c] for c in randoms], axis=0)
        effect = {c: float((values[c] - values["none"]).mean()) for c in conditions if c != "none"}
        selected_effect = effect["selected"]
        random_effects = np.array([effect[c] for c in randoms])
        by_metric[metric] = {
            "n_items": len(items),
            "means": {c: bootstrap_mean(values[c], seed=seed) for c in conditions},
            "selected_minus_none": _paired(values["selected"] - values["none"], seed),
            "random_minus_none": _paired(random_mean - values["none"], seed),
            "selected_minus_random": _paired(values["selected"] - random_mean, seed),
            "random_effects": random_effects.tolist(),
            "rank_p": float((1 + np.sum(np.abs(random_effects) >= abs(selected_effect))) / (1 + len(randoms))),
        }
    return {"metrics": by_metric}


def _paired(differences: np.ndarray, seed: int) -> dict:
    out = bootstrap_mean(differences, seed=seed)
    if differences.size < 2:
        out["p_value"] = None
    elif np.allclose(differences, differences[0]):  # no spread: the t statistic is 0/0 or x/0
        out["p_value"] = 1.0 if np.allclose(differences, 0) else 0.0
    else:
        out["p_value"] = float(stats.ttest_1samp(differences, 0.0).pvalue)
    return out
