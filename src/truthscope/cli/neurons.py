"""`truthscope neurons find | suppress | plot`: truth neurons (Li et al. 2025) and their suppression."""

from __future__ import annotations

import json
import random
from pathlib import Path

import typer

from truthscope.cli.app import BATCH_SIZE, DATA, DEVICE, DTYPE, MODEL, OUT, SEED, TRUST_REMOTE_CODE, app, user_errors
from truthscope.cli.common import load_dataset, load_presets_for
from truthscope.errors import TruthscopeError
from truthscope.paths import data_dir, new_run_dir
from truthscope.runlog import RunLog, read_run

neurons_app = typer.Typer(
    help="Truth neurons: find them by integrated gradients (Li et al. 2025), switch them off against random controls.",
    no_args_is_help=True,
)
app.add_typer(neurons_app, name="neurons")


@neurons_app.command("find")
@user_errors
def find_command(
    model: str = MODEL,
    data: str = DATA,
    version: str = typer.Option("2025", "--version", help="TruthfulQA version; the binary pairs exist only in 2025."),
    train: int = typer.Option(100, "--train", min=3, help="Training questions (seeded sample); the rest are held out."),
    steps: int = typer.Option(20, "--steps", min=1, help="Integrated-gradients steps m."),
    alpha: float = typer.Option(0.05, "--alpha", help="Significance level after correction."),
    correction: str = typer.Option("bh", "--correction", help="bh (Benjamini-Hochberg) or bonferroni."),
    limit: int = typer.Option(None, "--limit", min=4, help="Use only the first N questions (before the split)."),
    out: Path = OUT,
    max_rows: int = typer.Option(128, "--max-rows", min=2, help="Rows per forward/backward pass (memory vs speed)."),
    device: str = DEVICE,
    dtype: str = DTYPE,
    trust_remote_code: bool = TRUST_REMOTE_CODE,
    seed: int = SEED,
) -> None:
    """Attribute every MLP neuron on training questions and select truth neurons by t-test.

    Resumable with the same --out; --alpha and --correction may change on a rerun (only the test is redone)."""
    from truthscope.interp.neuron_plots import plot_attribution, plot_layers
    from truthscope.interp.neurons import find_truth_neurons, split_questions
    from truthscope.models import load_model

    dataset = load_dataset(data, version, limit)
    if any(q.mc0_targets is None for q in dataset.questions):
        raise TruthscopeError("truth neurons need the binary pairs (best vs best incorrect answer) of --version 2025")
    train_questions, held_out = split_questions(dataset.questions, train, seed)
    config = {
        "task": "neurons.find",
        "model": model,
        "version": dataset.version,
        "data_sha256": dataset.files,
        "limit": limit,
        "train": train,
        "steps": steps,
        "seed": seed,
        "dtype": dtype,
        "max_rows": max_rows,  # changes batching, hence float rounding: a resumed run must keep it
    }
    run = RunLog(out or new_run_dir("neurons-find"), config)
    lm = load_model(model, device=device, dtype=dtype, trust_remote_code=trust_remote_code)
    if not hasattr(lm, "model"):
        raise TruthscopeError(f"{model!r} has no torch module to look inside; use a Hugging Face model")
    summary = find_truth_neurons(
        lm,
        train_questions,
        held_out,
        run,
        steps=steps,
        alpha=alpha,
        correction=correction,
        seed=seed,
        max_rows=max_rows,
    )
    plot_layers([run.directory], run.directory / "layers.png")
    plot_attribution(run.directory, run.directory / "attribution.png")
    overlap = summary["subject_agnostic"]
    typer.echo(
        json.dumps(
            {
                "questions": summary["n_questions"],
                "positive": len(summary["neurons"]["positive"]),
                "negative": len(summary["neurons"]["negative"]),
                "half_overlap": overlap["observed"],
                "half_overlap_by_chance": round(overlap["expected_by_chance"], 3),
                "attribution_seconds": summary["attribution_seconds"],
            }
        )
    )
    files = "records.jsonl, summary.json, neuron_stats.npz, attributions/, layers.png, attribution.png"
    typer.echo(f"wrote {run.directory}: {files}")


