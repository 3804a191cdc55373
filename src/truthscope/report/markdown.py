"""`report.md`: the findings, caveats and tables as Markdown, with the saved PNGs linked."""

from __future__ import annotations

import html
import re
from collections.abc import Mapping

from truthscope.report import organism
from truthscope.report.findings import SCALE_TEXT, ci, comparison_text, reading, row_name, signed_ci
from truthscope.report.html import category_estimate, category_method, category_unit, contrast_models
from truthscope.report.uncertainty import markdown_section

_MARKDOWN = re.compile(r"([\\`*_\[\]|#!])")


def cell(text) -> str:
    """Text a model, a data file or a user wrote, made inert in Markdown: HTML escaped as in
    report.html, Markdown's active characters backslash-escaped, one line."""
    return _MARKDOWN.sub(r"\\\1", html.escape(str(text), quote=False)).replace("\n", " ")


def md_table(header, rows) -> str:
    lines = ["| " + " | ".join(map(cell, header)) + " |", "|" + " --- |" * len(header)]
    lines += ["| " + " | ".join(map(cell, row)) + " |" for row in rows]
    return "\n".join(lines)


def render_markdown(analysis: dict, image_paths: Mapping[str, str]) -> str:
    out = [f"# {cell(analysis['title'])}", "", f"{len(analysis['runs'])} runs, generated {analysis['generated']}.", ""]
    out += ["## What it found", "", *(f"- {cell(line)}" for line in analysis["headlines"]), ""]
    out += ["## Caveats", "", *(f"- {cell(c)}" for c in analysis["caveats"]), ""]
    if analysis["scaling"]:
        out += ["## Scaling", ""]
        out += [f"![scaling]({image_paths['scaling']})", ""] if "scaling" in image_paths else []
        out += [
            md_table(
                ["measure", "models (mean [95% CI])", "comparison [95% CI]", "reading"],
                [
                    [
                        row_name(r),
                        "; ".join(f"{m['model']}: {ci(m)}" for m in r["models"]),
                        comparison_text(r),
                        reading(r),
                    ]
                    for r in analysis["scaling"]
                ],
            ),
            "",
        ]
        out += [f"![slopes]({image_paths['slopes']})", ""] if "slopes" in image_paths else []
    if analysis["contrasts"]:
        out += [
            f"TruthfulQA against the statement controls, both on the {SCALE_TEXT}.",
            "",
            md_table(
                ["TruthfulQA metric", "control", "compared", "TruthfulQA minus control [95% CI]"],
                [
                    [f"{r['metric']} ({r['preset']})", r["kind"], contrast_models(r), signed_ci(r)]
                    for r in analysis["contrasts"]
                ],
            ),
            "",
        ]
    out += [f"![statement sets]({image_paths['statements']})", ""] if "statements" in image_paths else []
    for metric, rows in analysis["categories"].items():
        if not rows:
            continue
        flagged = [r for r in rows if r["flagged"]]
        out += [f"## Categories ({metric}, {analysis['baseline']} preset)", ""]
        key = f"categories-{metric}"
        out += [f"![{key}]({image_paths[key]})", ""] if key in image_paths else []
        out += [category_method(rows, analysis["min_questions"]), ""]
        out += [
            md_table(
                ["flagged category", "questions", f"{category_unit(rows)} [95% CI]", "p", "q (BH)"],
                [
                    [r["category"], r["n_items"], category_estimate(r), f"{r['p']:.2g}", f"{r['q']:.2g}"]
                    for r in flagged
                ],
            )
            if flagged
            else "No category is flagged at a 5% false discovery rate.",
            "",
        ]
    if analysis["presets"]:
        out += [f"## Presets against {analysis['baseline']}", ""]
        out += [f"![presets]({image_paths['presets']})", ""] if "presets" in image_paths else []
        out += [
            md_table(
                ["model", "task", "metric", "preset", "difference [95% CI]", "questions"],
                [[r["model"], r["task"], r["metric"], r["preset"], ci(r), r["n"]] for r in analysis["presets"]],
            ),
            "",
        ]
    f = analysis["falsehoods"]
    if f and f["rows"]:
        out += [f"## Confident falsehoods ({f['large']} false, {f['small']} true)", ""]
        if f["mixed_families"]:
            out += ["The two models differ in family (or it is not recorded): the flips are not a size effect.", ""]
        out += [
            md_table(
                ["question", "category", f"{f['large']} chose (p)", f"{f['small']} chose (p)"],
                [
                    [
                        r["question"],
                        r["category"],
                        f"{r['large_answer']} ({r['large_p']:.2f})",
                        f"{r['small_answer']} ({r['small_p']:.2f})",
                    ]
                    for r in f["rows"]
                ],
            ),
            "",
        ]
    out += markdown_section(analysis.get("uncertainty", {"calibration": [], "sycophancy": []}), image_paths,
                            md_table, cell)  # fmt: skip
    out += organism.markdown_section(analysis.get("organism", []), image_paths, md_table, cell)
    if analysis["failed_cells"]:
        out += [
            "## Failed sweep cells",
            "",
            md_table(["cell", "error"], [[c["key"], c["error"]] for c in analysis["failed_cells"]]),
            "",
        ]
    return "\n".join(out)
