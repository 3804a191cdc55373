"""The report's figures, drawn from the analysis (never from models): each function returns PNG bytes.

Figures are built on `matplotlib.figure.Figure` directly (no pyplot, no global state, no display
backend), with the Okabe-Ito palette, which stays distinguishable under colour-vision deficiency.
"""

from __future__ import annotations

import io
from collections.abc import Sequence

import numpy as np
from matplotlib.figure import Figure

from truthscope.report.findings import metric_name, signed

PALETTE = ("#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9", "#F0E442", "#000000")
KIND_COLOURS = {
    "imitative (TruthfulQA)": "#D55E00",
    "verifier": "#009E73",
    "knowledge": "#0072B2",
    "negation": "#56B4E9",
    "popular claims": "#CC79A7",
    "logic": "#E69F00",
}
DPI = 110


def png(figure: Figure) -> bytes:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=DPI, bbox_inches="tight")
    return buffer.getvalue()


def human_params(n: float) -> str:
    for unit, size in (("B", 1e9), ("M", 1e6), ("K", 1e3)):
        if n >= size:
            return f"{n / size:.3g}{unit}"
    return f"{n:.0f}"


def scaling_curves(rows: Sequence[dict]) -> bytes | None:
    """One panel per metric: mean score against model size (log axis; non-embedding parameters
    where recorded) with 95% intervals, one colour per preset (statements: per kind of set). A line
    joins models of one recorded family only; models of other or unknown families are bare points."""
    panels: dict[str, list[dict]] = {}
    for row in rows:
        name = f"{row['task']} {row['metric']}" if row["task"] != "statements" else "statements accuracy"
        if row["task"] == "statements" and row["group"] is None:
            continue  # the per-kind lines carry the story; the overall mean mixes kinds
        if any(m["size"] for m in row["models"]):
            panels.setdefault(name, []).append(row)
    if not panels:
        return None
    cols = min(len(panels), 3)
    rows_n = (len(panels) + cols - 1) // cols
    figure = Figure(figsize=(4.4 * cols, 3.7 * rows_n), layout="constrained")
    for index, (name, lines) in enumerate(panels.items()):
        ax = figure.add_subplot(rows_n, cols, index + 1)
        for colour, line in zip(_cycle(len(lines)), lines, strict=True):
            colour = KIND_COLOURS.get(line["group"], colour) if line["group"] else colour
            label = line["group"] or line["preset"] or ""
            groups: dict[object, list[dict]] = {}
            for k, m in enumerate(line["models"]):
                if m["size"]:
                    groups.setdefault(m["family"] or ("unknown", k), []).append(m)
            for models in groups.values():
                x = np.array([m["size"] for m in models], dtype=float)
                y = np.array([m["mean"] for m in models])
                err = np.array([[m["mean"] - m["ci_low"] for m in models], [m["ci_high"] - m["mean"] for m in models]])
                ax.errorbar(x, y, yerr=err, marker="o", capsize=3, color=colour, label=label, ls="-")
                label = None
        ax.set_xscale("log")
        names: dict[float, list[str]] = {}
        for m in (m for line in lines for m in line["models"] if m["size"]):
            names.setdefault(m["size"], [])
            if m["model"] not in names[m["size"]]:
                names[m["size"]].append(m["model"])
        xs = sorted(names)
        ax.set_xticks(xs, [f"{human_params(v)}\n{', '.join(names[v])}" for v in xs], fontsize=7)
        ax.minorticks_off()
        ax.set_title(name)
        ax.set_xlabel(lines[0]["axis"])
        ax.set_ylabel("score (95% CI)")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    return png(figure)


def slope_forest(rows: Sequence[dict]) -> bytes | None:
    """Every comparison on one axis: TruthfulQA metrics (imitative falsehoods) beside the statement
    controls. A slope per 10x within a family where a family has three models or more, otherwise the
    paired difference B - A of each pair of models (labelled as such)."""
    if not rows:
        return None
    labels, effects, colours = [], [], []
    for row in rows:
        if row["task"] == "statements":
            if row["group"] is None:
                continue
            name, colour = f"statements: {row['group']}", KIND_COLOURS.get(row["group"], "#000000")
        else:
            name = f"{metric_name(row['task'], row['metric'])} ({row['preset']})"
            colour = KIND_COLOURS["imitative (TruthfulQA)"]
        if row["fits"]:
            for fit in row["fits"]:
                labels.append(f"{name}: slope/10x, {fit['family']}")
                effects.append((fit["slope"], fit["ci_low"], fit["ci_high"]))
                colours.append(colour)
        else:
            for d in row["differences"]:
                labels.append(f"{name}: {d['b']} - {d['a']}")
                effects.append((d["mean"], d["ci_low"], d["ci_high"]))
                colours.append(colour)
    if not effects:
        return None
    figure = Figure(figsize=(7.5, 0.32 * len(effects) + 1.4))
    ax = figure.add_subplot(1, 1, 1)
    y = np.arange(len(effects))[::-1]
    for yi, (mean, low, high), colour in zip(y, effects, colours, strict=True):
        ax.plot([low, high], [yi, yi], color=colour, lw=2)
        ax.plot(mean, yi, "o", color=colour)
    ax.axvline(0, color="black", lw=0.8)
    ax.set_yticks(y, labels, fontsize=8)
    kinds = {"slope" if "slope/10x" in label else "difference" for label in labels}
    ax.set_xlabel(
        {
            frozenset({"slope"}): "slope: change in score per 10x size within a family (95% CI)",
            frozenset({"difference"}): "paired difference in score, B - A (95% CI)",
        }.get(frozenset(kinds), "slope per 10x size within a family, or paired difference B - A (95% CI)")
    )
    ax.grid(axis="x", alpha=0.3)
    return png(figure)


