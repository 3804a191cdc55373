"""`truthscope probe`, `truthscope latent`, `truthscope steer`: truth probes, latent knowledge versus
what the model says, and steering along a truth direction.

All three read the same cached activations (TruthfulQA answers at the end of "question + answer"
and, for `probe`, statement sets) and split TruthfulQA by question with the same seed, so the
questions `latent` and `steer` hold out are the ones `probe` tested on.
"""

from __future__ import annotations

import json
import random
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import typer

from truthscope.cli.app import (
    BATCH_SIZE,
    DATA,
    DEVICE,
    DTYPE,
    LIMIT,
    MODEL,
    OUT,
    PRESET,
    SEED,
    TRUST_REMOTE_CODE,
    VERSION,
    app,
    user_errors,
)
from truthscope.cli.common import load_dataset, load_presets_for
from truthscope.errors import TruthscopeError
from truthscope.paths import data_dir, new_run_dir
from truthscope.runlog import RunLog
from truthscope.scoring.intervals import bootstrap_mean

PROTOCOL = typer.Option(
    "harness",
    "--protocol",
    help="Answer format: harness (mc_task.json targets) or upstream (CSV answers, with periods).",
)
TEST_FRACTION = typer.Option(
    0.5, "--test-fraction", min=0.05, max=0.95, help="Share of questions (groups) held out for testing."
)
LAYERS = typer.Option("all", "--layers", help="Layers to read: 'all' or a comma list such as 0,5,10.")
SAMPLE = typer.Option(None, "--sample", min=2, help="A seeded random sample of N questions (after --limit).")
SITE = typer.Option("resid_post", "--site", help="Hook site: resid_post, or attn.heads (a layer's heads side by side).")
DEFAULT_SETS = "cities,sp_en_trans,larger_than,common_claim_true_false"


def _setup(model, data, version, preset, protocol, limit, sample, seed, batch_size, device, dtype, trust_remote_code):
    from truthscope.models import load_model
    from truthscope.models.huggingface import HuggingFaceModel
    from truthscope.tasks.multiple_choice import PROTOCOLS

    if protocol not in PROTOCOLS:
        raise TruthscopeError(f"unknown protocol {protocol!r}; choose one of {', '.join(PROTOCOLS)}")
    dataset = load_dataset(data, version, limit)
    if sample is not None and sample < len(dataset):
        # a seeded sample keeps every category represented, unlike the first N (the CSV is ordered by category)
        chosen = random.Random(f"{seed}:questions").sample(dataset.questions, sample)
        dataset = replace(dataset, questions=tuple(sorted(chosen, key=lambda q: q.id)))
    presets = load_presets_for(data)
    if preset not in presets:
        raise TruthscopeError(f"unknown preset {preset!r}; known: {', '.join(sorted(presets))}")
    lm = load_model(model, device=device, dtype=dtype, batch_size=batch_size, trust_remote_code=trust_remote_code)
    if not isinstance(lm, HuggingFaceModel):
        raise TruthscopeError(f"{model!r} has no activations to read: probes need a Hugging Face model")
    return dataset, presets, lm


def _hooks(lm, layers: str, site: str = "resid_post") -> list[str]:
    from truthscope.interp.hooks import SITES, n_layers

    if site not in SITES:
        raise TruthscopeError(f"--site: choose one of {', '.join(SITES)}")
    total = n_layers(lm.model)
    if layers == "all":
        chosen = list(range(total))
    else:
        try:
            chosen = [int(x) for x in layers.split(",") if x.strip()]
        except ValueError:
            raise TruthscopeError(f"--layers: expected 'all' or integers separated by commas, got {layers!r}") from None
        if not chosen or any(not 0 <= i < total for i in chosen):
            raise TruthscopeError(f"--layers: the model has layers 0..{total - 1}")
    return [f"blocks.{i}.{site}" for i in chosen]


def _truthfulqa_acts(lm, dataset, presets, protocol, preset, hooks):
    from truthscope.interp.activations import load_activations, truthfulqa_items

    items = truthfulqa_items(dataset, presets, protocol, preset)
    name = f"truthfulqa-{dataset.version}-{protocol}-{preset}"
    return load_activations(lm, name, items, hooks, progress=True)


def _flat(acts):
    """One feature vector per item: `attn.heads` [n, heads, d_head] becomes [n, heads * d_head]."""
    return replace(acts, features={h: v.reshape(len(v), -1) for h, v in acts.features.items()})


def _split_questions(acts, dataset, test_fraction, seed):
    from truthscope.interp.probes import grouped_split

    train, test = grouped_split(acts.groups, test_fraction, seed)
    held_out = set(acts.groups[test].tolist())
    return train, test, [q for q in dataset.questions if q.id in held_out]


