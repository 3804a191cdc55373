"""Steering along a truth direction, and the sweep that shows what it costs.

A `SteeringDirection` is a vector per hook point; `steering(module, direction, alpha)` adds
alpha * vector there at every position of every forward pass (prompt, answer and generated tokens),
through `interp.hooks.edit`, so the hooks are gone when the block exits, also after an exception.

    per layer   one vector on `blocks.{l}.resid_post`: a probe's unit direction
    per head    ITI-style (Li et al.): the K attention heads whose own activations best separate
                true from false answers each get their mass-mean direction, on `blocks.{l}.attn.heads`

Vectors are scaled to one standard deviation of the training activations along them, so alpha is in
"standard deviations" and comparable across layers, heads and models.

Units. alpha counts those standard deviations, but what the model feels is the size of the vector
against the residual stream it is added to: every row also reports ||alpha v|| / (mean norm of the
residual stream at that layer, over every position of the steered prompts), `norm_ratio`, since the
vector is added at every position. (For heads, v is measured in the residual stream: what the
attention output gains.)

Controls. The truth direction's effect is read against the same sweep along `negated` (-v) and
along `random-k`, random directions of the same norm (per hook and head), so "MC1 rose" can be told
from "any push of this size changes MC1".

The sweep (`steer_sweep`) runs, for each direction and alpha, the registered `mc` and `gen` tasks
with the model under the intervention, each into an ordinary run folder, so alpha = 0 IS `truthscope
mc` / `truthscope gen` on those questions, record for record (same prompts, trimming, judges and
threshold). Per alpha it also reports the share of answers opening with "No" and of refusals
("I have no comment." and other hedges), and the cost on neutral text (`interp.side_effects`): the
language-modelling loss and the KL from the unsteered model. The trade-off is the point: a setting
that gains MC accuracy by wrecking the language model, or by making it say "No" or nothing, shows.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch

from truthscope.interp.hooks import Add, edit
from truthscope.interp.probes import fit_probe, grouped_split

if TYPE_CHECKING:
    from truthscope.tasks.base import Task


@dataclass(frozen=True)
class SteeringDirection:
    vectors: dict[str, np.ndarray]  # hook name -> vector added there ([d_model], or [n_heads, d_head])
    description: str

    @property
    def hooks(self) -> list[str]:
        return list(self.vectors)


@contextmanager
def steering(module: torch.nn.Module, direction: SteeringDirection, alpha: float) -> Iterator[None]:
    """Add alpha * each vector at its hook point inside the block (alpha = 0 changes nothing)."""
    edits = {
        hook: Add(torch.as_tensor(vector, dtype=torch.float32), alpha) for hook, vector in direction.vectors.items()
    }
    with edit(module, edits):
        yield


def layer_direction(
    method: str, x: np.ndarray, y: np.ndarray, groups: np.ndarray, hook: str, seed: int = 0
) -> SteeringDirection:
    """A probe's unit direction at one hook, scaled to the std of the training items along it."""
    unit = fit_probe(method, x, y, groups, seed).direction()
    sigma = float((np.asarray(x, dtype=np.float64) @ unit).std())
    return SteeringDirection({hook: unit * sigma}, f"{method} direction at {hook}, 1 alpha = {sigma:.3g} (1 std)")


