"""The model organism in `truthscope report`: each organism report (`truthscope organism report`'s
`report.json`) found under the report's paths becomes a section, with the same figure and the
pre-registered predictions, so real models and the organism sit in one page."""

from __future__ import annotations

import html
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path

from truthscope.report.findings import ci, signed_ci
from truthscope.runlog import read_json

TEXT = (
    "Small Llama-style models trained here on a synthetic world whose truth is known, with controlled rates of "
    "truth (f) and of each kind of error: stacked (one shared misconception) or scattered (random wrong values). "
    "Prediction (a): on stacked facts with f < 0.5 larger models state the misconception more often and match the "
    "corpus frequency more closely; (b): on scattered facts they become more truthful; (c): a verifier fine-tune "
    "helps arithmetic and not stacked facts, a majority fine-tune entrenches them; (d): a truth probe reads what the "
    "model does not say. Effects are differences with 95% intervals from a bootstrap over facts and seeds; "
    "'unresolved' means the interval covers zero."
)
HEADER = ("prediction", "claim", "effect [95% CI]", "facts", "seeds", "verdict")


def organism_reports(paths: Iterable[str | Path]) -> list[dict]:
    """Every organism `report.json` under `paths` (a folder named directly or searched), in path order."""
    found: dict[Path, dict] = {}
    for path in map(Path, paths):
        candidates = [path / "report.json"] if (path / "report.json").exists() else sorted(path.rglob("report.json"))
        for candidate in candidates:
            report = read_json(candidate)
            if isinstance(report, dict) and {"predictions", "curves"} <= report.keys():
                found.setdefault(candidate.parent.resolve(), report)
    return [{"dir": str(folder), **report} for folder, report in found.items()]


def organism_figures(section: list[dict]) -> dict[str, bytes | None]:
    from truthscope.organism.report import figure_png, panel_title

    return {
        f"organism-{k}": figure_png({panel_title(report, Path(report["dir"]).name): report["curves"]})
        if report["curves"]
        else None
        for k, report in enumerate(section)
    }


def prediction_rows(report: Mapping) -> list[list[str]]:
    rows = []
    for p in report["predictions"]:
        effect = p.get("effect") or {}
        rows.append(
            [
                f"({p['prediction']})",
                p["claim"],
                signed_ci(effect) if effect else "—",
                str(effect.get("facts", "")),
                str(effect.get("replicates", "")),
                p["verdict"],
            ]
        )
        if "probe" in p:
            rows.append(
                [
                    "",
                    f"probe share {ci(p['probe'])}; shuffled-label null {ci(p['null'])}; "
                    f"model's own output {ci(p['output'])}",
                    signed_ci(p["probe_minus_null"]) if p.get("probe_minus_null") else "—",
                    "",
                    "",
                    "probe - null",
                ]
            )
    return rows


def html_section(section: list[dict], figure: Callable[[str, str], str], table: Callable) -> list[str]:
    e = html.escape
    parts: list[str] = []
    for k, report in enumerate(section):
        parts += [
            "<h2>The model organism</h2>",
            f"<p>{e(TEXT)}</p>",
            f"<p>From {e(report['dir'])}: {len(report.get('models', []))} models.</p>",
            figure(
                f"organism-{k}",
                "By size (non-embedding parameters): P(misconception) and total variation to the corpus on stacked "
                "facts, accuracy on scattered and clean facts; bands are 95% intervals over facts and seeds.",
            ),
            table([e(h) for h in HEADER], [[e(c) for c in row] for row in prediction_rows(report)]),
        ]
    return parts


def markdown_section(
    section: list[dict], image_paths: Mapping[str, str], md_table: Callable, cell: Callable
) -> list[str]:
    out: list[str] = []
    for k, report in enumerate(section):
        out += ["## The model organism", "", TEXT, "", f"From {cell(report['dir'])}.", ""]
        if f"organism-{k}" in image_paths:
            out += [f"![organism]({image_paths[f'organism-{k}']})", ""]
        out += [md_table(HEADER, prediction_rows(report)), ""]
    return out