def _methods(methods: str) -> list[str]:
    from truthscope.interp.probes import METHODS

    chosen = [m.strip() for m in methods.split(",") if m.strip()]
    unknown = [m for m in chosen if m not in METHODS]
    if unknown or not chosen:
        raise TruthscopeError(f"--methods: choose from {', '.join(METHODS)}")
    return chosen


def _config(task: str, model: str, dataset, **extra) -> dict:
    return {"task": task, "model": model, "version": dataset.version, "data_sha256": dataset.files, **extra}


# --- probe -----------------------------------------------------------------------------------------


@app.command("probe")
@user_errors
def probe_command(
    model: str = MODEL,
    data: str = DATA,
    version: str = VERSION,
    protocol: str = PROTOCOL,
    preset: str = PRESET,
    sets: str = typer.Option(
        DEFAULT_SETS, "--sets", help="Statement sets (Geometry of Truth), comma-separated; '' for none."
    ),
    statements_limit: int = typer.Option(
        400, "--statements-limit", min=10, help="Seeded sample of statements per set."
    ),
    methods: str = typer.Option("logistic,mass_mean,ccs", "--methods", help="Probe methods: logistic, mass_mean, ccs."),
    layers: str = LAYERS,
    site: str = SITE,
    test_fraction: float = TEST_FRACTION,
    limit: int = LIMIT,
    sample: int = SAMPLE,
    out: Path = OUT,
    batch_size: int = BATCH_SIZE,
    device: str = DEVICE,
    dtype: str = DTYPE,
    trust_remote_code: bool = TRUST_REMOTE_CODE,
    seed: int = SEED,
) -> None:
    """Truth probes per layer (held-out questions), their generalisation across datasets, and probe
    MC1 against the model's own MC1."""
    from truthscope.interp.activations import load_activations, statement_items
    from truthscope.interp.latent import competing_answers, mc1_rate, mc1_sets, question_mc1
    from truthscope.interp.probe_plots import plot_generalisation, plot_probe_layers
    from truthscope.interp.probes import probe_layers, select_common_layer, summarise_rows
    from truthscope.tasks.statements import STATEMENT_SETS, load_statements

    started = time.time()
    set_names = [s.strip() for s in sets.split(",") if s.strip()]
    for name in set_names:
        if name not in STATEMENT_SETS:
            raise TruthscopeError(f"unknown statement set {name!r}; known: {', '.join(STATEMENT_SETS)}")
    method_list = _methods(methods)
    dataset, presets, lm = _setup(
        model, data, version, preset, protocol, limit, sample, seed, batch_size, device, dtype, trust_remote_code
    )
    hooks = _hooks(lm, layers, site)
    config = _config(
        "probe",
        model,
        dataset,
        protocol=protocol,
        preset=preset,
        sets=set_names,
        statements_limit=statements_limit,
        methods=method_list,
        hooks=hooks,
        test_fraction=test_fraction,
        limit=limit,
        sample=sample,
        seed=seed,
        dtype=dtype,
    )
    run = RunLog(out or new_run_dir("probe"), config)

    tqa = _flat(_truthfulqa_acts(lm, dataset, presets, protocol, preset, hooks))
    all_sets = [tqa]
    for name in set_names:
        items = statement_items(load_statements(data_dir(data), name, limit=statements_limit, seed=seed))
        all_sets.append(_flat(load_activations(lm, name, items, hooks, progress=True)))
    rows, splits, probes = probe_layers(all_sets, hooks, method_list, test_fraction, seed)
    common, validation = select_common_layer(all_sets, hooks, splits, seed)

    # TruthfulQA: the probe's MC1 on held-out questions, per layer, against the model's own
    _, test, held_out = _split_questions(tqa, dataset, test_fraction, seed)
    test_items = [tqa.items[i] for i in test]
    fmt = (protocol, preset, presets)
    model_mc1 = question_mc1(held_out, test_items, tqa.logprobs[test], *fmt)
    probe_mc1 = {
        m: {
            h: mc1_rate(held_out, test_items, probes[tqa.name, h, m].scores(tqa.features[h][test]), *fmt) for h in hooks
        }
        for m in method_list
    }
    for i, row in enumerate(rows):
        if row["train"] == row["test"] == tqa.name:
            row["probe_mc1"] = probe_mc1[row["method"]][row["hook"]]
        row["id"] = i
    run.append(rows)

    summary = {
        "task": "probe",
        "model": lm.name,
        "sizes": {
            s.name: {
                "items": len(s.items),
                "groups": int(np.unique(s.groups).size),
                "train": int(len(splits[s.name][0])),
                "test": int(len(splits[s.name][1])),
            }
            for s in all_sets
        },
        **summarise_rows(rows, [s.name for s in all_sets], method_list, common),
        "common_hook_rule": "best mean validation AUROC of mass-mean probes across datasets, on training groups only",
        "validation_auroc": validation,
        "truthfulqa_mc1": {
            "questions": len(held_out),
            "model": bootstrap_mean(list(model_mc1.values()), seed=seed),
            "chance": float(np.mean([1 / competing_answers(mc1_sets(q, *fmt)) for q in held_out])),
            "probe": probe_mc1,
        },
        **run.provenance(started),
    }
    run.finish(summary)
    plot_probe_layers(summary, run.directory / "probe_layers.png")
    plot_generalisation(summary, run.directory / "generalisation.png")
    typer.echo(json.dumps({"common_hook": common, **summary["at_common_hook"]}))
    typer.echo(f"wrote {run.directory}/records.jsonl, summary.json, probe_layers.png, generalisation.png")


