"""The report's calibration and sycophancy sections: data from `calibration` / `sycophancy` run logs
(and a calibration run's `pik.json`), their figures, and their HTML and Markdown.

    calibration   per model and method: ECE, Brier, AUROC, AURC with intervals; reliability diagrams,
                  risk-coverage curves, and abstention curves (% true against % informative as the
                  threshold rises) beside the `help` preset's point from a `gen` run of the same model
    sycophancy    per model and condition: flip rates true -> false and false -> true, and the excess
                  over the control (a belief stated about another question)
"""

from __future__ import annotations

import html
from collections.abc import Callable, Mapping, Sequence
from functools import partial

from matplotlib.figure import Figure

from truthscope.report.findings import ci
from truthscope.report.plots import PALETTE, png

value_ci = partial(ci, key="value")  # the calibration metrics store their estimate as `value`

METRICS = ("ece", "brier", "auroc", "aurc")


def _pik(run) -> dict | None:
    from truthscope.runlog import read_json

    path = run.directory / "pik.json"
    if not path.exists():
        return None
    try:
        return read_json(path)
    except Exception:  # a damaged side file is left out of the report, not fatal to it
        return None


def uncertainty_analysis(runs: Sequence) -> dict:
    """{"calibration": [per model], "sycophancy": [per model]} from the finished runs."""
    help_points = {
        r.model: {k: r.summary["scores"][k]["mean"] for k in ("true", "info") if k in r.summary.get("scores", {})}
        for r in runs
        if r.task == "gen" and r.preset == "help"
    }
    calibration = []
    for run in (r for r in runs if r.task == "calibration"):
        methods = dict(run.summary.get("calibration", {}))
        pik = _pik(run)
        if pik:
            methods["p_ik"] = {"target": "gen", **pik["calibration"]}
        rows = []
        for name, c in methods.items():
            abst = run.summary.get("abstention", {}).get(name, {})
            rows.append({
                "method": name, "target": c["target"], "n": c["n"], "accuracy": c["accuracy"],
                **{m: c["metrics"][m] for m in METRICS},
                "reliability": c["reliability"]["uniform"], "risk_coverage": c["risk_coverage"],
                "abstention": abst.get("curve"), "best": abst.get("best"),
                "truth_per_info": abst.get("truth_per_info"),
                "random_truth_per_info": abst.get("random_truth_per_info"),
                "held_out": abst.get("held_out"),
            })  # fmt: skip
        calibration.append({
            "model": run.model, "dir": str(run.directory), "questions": len(run.records), "methods": rows,
            "unparseable": run.summary.get("unparseable", {}), "help": help_points.get(run.model),
            "pik_controls": pik["controls"] if pik else None,
        })  # fmt: skip
    sycophancy = [
        {
            "model": run.model,
            "form": run.summary.get("form"),
            "questions": len(run.records),
            "flips": run.summary.get("flips", {}),
            "shift": {k[6:]: v for k, v in run.summary.get("scores", {}).items() if k.startswith("shift_")},
        }
        for run in runs
        if run.task == "sycophancy"
    ]
    return {"calibration": calibration, "sycophancy": sycophancy}


# --- figures -----------------------------------------------------------------------------------------


def _panels(n: int, width: float = 4.2, height: float = 3.6):
    cols = min(n, 3)
    rows = (n + cols - 1) // cols
    figure = Figure(figsize=(width * cols, height * rows), layout="constrained")
    return figure, [figure.add_subplot(rows, cols, i + 1) for i in range(n)]


def reliability_figure(calibration: Sequence[dict]) -> bytes | None:
    if not calibration:
        return None
    figure, axes = _panels(len(calibration))
    for ax, model in zip(axes, calibration, strict=True):
        ax.plot([0, 1], [0, 1], color="grey", linestyle="--", linewidth=1)
        for colour, m in zip(PALETTE * 2, model["methods"], strict=False):
            bins = m["reliability"]
            ax.plot([b["confidence"] for b in bins], [b["accuracy"] for b in bins], marker="o", markersize=3,
                    color=colour, label=m["method"])  # fmt: skip
        ax.set(xlim=(0, 1), ylim=(0, 1), xlabel="confidence (bin mean)", ylabel="accuracy", title=model["model"])
        ax.legend(fontsize=7)
    return png(figure)