def head_direction(
    heads: dict[str, np.ndarray],
    y: np.ndarray,
    groups: np.ndarray,
    top_k: int,
    seed: int = 0,
    val_fraction: float = 0.25,
) -> tuple[SteeringDirection, list[dict]]:
    """ITI: rank every head by the validation accuracy of a logistic probe on its activations
    (grouped inner split of the training items), keep the top K, and give each its mass-mean
    direction scaled to one std. `heads` maps `blocks.{l}.attn.heads` -> [n, n_heads, d_head].
    Returns the direction and the ranking (layer, head, val_accuracy), best first."""
    from truthscope.interp.probes import accuracy

    inner, val = grouped_split(groups, val_fraction, seed + 1)
    ranking = []
    for hook, acts in heads.items():
        layer = int(hook.split(".")[1])
        for h in range(acts.shape[1]):
            probe = fit_probe("logistic", acts[inner, h], y[inner], groups[inner], seed)
            ranking.append(
                {"hook": hook, "layer": layer, "head": h, "val_accuracy": accuracy(probe.scores(acts[val, h]), y[val])}
            )
    ranking.sort(key=lambda r: -r["val_accuracy"])
    vectors: dict[str, np.ndarray] = {}
    for r in ranking[:top_k]:
        acts = heads[r["hook"]][:, r["head"]].astype(np.float64)
        shift = acts[y == 1].mean(axis=0) - acts[y == 0].mean(axis=0)
        unit = shift / np.linalg.norm(shift)
        vector = vectors.setdefault(r["hook"], np.zeros(heads[r["hook"]].shape[1:]))
        vector[r["head"]] = unit * (acts @ unit).std()
    return SteeringDirection(
        vectors, f"ITI: mass-mean directions of the top {top_k} heads, 1 alpha = 1 std per head"
    ), ranking


# --- choosing the direction, and its controls ----------------------------------------------------


def choose_direction(
    features: Mapping[str, np.ndarray],
    y: np.ndarray,
    groups: np.ndarray,
    method: str = "mass_mean",
    heads: int = 0,
    seed: int = 0,
) -> tuple[SteeringDirection, list[dict] | None]:
    """The truth direction from training items only: with `heads`, ITI over the `attn.heads` hooks
    in `features`; else one `resid_post` hook (chosen by validation AUROC when several are given)."""
    from truthscope.interp.probes import select_layer

    hooks = list(features)
    if heads:
        return head_direction(dict(features), y, groups, heads, seed)
    if len(hooks) > 1:
        index, _ = select_layer([features[h] for h in hooks], y, groups, method, seed)
        hooks = [hooks[index]]
    return layer_direction(method, features[hooks[0]], y, groups, hooks[0], seed), None


def control_directions(direction: SteeringDirection, negated: bool = True, n_random: int = 1, seed: int = 0):
    """{"truth": direction, "negated": -direction, "random-1".., random directions of equal norm:
    per hook, and per head for head vectors (only the steered heads are moved)}."""
    out = {"truth": direction}
    if negated:
        out["negated"] = SteeringDirection(
            {h: -v for h, v in direction.vectors.items()}, f"negated {direction.description}"
        )
    rng = np.random.default_rng(seed + 7919)
    for k in range(1, n_random + 1):
        vectors = {}
        for hook, v in direction.vectors.items():
            r = rng.normal(size=v.shape)
            norms = np.linalg.norm(v, axis=-1, keepdims=True)
            vectors[hook] = r / np.linalg.norm(r, axis=-1, keepdims=True) * norms
        out[f"random-{k}"] = SteeringDirection(vectors, f"random direction {k}, same norm as the truth direction")
    return out


def residual_norms(model, direction: SteeringDirection, texts: Sequence[str]) -> dict[str, dict]:
    """Per steered hook: the norm of the vector as added to the residual stream (one alpha) and the
    mean norm of the residual stream at that layer (`resid_post`) over every position of `texts`."""
    from truthscope.interp.hooks import capture

    out = {}
    for hook, vector in direction.vectors.items():
        layer = int(hook.split(".")[1])
        resid, added = [], []
        for text in texts:
            ids = torch.tensor([model.tokenizer(text).input_ids], device=model.device)
            with torch.inference_mode():
                with capture(model.model, [f"blocks.{layer}.resid_post", f"blocks.{layer}.attn.out"]) as plain:
                    model.model(input_ids=ids)
                resid.append(plain[f"blocks.{layer}.resid_post"][0].float().norm(dim=-1))
                if hook.endswith("attn.heads"):  # what one alpha adds to the attention output
                    one = SteeringDirection({hook: vector}, "")
                    with steering(model.model, one, 1.0), capture(model.model, [f"blocks.{layer}.attn.out"]) as moved:
                        model.model(input_ids=ids)
                    diff = moved[f"blocks.{layer}.attn.out"][0] - plain[f"blocks.{layer}.attn.out"][0]
                    added.append(diff.float().norm(dim=-1))
        vector_norm = float(torch.cat(added).mean()) if added else float(np.linalg.norm(vector))
        out[hook] = {"vector_norm": vector_norm, "residual_norm": float(torch.cat(resid).mean()),
                     "positions": int(sum(len(r) for r in resid))}  # fmt: skip
    return out


