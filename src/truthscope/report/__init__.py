"""`write_report`: run logs in, one self-contained HTML page, `report.md`, `analysis.json` and PNGs out."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime, timezone
from pathlib import Path

from truthscope.analysis import (
    category_scaling,
    confident_falsehoods,
    contrast_table,
    find_runs,
    preset_effects,
    scaling_table,
)
from truthscope.analysis.runs import Run, by_size, sweep_summaries
from truthscope.errors import TruthscopeError
from truthscope.report import plots
from truthscope.report.findings import caveats, headlines
from truthscope.report.html import render_html
from truthscope.report.markdown import render_markdown
from truthscope.report.organism import organism_figures, organism_reports
from truthscope.report.uncertainty import uncertainty_analysis, uncertainty_figures
from truthscope.runlog import write_json_atomic, write_text_atomic

CATEGORY_METRICS = ("mc1", "mc2")
# The metrics a report shows, in order; the logs hold more (e.g. every BLEU/ROUGE variant).
REPORTED = {
    "mc": ("mc1", "mc2", "mc3", "mc0"),
    "gen": ("true_info", "true", "info", "bleu_acc", "rouge1_acc", "embed_acc"),
    "statements": ("accuracy",),
}
TASK_ORDER = ("mc", "gen", "statements")


def analyse(
    paths: Iterable[str | Path],
    *,
    title: str = "truthscope report",
    baseline: str = "qa",
    top: int = 15,
    min_questions: int = 10,
    seed: int = 0,
) -> dict:
    """Everything the report shows, as JSON-ready data, computed from the run logs under `paths`."""
    from importlib.metadata import version

    paths = list(paths)
    runs, unfinished = find_runs(paths)
    sweeps = sweep_summaries(paths)
    mc_metrics = {m for r in runs if r.task == "mc" for m in r.metrics()}
    analysis = {
        "title": title,
        "generated": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "version": version("truthscope"),
        "baseline": baseline,
        "min_questions": min_questions,
        "runs": [_run_entry(r) for r in _in_order(runs)],
        "unfinished": [str(p) for p in unfinished],
        "failed_cells": [c for s in sweeps for c in s["cells"] if c["status"] == "failed"],
        "scaling": _ordered(scaling_table(runs, REPORTED, seed=seed), baseline),
        "categories": {
            m: category_scaling(runs, m, preset=baseline, min_items=min_questions, seed=seed)
            for m in CATEGORY_METRICS
            if m in mc_metrics
        },
        "contrasts": contrast_table(runs, baseline, seed=seed),
        "presets": [
            row
            for row in preset_effects(runs, baseline, seed=seed)
            if row["metric"] in REPORTED.get(row["task"], (row["metric"],))
        ],
        "falsehoods": confident_falsehoods(runs, baseline, top),
        "statements": {r.model: _statement_sets(r) for r in runs if r.task == "statements"},
        "statement_rule": next((r.summary.get("rule") for r in runs if r.task == "statements"), None),
    }
    analysis["uncertainty"] = uncertainty_analysis(runs)
    analysis["organism"] = organism_reports(paths)
    analysis["headlines"] = headlines(analysis)
    analysis["caveats"] = caveats(analysis, [c for s in sweeps for c in s["spec"].get("caveats", ())])
    return analysis


def figures(analysis: dict) -> dict[str, bytes]:
    import matplotlib

    # labels are what models and data wrote: `$...$` is text, never mathtext to parse
    with matplotlib.rc_context({"text.parse_math": False}):
        drawn = {
            "scaling": plots.scaling_curves(analysis["scaling"]),
            "slopes": plots.slope_forest(analysis["scaling"]),
            "statements": plots.statement_sets(analysis["statements"]),
            "presets": plots.preset_effects(analysis["presets"]),
        }
        for metric, rows in analysis["categories"].items():
            drawn[f"categories-{metric}"] = plots.category_heatmap(rows, metric)
        drawn.update(uncertainty_figures(analysis["uncertainty"]))
        drawn.update(organism_figures(analysis.get("organism", [])))
    return {name: png for name, png in drawn.items() if png is not None}


def write_report(paths: Iterable[str | Path], out: str | Path, **options) -> dict[str, Path]:
    """Write report.html, report.md, analysis.json and plots/*.png into `out`; return their paths."""
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise TruthscopeError(f"{out} is a file; --out must be a folder")
    analysis = analyse(paths, **options)  # first: nothing is created for logs that are not there
    (out / "plots").mkdir(parents=True, exist_ok=True)
    images = figures(analysis)
    for name, png in images.items():
        (out / "plots" / f"{name}.png").write_bytes(png)
    write_text_atomic(out / "report.html", render_html(analysis, images))
    write_text_atomic(out / "report.md", render_markdown(analysis, {n: f"plots/{n}.png" for n in images}))
    write_json_atomic(out / "analysis.json", analysis)
    return {
        "html": out / "report.html",
        "markdown": out / "report.md",
        "analysis": out / "analysis.json",
        "plots": out / "plots",
    }


def _ordered(rows: list[dict], baseline: str) -> list[dict]:
    """Task, then the baseline preset before the others, then the metric's place in REPORTED."""

    def key(row):
        task = row["task"]
        metrics = REPORTED.get(task, ())
        return (
            TASK_ORDER.index(task) if task in TASK_ORDER else len(TASK_ORDER),
            row["preset"] != baseline,
            row["preset"] or "",
            metrics.index(row["metric"]) if row["metric"] in metrics else len(metrics),
            row["group"] or "",
        )

    return sorted(rows, key=key)


def _in_order(runs: list[Run]) -> list[Run]:
    """By size (non-embedding parameters where every run records them), then task and preset."""
    order = {r.model: k for k, r in enumerate(by_size({r.model: r for r in runs}.values()))}
    return sorted(runs, key=lambda r: (order[r.model], r.task, r.preset or ""))


def _statement_sets(run: Run) -> dict:
    """The run's per-set summary plus the share of statements the model called true: near 0 or 1 on a
    set judged by the model's own True/False answer (no twin to cancel a bias), accuracy only echoes
    the label balance; read that set's AUROC and balanced accuracy."""
    by_set = {name: dict(entry) for name, entry in run.summary.get("by_set", {}).items()}
    for name, entry in by_set.items():
        believed = [r["believed_true"] for r in run.records if r.get("set") == name]
        entry["share_believed_true"] = sum(believed) / len(believed) if believed else None
    return by_set


def _run_entry(run: Run) -> dict:
    """What the report says about a run, from its log only (`Run`'s properties read either layout)."""
    return {
        "dir": str(run.directory),
        "model": run.model,
        "spec": run.spec,
        "params": run.params,
        "non_embedding_params": run.non_embedding_params,
        "family": run.family,
        "dtype": run.dtype,
        "quantisation": run.quantisation,
        "description": run.description,
        "task": run.task,
        "preset": run.preset,
        "limit": run.limit,
        "n": len(run.records),
        "wall_seconds": run.summary.get("wall_seconds"),
        "scores": {k: v["mean"] for k, v in run.summary.get("scores", {}).items()},
    }


__all__ = ["analyse", "figures", "write_report"]