def category_heatmap(rows: Sequence[dict], metric: str) -> bytes | None:
    """Category x model means, smallest model on the left; categories with enough questions first,
    most negative estimate at the top; categories flagged after Benjamini-Hochberg marked with a star."""
    if not rows:
        return None
    rows = sorted(rows, key=lambda r: (not r["testable"], r["estimate"]))  # most negative testable first
    models = list(rows[0]["means"])
    matrix = np.array([[row["means"][m] for m in models] for row in rows])
    figure = Figure(figsize=(2.2 + 1.1 * len(models) + 1.6, 0.26 * len(rows) + 1.6))
    ax = figure.add_subplot(1, 1, 1)
    image = ax.imshow(matrix, aspect="auto", cmap="viridis", vmin=0, vmax=1)
    figure.colorbar(image, ax=ax, label=metric, fraction=0.04)
    for (i, j), value in np.ndenumerate(matrix):
        ax.text(j, i, f"{value:.2f}", ha="center", va="center", fontsize=7, color="white" if value < 0.6 else "black")
    ax.set_xticks(range(len(models)), models, rotation=20, ha="right", fontsize=8)
    names = [
        f"{'★ ' if row['flagged'] else ''}{row['category']} (n={row['n_items']}, {signed(row['estimate'], 2)})"
        for row in rows
    ]
    ax.set_yticks(range(len(rows)), names, fontsize=7)
    testable = sum(r["testable"] for r in rows)
    if 0 < testable < len(rows):  # below the line: too few questions to test
        ax.axhline(testable - 0.5, color="white", lw=2)
    first = rows[0]
    unit = (
        f"slope per 10x within {first['family']}"
        if first["measure"] == "slope"
        else f"{first['compared'][-1]} - {first['compared'][0]}"
    )
    ax.set_title(f"{metric} by category ({unit}; ★ = flagged, BH 5% FDR)", fontsize=9)
    return png(figure)


def preset_effects(rows: Sequence[dict]) -> bytes | None:
    """Paired differences preset - baseline per model, one panel per metric."""
    if not rows:
        return None
    metrics = list(dict.fromkeys(f"{r['task']} {r['metric']}" for r in rows))
    cols = min(len(metrics), 3)
    rows_n = (len(metrics) + cols - 1) // cols
    figure = Figure(figsize=(4.4 * cols, 3.4 * rows_n), layout="constrained")
    models = list(dict.fromkeys(r["model"] for r in rows))
    presets = list(dict.fromkeys(r["preset"] for r in rows))
    width = 0.8 / max(len(presets), 1)
    for index, metric in enumerate(metrics):
        ax = figure.add_subplot(rows_n, cols, index + 1)
        for k, (preset, colour) in enumerate(zip(presets, _cycle(len(presets)), strict=False)):
            for j, model in enumerate(models):
                match = [
                    r
                    for r in rows
                    if f"{r['task']} {r['metric']}" == metric and r["preset"] == preset and r["model"] == model
                ]
                if not match:
                    continue
                r = match[0]
                x = j - 0.4 + width * (k + 0.5)
                ax.errorbar(
                    x,
                    r["mean"],
                    yerr=[[r["mean"] - r["ci_low"]], [r["ci_high"] - r["mean"]]],
                    fmt="o",
                    color=colour,
                    capsize=3,
                    label=f"{preset} - {r['baseline']}" if j == 0 else None,
                )
        ax.axhline(0, color="black", lw=0.8)
        ax.set_xticks(range(len(models)), models, fontsize=8, rotation=15)
        ax.set_title(metric)
        ax.set_ylabel("paired difference (95% CI)")
        ax.grid(axis="y", alpha=0.3)
        ax.legend(fontsize=7)
    return png(figure)


def statement_sets(runs_by_model: dict[str, dict]) -> bytes | None:
    """Accuracy per statement set and model with 95% intervals; 0.5 is chance on balanced sets."""
    if not runs_by_model:
        return None
    models = list(runs_by_model)
    sets = list(dict.fromkeys(s for by_set in runs_by_model.values() for s in by_set))
    figure = Figure(figsize=(1.1 * len(sets) + 3, 3.4))
    ax = figure.add_subplot(1, 1, 1)
    width = 0.8 / len(models)
    for k, (model, colour) in enumerate(zip(models, _cycle(len(models)), strict=False)):
        for j, name in enumerate(sets):
            entry = runs_by_model[model].get(name)
            if entry is None:
                continue
            a = entry["accuracy"]
            x = j - 0.4 + width * (k + 0.5)
            ax.bar(x, a["mean"], width * 0.9, color=colour, label=model if j == 0 else None)
            ax.errorbar(
                x, a["mean"], yerr=[[a["mean"] - a["ci_low"]], [a["ci_high"] - a["mean"]]], color="black", capsize=2
            )
    ax.axhline(0.5, color="grey", ls="--", lw=0.8)
    ax.set_xticks(
        range(len(sets)), [f"{s}\n({runs_by_model[models[0]].get(s, {}).get('kind', '')})" for s in sets], fontsize=7
    )
    ax.set_ylim(0, 1)
    ax.set_ylabel("accuracy (95% CI)")
    ax.legend(fontsize=8)
    ax.grid(axis="y", alpha=0.3)
    return png(figure)


def _cycle(n: int) -> list[str]:
    return [PALETTE[i % len(PALETTE)] for i in range(n)]
