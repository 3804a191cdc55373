"""`truthscope export`: a finished run as an Inspect AI eval log or lm-evaluation-harness results."""

from __future__ import annotations

from pathlib import Path

import typer

from truthscope.cli.app import app, user_errors


@app.command("export")
@user_errors
def export_command(
    run: Path = typer.Argument(..., help="A finished run folder (config.json, records.jsonl, summary.json)."),
    fmt: str = typer.Option(
        ..., "--format", help="inspect (an Inspect AI log: .eval or .json) or lm-eval (the harness's results JSON)."
    ),
    out: Path = typer.Option(
        None, "--out", help="File to write (default: in the run folder, named as the tool names its own logs)."
    ),
) -> None:
    """Write a run in a format another tool opens: `inspect view`/`inspect log`, or lm-eval's readers."""
    from truthscope.export import export_run

    typer.echo(f"wrote {export_run(run, fmt, out)}")
