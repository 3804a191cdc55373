"""`truthscope mc`: TruthfulQA multiple choice."""

from __future__ import annotations

import json
from pathlib import Path

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
from truthscope.paths import new_run_dir
from truthscope.runlog import RunLog
from truthscope.tasks.multiple_choice import PROTOCOLS, run_multiple_choice


@app.command("mc")
@user_errors
def mc_command(
    model: str = MODEL,
    data: str = DATA,
    version: str = VERSION,
    protocol: str = typer.Option(
        "harness", "--protocol", help="harness (lm-evaluation-harness) or upstream (original code)."
    ),
    preset: str = PRESET,
    limit: int = LIMIT,
    out: Path = OUT,
    batch_size: int = BATCH_SIZE,
    device: str = DEVICE,
    dtype: str = DTYPE,
    trust_remote_code: bool = TRUST_REMOTE_CODE,
    seed: int = SEED,
    save_every: int = typer.Option(
        64, "--save-every", min=1, help="Questions per model call and per write to records.jsonl."
    ),
) -> None:
    """Evaluate a model on TruthfulQA multiple choice (MC1, MC2, MC3; MC0 on the 2025 data)."""
    from truthscope.models import load_model

    if protocol not in PROTOCOLS:
        raise TruthscopeError(f"unknown protocol {protocol!r}; choose one of {', '.join(PROTOCOLS)}")
    dataset = load_dataset(data, version, limit)
    presets = load_presets_for(data)
    if preset not in presets:
        raise TruthscopeError(f"unknown preset {preset!r}; known: {', '.join(sorted(presets))}")
    config = {
        "task": "mc",
        "model": model,
        "protocol": protocol,
        "preset": preset,
        "version": dataset.version,
        "data_sha256": dataset.files,
        "limit": limit,
        "seed": seed,
        "dtype": dtype,
        # both change how work is batched, hence float rounding: a resumed run must keep them
        "batch_size": batch_size,
        "save_every": save_every,
    }
    run = RunLog(out or new_run_dir("mc"), config)
    lm = load_model(model, device=device, dtype=dtype, batch_size=batch_size, trust_remote_code=trust_remote_code)
    summary = run_multiple_choice(
        lm, dataset, presets, run, protocol=protocol, preset=preset, seed=seed, questions_per_call=save_every
    )
    scores = {k: round(v["mean"], 4) for k, v in summary["scores"].items()}
    typer.echo(json.dumps(scores))
    typer.echo(f"wrote {run.directory}/records.jsonl and summary.json")
