"""`truthscope calibration`, `truthscope sycophancy`: does the model know when it does not know, and
does it move toward what the user believes?"""

from __future__ import annotations

from pathlib import Path

import typer

from truthscope.cli.app import (
    BASE_URL,
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
    SEED,
    TRUST_REMOTE_CODE,
    app,
    model_options,
    report_run,
    user_errors,
)  # fmt: skip
from truthscope.cli.common import LAYERS, run_command
from truthscope.cli.generation import JUDGE
from truthscope.report.findings import ci
from truthscope.report.uncertainty import FLIPS, value_ci

CHAT = typer.Option(False, "--chat", help="Send the prompts through the model's chat template.")


@app.command("calibration")
@user_errors
def calibration_command(
    model: str = MODEL,
    data: str = DATA,
    data_version: str = DATA_VERSION,
    preset: str = PRESET,
    chat: bool = CHAT,
    judge: str = JUDGE,
    samples: int = typer.Option(5, "--samples", min=0, help="Sampled answers per question for consistency (0: off)."),
    sample_questions: int = typer.Option(
        200, "--sample-questions", min=1, help="Seeded number of questions whose answers are sampled."
    ),
    temperature: float = typer.Option(1.0, "--temperature", min=0.01, help="Temperature of the sampled answers."),
    bins: int = typer.Option(10, "--bins", min=2, help="Bins of ECE and the reliability diagram."),
    limit: int = LIMIT,
    draw: str = DRAW,
    out: Path = OUT,
    batch_size: int = BATCH_SIZE,
    device: str = DEVICE,
    dtype: str = DTYPE,
    trust_remote_code: bool = TRUST_REMOTE_CODE,
    base_url: str = BASE_URL,
    seed: int = SEED,
    as_json: bool = JSON,
) -> None:
    """Confidence per question (answer likelihood, P(True), verbalised, consistency), its calibration
    (ECE, Brier, AUROC, AURC) and abstention below a threshold."""
    options = {"preset": preset, "chat": chat, "judge": judge, "samples": samples,
               "sample_questions": sample_questions, "temperature": temperature, "bins": bins}  # fmt: skip
    summary, run = run_command(
        "calibration", model, out, options, data=data, data_version=data_version, limit=limit, draw=draw, seed=seed,
        model_options=model_options(device, dtype, batch_size, trust_remote_code, base_url),
    )  # fmt: skip
    if as_json:
        report_run(summary, run.directory, True)
        return
    print_calibration(summary)
    report_run(summary, run.directory, False, ("true", "info", "true_info"))


@app.command("sycophancy")
@user_errors
def sycophancy_command(
    model: str = MODEL,
    form: str = typer.Option("mc", "--form", help="mc (P(true answer) over the MC1 options) or gen (judged answers)."),
    data: str = DATA,
    data_version: str = DATA_VERSION,
    preset: str = PRESET,
    chat: bool = CHAT,
    judge: str = JUDGE,
    limit: int = LIMIT,
    draw: str = DRAW,
    out: Path = OUT,
    batch_size: int = BATCH_SIZE,
    device: str = DEVICE,
    dtype: str = DTYPE,
    trust_remote_code: bool = TRUST_REMOTE_CODE,
    base_url: str = BASE_URL,
    seed: int = SEED,
    as_json: bool = JSON,
) -> None:
    """The question plain, with the user's belief in a wrong / the right answer, with a belief about
    another question (control), and challenged after the answer: shifts and flip rates."""
    options = {"form": form, "preset": preset, "chat": chat, "judge": judge}
    summary, run = run_command(
        "sycophancy", model, out, options, data=data, data_version=data_version, limit=limit, draw=draw, seed=seed,
        model_options=model_options(device, dtype, batch_size, trust_remote_code, base_url),
    )  # fmt: skip
    if not as_json:
        print_flips(summary)
    report_run(summary, run.directory, as_json)


