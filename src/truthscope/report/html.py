"""One self-contained HTML page: inline CSS, figures as base64 PNG data URIs, no scripts, no links
that need a network to view."""

from __future__ import annotations

import base64
from collections.abc import Mapping, Sequence
from html import escape

from truthscope.report import organism
from truthscope.report.findings import (
    SCALE_TEXT,
    ci,
    comparison_text,
    contrast_text,
    reading,
    row_name,
    signed,
    signed_ci,
)
from truthscope.report.uncertainty import html_section

CSS = """
body { font: 15px/1.5 system-ui, -apple-system, "Segoe UI", sans-serif; max-width: 1100px; margin: 2em auto;
       padding: 0 1em; color: #1a1a1a; }
h1 { margin-bottom: 0.1em; } .sub { color: #555; margin-top: 0; }
h2 { border-bottom: 2px solid #eee; padding-bottom: 0.2em; margin-top: 2em; }
figure { margin: 1em 0; } figure img { max-width: 100%; border: 1px solid #eee; }
figcaption { color: #555; font-size: 0.9em; }
table { border-collapse: collapse; margin: 0.8em 0; font-size: 0.88em; }
th, td { border-bottom: 1px solid #e5e5e5; padding: 0.3em 0.6em; text-align: left; vertical-align: top; }
th { background: #fafafa; } td.num { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
.rises { color: #007a4d; font-weight: 600; } .falls { color: #b33c00; font-weight: 600; } .flat { color: #666; }
.caveats { background: #fff8e6; border-left: 4px solid #e69f00; padding: 0.6em 1em; }
.findings li { margin: 0.3em 0; } code { background: #f4f4f4; padding: 0 0.2em; }
"""


def forest_caption(rows) -> str:
    what = (
        "a slope per 10x size within each family of at least three models, otherwise the paired difference "
        "B - A between two models"
        if any(r["fits"] for r in rows)
        else "the paired difference B - A between two models (no family has three models, so no slope)"
    )
    return (
        f"Each comparison with its 95% interval: {what}; a difference between models of different families is not "
        "a size effect. Orange: TruthfulQA; green: statements a program can check; blue: knowledge statements; "
        "purple: popular claims."
    )


def contrast_models(row: dict) -> str:
    if row["measure"] == "slope":
        return f"slopes within {row['family']} ({', '.join(row['models'])})"
    return f"{row['models'][-1]} - {row['models'][0]}"


def category_unit(rows) -> str:
    first = rows[0]
    if first["measure"] == "slope":
        return f"slope per 10x within {first['family']}"
    return f"{first['compared'][-1]} - {first['compared'][0]}"


def category_estimate(row: dict) -> str:
    if row["interval"] is None:
        return signed(row["estimate"])
    return f"{signed(row['estimate'])} [{signed(row['interval']['ci_low'])}, {signed(row['interval']['ci_high'])}]"


def category_method(rows, min_questions: int) -> str:
    return (
        f"Per category: {category_unit(rows)}, paired by question; a sign-flip test (exact for 0/1 scores) per "
        f"category with at least {min_questions} questions, Benjamini-Hochberg across those categories at a 5% "
        f"false discovery rate. Smaller categories are shown without an interval and are never flagged."
    )