@neurons_app.command("suppress")
@user_errors
def suppress_command(
    source: Path = typer.Option(..., "--from", help="A `neurons find` run directory."),
    model: str = typer.Option(None, "--model", "-m", help="Default: the model of the find run."),
    data: str = DATA,
    which: str = typer.Option("positive", "--which", help="positive (truth neurons) or negative."),
    mode: str = typer.Option("zero", "--mode", help="zero, or scale (by --factor)."),
    factor: float = typer.Option(0.0, "--factor", help="Multiplier for --mode scale."),
    controls: int = typer.Option(5, "--controls", min=1, help="Random neuron sets with the same per-layer counts."),
    eval_limit: int = typer.Option(None, "--eval-limit", min=2, help="A seeded sample of N held-out questions."),
    top: int = typer.Option(
        None, "--top", min=1, help="Exploratory: the N neurons with the largest t of that sign, significant or not."
    ),
    statements: str = typer.Option("cities,larger_than", "--statements", help="Comma-separated statement sets."),
    statement_limit: int = typer.Option(200, "--statement-limit", min=2, help="Seeded sample per statement set."),
    out: Path = OUT,
    batch_size: int = BATCH_SIZE,
    device: str = DEVICE,
    dtype: str = DTYPE,
    trust_remote_code: bool = TRUST_REMOTE_CODE,
    seed: int = SEED,
) -> None:
    """Switch the found neurons off on held-out questions and statement sets, next to random controls."""
    from truthscope.interp.neuron_plots import plot_suppression
    from truthscope.interp.suppression import run_suppression
    from truthscope.models import load_model
    from truthscope.tasks.statements import load_statements

    if which not in ("positive", "negative"):
        raise TruthscopeError(f"--which must be positive or negative, not {which!r}")
    find_config, _, find_summary = read_run(source)
    if find_summary is None or find_config.get("task") != "neurons.find":
        raise TruthscopeError(f"{source}: not a finished `neurons find` run")
    model = model or find_config["model"]
    if model != find_config["model"]:
        typer.echo(f"warning: neurons were found on {find_config['model']}, applied to {model}", err=True)
    neurons = [(n["layer"], n["index"]) for n in find_summary["neurons"][which]]
    if top is not None:
        # exploratory: the strongest candidates by t, whether or not they pass the correction
        import numpy as np

        from truthscope.interp.neurons import top_neurons

        t = np.load(Path(source) / "neuron_stats.npz")["t"]
        neurons = top_neurons(t, top, 1 if which == "positive" else -1)
    other = "negative" if which == "positive" else "positive"
    exclude = [(n["layer"], n["index"]) for n in find_summary["neurons"][other]]

    dataset = load_dataset(data, find_config["version"], find_config.get("limit"))
    held = set(find_summary["split"]["held_out_ids"])
    questions = [q for q in dataset.questions if q.id in held]
    if eval_limit is not None and eval_limit < len(questions):
        # a seeded sample: the files are ordered by category, so the first N would be a few categories
        keep = set(random.Random(f"eval:{seed}").sample([q.id for q in questions], eval_limit))
        questions = [q for q in questions if q.id in keep]
    sets = [s.strip() for s in statements.split(",") if s.strip()]
    items = [s for name in sets for s in load_statements(data_dir(data), name, statement_limit, seed)]
    config = {
        "task": "neurons.suppress",
        "from": str(source),
        "model": model,
        "which": which,
        "top": top,
        "mode": mode,
        "factor": factor,
        "controls": controls,
        "eval_limit": eval_limit,
        "statements": sets,
        "statement_limit": statement_limit,
        "seed": seed,
        "dtype": dtype,
        "batch_size": batch_size,
    }
    run = RunLog(out or new_run_dir("neurons-suppress"), config)
    lm = load_model(model, device=device, dtype=dtype, batch_size=batch_size, trust_remote_code=trust_remote_code)
    summary = run_suppression(
        lm,
        neurons,
        questions,
        load_presets_for(data),
        items,
        run,
        n_controls=controls,
        mode=mode,
        factor=factor,
        exclude=exclude,
        seed=seed,
    )
    plot_suppression(run.directory, run.directory / "suppression.png")
    effects = {
        metric: {
            "selected-none": round(m["selected_minus_none"]["mean"], 4),
            "selected-random": round(m["selected_minus_random"]["mean"], 4),
            "p": m["selected_minus_random"]["p_value"],
        }
        for metric, m in summary["metrics"].items()
    }
    typer.echo(json.dumps(effects))
    typer.echo(f"wrote {run.directory}/records.jsonl, summary.json, suppression.png")


@neurons_app.command("plot")
@user_errors
def plot_command(
    runs: list[Path] = typer.Argument(..., help="`neurons find` run directories (e.g. one per model)."),
    out: Path = typer.Option(Path("truth-neurons-layers.png"), "--out", help="Figure file."),
) -> None:
    """Truth neurons per layer and by normalised depth, for several find runs in one figure."""
    from truthscope.interp.neuron_plots import plot_layers

    for run in runs:
        config, _, summary = read_run(run)
        if summary is None or config.get("task") != "neurons.find":
            raise TruthscopeError(f"{run}: not a finished `neurons find` run")
    typer.echo(f"wrote {plot_layers(runs, out)}")