# --- latent ----------------------------------------------------------------------------------------


@app.command("latent")
@user_errors
def latent_command(
    model: str = MODEL,
    data: str = DATA,
    version: str = VERSION,
    protocol: str = PROTOCOL,
    preset: str = PRESET,
    methods: str = typer.Option("logistic,mass_mean", "--methods", help="Probe methods to choose the best from."),
    layers: str = LAYERS,
    site: str = SITE,
    test_fraction: float = TEST_FRACTION,
    limit: int = LIMIT,
    sample: int = SAMPLE,
    out: Path = OUT,
    batch_size: int = BATCH_SIZE,
    device: str = DEVICE,
    dtype: str = DTYPE,
    trust_remote_code: bool = TRUST_REMOTE_CODE,
    seed: int = SEED,
) -> None:
    """Per held-out question: does the best truth probe rank the true answer first, and does the
    model's own likelihood? The 2x2 table, overall and per category, with 95% intervals."""
    from truthscope.interp.latent import latent_by_group, latent_records, latent_table
    from truthscope.interp.probe_plots import plot_latent_table
    from truthscope.interp.probes import fit_probe, select_layer

    started = time.time()
    method_list = _methods(methods)
    dataset, presets, lm = _setup(
        model, data, version, preset, protocol, limit, sample, seed, batch_size, device, dtype, trust_remote_code
    )
    hooks = _hooks(lm, layers, site)
    config = _config(
        "latent",
        model,
        dataset,
        protocol=protocol,
        preset=preset,
        methods=method_list,
        hooks=hooks,
        test_fraction=test_fraction,
        limit=limit,
        sample=sample,
        seed=seed,
        dtype=dtype,
    )
    run = RunLog(out or new_run_dir("latent"), config)
    acts = _flat(_truthfulqa_acts(lm, dataset, presets, protocol, preset, hooks))
    train, test, held_out = _split_questions(acts, dataset, test_fraction, seed)
    y, groups = acts.labels, acts.groups

    # the probe is chosen (method and layer) on a validation split of the training questions
    candidates = []
    for method in method_list:
        index, aurocs = select_layer([acts.features[h][train] for h in hooks], y[train], groups[train], method, seed)
        candidates.append((aurocs[index], method, hooks[index]))
    val_auroc, method, hook = max(candidates)
    probe = fit_probe(method, acts.features[hook][train], y[train], groups[train], seed)
    test_items = [acts.items[i] for i in test]
    records = latent_records(
        held_out, test_items, probe.scores(acts.features[hook][test]), acts.logprobs[test], protocol, preset, presets
    )
    run.append(records)
    table = latent_table(records, seed=seed)
    summary = {
        "task": "latent",
        "model": lm.name,
        "probe": {
            "method": method,
            "hook": hook,
            "validation_auroc": val_auroc,
            "candidates": [{"method": m, "hook": h, "validation_auroc": a} for a, m, h in candidates],
        },
        "questions": {"train": int(np.unique(groups[train]).size), "test": len(held_out)},
        "headline": "knows_not_says: the probe ranks the true answer first, the model's likelihood does not",
        "table": table,
        "by_category": latent_by_group(records, "category", seed=seed),
        "by_type": latent_by_group(records, "type", seed=seed),
        **run.provenance(started),
    }
    run.finish(summary)
    plot_latent_table(summary, run.directory / "latent.png")
    brief = {c: round(table[c]["mean"], 4) for c in ("knows_and_says", "knows_not_says", "says_not_knows", "neither")}
    typer.echo(json.dumps({"probe": f"{method}@{hook}", **brief, "knows_chance": round(table["knows_chance"], 4)}))
    typer.echo(f"wrote {run.directory}/records.jsonl, summary.json, latent.png")


# --- steer -----------------------------------------------------------------------------------------