def risk_coverage_figure(calibration: Sequence[dict]) -> bytes | None:
    if not calibration:
        return None
    figure, axes = _panels(len(calibration))
    for ax, model in zip(axes, calibration, strict=True):
        for colour, m in zip(PALETTE * 2, model["methods"], strict=False):
            rc = m["risk_coverage"]
            ax.step(rc["coverage"], rc["risk"], where="post", color=colour, label=f"{m['method']} ({m['target']})")
        ax.set(xlim=(0, 1), ylim=(0, 1), xlabel="coverage (share answered)", ylabel="risk (share wrong)",
               title=model["model"])  # fmt: skip
        ax.legend(fontsize=7)
    return png(figure)


def abstention_figure(calibration: Sequence[dict]) -> bytes | None:
    models = [m for m in calibration if any(r["abstention"] for r in m["methods"])]
    if not models:
        return None
    figure, axes = _panels(len(models))
    for ax, model in zip(axes, models, strict=True):
        start = next(m["abstention"][0] for m in model["methods"] if m["abstention"])
        ax.plot([start["info"], 0], [start["true"], 1], color="grey", linestyle="--", linewidth=1,
                label="random abstention")  # fmt: skip
        for colour, m in zip(PALETTE * 2, model["methods"], strict=False):
            if m["abstention"]:
                curve = m["abstention"]
                ax.plot([c["info"] for c in curve], [c["true"] for c in curve], color=colour, label=m["method"])
        if model["help"] and {"true", "info"} <= set(model["help"]):
            ax.scatter([model["help"]["info"]], [model["help"]["true"]], marker="*", s=120, color="black",
                       label="help preset", zorder=3)  # fmt: skip
        ax.set(xlim=(0, 1), ylim=(0, 1), xlabel="% informative", ylabel="% true", title=model["model"])
        ax.legend(fontsize=7)
    return png(figure)


def sycophancy_figure(sycophancy: Sequence[dict]) -> bytes | None:
    if not sycophancy:
        return None
    conditions = ("wrong", "right", "control", "challenge")
    figure = Figure(figsize=(1.8 + 1.6 * len(conditions), 3.6), layout="constrained")
    ax = figure.add_subplot(1, 1, 1)
    width = 0.8 / len(sycophancy)
    for k, (colour, run) in enumerate(zip(PALETTE * 2, sycophancy, strict=False)):
        xs, ys, lo, hi = [], [], [], []
        for i, c in enumerate(conditions):
            entry = run["flips"].get(c, {}).get("true_to_false")
            if entry:
                xs.append(i + k * width)
                ys.append(entry["mean"])
                lo.append(entry["mean"] - entry["ci_low"])
                hi.append(entry["ci_high"] - entry["mean"])
        ax.bar(xs, ys, width=width, color=colour, yerr=[lo, hi], capsize=3, label=f"{run['model']} ({run['form']})")
    ax.set_xticks([i + width * (len(sycophancy) - 1) / 2 for i in range(len(conditions))], conditions)
    ax.set(ylim=(0, 1), ylabel="true → false flip rate")
    ax.legend(fontsize=7)
    return png(figure)


def uncertainty_figures(section: dict) -> dict[str, bytes | None]:
    return {
        "reliability": reliability_figure(section["calibration"]),
        "risk-coverage": risk_coverage_figure(section["calibration"]),
        "abstention": abstention_figure(section["calibration"]),
        "sycophancy": sycophancy_figure(section["sycophancy"]),
    }


# --- text --------------------------------------------------------------------------------------------


def _ratio(x) -> str:
    return "—" if x is None else f"{x:.2f}"


def calibration_rows(section: dict) -> list[list[str]]:
    return [
        [
            model["model"],
            m["method"],
            m["target"],
            str(m["n"]),
            *(value_ci(m[k]) for k in METRICS),
            _ratio(m["truth_per_info"]),
            _ratio(m["random_truth_per_info"]),
            value_ci((m.get("held_out") or {}).get("excess_true")),
        ]  # fmt: skip
        for model in section["calibration"]
        for m in model["methods"]
    ]


CALIBRATION_HEADER = ["model", "method", "judged against", "n", "ECE", "Brier", "AUROC", "AURC", "truth/info",
                      "random", "truth beyond random, held-out τ"]  # fmt: skip
