"""Switch neurons off and ask whether that does more than switching off random neurons would.

Conditions: `none` (the unmodified model), `selected` (the neurons under test), and `random_1..k`
(k = 99 by default): random sets with the selected set's composition, per layer and per
activation-size decile (deciles within the layer of each neuron's mean |activation| over the find
run's training prompts, `neuron_stats.npz: mean_abs_activation`), drawn without replacement from
the layer's neurons except the excluded ones (the other sign's significant neurons); when a decile
runs short, the nearest deciles of the layer fill in. The selected neurons themselves may be drawn:
that makes the selected set exchangeable with the random ones when it is no better than random, so
the p below is exact (drawing from the other neurons only biases it, badly when strata are small: a
simulation with 6 neurons per stratum rejected 20% at 0.05 instead of 5%). Each condition is an
edit of `blocks.{l}.mlp.neurons` (zero, or scale by a factor) at every position of every forward
pass, so it also acts inside `HuggingFaceModel.loglikelihood`'s cached passes.

Each condition runs the registered tasks through `tasks.evaluate`, with the model under the edit,
each into an ordinary run log:

    <out>/conditions/<name>/mc/           held-out questions: `mc` (harness protocol, `qa` preset):
                                          mc1, mc2, mc3, and the 2025 binary choice mc0, mc0_acc (both
                                          letter orders) and mc0_cloze(_acc)
    <out>/conditions/<name>/statements/   Geometry-of-Truth sets: `{set}.accuracy` per statement
    <out>/records.jsonl                   one record per condition (id = its index): its neurons and
                                          its mean of every metric, plus the neutral-text costs
                                          (`interp.side_effects`: lm_loss, kl) under `scores`

A rerun with the same --out resumes: finished conditions are skipped, a condition cut short resumes
inside its task runs. The set-level test, per metric, compares the selected set's effect
e_s = mean(selected) - mean(none) with the k random sets' effects e_r (Phipson & Smyth, exact when
the sets are exchangeable):

    p_two_sided = (1 + #{r : |e_r - c| >= |e_s - c|}) / (1 + k),  c = median of all 1 + k effects
                  (centred so that an effect every set of that size has, e.g. any 50 neurons off
                  costs accuracy, is not credited to the selected neurons)
    p_lower     = (1 + #{r : e_r <= e_s}) / (1 + k)   (the selected set lowers the metric more)
    p_upper     = (1 + #{r : e_r >= e_s}) / (1 + k)

The smallest p possible is 1 / (1 + k): 0.01 with 99 sets. Per item, the paired differences
selected - none and selected - (mean of the random sets) get bootstrap intervals as well.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy import stats
from tqdm import tqdm

from truthscope.errors import TruthscopeError
from truthscope.interp.hooks import Scale, Zero, dimensions, edit
from truthscope.interp.neurons import Neuron, per_layer_counts, top_neurons
from truthscope.interp.side_effects import neutral_baseline, neutral_costs
from truthscope.runlog import RunConfig, RunLog, Sample, read_run
from truthscope.sampling import draw, sample_of
from truthscope.scoring.intervals import bootstrap_mean

MODES = ("zero", "scale")
DEFAULT_CONTROLS = 99
NEUTRAL = ("lm_loss", "kl")


@dataclass(frozen=True)
class Condition:
    name: str
    neurons: tuple[Neuron, ...]


# --- the random sets ---------------------------------------------------------------------------------


def activation_strata(mean_abs_activation: np.ndarray, n_bins: int = 10) -> np.ndarray:
    """Per layer, each neuron's decile (0..n_bins-1) of mean |activation| among that layer's neurons."""
    a = np.asarray(mean_abs_activation, dtype=np.float64)
    ranks = np.argsort(np.argsort(a, axis=1, kind="stable"), axis=1, kind="stable")
    return (ranks * n_bins // a.shape[1]).astype(np.int64)


def random_controls(
    neurons: Sequence[Neuron],
    d_mlp: int,
    n_controls: int,
    seed: int = 0,
    exclude: Sequence[Neuron] = (),
    strata: np.ndarray | None = None,
) -> list[tuple[Neuron, ...]]:
    """`n_controls` random neuron sets with the composition of `neurons`: as many in each layer and,
    when `strata` ([n_layers, d_mlp] bin per neuron, see `activation_strata`) is given, in each bin
    of that layer. Each set is drawn without replacement from its strata, the selected neurons
    included, so a selected set that is itself random is exchangeable with the controls and the
    set-level p is exact; `exclude` (say, the neurons of the other sign) is left out. When a
    stratum is too small (exclusions), the nearest bins of the layer fill in. Each set sorted."""
    excluded: dict[int, set[int]] = {}
    for layer, index in exclude:
        excluded.setdefault(layer, set()).add(index)
    wanted: dict[tuple[int, int], int] = {}
    for layer, index in neurons:
        key = (layer, int(strata[layer, index]) if strata is not None else 0)
        wanted[key] = wanted.get(key, 0) + 1
    pools = {}
    for layer, stratum in wanted:
        free = np.setdiff1d(np.arange(d_mlp), np.fromiter(excluded.get(layer, ()), dtype=np.int64))
        count = sum(c for (lay, _), c in wanted.items() if lay == layer)
        if free.size < count:
            raise TruthscopeError(f"layer {layer}: {count} random neurons needed, only {free.size} others exist")
        distance = np.abs(strata[layer, free] - stratum) if strata is not None else np.zeros(free.size, dtype=int)
        pools[layer, stratum] = [free[distance == gap] for gap in np.unique(distance)]  # own bin, then nearest
    rng = np.random.default_rng(seed)
    controls = []
    for _ in range(n_controls):
        chosen: dict[int, set[int]] = {}
        for (layer, stratum), count in sorted(wanted.items()):
            taken = chosen.setdefault(layer, set())
            picked: list[int] = []
            for ring in pools[layer, stratum]:
                pool = ring if not taken else ring[~np.isin(ring, list(taken))]
                take = min(count - len(picked), pool.size)
                picked += rng.choice(pool, size=take, replace=False).tolist()
                if len(picked) == count:
                    break
            taken.update(int(i) for i in picked)
        controls.append(tuple(sorted((layer, i) for layer, idx in chosen.items() for i in idx)))
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


# --- the set-level test ------------------------------------------------------------------------------


def set_level_test(selected_effect: float, random_effects: Sequence[float]) -> dict:
    """The selected set's effect ranked among the random sets' (module docstring)."""
    e = np.asarray(random_effects, dtype=np.float64)
    k = e.size
    if k == 0:
        return {"effect": selected_effect, "n_random": 0, "p_two_sided": None, "p_lower": None, "p_upper": None}
    centre = float(np.median(np.append(e, selected_effect)))
    tol = 1e-12 * (1 + abs(selected_effect))
    return {
        "effect": float(selected_effect),
        "n_random": int(k),
        "random_mean": float(e.mean()),
        "random_quantiles": [float(x) for x in np.quantile(e, [0.025, 0.5, 0.975])],
        "centre": centre,
        "p_two_sided": float((1 + np.sum(np.abs(e - centre) >= abs(selected_effect - centre) - tol)) / (1 + k)),
        "p_lower": float((1 + np.sum(e <= selected_effect + tol)) / (1 + k)),
        "p_upper": float((1 + np.sum(e >= selected_effect - tol)) / (1 + k)),
    }


def summarise_suppression(
    items: dict[str, dict[str, dict]], conditions: Sequence[str], costs: dict[str, dict] | None = None, seed: int = 0
) -> dict:
    """`items`: condition -> metric -> {item key: value}; `costs`: condition -> {lm_loss, kl}.
    Per metric: each condition's mean, the paired per-item effects and the set-level test."""
    randoms = [c for c in conditions if c.startswith("random_")]
    out = {}
    metrics = sorted({m for c in conditions for m in items.get(c, {})})
    for metric in metrics:
        keys = sorted(items["none"][metric])
        values = {c: np.array([items[c][metric][k] for k in keys], dtype=np.float64) for c in conditions}
        means = {c: float(values[c].mean()) for c in conditions}
        effects = [means[c] - means["none"] for c in randoms]
        entry = {
            "n_items": len(keys),
            "none": bootstrap_mean(values["none"], seed=seed),
            "selected": bootstrap_mean(values["selected"], seed=seed),
            "selected_minus_none": _paired(values["selected"] - values["none"], seed),
            "random_effects": effects,
            "set_test": set_level_test(means["selected"] - means["none"], effects),
        }
        if randoms:
            random_mean = np.mean([values[c] for c in randoms], axis=0)
            entry["selected_minus_random"] = _paired(values["selected"] - random_mean, seed)
        out[metric] = entry
    for metric in NEUTRAL if costs is not None else ():
        assert costs is not None
        base = costs["none"][metric]
        effects = [costs[c][metric] - base for c in randoms]
        out[metric] = {
            "n_items": costs["none"]["tokens"],
            "none": base,
            "selected": costs["selected"][metric],
            "random_effects": effects,
            "set_test": set_level_test(costs["selected"][metric] - base, effects),
        }
    return {"metrics": out}


