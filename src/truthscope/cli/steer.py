"""`truthscope steer`: add a truth direction with strength alpha and run `mc` and `gen` under it, per
alpha, beside the same sweep along the negated direction and random directions of the same norm.

Folders: `<out>/alpha=<a>/{mc,gen}/` for the truth direction (alpha = 0 is the unsteered model, run
once), `<out>/<control>/alpha=<a>/{mc,gen}/` for the controls, each an ordinary run (resumable,
readable by `truthscope report`); `<out>/records.jsonl` holds one row per (direction, alpha) and
`<out>/summary.json` the sweep (see `truthscope.interp.steering`)."""

from __future__ import annotations

import time
from pathlib import Path

import typer

from truthscope.cli.app import (
    BATCH_SIZE,
    DATA,
    DATA_VERSION,
    DEVICE,
    DRAW,
    DTYPE,
    JSON,
    LIMIT,
    MODEL,
    OUT,
    PRESET,
    PROTOCOL,
    SEED,
    TRUST_REMOTE_CODE,
    app,
    model_options,
    report_run,
    split_list,
    user_errors,
)  # fmt: skip
from truthscope.cli.common import LAYERS, TEST_FRACTION, methods_of, open_interp_run
from truthscope.errors import TruthscopeError


@app.command("steer")
@user_errors
def steer_command(
    model: str = MODEL,
    data: str = DATA,
    data_version: str = DATA_VERSION,
    protocol: str = PROTOCOL,
    preset: str = PRESET,
    alphas: str = typer.Option("0,1,2,4,8", "--alphas", help="Strengths, in standard deviations along the direction."),
    layers: str = LAYERS,
    heads: int = typer.Option(
        0, "--heads", min=0, help="ITI-style: steer the top K attention heads instead of a layer."
    ),
    methods: str = typer.Option("mass_mean", "--methods", help="The direction (exactly one): mass_mean or logistic."),
    negated: bool = typer.Option(True, "--negated/--no-negated", help="Control: the sweep along -direction."),
    random_directions: int = typer.Option(
        1, "--random-directions", min=0, help="Control: random directions, same norm."
    ),
    max_new_tokens: int = typer.Option(50, "--max-new-tokens", min=0, help="Generation length (as gen); 0: mc only."),
    judge: str = typer.Option("trained", "--judge", help="Judges for generations: trained, none, or lm:MODEL."),
    no_embed: bool = typer.Option(False, "--no-embed", help="Skip the MiniLM embedding metric (embed_*)."),
    test_fraction: float = TEST_FRACTION,
    limit: int = LIMIT,
    draw: str = DRAW,
    out: Path = OUT,
    batch_size: int = BATCH_SIZE,
    device: str = DEVICE,
    dtype: str = DTYPE,
    trust_remote_code: bool = TRUST_REMOTE_CODE,
    seed: int = SEED,
    as_json: bool = JSON,
) -> None:
    """Sweep alpha along a truth direction (chosen on training questions) and score the held-out
    questions with `mc` and `gen` under it: MC1/MC2, % true and informative, "No" answers and
    refusals, ||alpha v|| against the residual norm, and the LM loss and KL on neutral text."""
    from truthscope.data.presets import generation_prompt
    from truthscope.interp.experiments import split_questions, truthfulqa_set
    from truthscope.interp.probe_plots import plot_steering
    from truthscope.interp.steering import (
        choose_direction,
        control_directions,
        residual_norms,
        steer_sweep,
        steer_tasks,
        sweep_table,
    )
    from truthscope.runlog import ModelFacts

    started = time.time()
    try:
        alpha_list = [float(a) for a in split_list(alphas, "--alphas")]
    except ValueError:
        raise TruthscopeError(f"--alphas: expected numbers separated by commas, got {alphas!r}") from None
    method = methods_of(methods, ("mass_mean", "logistic"), exactly_one=True)[0]
    extra = {"alphas": alpha_list, "heads": heads, "method": method, "negated": negated, "judge": judge,
             "random_directions": random_directions, "max_new_tokens": max_new_tokens, "embed": not no_embed,
             "test_fraction": test_fraction}  # fmt: skip
    s, run = open_interp_run(
        "steer", model, out, extra, data=data, data_version=data_version, protocol=protocol, preset=preset,
        limit=limit, draw=draw, seed=seed, layers=layers, site="attn.heads" if heads else "resid_post",
        model_options=model_options(device, dtype, batch_size, trust_remote_code),
    )  # fmt: skip

    acts = truthfulqa_set(s, flat=False)
    train, _, held_out = split_questions(acts, s.questions, test_fraction, seed)
    features = {h: v[train] for h, v in acts.features.items()}
    direction, ranking = choose_direction(features, acts.labels[train], acts.groups[train], method, heads, seed)
    directions = control_directions(direction, negated, random_directions, seed)
    tasks, note = steer_tasks(s.resources, held_out, protocol=protocol, preset=preset, judge=judge,
                              max_new_tokens=max_new_tokens, embed=not no_embed, seed=seed)  # fmt: skip
    if note:
        typer.echo(f"note: {note}", err=True)
    prompts = [generation_prompt(q.question, preset, s.presets) for q in held_out]
    norms = residual_norms(s.lm, direction, prompts[:32])
    facts = ModelFacts.model_validate(run.config["model"])
    rows = steer_sweep(s.lm, directions, alpha_list, tasks, run.directory, run, facts=facts, sample=s.sample,
                       norms=norms, seed=seed)  # fmt: skip
    table = sweep_table(rows)
    summary = {
        "task": "steer",
        "model": s.lm.name,
        "direction": direction.description,
        "hooks": direction.hooks,
        "questions": {"train": len(s.questions) - len(held_out), "test": len(held_out)},
        "norms": norms,
        "judges": note or {k: j.describe() for k, j in getattr(tasks.get("gen"), "judges", {}).items()},
        "top_heads": ranking[:heads] if ranking else None,
        "sweep": table,
        "folders": {f"{r['direction']} alpha={r['alpha']:g}": r["folder"] for r in rows},
        "scores": {f"{r['direction']} α={r['alpha']:g} {m}": {"mean": v, "ci_low": None}
                   for r in rows for m, v in r["scores"].items()
                   if m in ("mc1", "true_info", "starts_no", "refusal", "kl", "norm_ratio") and v is not None},
        **run.provenance(started),
    }  # fmt: skip
    run.finish(summary)
    plot_steering(summary, run.directory / "steering.png")
    report_run(summary, run.directory, as_json)
