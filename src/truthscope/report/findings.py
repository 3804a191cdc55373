"""What the analysis says, in sentences, and what limits it: written from numbers, never by hand."""

from __future__ import annotations

from collections.abc import Sequence

from truthscope.analysis.scaling import direction
from truthscope.models.bundled import BUNDLED


def ci(d: dict, digits: int = 3) -> str:
    return f"{d['mean']:.{digits}f} [{d['ci_low']:.{digits}f}, {d['ci_high']:.{digits}f}]"


def slope_text(fit: dict) -> str:
    return f"{fit['slope']:+.3f} per 10x parameters [{fit['ci_low']:+.3f}, {fit['ci_high']:+.3f}]"


def row_name(row: dict) -> str:
    if row["task"] == "statements":
        return f"statements accuracy ({row['group'] or 'all sets'})"
    return f"{row['task']} {row['metric']} ({row['preset']} preset)"


def headlines(analysis: dict) -> list[str]:
    lines = []
    for row in analysis["scaling"]:
        path = " -> ".join(f"{m['model']} {ci(m)}" for m in row["models"])
        lines.append(f"{row_name(row)}: {direction(row['fit'])} with size; {path}; slope {slope_text(row['fit'])}.")
    for metric, rows in analysis["categories"].items():
        testable = [r for r in rows if r["testable"]]
        if not testable:
            continue
        flagged = [r for r in rows if r["inverse"]]
        names = ", ".join(f"{r['category']} ({r['fit']['slope']:+.2f})" for r in flagged) or "none"
        lines.append(
            f"Inverse scaling by category ({metric}, {analysis['baseline']} preset): {len(flagged)} of "
            f"{len(testable)} categories with at least {analysis['min_questions']} questions have a slope "
            f"interval below zero ({names}); about {0.025 * len(testable):.1f} would be by chance alone."
        )
    for row in analysis["presets"]:
        if row["metric"] not in ("mc1", "mc2", "accuracy"):
            continue
        word = "raises" if row["ci_low"] > 0 else "lowers" if row["ci_high"] < 0 else "does not detectably change"
        lines.append(
            f"{row['preset']} vs {row['baseline']} on {row['model']}: {word} {row['task']} {row['metric']} "
            f"by {ci(row)} (paired over {row['n']} questions)."
        )
    f = analysis["falsehoods"]
    if f:
        lines.append(
            f"Of {f['n_questions']} questions ({f['preset']} preset), {f['n_flipped_to_false']} go from a true MC1 "
            f"choice by {f['small']} to a false one by {f['large']}, and {f['n_flipped_to_true']} the other way."
        )
    return lines


def caveats(analysis: dict, given: Sequence[str] = ()) -> list[str]:
    """The caveats a reader needs before believing a slope: from the sweep, then from the runs."""
    out = list(dict.fromkeys(given))
    runs = analysis["runs"]
    sizes = sorted({r["params"] for r in runs if r["params"]})
    if len(sizes) == 2:
        out.append(
            "Only two model sizes: each slope is the difference between two models divided by their size "
            "ratio. Nothing here tests whether scores are linear in log(parameters), and any difference "
            "between the two models besides size (family, data, instruction tuning) is folded into it."
        )
    elif len(sizes) < 2:
        out.append("Fewer than two model sizes with a parameter count: no scaling slope can be fitted.")
    bundled = sorted({r["spec"] for r in runs if r["spec"] in BUNDLED})
    for alias in bundled:
        out.append(
            f"{alias}: {BUNDLED[alias].description}; 4-bit weights dequantised, so scores differ from "
            "the full-precision checkpoint."
        )
    limits = sorted({(r["task"], r["limit"], r["n"]) for r in runs if r["limit"]})
    for task, limit, n in limits:
        unit = "statements per set" if task == "statements" else "questions (seeded random sample)"
        out.append(f"{task}: limited to {limit} {unit}; {n} items scored. Intervals are correspondingly wide.")
    out.append(
        "Intervals are percentile bootstraps over items (questions or statements), paired across models "
        "and presets; they do not cover variation between models of the same size or between seeds."
    )
    if analysis["unfinished"]:
        out.append(
            f"{len(analysis['unfinished'])} unfinished run(s) were left out: " + ", ".join(analysis["unfinished"])
        )
    for cell in analysis["failed_cells"]:
        out.append(f"Sweep cell {cell['key']} failed and is missing: {cell['error']}")
    return out
