"""What the evaluation commands share: run a registered task from command-line arguments."""

from __future__ import annotations

from pathlib import Path

from truthscope.paths import new_run_dir
from truthscope.sampling import sample_of
from truthscope.tasks.base import Resources, run_task


def run_command(
    task: str,
    model,
    out: Path | None,
    options: dict,
    *,
    data: str | None,
    data_version: str,
    limit: int | None = None,
    draw: str = "seeded",
    seed: int = 0,
    group_size: int | None = None,
    model_options: dict | None = None,
):
    """Run `task` as a command does: packaged data unless --data, a new folder under runs/ unless
    --out; returns (summary, run)."""
    resources = Resources(data, data_version, {k: v for k, v in (model_options or {}).items() if k != "batch_size"})
    return run_task(
        task,
        model,
        out or new_run_dir(task),
        options=options,
        resources=resources,
        sample=sample_of(limit, draw, seed),
        seed=seed,
        group_size=group_size,
        model_options=model_options,
    )