def norm_ratio(norms: Mapping[str, dict], alpha: float) -> float:
    """||alpha v|| / mean residual norm, the largest over the steered hooks."""
    return max(abs(alpha) * n["vector_norm"] / n["residual_norm"] for n in norms.values())


# --- what the answers say ------------------------------------------------------------------------


def answer_shares(answers: Sequence[str]) -> dict[str, float | None]:
    """Shares of answers opening with "No" and of refusals ("I have no comment." and other hedges,
    the judge's polarity and form features); None without answers."""
    from truthscope.judges.features import _HEDGES, words

    if not answers:
        return {"starts_no": None, "refusal": None}
    starts_no = [float(words(a)[:1] == ["no"]) for a in answers]
    refusal = [float(not a.strip() or any(h in a.lower() for h in _HEDGES)) for a in answers]
    return {"starts_no": float(np.mean(starts_no)), "refusal": float(np.mean(refusal))}


# --- costs on neutral text -----------------------------------------------------------------------


def neutral_cost(model, direction: SteeringDirection | None = None, alpha: float = 0.0) -> dict:
    """{"lm_loss", "kl", "tokens"} on the neutral corpus of `interp.side_effects` under the steering."""
    from truthscope.interp.side_effects import neutral_costs

    if direction is None or alpha == 0:
        return neutral_costs(model)
    return neutral_costs(model, lambda: steering(model.model, direction, alpha))


# --- the sweep -----------------------------------------------------------------------------------

SWEEP_METRICS = ("mc1", "mc2", "mc3", "true", "info", "true_info", "bleu_acc", "rouge1_acc", "embed_acc")


def alpha_folder(out: Path, name: str, alpha: float) -> Path:
    """`<out>/alpha=<a>` for the truth direction, `<out>/<control>/alpha=<a>` for a control."""
    return (out if name == "truth" else out / name) / f"alpha={alpha:g}"


