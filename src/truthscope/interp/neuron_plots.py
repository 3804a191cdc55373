"""Figures of truth-neuron runs, drawn only from what the runs wrote (summary.json, neuron_stats.npz).

layers.png       truth (and negative) neurons per layer: counts, and the share of each model's
                 neurons against normalised depth (layer / (n_layers - 1)), so models of different
                 depth share one axis
attribution.png  distribution of the mean attribution difference over all neurons, and of the t
                 statistics, with the selected neurons marked
suppression.png  per metric: the effect of switching off the selected neurons next to each
                 random set's, with the paired interval of selected - none and the set-level p
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from truthscope.errors import TruthscopeError
from truthscope.runlog import read_run


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")  # files only, no display
    import matplotlib.pyplot as plt

    return plt


def plot_layers(runs: Sequence[str | Path], path: str | Path, top_k: int = 100) -> Path:
    """One figure for one or more `neurons find` runs (e.g. two models). Solid: significant truth
    neurons; dashed: negative ones; dotted: the `top_k` largest t (exploratory, significant or not),
    which still shows where the strongest candidates sit when nothing passes the correction."""
    from truthscope.interp.neurons import per_layer_counts, top_neurons

    plt = _pyplot()
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4))
    for k, directory in enumerate(runs):
        summary = _summary(directory)
        per_layer = summary["per_layer"]
        d_mlp, n_layers = summary["dimensions"]["d_mlp"], summary["dimensions"]["n_layers"]
        top = per_layer_counts(top_neurons(np.load(Path(directory) / "neuron_stats.npz")["t"], top_k), n_layers)
        layers = np.arange(n_layers)
        depth = layers / max(1, n_layers - 1)
        label, color = summary["model"], f"C{k}"
        n_pos, n_neg = sum(per_layer["positive"]), sum(per_layer["negative"])
        for ax, x, scale in ((left, layers, 1), (right, depth, 100 / d_mlp)):
            ax.plot(x, np.array(per_layer["positive"]) * scale, "o-", color=color, label=f"{label}: truth (+), {n_pos}")
            ax.plot(x, np.array(per_layer["negative"]) * scale, "x--", color=color, label=f"{label}: negative, {n_neg}")
            ax.plot(x, np.array(top) * scale, ":", color=color, alpha=0.7, label=f"{label}: top {top_k} by t")
    left.set(xlabel="layer", ylabel="neurons", title="Truth neurons per layer")
    left.xaxis.get_major_locator().set_params(integer=True)
    right.set(xlabel="normalised depth (layer / (layers - 1))", ylabel="% of the layer's neurons", title="By depth")
    for ax in (left, right):
        ax.legend(fontsize=7)
        ax.grid(alpha=0.3)
    return _save(fig, path)


def plot_attribution(run: str | Path, path: str | Path) -> Path:
    plt = _pyplot()
    summary = _summary(run)
    stats = np.load(Path(run) / "neuron_stats.npz")
    mean, t = stats["mean"].ravel(), stats["t"].ravel()
    selected = np.zeros(stats["mean"].shape, dtype=bool)
    for sign in ("positive", "negative"):
        for n in summary["neurons"][sign]:
            selected[n["layer"], n["index"]] = True
    selected = selected.ravel()
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4))
    bins = np.linspace(mean.min(), mean.max(), 80)
    left.hist(mean, bins=bins, color="0.6", label="all neurons")
    left.hist(mean[selected], bins=bins, color="C3", label="selected")
    left.set(yscale="log", xlabel="mean D = Attr(correct) - Attr(incorrect)", ylabel="neurons",
             title=f"{summary['model']}: attribution difference ({summary['n_questions']} questions)")  # fmt: skip
    bins = np.linspace(t.min(), t.max(), 80)
    right.hist(t, bins=bins, color="0.6", label="all neurons")
    right.hist(t[selected], bins=bins, color="C3", label=f"selected ({summary['correction']} q < {summary['alpha']})")
    right.set(yscale="log", xlabel="t statistic", ylabel="neurons", title="Per-neuron t-test")
    for ax in (left, right):
        ax.legend(fontsize=8)
    return _save(fig, path)


def plot_suppression(run: str | Path, path: str | Path) -> Path:
    plt = _pyplot()
    summary = _summary(run)
    metrics = summary["metrics"]
    names = sorted(metrics)
    fig, axes = plt.subplots(1, len(names), figsize=(2.2 * len(names) + 1, 3.6), squeeze=False)
    for ax, name in zip(axes[0], names, strict=True):
        m = metrics[name]
        test = m["set_test"]
        ax.axhline(0, color="0.7", linewidth=1)
        ax.scatter(np.zeros(len(m["random_effects"])), m["random_effects"], color="0.5", s=8, label="random sets")
        effect = m.get("selected_minus_none")
        if effect is not None:
            error = [[effect["mean"] - effect["ci_low"]], [effect["ci_high"] - effect["mean"]]]
            ax.errorbar([1], [effect["mean"]], yerr=error, fmt="o", color="C3", label="selected")
        else:
            ax.scatter([1], [test["effect"]], color="C3", label="selected")
        p = test["p_two_sided"]
        ax.set(xticks=[0, 1], xticklabels=["random", "selected"], xlim=(-0.6, 1.6),
               title=f"{name}\nset-level p = {p:.2g}" if p is not None else name)  # fmt: skip
        ax.tick_params(labelsize=8)
    axes[0][0].set_ylabel("change from the unmodified model")
    fig.suptitle(f"{summary['model']}: switching off {summary['n_neurons']} neurons ({summary['mode']})", fontsize=10)
    return _save(fig, path)


def _summary(run: str | Path) -> dict:
    summary = read_run(run)[2]
    if summary is None:
        raise TruthscopeError(f"{run}: no summary.json (the run did not finish)")
    return summary


def _save(fig, path: str | Path) -> Path:
    path = Path(path)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    import matplotlib.pyplot as plt

    plt.close(fig)
    return path