def _paired(differences: np.ndarray, seed: int) -> dict:
    out = bootstrap_mean(differences, seed=seed)
    if differences.size < 2:
        out["p_value"] = None
    elif np.allclose(differences, differences[0]):  # no spread: the t statistic is 0/0 or x/0
        out["p_value"] = 1.0 if np.allclose(differences, 0) else 0.0
    else:
        out["p_value"] = float(stats.ttest_1samp(differences, 0.0).pvalue)  # pyright: ignore[reportAttributeAccessIssue]
    return out


# --- what a `neurons find` run hands over --------------------------------------------------------------


@dataclass(frozen=True)
class FindRun:
    directory: str
    config: dict
    summary: dict
    neurons: list[Neuron]
    exclude: list[Neuron]
    strata: np.ndarray | None


def load_find_run(source: str | Path, which: str = "positive", top: int | None = None) -> FindRun:
    """The neurons to suppress from a finished `neurons find` run: its significant neurons of
    `which` sign, or (exploratory) its `top` largest t of that sign; the other sign's significant
    neurons are excluded from the random sets, which are matched on activation deciles."""
    if which not in ("positive", "negative"):
        raise TruthscopeError(f"--which must be positive or negative, not {which!r}")
    config, _, summary = read_run(source)
    if summary is None or config.get("task") != "neurons.find":
        raise TruthscopeError(f"{source}: not a finished `neurons find` run")
    stats_file = np.load(Path(source) / "neuron_stats.npz")
    neurons = [(n["layer"], n["index"]) for n in summary["neurons"][which]]
    if top is not None:
        neurons = top_neurons(stats_file["t"], top, 1 if which == "positive" else -1)
    other = "negative" if which == "positive" else "positive"
    exclude = [(n["layer"], n["index"]) for n in summary["neurons"][other] if (n["layer"], n["index"]) not in neurons]
    strata = activation_strata(stats_file["mean_abs_activation"]) if "mean_abs_activation" in stats_file else None
    return FindRun(str(source), config, summary, neurons, exclude, strata)