def steer_sweep(
    model,
    directions: Mapping[str, SteeringDirection],
    alphas: Sequence[float],
    tasks: Mapping[str, Task],
    out: Path,
    run,
    *,
    facts=None,
    sample=None,
    norms: Mapping[str, dict] | None = None,
    group_size: int | None = None,
    seed: int = 0,
    progress: bool = True,
) -> list[dict]:
    """For each direction and alpha, evaluate each of `tasks` (name -> built `Task`, e.g. `mc` and
    `gen`) with `model` steered, into `alpha_folder(out, direction, alpha) / <task>` (resumable, each
    an ordinary run). alpha = 0 is run once, unsteered, under the truth direction's folder. Returns
    (and appends to `run`) one record per (direction, alpha): the tasks' mean scores, the shares of
    "No" answers and refusals, the neutral-text costs and the norm ratio."""
    from truthscope.runlog import RunLog, Sample
    from truthscope.tasks.base import evaluate

    sample = sample or Sample(seed=seed)
    rows = []
    for d_index, (name, direction) in enumerate(directions.items()):
        for a_index, alpha in enumerate(alphas):
            if alpha == 0 and name != "truth":
                continue
            record_id = d_index * len(alphas) + a_index
            folder = alpha_folder(out, name, alpha)
            steer = nullcontext() if alpha == 0 else steering(model.model, direction, alpha)
            label = f"{direction.description}; alpha={alpha:g}" if alpha else "unsteered"
            summaries, runs = {}, {}
            with steer:
                for task_name, task in tasks.items():
                    config = task.config(facts, sample, sweep=f"steer {name}: {label}",
                                         execution={"group_size": group_size or task.group_size,
                                                    "batch_size": model.batch_size})  # fmt: skip
                    task_run = runs[task_name] = RunLog(folder / task_name, config)
                    summaries[task_name] = evaluate(task, model, task_run, group_size=group_size, progress=progress)
            if run.done(record_id):
                rows.append(run.records[record_id])
                continue
            scores: dict[str, float | None] = {}
            for summary in summaries.values():
                for metric, value in summary.get("scores", {}).items():
                    if metric in SWEEP_METRICS:
                        scores[metric] = value["mean"]
            if "gen" in runs:
                scores.update(answer_shares([r["answer"] for r in runs["gen"].records.values()]))
            scores.update(neutral_cost(model, direction, alpha))
            scores["norm_ratio"] = norm_ratio(norms, alpha) if norms else None
            row = {"id": record_id, "direction": name, "alpha": alpha, "folder": str(folder.relative_to(out)),
                   "scores": {k: (None if v is None else float(v)) for k, v in scores.items()},
                   "intervals": {t: {m: v for m, v in s.get("scores", {}).items() if m in SWEEP_METRICS}
                                 for t, s in summaries.items()}}  # fmt: skip
            run.append([row])
            rows.append(run.records[record_id])
    return rows


def sweep_table(rows: Sequence[Mapping]) -> dict:
    """Per direction, per alpha, the scores; and the truth direction's effect beside the controls'
    (the difference from alpha = 0 of each metric)."""
    table: dict = {}
    base = next((r["scores"] for r in rows if r["alpha"] == 0), None)
    for r in rows:
        entry = {"alpha": r["alpha"], **r["scores"]}
        if base is not None:
            entry["change"] = {m: (None if v is None or base.get(m) is None else v - base[m])
                               for m, v in r["scores"].items() if m in SWEEP_METRICS}  # fmt: skip
        table.setdefault(r["direction"], []).append(entry)
    return table


def steer_tasks(
    resources,
    questions: Sequence,
    *,
    protocol: str = "harness",
    preset: str = "qa",
    max_new_tokens: int = 50,
    judge: str = "trained",
    embed: bool = True,
    seed: int = 0,
) -> tuple[dict, str | None]:
    """The `mc` task and (unless `max_new_tokens` is 0) the `gen` task on `questions`, with the
    options `truthscope mc` / `truthscope gen` take; (tasks, a note when the judges could not be
    loaded and generations are scored by similarity only)."""
    from truthscope.interp.experiments import scorers_or_none
    from truthscope.runlog import DataFacts
    from truthscope.tasks.generation import Generation, GenerationOptions
    from truthscope.tasks.multiple_choice import MultipleChoice, MultipleChoiceOptions

    dataset = resources.truthfulqa()
    data = DataFacts(version=dataset.version, sha256=dataset.files)
    presets = resources.preset(preset)
    options = MultipleChoiceOptions(protocol=protocol, preset=preset)  # type: ignore[arg-type]
    tasks: dict = {"mc": MultipleChoice(questions, presets, options, seed=seed, data=data)}
    note = None
    if max_new_tokens:
        judges, embedder, used, note = scorers_or_none(resources, judge, embed)
        gen_options = GenerationOptions(preset=preset, max_new_tokens=max_new_tokens, judge=used, embed=embed)
        scorers = {"judges": judges, "embedder": embedder}
        tasks["gen"] = Generation(questions, presets, gen_options, seed=seed, data=data, **scorers)
    return tasks, note