@app.command("steer")
@user_errors
def steer_command(
    model: str = MODEL,
    data: str = DATA,
    version: str = VERSION,
    protocol: str = PROTOCOL,
    preset: str = PRESET,
    alphas: str = typer.Option("0,1,2,4,8", "--alphas", help="Strengths, in standard deviations along the direction."),
    layer: int = typer.Option(
        None, "--layer", min=0, help="Steer at this layer's resid_post (default: chosen on validation)."
    ),
    heads: int = typer.Option(
        0, "--heads", min=0, help="ITI-style: steer the top K attention heads instead of one layer."
    ),
    method: str = typer.Option("mass_mean", "--method", help="Direction: mass_mean or logistic (per layer)."),
    questions: int = typer.Option(
        60, "--questions", min=1, help="Held-out questions the sweep scores (seeded sample)."
    ),
    max_new_tokens: int = typer.Option(40, "--max-new-tokens", min=0, help="Generation length; 0 skips generation."),
    judge: str = typer.Option("trained", "--judge", help="Judges for generations: trained, none, or lm:MODEL."),
    test_fraction: float = TEST_FRACTION,
    limit: int = LIMIT,
    sample: int = SAMPLE,
    out: Path = OUT,
    batch_size: int = BATCH_SIZE,
    device: str = DEVICE,
    dtype: str = DTYPE,
    trust_remote_code: bool = TRUST_REMOTE_CODE,
    seed: int = SEED,
) -> None:
    """Add a truth direction with strength alpha; sweep alpha and report MC1/MC2, generations,
    LM loss on neutral text and KL from the unsteered model."""
    from truthscope.interp.probe_plots import plot_steering
    from truthscope.interp.probes import select_layer
    from truthscope.interp.steering import head_direction, layer_direction, steering_sweep

    started = time.time()
    try:
        alpha_list = [float(a) for a in alphas.split(",") if a.strip()]
    except ValueError:
        raise TruthscopeError(f"--alphas: expected numbers separated by commas, got {alphas!r}") from None
    if method not in ("mass_mean", "logistic"):
        raise TruthscopeError("--method: mass_mean or logistic")
    dataset, presets, lm = _setup(
        model, data, version, preset, protocol, limit, sample, seed, batch_size, device, dtype, trust_remote_code
    )
    layers = "all" if layer is None or heads else str(layer)
    hooks = _hooks(lm, layers, "attn.heads" if heads else "resid_post")
    config = _config(
        "steer",
        model,
        dataset,
        protocol=protocol,
        preset=preset,
        alphas=alpha_list,
        layer=layer,
        heads=heads,
        method=method,
        questions=questions,
        max_new_tokens=max_new_tokens,
        judge=judge,
        test_fraction=test_fraction,
        limit=limit,
        sample=sample,
        seed=seed,
        dtype=dtype,
    )
    run = RunLog(out or new_run_dir("steer"), config)
    acts = _truthfulqa_acts(lm, dataset, presets, protocol, preset, hooks)
    train, _, held_out = _split_questions(acts, dataset, test_fraction, seed)
    y, groups = acts.labels[train], acts.groups[train]
    ranking = None
    if heads:
        direction, ranking = head_direction({h: acts.features[h][train] for h in hooks}, y, groups, heads, seed)
    else:
        if len(hooks) > 1:
            index, _ = select_layer([acts.features[h][train] for h in hooks], y, groups, method, seed)
            hooks = [hooks[index]]
        direction = layer_direction(method, acts.features[hooks[0]][train], y, groups, hooks[0], seed)
    sample = sorted(random.Random(seed).sample(held_out, min(questions, len(held_out))), key=lambda q: q.id)

    judges, judge_note = None, None
    if max_new_tokens and judge != "none":
        from truthscope.judges import load_judges

        try:
            judges = load_judges(judge)
        except TruthscopeError as err:
            judge_note = f"no judges ({err}); generations are scored by similarity to the references only"
            typer.echo(f"note: {judge_note}", err=True)
    sweep = steering_sweep(
        lm,
        sample,
        presets,
        direction,
        alpha_list,
        run,
        protocol=protocol,
        preset=preset,
        max_new_tokens=max_new_tokens,
        judges=judges,
        seed=seed,
    )
    summary = {
        "task": "steer",
        "model": lm.name,
        "sweep": sweep,
        "judges": {k: j.describe() for k, j in judges.items()} if judges else judge_note,
        "top_heads": ranking[:heads] if ranking else None,
        **run.provenance(started),
    }
    run.finish(summary)
    plot_steering(summary, run.directory / "steering.png")
    for row in sweep["alphas"]:
        brief = {k: round(v["mean"], 4) if isinstance(v, dict) else v for k, v in row.items() if k != "tokens"}
        typer.echo(json.dumps(brief))
    typer.echo(f"wrote {run.directory}/records.jsonl, summary.json, steering.png")
