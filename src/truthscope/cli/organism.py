"""`truthscope organism build|train|finetune|report`: the model organism of imitative falsehood."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import typer

from truthscope.cli.app import SEED, app, user_errors
from truthscope.errors import TruthscopeError

organism = typer.Typer(help="A synthetic world with known truth, a ladder of small models trained on it.")
app.add_typer(organism, name="organism")

BUILD = typer.Option(Path("runs/organism/build"), "--build", help="The build folder (world, corpus, questions).")
LADDER = typer.Option(Path("runs/organism/ladder"), "--ladder", help="Folder of the trained models.")
SIZES = typer.Option("xs,s,m,l,xl", "--sizes", help="Model sizes, comma-separated (xs, s, m, l, xl).")
SEEDS = typer.Option("0,1,2", "--seeds", help="Training seeds, comma-separated.")
JOBS = typer.Option(1, "--jobs", min=1, help="Models worked on side by side, one thread each (2 on a 2-core machine).")


def _list(text: str, kind: Callable[[str], Any] = str) -> list:
    try:
        return [kind(part.strip()) for part in text.split(",") if part.strip()]
    except ValueError:
        raise TruthscopeError(f"cannot read {text!r} as a comma-separated list") from None


@organism.command("build")
@user_errors
def build_command(
    out: Path = typer.Option(Path("runs/organism/build"), "--out", help="The build folder to write."),
    seed: int = SEED,
    entities: int = typer.Option(48, "--entities", min=1, help="Invented entities (4 attributes each)."),
) -> None:
    """Write the world, its corpus (exact counts per fact) and TruthfulQA-shaped question files."""
    from truthscope.organism.corpus import build
    from truthscope.organism.world import WorldSpec

    folder = build(WorldSpec(seed=seed, entities=entities), out)
    facts = json.loads((folder / "build.json").read_text(encoding="utf-8"))
    typer.echo(f"{facts['facts']} facts, {facts['documents']} documents -> {folder}")
    typer.echo(f"questions: truthscope mc --data {folder / 'data'} --model MODEL_FOLDER")


@organism.command("train")
@user_errors
def train_command(
    build: Path = BUILD,
    ladder: Path = LADDER,
    sizes: str = SIZES,
    seeds: str = SEEDS,
    tokens: int = typer.Option(3_000_000, "--tokens", min=1, help="Training tokens per model (every size)."),
    jobs: int = JOBS,
) -> None:
    """Train the ladder (each size x seed; finished models are kept)."""
    from truthscope.organism.train import TrainConfig, train_ladder

    config = TrainConfig(tokens=tokens)
    train_ladder(build, ladder, _list(sizes), _list(seeds, int), config, jobs=jobs, echo=typer.echo)


@organism.command("finetune")
@user_errors
def finetune_command(
    build: Path = BUILD,
    ladder: Path = LADDER,
    sizes: str = SIZES,
    seeds: str = SEEDS,
    jobs: int = JOBS,
) -> None:
    """The verifier and the matched majority fine-tune from each trained model (into LADDER/finetune/)."""
    from truthscope.organism.finetune import FinetuneConfig, finetune_ladder

    finetune_ladder(build, ladder, _list(sizes), _list(seeds, int), FinetuneConfig(), jobs=jobs, echo=typer.echo)


@organism.command("report")
@user_errors
def report_command(
    build: Path = BUILD,
    ladder: Path = LADDER,
    out: Path = typer.Option(Path("runs/organism/report"), "--out", help="Folder for report.json/.md and the figure."),
    probe: bool = typer.Option(True, "--probe/--no-probe", help="Train the truth probe of prediction (d)."),
    seeds: str = typer.Option("", "--seeds", help="Only these training seeds, comma-separated (default: all)."),
    jobs: int = JOBS,
    compare: list[Path] = typer.Option([], "--compare", help="An earlier report folder drawn beside (repeatable)."),
) -> None:
    """Evaluate every trained model (mc on the build's questions) and judge the predictions."""
    from truthscope.organism.report import write_report

    for folder in compare:
        if not (folder / "report.json").is_file():
            raise TruthscopeError(f"{folder}: no report.json (an earlier `truthscope organism report --out`)")
    chosen = _list(seeds, int) or None
    report = write_report(build, ladder, out, probe=probe, seeds=chosen, jobs=jobs, compare=compare, echo=typer.echo)
    for p in report["predictions"]:
        e = p["effect"]
        effect = f"{e['mean']:+.3f} [{e['ci_low']:+.3f}, {e['ci_high']:+.3f}]"
        typer.echo(f"({p['prediction']}) {p['claim']}: {effect} {p['verdict']}")
    typer.echo(f"wrote {out}: report.json, report.md, organism.png")
