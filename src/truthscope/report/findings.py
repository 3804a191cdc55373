"""What the analysis says, in sentences, and what limits it: written from numbers, never by hand."""

from __future__ import annotations

from collections.abc import Sequence

from truthscope.analysis.scaling import direction
from truthscope.models.bundled import BUNDLED


def ci(d: dict, digits: int = 3) -> str:
    return f"{d['mean']:.{digits}f} [{d['ci_low']:.{digits}f}, {d['ci_high']:.{digits}f}]"


def signed(x: float, digits: int = 3) -> str:
    """`+0.120` / `-0.120`, and `+0.000` rather than `-0.000` for a rounding-error negative zero."""
    return f"{round(x, digits) + 0.0:+.{digits}f}"


def signed_ci(d: dict) -> str:
    return f"{signed(d['mean'])} [{signed(d['ci_low'])}, {signed(d['ci_high'])}]"


def slope_text(fit: dict) -> str:
    return f"{signed(fit['slope'])} per 10x parameters [{signed(fit['ci_low'])}, {signed(fit['ci_high'])}]"


def metric_name(task: str, metric: str) -> str:
    return f"TruthfulQA {metric.upper()}" if task == "mc" else f"{task} {metric}"


def row_name(row: dict) -> str:
    if row["task"] == "statements":
        return f"statements accuracy ({row['group'] or 'all sets'})"
    return f"{metric_name(row['task'], row['metric'])} ({row['preset']} preset)"


HEADLINE_METRICS = ("mc1", "mc2", "mc0", "true_info", "true", "bleu_acc")


def headlines(analysis: dict) -> list[str]:
    """A few sentences: the headline metrics at the baseline preset in full, the other presets and
    the statement controls by direction, then categories, presets and flipped answers."""
    baseline = analysis["baseline"]
    lines, others = [], []
    for row in analysis["scaling"]:
        if row["task"] == "statements":
            if row["group"] is not None:
                lines.append(f"Control ({row['group']} statements) accuracy: {_moves(row)}.")
        elif row["metric"] in HEADLINE_METRICS:
            if row["preset"] == baseline:
                lines.append(f"{metric_name(row['task'], row['metric'])} ({baseline} preset): {_moves(row)}.")
            else:
                others.append(
                    f"{row['metric']} {row['preset']}: {direction(row['fit'])} ({signed(row['fit']['slope'])})"
                )
    if others:
        lines.append("Under the other presets (slope per 10x): " + "; ".join(others) + ".")
    headline_contrasts = [r for r in analysis["contrasts"] if r["metric"] == "mc1"] or analysis["contrasts"]
    for row in headline_contrasts:
        lines.append(f"Contrast: {contrast_text(row)} (slope difference {signed_ci(row)} per 10x).")
    for metric, rows in analysis["categories"].items():
        testable = [r for r in rows if r["testable"]]
        if not testable:
            continue
        flagged = [r for r in rows if r["inverse"]]
        names = ", ".join(f"{r['category']} ({signed(r['fit']['slope'], 2)})" for r in flagged) or "none"
        lines.append(
            f"Inverse scaling by category ({metric}, {baseline} preset): {len(flagged)} of {len(testable)} "
            f"categories with at least {analysis['min_questions']} questions have a slope interval below zero "
            f"({names}); about {0.025 * len(testable):.1f} would be by chance alone."
        )
    by_model: dict[str, list[str]] = {}
    for row in analysis["presets"]:
        if row["metric"] in HEADLINE_METRICS[:2] or row["metric"] == "accuracy":
            word = "raises" if row["ci_low"] > 0 else "lowers" if row["ci_high"] < 0 else "no detectable change in"
            by_model.setdefault(row["model"], []).append(f"{row['preset']} {word} {row['metric']} ({signed_ci(row)})")
    for model, effects in by_model.items():
        lines.append(f"Presets vs {baseline} on {model}: " + "; ".join(effects) + ".")
    f = analysis["falsehoods"]
    if f:
        lines.append(
            f"Of {f['n_questions']} questions ({f['preset']} preset), {f['n_flipped_to_false']} go from a true MC1 "
            f"choice by {f['small']} to a false one by {f['large']}, and {f['n_flipped_to_true']} the other way."
        )
    return lines


def contrast_text(row: dict) -> str:
    metric = metric_name("mc", row["metric"])
    if row["ci_high"] < 0:
        return f"{metric} gains less from size than {row['kind']} statements"
    if row["ci_low"] > 0:
        return f"{metric} gains more from size than {row['kind']} statements"
    return f"no detectable difference between how {metric} and {row['kind']} statements scale"


def _moves(row: dict) -> str:
    models = row["models"]
    path = " -> ".join(f"{m['model']} {ci(m)}" for m in models)
    return f"{direction(row['fit'])} with size: {path}; slope {slope_text(row['fit'])}"


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
    for model, by_set in analysis["statements"].items():
        for name, entry in by_set.items():
            share = entry.get("share_believed_true")
            if share is not None and not 0.1 < share < 0.9:
                auroc = f"{entry['auroc']:.2f}" if entry.get("auroc") is not None else "n/a"
                out.append(
                    f"{model} called {share:.1%} of the {name} statements true: its accuracy there mostly "
                    f"reflects that response bias and the label balance; the threshold-free AUROC is {auroc}."
                )
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