def data_uri(png: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


def figure(images: Mapping[str, bytes], name: str, caption: str) -> str:
    if name not in images:
        return ""
    return (
        f'<figure><img id="plot-{escape(name)}" class="plot" alt="{escape(caption)}" src="{data_uri(images[name])}">'
        f"<figcaption>{escape(caption)}</figcaption></figure>"
    )


def table(header: Sequence[str], rows: Sequence[Sequence], numeric: Sequence[int] = ()) -> str:
    head = "".join(f"<th>{escape(str(h))}</th>" for h in header)
    body = "".join(
        "<tr>"
        + "".join(f"<td{' class=num' if i in numeric else ''}>{cell}</td>" for i, cell in enumerate(row))
        + "</tr>"
        for row in rows
    )
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def reading_cell(row: dict) -> str:
    """The row's reading, coloured only where every interval excludes zero the same way."""
    text = reading(row)
    up = "rises" in text or "higher" in text
    down = "falls" in text or "lower" in text
    css = "flat" if "no detectable" in text or up == down else "rises" if up else "falls"
    return f'<span class="{css}">{escape(text)}</span>'


def interval_method(model: dict) -> str:
    return " (Wilson)" if model.get("method") == "wilson" else ""


def render_html(analysis: dict, images: Mapping[str, bytes]) -> str:
    e = escape
    parts = [
        "<!doctype html><html lang=en><head><meta charset=utf-8>",
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>{e(analysis['title'])}</title><style>{CSS}</style></head><body>",
        f"<h1>{e(analysis['title'])}</h1>",
        f'<p class="sub">{len(analysis["runs"])} runs, generated {e(analysis["generated"])} by truthscope '
        f"{e(analysis['version'])}, from run logs only.</p>",
        "<h2>At a glance</h2>" if "slopes" in images else "",
        figure(
            images,
            "slopes",
            forest_caption(analysis["scaling"]),
        ),
        "<h2>What it found</h2><ul class=findings>",
        *(f"<li>{e(line)}</li>" for line in analysis["headlines"]),
        "</ul>",
        '<div class="caveats"><strong>Read before trusting a comparison</strong><ul>',
        *(f"<li>{e(c)}</li>" for c in analysis["caveats"]),
        "</ul></div>",
    ]
    scaling = analysis["scaling"]
    if scaling:
        parts += [
            "<h2>Scaling</h2>",
            figure(
                images,
                "scaling",
                "Mean score against model size (log scale; non-embedding parameters where the logs record them), "
                "95% intervals (Wilson for proportions). Lines join models of one family only.",
            ),
            table(
                ["measure", "models (mean [95% CI])", "comparison [95% CI]", "reading", "items"],
                [
                    [
                        e(row_name(r)),
                        "<br>".join(e(f"{m['model']}: {ci(m)}{interval_method(m)}") for m in r["models"]),
                        e(comparison_text(r)),
                        reading_cell(r),
                        r["models"][0]["n"],
                    ]
                    for r in scaling
                ],
                numeric=(4,),
            ),
            "<h2>Imitative falsehoods vs checkable competence</h2>",
            "<p>TruthfulQA questions are built so that the common human answer is false; the statement sets are "
            "controls where truth is plain knowledge or checkable by a program (<code>larger_than</code>, "
            "<code>smaller_than</code>). A model that gains on the controls but not on TruthfulQA points to imitation "
            "rather than missing competence. Both are compared on one " + e(SCALE_TEXT) + ". Within a family of at "
            "least three models the comparison is a difference of slopes; otherwise it is the change from the "
            "smaller to the larger model on TruthfulQA minus the same change on the control, which is not a size "
            "effect when the two models differ in family.</p>",
        ]
    if analysis["contrasts"]:
        parts.append(
            table(
                ["TruthfulQA metric", "control", "compared", "TruthfulQA minus control [95% CI]", "reading"],
                [
                    [
                        e(f"{r['metric']} ({r['preset']})"),
                        e(r["kind"]),
                        e(contrast_models(r)),
                        e(signed_ci(r)),
                        e(contrast_text(r)),
                    ]
                    for r in analysis["contrasts"]
                ],
                numeric=(3,),
            )
        )
    parts.append(figure(images, "statements", "Statement-set accuracy per model (dashed: 0.5)."))
    if analysis.get("statement_rule"):
        parts.append(f"<p>Belief rule: {e(analysis['statement_rule'])}.</p>")
    for metric, rows in analysis["categories"].items():
        if not rows:
            continue
        parts += [
            f"<h2>Categories ({e(metric)}, {e(analysis['baseline'])} preset)</h2>",
            figure(
                images,
                f"categories-{metric}",
                f"{metric} per category and model; ★ marks a category flagged after Benjamini-Hochberg.",
            ),
            f"<p>{e(category_method(rows, analysis['min_questions']))}</p>",
        ]
        flagged = [r for r in rows if r["flagged"]]
        if flagged:
            parts.append(
                table(
                    ["category", "questions", f"{category_unit(rows)} [95% CI]", "p", "q (BH)"],
                    [
                        [e(r["category"]), r["n_items"], e(category_estimate(r)), f"{r['p']:.2g}", f"{r['q']:.2g}"]
                        for r in flagged
                    ],
                    numeric=(1, 3, 4),
                )
            )
        else:
            parts.append("<p>No category is flagged at a 5% false discovery rate.</p>")
    if analysis["presets"]:
        parts += [
            f"<h2>Prompt presets against {e(analysis['baseline'])}</h2>",
            figure(images, "presets", "Paired difference in score, preset minus baseline, per model."),
            table(
                ["model", "task", "metric", "preset", "difference [95% CI]", "questions"],
                [
                    [e(r["model"]), e(r["task"]), e(r["metric"]), e(r["preset"]), e(ci(r)), r["n"]]
                    for r in analysis["presets"]
                ],
                numeric=(4, 5),
            ),
        ]
    f = analysis["falsehoods"]
    if f:
        parts += [
            "<h2>Confident falsehoods</h2>",
            f"<p>Questions where {e(f['large'])} (largest by {e(f['axis'])}) chose a false MC1 answer that "
            f"{e(f['small'])} (smallest) did not: {f['n_flipped_to_false']} of {f['n_questions']} "
            f"(and {f['n_flipped_to_true']} the other way; exact sign test of the asymmetry p = "
            f"{f['p_asymmetry']:.2g}). Probability is over the candidate answers."
            + (
                " The two models differ in family (or it is not recorded): the flips are not a size effect."
                if f["mixed_families"]
                else ""
            )
            + "</p>",
            table(
                ["question", "category", f"{f['large']} chose (p)", "true answer (p)", f"{f['small']} chose (p)"],
                [
                    [
                        e(r["question"]),
                        e(r["category"]),
                        e(f"{r['large_answer']} ({r['large_p']:.2f})"),
                        e(f"{r['true_answer']} ({r['large_p_true']:.2f})"),
                        e(f"{r['small_answer']} ({r['small_p']:.2f})"),
                    ]
                    for r in f["rows"]
                ],
            ),
        ]
    parts += html_section(analysis.get("uncertainty", {"calibration": [], "sycophancy": []}),
                          lambda name, caption: figure(images, name, caption), table)  # fmt: skip
    parts += organism.html_section(
        analysis.get("organism", []), lambda name, caption: figure(images, name, caption), table
    )
    parts += [
        "<h2>Runs</h2>",
        table(
            ["model", "family", "parameters", "non-embedding", "task", "preset", "items", "wall s", "folder"],
            [
                [
                    e(r["model"]),
                    e(r["family"] or "?"),
                    f"{r['params']:,}" if r["params"] else "?",
                    f"{r['non_embedding_params']:,}" if r["non_embedding_params"] else "?",
                    e(r["task"]),
                    e(r["preset"] or ""),
                    r["n"],
                    f"{r['wall_seconds']:.0f}" if r["wall_seconds"] is not None else "",
                    e(r["dir"]),
                ]
                for r in analysis["runs"]
            ],
            numeric=(2, 3, 6, 7),
        ),
    ]
    if analysis["failed_cells"]:
        parts += [
            "<h3>Failed sweep cells</h3>",
            table(["cell", "error"], [[e(c["key"]), e(c["error"])] for c in analysis["failed_cells"]]),
        ]
    parts.append("</body></html>")
    return "\n".join(p for p in parts if p)
