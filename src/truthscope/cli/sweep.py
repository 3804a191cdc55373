"""`truthscope sweep` (a grid of models x presets x tasks) and `truthscope report` (HTML + Markdown)."""

from __future__ import annotations

from pathlib import Path

import typer

from truthscope.cli.app import DATA, app, user_errors


@app.command("sweep")
@user_errors
def sweep_command(
    spec_file: Path = typer.Argument(..., help="Sweep YAML (see examples/sweeps/offline.yaml)."),
    out: Path = typer.Option(
        None, "--out", help="Sweep folder (default: runs/sweeps/<name>). Run again with it to resume."
    ),
    data: str = DATA,
    device: str = typer.Option(None, "--device", help="Override the YAML's device (auto, cpu, cuda)."),
    report: bool = typer.Option(False, "--report", help="Write the report into <out>/report when the grid is done."),
    dry_run: bool = typer.Option(False, "--dry-run", help="List the cells and whether each is done; run nothing."),
    trust_remote_code: bool = typer.Option(
        False, "--trust-remote-code", help="Allow models whose spec entry asks for the repository's own code."
    ),
    executor: str = typer.Option(
        "local", "--executor", help="local (one cell after another here) or ray (each cell a Ray task)."
    ),
    address: str = typer.Option(
        None, "--address", help="Ray cluster (host:port, auto, ray://...); default: a local Ray instance."
    ),
) -> None:
    """Run every cell of a sweep not yet done; a failing cell is reported and the rest still run."""
    from truthscope.errors import TruthscopeError
    from truthscope.sweep import RayExecutor, cells, is_done, load_spec, run_sweep, slug

    if executor not in ("local", "ray"):
        raise TruthscopeError(f"--executor {executor!r}: use local or ray")
    if address and executor != "ray":
        raise TruthscopeError("--address is for --executor ray")

    spec = load_spec(spec_file)
    if device:
        spec = spec.model_copy(update={"device": device})
    out = out or Path("runs") / "sweeps" / slug(spec.name)
    if dry_run:
        for c in cells(spec):
            typer.echo(f"{'done   ' if is_done(out / c.key) else 'pending'} {out / c.key}")
        return
    summary = run_sweep(
        spec,
        out,
        data=data,
        echo=lambda line: typer.echo(line, err=True),
        trust_remote_code=trust_remote_code,
        executor=RayExecutor(address) if executor == "ray" else None,
    )
    counts = summary["counts"]
    typer.echo(f"{counts['done']} cells done, {counts['failed']} failed, {counts['pending']} pending: {out}/sweep.json")
    for c in summary["cells"]:
        if c["status"] == "failed":
            typer.echo(f"  failed {c['key']}: {c['error']}")
    if report:
        from truthscope.report import write_report

        written = write_report([out], out / "report", title=f"truthscope sweep: {spec.name}")
        typer.echo(f"report: {written['html']}")
    if counts["failed"]:
        from truthscope.errors import RunFailed

        raise RunFailed(f"{counts['failed']} cell(s) failed (errors and tracebacks in {out}/sweep.json)")


@app.command("report")
@user_errors
def report_command(
    runs: list[Path] = typer.Argument(..., help="Sweep folders and/or run folders (searched for run logs)."),
    out: Path = typer.Option(
        None,
        "--out",
        help="Folder for report.html, report.md, analysis.json, plots/ (default: <RUN>/report for one "
        "folder, else runs/report-<time>).",
    ),
    title: str = typer.Option("truthscope report", "--title"),
    baseline: str = typer.Option("qa", "--baseline-preset", help="Preset the other presets are compared with."),
    top: int = typer.Option(15, "--top", min=1, help="Rows in the confident-falsehoods table."),
    min_questions: int = typer.Option(
        10, "--min-questions", min=2, help="Categories with fewer questions get no interval and no flag."
    ),
    seed: int = typer.Option(0, "--seed", min=0, help="Seed of the bootstrap resamples."),
) -> None:
    """Build one self-contained HTML page and a Markdown summary from run logs only."""
    from truthscope.paths import new_run_dir
    from truthscope.report import write_report

    if out is None:
        out = runs[0] / "report" if len(runs) == 1 else new_run_dir("report")
    written = write_report(runs, out, title=title, baseline=baseline, top=top, min_questions=min_questions, seed=seed)
    for kind, path in written.items():
        typer.echo(f"{kind}: {path}")
