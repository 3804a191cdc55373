"""`truthscope questions`: one row per question joining says, knows, confidence, abstains, caves."""

from __future__ import annotations

import csv
import io
from pathlib import Path

import typer

from truthscope.cli.app import JSON, app, user_errors
from truthscope.report.findings import ci


@app.command("questions")
@user_errors
def questions_command(
    calibration: Path = typer.Argument(..., help="A finished `calibration` run (with pik.json if `pik` has run)."),
    sycophancy: Path = typer.Option(None, "--sycophancy", help="A `sycophancy` run of the same model (either form)."),
    statements: Path = typer.Option(None, "--statements", help="A `statements` run of the same model."),
    out: Path = typer.Option(None, "--out", help="Folder for questions.csv and hesitation.json (default: the run)."),
    as_json: bool = JSON,
) -> None:
    """Join what truthscope knows per question, and compare how hesitant the model is when wrong on
    TruthfulQA and on the statement sets (AUROC of confidence for being right)."""
    import json

    from truthscope.analysis.questions import hesitation, question_table
    from truthscope.errors import TruthscopeError
    from truthscope.runlog import read_json, read_run, write_json_atomic, write_text_atomic

    def finished(path: Path, task: str):
        config, records, summary = read_run(path)
        if config.get("task") != task or summary is None:
            raise TruthscopeError(f"{path}: not a finished {task} run")
        return records, summary

    records, summary = finished(calibration, "calibration")
    pik = read_json(calibration / "pik.json") if (calibration / "pik.json").exists() else None
    caves = finished(sycophancy, "sycophancy")[0] if sycophancy else ()
    rows = question_table(records, summary, sycophancy=caves, pik=pik)
    result = hesitation(records, finished(statements, "statements")[0] if statements else (), seed=0)
    out = out or calibration
    if out.exists() and not out.is_dir():
        raise TruthscopeError(f"{out} is a file; --out must be a folder")
    out.mkdir(parents=True, exist_ok=True)
    columns = list(dict.fromkeys(k for row in rows for k in row))
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, columns)
    writer.writeheader()
    writer.writerows(rows)
    write_text_atomic(out / "questions.csv", buffer.getvalue())
    write_json_atomic(out / "hesitation.json", result)
    if as_json:
        typer.echo(json.dumps(result, indent=1))
        return
    for name, entry in result.items():
        diff = entry.get("truthfulqa_minus_this")
        extra = f"; TruthfulQA minus this {ci(diff, key='difference')}" if diff else ""
        typer.echo(f"{name}: AUROC of confidence for being right {ci(entry, key='auroc')} (n={entry['n']}){extra}")
    typer.echo(f"wrote {out / 'questions.csv'}, {out / 'hesitation.json'}")