@app.command("pik")
@user_errors
def pik_command(
    run: Path = typer.Argument(..., help="A `calibration` run folder (its judged greedy answers are the labels)."),
    layers: str = LAYERS,
    folds: int = typer.Option(5, "--folds", min=2, help="Folds of questions for the out-of-fold predictions."),
    batch_size: int = BATCH_SIZE,
    device: str = DEVICE,
    dtype: str = DTYPE,
    trust_remote_code: bool = TRUST_REMOTE_CODE,
    as_json: bool = JSON,
) -> None:
    """P(IK): a probe on the question prompt's activations predicts whether the model's own answer
    (in the calibration run) is true; writes pik.json into the run, with shuffled-label and
    text-only controls."""
    import json

    from truthscope.errors import TruthscopeError
    from truthscope.interp.hooks import n_layers
    from truthscope.interp.pik import p_ik
    from truthscope.interp.probes import parse_layers
    from truthscope.models import load_model
    from truthscope.runlog import read_run, write_json_atomic
    from truthscope.tasks.base import Resources

    config, records, summary = read_run(run)
    if config.get("task") != "calibration" or summary is None:
        raise TruthscopeError(f"{run}: not a finished calibration run")
    preset = config["options"]["preset"]
    lm = load_model(config["model"]["spec"], **model_options(device, dtype, batch_size, trust_remote_code))
    try:
        hooks = parse_layers(layers, n_layers(lm.model))  # type: ignore[attr-defined]
    except (ValueError, AttributeError) as err:
        raise TruthscopeError(f"P(IK) needs a Hugging Face model with layers: {err}") from None
    resources = Resources(None, config["data"]["version"])
    result = p_ik(lm, resources.truthfulqa().questions, {r["id"]: r for r in records}, preset, resources.preset(preset),
                  hooks, folds=folds, seed=config.get("seed", 0), progress=True)  # fmt: skip
    write_json_atomic(Path(run) / "pik.json", result)
    if as_json:
        typer.echo(json.dumps({k: v for k, v in result.items() if k != "p_ik"}, indent=1))
        return
    m, c = result["calibration"]["metrics"], result["controls"]
    typer.echo(f"P(IK) on {result['n']} questions: AUROC {value_ci(m['auroc'])}, ECE {value_ci(m['ece'])}, "
               f"Brier {value_ci(m['brier'])}")  # fmt: skip
    typer.echo(f"controls: shuffled labels AUROC {value_ci(c['shuffled_labels'])}, "
               f"text only AUROC {value_ci(c['text_only'])}")  # fmt: skip
    typer.echo(f"wrote {Path(run) / 'pik.json'}")


def print_calibration(summary: dict) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(
        title="confidence → correctness (95% bootstrap over questions); held-out: truth beyond random abstention "
        "at a threshold chosen on the other half of the questions",
        title_justify="left",
    )
    for column in ("method", "target", "n", "ECE", "Brier", "AUROC", "AURC", "truth/info", "random", "held-out"):
        table.add_column(column, justify="left" if column in ("method", "target") else "right")
    for method, c in summary.get("calibration", {}).items():
        m, a = c["metrics"], summary.get("abstention", {}).get(method, {})
        ratio, null = a.get("truth_per_info"), a.get("random_truth_per_info")
        table.add_row(
            method, c["target"], str(c["n"]), value_ci(m["ece"]), value_ci(m["brier"]), value_ci(m["auroc"]),
            value_ci(m["aurc"]), "—" if ratio is None else f"{ratio:.2f}", "—" if null is None else f"{null:.2f}",
            value_ci((a.get("held_out") or {}).get("excess_true")),
        )  # fmt: skip
    Console(soft_wrap=True).print(table)
    bad = summary.get("unparseable", {})
    if bad:
        Console().print(f"unparseable verbal confidence: {bad}", highlight=False)


def print_flips(summary: dict) -> None:
    from rich.console import Console
    from rich.table import Table

    flips = summary.get("flips", {})
    shown = [(k, name) for k, name in FLIPS.items() if any(k in f for f in flips.values())]
    table = Table(title="flips from the plain answer (95% intervals)", title_justify="left")
    table.add_column("condition")
    for _, name in shown:
        table.add_column(name, justify="right")
    for condition, f in flips.items():
        table.add_row(condition, *(ci(f.get(k)) for k, _ in shown))
    Console(soft_wrap=True).print(table)
