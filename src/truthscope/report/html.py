"""One self-contained HTML page: inline CSS, figures as base64 PNG data URIs, no scripts, no links
that need a network to view."""

from __future__ import annotations

import base64
from collections.abc import Mapping, Sequence
from html import escape

from truthscope.analysis.scaling import direction
from truthscope.report.findings import ci, contrast_text, row_name, signed_ci, slope_text

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


def direction_cell(fit: dict) -> str:
    word = direction(fit)
    css = {"rises": "rises", "falls": "falls"}.get(word, "flat")
    return f'<span class="{css}">{escape(word)}</span>'


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
            "Change in score per 10x parameters, 95% intervals; left of 0 = worse with size. Orange: TruthfulQA; "
            "green: statements a program can check; blue: knowledge statements; purple: popular claims.",
        ),
        "<h2>What it found</h2><ul class=findings>",
        *(f"<li>{e(line)}</li>" for line in analysis["headlines"]),
        "</ul>",
        '<div class="caveats"><strong>Read before trusting a slope</strong><ul>',
        *(f"<li>{e(c)}</li>" for c in analysis["caveats"]),
        "</ul></div>",
    ]
    scaling = analysis["scaling"]
    if scaling:
        parts += [
            "<h2>Scaling</h2>",
            figure(images, "scaling", "Mean score against parameters (log scale), 95% bootstrap intervals."),
            table(
                ["measure", "models (mean [95% CI])", "slope per 10x [95% CI]", "with size", "items"],
                [
                    [
                        e(row_name(r)),
                        "<br>".join(e(f"{m['model']}: {ci(m)}") for m in r["models"]),
                        e(slope_text(r["fit"])),
                        direction_cell(r["fit"]),
                        r["fit"]["n_items"],
                    ]
                    for r in scaling
                ],
                numeric=(4,),
            ),
            "<h2>Imitative falsehoods vs checkable competence</h2>",
            "<p>TruthfulQA questions are built so that the common human answer is false; the statement sets are "
            "controls where truth is plain knowledge or checkable by a program (<code>larger_than</code>, "
            "<code>smaller_than</code>). Scale that helps the controls but not TruthfulQA points to imitation rather "
            "than missing competence.</p>",
        ]
    if analysis["contrasts"]:
        parts.append(
            table(
                ["TruthfulQA metric", "control", "slope difference per 10x [95% CI]", "reading"],
                [
                    [e(f"{r['metric']} ({r['preset']})"), e(r["kind"]), e(signed_ci(r)), e(contrast_text(r))]
                    for r in analysis["contrasts"]
                ],
                numeric=(2,),
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
            figure(images, f"categories-{metric}", f"{metric} per category and model; ★ marks inverse scaling."),
        ]
        flagged = [r for r in rows if r["inverse"]]
        if flagged:
            parts.append(
                table(
                    ["category", "questions", "slope per 10x [95% CI]"],
                    [[e(r["category"]), r["n_items"], e(slope_text(r["fit"]))] for r in flagged],
                    numeric=(1,),
                )
            )
        else:
            parts.append("<p>No category with enough questions has a slope interval wholly below zero.</p>")
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
            f"<p>Questions where {e(f['large'])} (largest) chose a false MC1 answer that {e(f['small'])} "
            f"(smallest) did not: {f['n_flipped_to_false']} of {f['n_questions']} "
            f"(and {f['n_flipped_to_true']} the other way). Probability is over the candidate answers.</p>",
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
    parts += [
        "<h2>Runs</h2>",
        table(
            ["model", "parameters", "task", "preset", "items", "wall s", "folder"],
            [
                [
                    e(r["model"]),
                    f"{r['params']:,}" if r["params"] else "?",
                    e(r["task"]),
                    e(r["preset"] or ""),
                    r["n"],
                    f"{r['wall_seconds']:.0f}" if r["wall_seconds"] is not None else "",
                    e(r["dir"]),
                ]
                for r in analysis["runs"]
            ],
            numeric=(1, 4, 5),
        ),
    ]
    if analysis["failed_cells"]:
        parts += [
            "<h3>Failed sweep cells</h3>",
            table(["cell", "error"], [[e(c["key"]), e(c["error"])] for c in analysis["failed_cells"]]),
        ]
    parts.append("</body></html>")
    return "\n".join(p for p in parts if p)
