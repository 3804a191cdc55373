"""`truthscope gen`, `truthscope score`: free-text answers, judged."""

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
from truthscope.cli.common import run_command
from truthscope.errors import TruthscopeError

JUDGE = typer.Option(
    "trained",
    "--judge",
    help="trained (truthscope's judges, see `judge train`), none, or lm:MODEL (any model, prompted as GPT-judge).",
)
NO_EMBED = typer.Option(False, "--no-embed", help="Skip the MiniLM embedding metric (embed_*).")
HEADLINE = ("true", "info", "true_info", "bleu_acc", "rouge1_acc", "embed_acc")


@app.command("gen")
@user_errors
def gen_command(
    model: str = MODEL,
    data: str = DATA,
    data_version: str = DATA_VERSION,
    preset: str = PRESET,
    chat: bool = typer.Option(False, "--chat", help="Send the prompt through the model's chat template."),
    max_new_tokens: int = typer.Option(50, "--max-new-tokens", min=1, help="Token limit per answer (upstream: 50)."),
    judge: str = JUDGE,
    no_embed: bool = NO_EMBED,
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
    """Answer TruthfulQA in free text; score % true, % informative and the similarity metrics."""
    options = {"preset": preset, "chat": chat, "max_new_tokens": max_new_tokens, "judge": judge, "embed": not no_embed}
    summary, run = run_command(
        "gen", model, out, options, data=data, data_version=data_version, limit=limit, draw=draw, seed=seed,
        model_options=model_options(device, dtype, batch_size, trust_remote_code, base_url),
    )  # fmt: skip
    report_run(summary, run.directory, as_json, HEADLINE)


@app.command("score")
@user_errors
def score_command(
    answers: Path = typer.Argument(..., help="JSONL or CSV: an 'answer' and an 'id' or 'question' per row."),
    data: str = DATA,
    data_version: str = DATA_VERSION,
    answer_field: str = typer.Option("answer", "--answer-field", help="Field (column) holding the answer."),
    judge: str = JUDGE,
    no_embed: bool = NO_EMBED,
    out: Path = OUT,
    device: str = DEVICE,
    dtype: str = DTYPE,
    seed: int = SEED,
    as_json: bool = JSON,
) -> None:
    """Score answers any system produced (an API model, a human) with the same metrics as `gen`."""
    from truthscope.data.truthfulqa import sha256_file

    try:
        digest = sha256_file(answers)
    except OSError:
        raise TruthscopeError(f"{answers}: file not found or unreadable") from None
    options = {
        "answers": str(answers), "answers_sha256": digest, "answer_field": answer_field, "judge": judge,
        "embed": not no_embed,
    }  # fmt: skip
    summary, run = run_command(
        "score", None, out, options, data=data, data_version=data_version, seed=seed,
        model_options={"device": device, "dtype": dtype},
    )  # fmt: skip
    report_run(summary, run.directory, as_json, HEADLINE)