FLIPS = {
    "true_to_false": "true → false",
    "false_to_true": "false → true",
    "true_to_none": "true → none",
    "false_to_none": "false → none",
    "true_to_false_beyond_control": "t→f beyond control",
    "false_to_true_beyond_control": "f→t beyond control",
}
SYCOPHANCY_HEADER = ["model", "form", "condition", *FLIPS.values()]
CALIBRATION_TEXT = (
    "Each confidence signal against correctness, one point per question, 95% bootstrap intervals over "
    "questions (ECE: 10 equal-width bins). MC methods are judged against the MC pick, the others against the "
    "truth judge's verdict on the greedy answer. truth/info: % true gained per % informative given up by "
    'answering "I have no comment." below the best threshold (the most truth beyond random abstention at the same '
    "informativeness); random: what abstaining at random buys. The best threshold is chosen on the answers it is "
    "judged on, which flatters it; the last column chooses it on half the questions and applies it to the other "
    "half (both ways): % true beyond random abstention at the same informativeness, 0 for a signal that carries "
    "nothing."
)
SYCOPHANCY_TEXT = (
    "Flip rates from the plain answer: true → false among questions the model gets right plainly, false → "
    "true among those it gets wrong; for generations, → none: a move to a non-committal answer (judged true "
    "but uninformative, such as \"I'm not sure.\"), which TruthfulQA's truth judge would count true. The "
    "control states a belief about a different question; a stated belief's effect is its flip rate beyond the "
    "control's (paired, bootstrap over questions): true → false for the wrong belief, false → true for the right "
    "one. The challenge has no matched control."
)


def sycophancy_rows(section: dict) -> list[list[str]]:
    return [
        [
            run["model"],
            str(run["form"]),
            condition,
            *(ci(f.get(k)) for k in FLIPS),
        ]  # fmt: skip
        for run in section["sycophancy"]
        for condition, f in run["flips"].items()
    ]


def html_section(section: dict, figure: Callable[[str, str], str], table: Callable) -> list[str]:
    """The HTML of both sections (`figure(name, caption)` and `table(header, rows)` from report.html)."""
    e = html.escape
    parts: list[str] = []
    if section["calibration"]:
        parts += [
            "<h2>Confidence and calibration</h2>",
            f"<p>{e(CALIBRATION_TEXT)}</p>",
            table([e(h) for h in CALIBRATION_HEADER], [[e(c) for c in row] for row in calibration_rows(section)]),
            figure("reliability", "Reliability diagrams: accuracy per confidence bin (dashed: perfect calibration)."),
            figure(
                "risk-coverage", "Risk-coverage: the error rate among the questions answered, most confident first."
            ),  # fmt: skip
            figure(
                "abstention",
                "Abstention: % true against % informative as the threshold rises (★: the help preset's answers).",
            ),  # fmt: skip
        ]
        for model in section["calibration"]:
            if model["pik_controls"]:
                c = model["pik_controls"]
                text = (f"P(IK) controls for {model['model']}: shuffled labels AUROC {value_ci(c['shuffled_labels'])}, "
                        f"text only AUROC {value_ci(c['text_only'])}.")  # fmt: skip
                parts.append(f"<p>{e(text)}</p>")
    if section["sycophancy"]:
        parts += [
            "<h2>Sycophancy</h2>",
            f"<p>{e(SYCOPHANCY_TEXT)}</p>",
            table([e(h) for h in SYCOPHANCY_HEADER], [[e(c) for c in row] for row in sycophancy_rows(section)]),
            figure("sycophancy", "True → false flip rate per condition (95% Wilson intervals)."),
        ]
    return parts


def markdown_section(section: dict, image_paths: Mapping[str, str], md_table: Callable, cell: Callable) -> list[str]:
    out: list[str] = []
    if section["calibration"]:
        out += ["## Confidence and calibration", "", cell(CALIBRATION_TEXT), "",
                md_table(CALIBRATION_HEADER, calibration_rows(section)), ""]  # fmt: skip
        out += [
            f"![{n}]({image_paths[n]})\n" for n in ("reliability", "risk-coverage", "abstention") if n in image_paths
        ]
    if section["sycophancy"]:
        out += ["## Sycophancy", "", cell(SYCOPHANCY_TEXT), "", md_table(SYCOPHANCY_HEADER, sycophancy_rows(section)),
                ""]  # fmt: skip
        out += [f"![sycophancy]({image_paths['sycophancy']})", ""] if "sycophancy" in image_paths else []
    return out
