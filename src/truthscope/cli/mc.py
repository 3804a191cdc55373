"""`truthscope mc`: TruthfulQA multiple choice."""

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
    PROTOCOL,
    SEED,
    TRUST_REMOTE_CODE,
    app,
    model_options,
    report_run,
    user_errors,
)  # fmt: skip
from truthscope.cli.common import run_command


@app.command("mc")
@user_errors
def mc_command(
    model: str = MODEL,
    data: str = DATA,
    data_version: str = DATA_VERSION,
    protocol: str = PROTOCOL,
    preset: str = PRESET,
    limit: int = LIMIT,
    draw: str = DRAW,
    out: Path = OUT,
    batch_size: int = BATCH_SIZE,
    device: str = DEVICE,
    dtype: str = DTYPE,
    trust_remote_code: bool = TRUST_REMOTE_CODE,
    base_url: str = BASE_URL,
    seed: int = SEED,
    save_every: int = typer.Option(
        64, "--save-every", min=1, help="Questions per model call and per write to records.jsonl."
    ),
    as_json: bool = JSON,
) -> None:
    """Evaluate a model on TruthfulQA multiple choice (MC1, MC2, MC3; MC0 on the 2025 data).

    --protocol letters runs the letter-choice task `mc_letters` (MC1 and MC0 by letter), the one a
    chat-only endpoint (openai-chat:MODEL) can answer."""
    task, options = (
        ("mc_letters", {"preset": preset})
        if protocol == "letters"
        else ("mc", {"protocol": protocol, "preset": preset})
    )
    summary, run = run_command(
        task, model, out, options, data=data, data_version=data_version,
        limit=limit, draw=draw, seed=seed, group_size=save_every,
        model_options=model_options(device, dtype, batch_size, trust_remote_code, base_url),
    )  # fmt: skip
    report_run(summary, run.directory, as_json)