def held_out_questions(find: FindRun, resources, limit: int | None, draw_mode: str = "seeded", seed: int = 0):
    """The find run's held-out questions, `limit` of them drawn as `draw_mode` says."""
    held = set(find.summary["split"]["held_out_ids"])
    questions = [q for q in resources.truthfulqa().questions if q.id in held]
    return draw(questions, sample_of(limit, draw_mode, seed), purpose="neurons.eval")


# --- the run ------------------------------------------------------------------------------------------


def run_suppression(
    lm,
    facts,
    find: FindRun,
    questions: Sequence,
    resources,
    out: str | Path,
    *,
    sets: Sequence[str] = ("cities", "larger_than"),
    set_limit: int | None = 200,
    n_controls: int = DEFAULT_CONTROLS,
    mode: str = "zero",
    factor: float = 0.0,
    seed: int = 0,
    eval_sample: Sample | None = None,
    progress: bool = True,
) -> tuple[dict, RunLog]:
    """Every condition through the tasks (module docstring); (summary, the top-level run log)."""
    from truthscope.runlog import DataFacts
    from truthscope.tasks.base import build_task, evaluate
    from truthscope.tasks.multiple_choice import MultipleChoice, MultipleChoiceOptions

    neurons = list(find.neurons)
    if not neurons:
        raise TruthscopeError(
            "no neurons to suppress (the find run selected none); --top N takes the N strongest candidates instead"
        )
    if n_controls < 1:
        raise TruthscopeError("need at least one random control set (99 for a set-level p of 0.01)")
    started = time.time()
    dims = dimensions(lm.model)
    controls = random_controls(neurons, dims.d_mlp, n_controls, seed, find.exclude, find.strata)
    conditions = [Condition("none", ()), Condition("selected", tuple(neurons))]
    conditions += [Condition(f"random_{k + 1}", c) for k, c in enumerate(controls)]
    dataset = resources.truthfulqa()
    mc_task = MultipleChoice(
        questions, resources.preset("qa"), MultipleChoiceOptions(), seed=seed,
        data=DataFacts(version=dataset.version, sha256=dataset.files),
    )  # fmt: skip
    statements = build_task("statements", {"sets": tuple(sets)}, resources, sample_of(set_limit, "seeded", seed), seed)
    intervention = {"mode": mode, "factor": factor if mode == "scale" else 0.0}
    config = RunConfig(
        task="neurons.suppress",
        options={"from": find.directory, "neurons": [list(n) for n in neurons], **intervention,
                 "controls": n_controls, "sets": list(sets), "set_limit": set_limit,
                 "questions": [q.id for q in questions]},
        model=facts, data=mc_task.data, sample=eval_sample or Sample(), seed=seed,
    )  # fmt: skip
    run = RunLog(out, config)
    neutral_baseline(lm)  # the unmodified model's distributions, before any edit
    items: dict[str, dict[str, dict]] = {}
    costs: dict[str, dict] = {}
    for k, condition in enumerate(tqdm(conditions, desc=f"suppression {lm.name}", disable=not progress)):
        edits = neuron_edits(condition.neurons, mode, factor)
        where = Path(out) / "conditions" / condition.name
        digest = hashlib.sha256(json.dumps(condition.neurons).encode()).hexdigest()[:16]
        per_metric: dict[str, dict] = {}
        with edit(lm.model, edits):
            for task in (mc_task, statements):
                sub = RunLog(
                    where / task.name,
                    task.config(facts, task_sample(task, eval_sample, set_limit, seed),
                                sweep=f"neurons.suppress:{condition.name}",
                                execution={"intervention": {**intervention, "neurons_sha256": digest}}),
                )  # fmt: skip
                evaluate(task, lm, sub, progress=False)
                for r in sub.records.values():
                    for metric, value in r["scores"].items():
                        name = f"{r['set']}.{metric}" if task.name == "statements" else metric
                        if value is not None:
                            per_metric.setdefault(name, {})[r["id"]] = value
        items[condition.name] = per_metric
        if not run.done(k):
            cost = neutral_costs(lm, edits)
            means = {m: float(np.mean(list(v.values()))) for m, v in per_metric.items()}
            scores = {**means, **{m: cost[m] for m in NEUTRAL}}
            neurons_k = [list(n) for n in condition.neurons]
            run.append([{"id": k, "condition": condition.name, "neurons": neurons_k, "scores": scores,
                         "neutral_tokens": cost["tokens"]}])  # fmt: skip
        record = run.records[k]
        costs[condition.name] = {**{m: record["scores"][m] for m in NEUTRAL}, "tokens": record["neutral_tokens"]}
    summary = {
        "task": "neurons.suppress",
        "model": lm.name,
        **intervention,
        "n_neurons": len(neurons),
        "neurons": [list(n) for n in neurons],
        "per_layer": per_layer_counts(neurons, dims.n_layers),
        "matched_on": "layer and activation decile" if find.strata is not None else "layer",
        "controls": [list(map(list, c)) for c in controls],
        "items": {"questions": len(questions), "statements": len(statements.items())},
        **summarise_suppression(items, [c.name for c in conditions], costs, seed),
        **run.provenance(started),
    }
    summary["scores"] = {
        f"{m} selected-none": v["selected_minus_none"]
        for m, v in summary["metrics"].items()
        if "selected_minus_none" in v
    }
    run.finish(summary)
    return summary, run


def task_sample(task, eval_sample: Sample | None, set_limit: int | None, seed: int) -> Sample:
    return sample_of(set_limit, "seeded", seed) if task.name == "statements" else (eval_sample or Sample())
