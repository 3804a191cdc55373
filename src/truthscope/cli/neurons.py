"""`truthscope neurons find | suppress | plot`: truth neurons (Li et al. 2025) and their suppression."""

from __future__ import annotations

from pathlib import Path

import typer

from truthscope.cli.app import (
    BATCH_SIZE,
    DATA,
    DEVICE,
    DRAW,
    DTYPE,
    JSON,
    LIMIT,
    MODEL,
    OUT,
    SEED,
    SET_LIMIT,
    TRUST_REMOTE_CODE,
    app,
    model_options,
    report_run,
    split_list,
    user_errors,
)  # fmt: skip
from truthscope.errors import TruthscopeError
from truthscope.paths import new_run_dir
from truthscope.runlog import read_run

neurons_app = typer.Typer(
    help="Truth neurons: find them by integrated gradients (Li et al. 2025), switch them off against random sets.",
    no_args_is_help=True,
)
app.add_typer(neurons_app, name="neurons")

NEURON_SETS = typer.Option("cities,larger_than", "--sets", help="Statement sets, comma-separated.")


@neurons_app.command("find")
@user_errors
def find_command(
    model: str = MODEL,
    data: str = DATA,
    data_version: str = typer.Option("2025", "--data-version", help="TruthfulQA version; binary pairs: 2025 only."),
    preset: str = typer.Option("null", "--preset", help="Prompt preset of the binary prompt (null: 'Q: ...\\n\\nA:')."),
    train: int = typer.Option(100, "--train", min=3, help="Training questions (seeded sample); the rest are held out."),
    steps: int = typer.Option(20, "--steps", min=1, help="Integrated-gradients steps m."),
    alpha: float = typer.Option(0.05, "--alpha", help="Significance level after correction."),
    correction: str = typer.Option("bh", "--correction", help="bh (Benjamini-Hochberg) or bonferroni."),
    permutations: int = typer.Option(1000, "--permutations", min=1, help="Sign flips for the max-T test."),
    halves_permutations: int = typer.Option(200, "--halves-permutations", min=1, help="Sign flips, halves null."),
    out: Path = OUT,
    max_rows: int = typer.Option(128, "--max-rows", min=2, help="Rows per forward/backward pass (memory vs speed)."),
    device: str = DEVICE,
    dtype: str = DTYPE,
    trust_remote_code: bool = TRUST_REMOTE_CODE,
    seed: int = SEED,
    as_json: bool = JSON,
) -> None:
    """Attribute every MLP neuron on training questions (both letter orders) and select truth
    neurons by t-test; report power, a max-T permutation test and the category-halves check.

    Resumable with the same --out; --alpha, --correction and the permutation counts may change on a
    rerun (only the statistics are redone)."""
    from truthscope.interp.neuron_plots import plot_attribution, plot_layers
    from truthscope.interp.neurons import find_table, run_find
    from truthscope.tasks.base import Resources

    summary, run = run_find(
        model, Resources(data, data_version), out or new_run_dir("neurons-find"), train=train, preset=preset,
        steps=steps, alpha=alpha, correction=correction, seed=seed, max_rows=max_rows, permutations=permutations,
        halves_permutations=halves_permutations,
        model_options=model_options(device, dtype, trust_remote_code=trust_remote_code),
    )  # fmt: skip
    plot_layers([run.directory], run.directory / "layers.png")
    plot_attribution(run.directory, run.directory / "attribution.png")
    report_run(summary if as_json else find_table(summary), run.directory, as_json)


@neurons_app.command("suppress")
@user_errors
def suppress_command(
    source: Path = typer.Option(..., "--from", help="A `neurons find` run folder."),
    model: str = typer.Option(None, "--model", "-m", help="Default: the model of the find run."),
    data: str = DATA,
    which: str = typer.Option("positive", "--which", help="positive (truth neurons) or negative."),
    mode: str = typer.Option("zero", "--mode", help="zero, or scale (by --factor)."),
    factor: float = typer.Option(0.0, "--factor", help="Multiplier for --mode scale."),
    controls: int = typer.Option(
        99, "--controls", min=1, help="Random neuron sets matched on layer and activation decile (99: p >= 0.01)."
    ),
    limit: int = LIMIT,
    draw: str = DRAW,
    top: int = typer.Option(
        None, "--top", min=1, help="Exploratory: the N neurons with the largest t of that sign, significant or not."
    ),
    sets: str = NEURON_SETS,
    set_limit: int = SET_LIMIT,
    out: Path = OUT,
    batch_size: int = BATCH_SIZE,
    device: str = DEVICE,
    dtype: str = DTYPE,
    trust_remote_code: bool = TRUST_REMOTE_CODE,
    seed: int = SEED,
    as_json: bool = JSON,
) -> None:
    """Switch the found neurons off on held-out questions (--limit of them), statement sets and
    neutral text, next to random sets; every condition is a run of the `mc` and `statements` tasks."""
    from truthscope.interp.neuron_plots import plot_suppression
    from truthscope.interp.suppression import held_out_questions, load_find_run, run_suppression
    from truthscope.models import load_model
    from truthscope.models.facts import model_facts
    from truthscope.sampling import sample_of
    from truthscope.tasks.base import Resources

    find = load_find_run(source, which, top)
    found_on = find.config["model"]["spec"]
    model = model or found_on
    if model != found_on:
        typer.echo(f"warning: neurons were found on {found_on}, applied to {model}", err=True)
    resources = Resources(data, find.config["data"]["version"])
    questions = held_out_questions(find, resources, limit, draw, seed)
    if not find.neurons:
        raise TruthscopeError("no neurons to suppress (the find run selected none); --top N takes the N strongest")
    lm = load_model(model, **model_options(device, dtype, batch_size, trust_remote_code))
    summary, run = run_suppression(
        lm, model_facts(lm, model), find, questions, resources, out or new_run_dir("neurons-suppress"),
        sets=split_list(sets, "--sets"), set_limit=set_limit, n_controls=controls, mode=mode, factor=factor,
        seed=seed, eval_sample=sample_of(limit, draw, seed),
    )  # fmt: skip
    plot_suppression(run.directory, run.directory / "suppression.png")
    report_run(summary, run.directory, as_json)


@neurons_app.command("plot")
@user_errors
def plot_command(
    runs: list[Path] = typer.Argument(..., help="`neurons find` run folders (e.g. one per model)."),
    out: Path = typer.Option(Path("truth-neurons"), "--out", help="Folder for layers.png."),
) -> None:
    """Truth neurons per layer and by normalised depth, for several find runs in one figure."""
    from truthscope.interp.neuron_plots import plot_layers

    for run in runs:
        config, _, summary = read_run(run)
        if summary is None or config.get("task") != "neurons.find":
            raise TruthscopeError(f"{run}: not a finished `neurons find` run")
    if out.exists() and not out.is_dir():
        raise TruthscopeError(f"{out} is a file; --out must be a folder")
    out.mkdir(parents=True, exist_ok=True)
    typer.echo(f"wrote {plot_layers(runs, out / 'layers.png')}")
