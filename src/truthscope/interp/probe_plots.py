"""Figures for probes, latent knowledge and steering, drawn only from a run's summary (never recomputed)."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only; no display on servers
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402


def _layer(hook: str) -> int:
    return int(hook.split(".")[1])


def plot_probe_layers(summary: dict, path: Path) -> Path:
    """Held-out accuracy by layer for each dataset and method; for TruthfulQA also the probe's MC1
    against the model's own MC1 on the same questions."""
    layers = summary["layers"]  # dataset -> method -> hook -> {"accuracy", "auroc", ...}
    methods = sorted({m for per in layers.values() for m in per})
    fig, axes = plt.subplots(1, len(methods) + 1, figsize=(4.2 * (len(methods) + 1), 3.6), sharey=True)
    for ax, method in zip(axes[:-1], methods, strict=True):  # the last panel is TruthfulQA MC1
        for dataset, per in layers.items():
            hooks = sorted(per.get(method, {}), key=_layer)
            ax.plot([_layer(h) for h in hooks], [per[method][h]["accuracy"] for h in hooks], marker=".", label=dataset)
        ax.axhline(0.5, color="grey", lw=0.8, ls=":")
        ax.set_title(f"{method}: held-out accuracy")
        ax.set_xlabel("layer")
    axes[0].set_ylabel("accuracy")
    axes[0].legend(fontsize=7)
    ax = axes[-1]
    tqa = summary.get("truthfulqa_mc1")
    if tqa:
        for method, per in tqa["probe"].items():
            hooks = sorted(per, key=_layer)
            ax.plot([_layer(h) for h in hooks], [per[h] for h in hooks], marker=".", label=f"probe ({method})")
        ax.axhline(tqa["model"]["mean"], color="black", label="model's own MC1")
        ax.axhline(tqa["chance"], color="grey", lw=0.8, ls=":", label="chance")
        ax.legend(fontsize=7)
    ax.set_title("TruthfulQA MC1: probe vs model")
    ax.set_xlabel("layer")
    fig.suptitle(f"{summary['model']}: truth probes on held-out items", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=130)
    plt.close(fig)
    return path


def plot_generalisation(summary: dict, path: Path) -> Path:
    """Heatmap: rows = training set, columns = test set (held-out items), at the common layer."""
    matrix = summary["generalisation"]
    names = matrix["datasets"]
    methods = list(matrix["accuracy"])
    fig, axes = plt.subplots(1, len(methods), figsize=(4.5 * len(methods), 4.2))
    for ax, method in zip(np.atleast_1d(axes), methods, strict=True):
        values = np.array(matrix["accuracy"][method])
        ax.imshow(values, vmin=0, vmax=1, cmap="RdYlGn")
        for i in range(len(names)):
            for j in range(len(names)):
                ax.text(j, i, f"{values[i, j]:.2f}", ha="center", va="center", fontsize=7)
        ax.set_xticks(range(len(names)), names, rotation=45, ha="right", fontsize=7)
        ax.set_yticks(range(len(names)), names, fontsize=7)
        ax.set_xlabel("tested on")
        ax.set_ylabel("trained on")
        ax.set_title(f"{method} at {matrix['hook']}", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=130)
    plt.close(fig)
    return path


def plot_latent_table(summary: dict, path: Path) -> Path:
    """The 2x2 table (probe knows x model says) with shares and 95% intervals."""
    table = summary["table"]
    cells = [["knows_and_says", "knows_not_says"], ["says_not_knows", "neither"]]
    values = np.array([[table[c]["mean"] for c in row] for row in cells])
    vmax = max(0.5, values.max())
    fig, ax = plt.subplots(figsize=(4.8, 4.2))
    ax.imshow(values, vmin=0, vmax=vmax, cmap="Blues")
    for i, row in enumerate(cells):
        for j, c in enumerate(row):
            t = table[c]
            colour = "white" if t["mean"] > 0.6 * vmax else "black"
            text = f"{t['mean']:.1%}\n[{t['ci_low']:.1%}, {t['ci_high']:.1%}]"
            ax.text(j, i, text, ha="center", va="center", fontsize=9, color=colour)
    ax.set_xticks([0, 1], ["says true (model MC1)", "says false"])
    ax.set_yticks([0, 1], ["probe knows", "probe does not"])
    ax.set_title(
        f"{summary['model']}: latent vs output, {table['knows']['n']} held-out questions\n"
        f"probe knows {table['knows']['mean']:.1%} (chance {table['knows_chance']:.1%}), "
        f"model says {table['says']['mean']:.1%}" + _excess_line(summary),
        fontsize=8,
    )
    fig.tight_layout()
    fig.savefig(path, dpi=130)
    plt.close(fig)
    return path


def _excess_line(summary: dict) -> str:
    """Knows-not-says expected under independence, and the excess over it and over each control."""
    table = summary["table"]
    if "expected" not in table:
        return ""
    parts = [f"independence {table['expected']['knows_not_says']:.1%}"]
    parts += [
        f"{c.removeprefix('knows_')} {v['knows_not_says']['mean']:.1%}" for c, v in summary.get("controls", {}).items()
    ]
    e = table["excess_over_independence"]
    return f"\nknows-not-says if: {', '.join(parts)}; excess over independence {e['mean']:+.1%}"


def plot_steering(summary: dict, path: Path) -> Path:
    """Against alpha, the truth direction (solid) beside its controls (dashed): MC1 / MC2 / % true and
    informative; the neutral-text KL; the shares of "No" answers and refusals."""
    sweep = summary["sweep"]  # direction -> [{"alpha", metric: value, ...}]
    base = next((e for e in sweep.get("truth", []) if e["alpha"] == 0), None)
    fig, (left, middle, right) = plt.subplots(1, 3, figsize=(13, 3.8))
    panels = ((left, ("mc1", "mc2", "true_info")), (middle, ("kl",)), (right, ("starts_no", "refusal")))
    for ax, metrics in panels:
        for k, metric in enumerate(metrics):
            colour = f"C{k}"
            for name, entries in sweep.items():
                rows = sorted(
                    ([base] if base is not None and name != "truth" else []) + entries, key=lambda e: e["alpha"]
                )
                points = [(e["alpha"], e.get(metric)) for e in rows if e.get(metric) is not None]
                if points:
                    xs, ys = zip(*points, strict=True)
                    style = "-" if name == "truth" else (":" if name == "negated" else "--")
                    label = metric if name == "truth" else f"{metric} ({name})"
                    ax.plot(xs, ys, style, marker="o" if name == "truth" else ".", color=colour, label=label)
        ax.set_xlabel("alpha (std along the direction)")
        ax.legend(fontsize=6)
    left.set_title("truthfulness")
    middle.set_title("KL from unsteered on neutral text (nats)")
    right.set_title('answers opening "No" / refusals')
    ratio = {e["alpha"]: e.get("norm_ratio") for e in sweep.get("truth", [])}
    note = ", ".join(f"{a:g}: {r:.2f}" for a, r in sorted(ratio.items()) if r is not None)
    fig.suptitle(f"{summary['model']}: {summary['direction']}\n||alpha v|| / mean residual norm: {note}", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=130)
    plt.close(fig)
    return path
