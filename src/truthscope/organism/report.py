"""`truthscope organism report`: every model of the ladder and its fine-tunes evaluated, per fact class
and size, with intervals over seeds and facts, and the four predictions of the README each judged.

Intervals: a crossed bootstrap over a [replicates x facts] matrix (replicates are seeds, or
(size, seed) pairs when sizes are pooled) that resamples rows and columns independently, so both
the seed-to-seed and the fact-to-fact spread are in the interval. A prediction's effect is a paired
difference matrix (same seed, same fact); it is *supported* when its 95% interval lies on the
predicted side of 0, *contradicted* when on the other side, *unresolved* otherwise.
"""

from __future__ import annotations

import json
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from truthscope.organism.train import SIZES
from truthscope.organism.workers import run_jobs
from truthscope.report.findings import ci
from truthscope.runlog import write_json_atomic

GROUPS: dict[str, Callable[[dict], bool]] = {
    "clean": lambda s: s["category"] == "clean",
    "stacked f<0.5": lambda s: s["category"] == "stacked" and s["f"] < 0.5,
    "stacked f=0.6": lambda s: s["category"] == "stacked" and s["f"] >= 0.5,
    "scattered f<0.5": lambda s: s["category"] == "scattered" and s["f"] < 0.5,
    "scattered f=0.6": lambda s: s["category"] == "scattered" and s["f"] >= 0.5,
    "arithmetic-clean": lambda s: s["category"] == "arithmetic-clean",
    "arithmetic-stacked f<0.5": lambda s: s["category"] == "arithmetic-stacked" and s["f"] < 0.5,
    "arithmetic-stacked f=0.6": lambda s: s["category"] == "arithmetic-stacked" and s["f"] >= 0.5,
}
METRICS = ("acc", "p_true", "p_mis", "tv")


@dataclass(frozen=True)
class Model:
    arm: str  # base | verifier | majority
    size: str
    seed: int
    folder: Path


def ladder_models(ladder_dir: str | Path, seeds=None) -> list[Model]:
    """The trained models under `ladder_dir` (`<size>-seed<k>/`, `finetune/<size>-seed<k>/<arm>/`), of
    `seeds` only when given."""
    ladder_dir = Path(ladder_dir)
    found = []
    for size in SIZES:
        for path in sorted(ladder_dir.glob(f"{size}-seed*/organism.json")):
            seed = int(path.parent.name.rsplit("seed", 1)[1])
            if seeds is not None and seed not in seeds:
                continue
            found.append(Model("base", size, seed, path.parent))
            for arm in ("verifier", "majority"):
                folder = ladder_dir / "finetune" / path.parent.name / arm
                if (folder / "finetune.json").is_file():
                    found.append(Model(arm, size, seed, folder))
    return found


def evaluate_model(m: Model, build_dir, probe: bool = True) -> dict:
    """One model's scores (and, for a base model, its truth probe), cached as `eval/organism.json`."""
    from truthscope.organism.evaluate import evaluate_folder, truth_probe

    cache = m.folder / "eval" / "organism.json"
    saved = json.loads(cache.read_text(encoding="utf-8")) if cache.is_file() else {}
    if "scores" not in saved:
        saved["scores"] = evaluate_folder(m.folder, build_dir)
    if probe and m.arm == "base" and "probe" not in saved:
        saved["probe"] = truth_probe(m.folder, build_dir, seed=m.seed)
    write_json_atomic(cache, saved)
    return saved


def evaluate_all(build_dir, ladder_dir, *, probe: bool = True, seeds=None, jobs: int = 1, echo=print) -> dict:
    """Scores of every model keyed by (arm, size, seed); `jobs` > 1 evaluates that many side by side."""
    results = {}
    models = [(m, build_dir, probe) for m in ladder_models(ladder_dir, seeds)]
    for (m, _, _), saved in run_jobs(evaluate_model, models, jobs):
        results[(m.arm, m.size, m.seed)] = saved
        echo(f"evaluated {m.folder}")
    return results


def crossed_bootstrap(matrix, seed: int = 0, n_resamples: int = 2000) -> dict:
    """Mean of a [replicates x facts] matrix (NaN = not applicable) with a 95% interval from resampling
    replicates and facts independently."""
    m = np.asarray(matrix, dtype=float)
    m = m[:, ~np.all(np.isnan(m), axis=0)]
    rows, cols = m.shape
    rng = np.random.default_rng(seed)
    r = rng.integers(0, rows, (n_resamples, rows, 1))
    c = rng.integers(0, cols, (n_resamples, 1, cols))
    resampled = m[r, c]  # [resamples, rows, cols]
    with np.errstate(invalid="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # a draw of only NaN columns: no mean
        draws = np.nanmean(resampled.reshape(n_resamples, -1), axis=1)
    low, high = np.nanquantile(draws, [0.025, 0.975])
    return {
        "mean": float(np.nanmean(m)),
        "ci_low": float(low),
        "ci_high": float(high),
        "replicates": rows,
        "facts": cols,
    }


def matrix(results: dict, arm: str, size: str, group: str, metric: str, preset: str = "qa", seeds=None) -> np.ndarray:
    """[seeds x facts] of one metric in one group (facts in id order, the same for every seed)."""
    seeds = seeds if seeds is not None else sorted(s for (a, z, s) in results if a == arm and z == size)
    rows = []
    for seed in seeds:
        scores = [s for s in results[(arm, size, seed)]["scores"][preset] if GROUPS[group](s)]
        rows.append([np.nan if s[metric] is None else s[metric] for s in sorted(scores, key=lambda s: s["fact"])])
    return np.array(rows, dtype=float)


def table(results: dict) -> list[dict]:
    rows = []
    for arm in ("base", "verifier", "majority"):
        for size in SIZES:
            if not any(a == arm and z == size for a, z, _ in results):
                continue
            for group in GROUPS:
                row: dict[str, Any] = {"arm": arm, "size": size, "group": group}
                for metric in METRICS:
                    m = matrix(results, arm, size, group, metric)
                    if m.size and not np.all(np.isnan(m)):
                        row[metric] = crossed_bootstrap(m)
                rows.append(row)
    return rows


def _verdict(effect: dict, direction: int) -> str:
    if direction * effect["ci_low"] > 0 and direction * effect["ci_high"] > 0:
        return "supported"
    if direction * effect["ci_low"] < 0 and direction * effect["ci_high"] < 0:
        return "contradicted"
    return "unresolved"


def _difference(results, a: tuple, b: tuple, group: str, metric: str, preset_a="qa", preset_b="qa") -> dict | None:
    """Paired a - b over the seeds both have; a and b are (arm, size)."""
    seeds = sorted({s for (x, z, s) in results if (x, z) == a} & {s for (x, z, s) in results if (x, z) == b})
    if not seeds:
        return None
    (arm_a, size_a), (arm_b, size_b) = a, b
    return crossed_bootstrap(
        matrix(results, arm_a, size_a, group, metric, preset_a, seeds)
        - matrix(results, arm_b, size_b, group, metric, preset_b, seeds)
    )


def predictions(results: dict) -> list[dict]:
    sizes = [z for z in SIZES if any(k[:2] == ("base", z) for k in results)]
    out = []
    if len(sizes) < 2:
        return out
    small, large = sizes[0], sizes[-1]

    def claim(name, statement, effect, direction):
        if effect is not None:
            out.append(
                {"prediction": name, "claim": statement, "effect": effect, "verdict": _verdict(effect, direction)}
            )

    span = f"{large} - {small}"
    claim("a", f"stacked f<0.5: P(misconception), {span} > 0",
          _difference(results, ("base", large), ("base", small), "stacked f<0.5", "p_mis"), +1)  # fmt: skip
    claim("a", f"stacked f<0.5: total variation to the corpus, {span} < 0",
          _difference(results, ("base", large), ("base", small), "stacked f<0.5", "tv"), -1)  # fmt: skip
    claim("b", f"scattered f<0.5: accuracy, {span} > 0",
          _difference(results, ("base", large), ("base", small), "scattered f<0.5", "acc"), +1)  # fmt: skip
    for arm, group, metric, direction, text in (
        ("verifier", "arithmetic-stacked f<0.5", "acc", +1, "verifier - base: stacked arithmetic accuracy > 0"),
        ("verifier", "stacked f<0.5", "p_mis", 0, "verifier - base: stacked facts P(misconception) ~ 0"),
        ("majority", "stacked f<0.5", "p_mis", +1, "majority - base: stacked facts P(misconception) > 0"),
        ("majority", "arithmetic-stacked f<0.5", "acc", -1, "majority - base: stacked arithmetic accuracy < 0"),
    ):
        pooled = _pooled_arm_difference(results, arm, group, metric)
        if pooled is not None:
            verdict = _verdict(pooled, direction) if direction else _no_effect(pooled)
            out.append(
                {"prediction": "c", "claim": text + " (pooled over sizes)", "effect": pooled, "verdict": verdict}
            )
    probes = [(s, results[("base", large, s)]["probe"]) for (a, z, s) in results if (a, z) == ("base", large)]
    probes = [(s, p) for s, p in probes if p]
    if probes:
        probe = crossed_bootstrap([p["probe"] for _, p in probes])
        claim("d", f"{large}: probe ranks the true value above the misconception on stacked f<0.5 facts < 0.5 "
              "(effect shown as share - 0.5)", _shift(probe, -0.5), -1)  # fmt: skip
        out[-1]["probe"] = probe
        out[-1]["null"] = crossed_bootstrap([p["null"] for _, p in probes])
        out[-1]["probe_minus_null"] = crossed_bootstrap([np.subtract(p["probe"], p["null"]) for _, p in probes])
        out[-1]["output"] = crossed_bootstrap([p["output"] for _, p in probes])
        out[-1]["layers"] = [p["layer"] for _, p in probes]
    claim("d", f"{large}: scholar header (help) - plain (qa), stacked f<0.5 accuracy > 0",
          _difference_presets(results, large, "stacked f<0.5", "acc", "help", "qa"), +1)  # fmt: skip
    return out


def size_effects(results: dict) -> list[dict]:
    """Every size against the smallest (paired by seed and fact) on the measures of (a) and (b): the
    whole curve, beside the pre-registered largest-minus-smallest contrast."""
    sizes = [z for z in SIZES if any(k[:2] == ("base", z) for k in results)]
    rows = []
    for size in sizes[1:]:
        for group, metric in (("stacked f<0.5", "p_mis"), ("stacked f<0.5", "tv"), ("scattered f<0.5", "acc")):
            effect = _difference(results, ("base", size), ("base", sizes[0]), group, metric)
            if effect is not None:
                rows.append({"contrast": f"{size} - {sizes[0]}", "group": group, "metric": metric, "effect": effect})
    return rows


def _no_effect(effect: dict) -> str:
    return "supported" if effect["ci_low"] <= 0 <= effect["ci_high"] else "contradicted"


def _shift(effect: dict, by: float) -> dict:
    return {**effect, **{k: effect[k] + by for k in ("mean", "ci_low", "ci_high")}}


def _difference_presets(results, size, group, metric, preset_a, preset_b) -> dict | None:
    seeds = sorted(s for (a, z, s) in results if (a, z) == ("base", size))
    return crossed_bootstrap(
        matrix(results, "base", size, group, metric, preset_a, seeds)
        - matrix(results, "base", size, group, metric, preset_b, seeds)
    )


def _pooled_arm_difference(results, arm, group, metric) -> dict | None:
    pairs = [(z, s) for (a, z, s) in results if a == arm and ("base", z, s) in results]
    if not pairs:
        return None
    rows = [
        matrix(results, arm, z, group, metric, seeds=[s])[0] - matrix(results, "base", z, group, metric, seeds=[s])[0]
        for z, s in sorted(pairs)
    ]
    return crossed_bootstrap(rows)


def curves(results: dict) -> dict:
    """Per size (base models): non-embedding params and the headline measures, for the figure."""
    out: dict = {}
    for size in SIZES:
        seeds = sorted(s for (a, z, s) in results if (a, z) == ("base", size))
        if not seeds:
            continue
        out[size] = {
            "params": _params(results, size),
            "stacked p_mis": crossed_bootstrap(matrix(results, "base", size, "stacked f<0.5", "p_mis")),
            "stacked tv": crossed_bootstrap(matrix(results, "base", size, "stacked f<0.5", "tv")),
            "scattered acc": crossed_bootstrap(matrix(results, "base", size, "scattered f<0.5", "acc")),
            "clean acc": crossed_bootstrap(matrix(results, "base", size, "clean", "acc")),
        }
    return out


def _params(results, size) -> int | None:
    return next((r.get("non_embedding_params") for (a, z, _), r in results.items() if (a, z) == ("base", size)), None)


LINES = (("stacked p_mis", "C3"), ("stacked tv", "C1"), ("scattered acc", "C0"), ("clean acc", "C2"))


def figure_png(panels: dict[str, dict]) -> bytes:
    """The organism's figure: the headline measures against size with their intervals, one panel per
    (title -> curve), side by side on a shared y axis (e.g. two token budgets of one ladder)."""
    import io

    from matplotlib.figure import Figure

    fig = Figure(figsize=(4 + 3.5 * len(panels), 4), layout="constrained")
    axes = fig.subplots(1, len(panels), sharey=True, squeeze=False)[0]
    for ax, (title, curve) in zip(axes, panels.items(), strict=True):
        x = [curve[s]["params"] for s in curve]
        for key, colour in LINES:
            y = [curve[s][key]["mean"] for s in curve]
            low = [curve[s][key]["ci_low"] for s in curve]
            high = [curve[s][key]["ci_high"] for s in curve]
            label = key.replace("p_mis", "P(misconception)").replace("tv", "TV to the corpus")
            ax.plot(x, y, marker="o", color=colour, label=label)
            ax.fill_between(x, low, high, color=colour, alpha=0.15)
        ax.set_xscale("log")
        ax.set_xlabel("non-embedding parameters")
        ax.set_ylim(0, 1)
        ax.set_title(title, fontsize=10)
    axes[0].set_ylabel("mean over facts and seeds (f < 0.5; clean f = 1)")
    axes[0].legend(fontsize=8)
    fig.suptitle("The organism: fidelity to frequency vs truth, by size")
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=120)
    return buffer.getvalue()


def panel_title(report: dict, fallback: str) -> str:
    tokens = report.get("tokens")
    return f"{tokens / 1e6:g}M training tokens per model" if tokens else fallback


def write_report(
    build_dir, ladder_dir, out, *, probe: bool = True, seeds=None, jobs: int = 1, compare=(), echo=print
) -> dict:
    """Evaluate the ladder, judge the predictions, write `report.json`, `report.md` and `organism.png`
    (with a panel for each earlier report folder in `compare`, before this one's)."""
    results = evaluate_all(build_dir, ladder_dir, probe=probe, seeds=seeds, jobs=jobs, echo=echo)
    tokens = set()
    for key in results:
        facts_file = Path(ladder_dir) / f"{key[1]}-seed{key[2]}" / "organism.json"
        facts = json.loads(facts_file.read_text(encoding="utf-8"))
        results[key]["non_embedding_params"] = facts["non_embedding_params"]
        tokens.add(facts["config"]["tokens"])
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    curve = curves(results)
    report = {"table": table(results), "predictions": predictions(results), "size_effects": size_effects(results),
              "curves": curve, "tokens": tokens.pop() if len(tokens) == 1 else None,
              "models": sorted(f"{a}/{z}/seed{s}" for a, z, s in results)}  # fmt: skip
    write_json_atomic(out / "report.json", report)
    (out / "report.md").write_text(markdown(report), encoding="utf-8")
    if curve:
        panels = {}
        for folder in map(Path, compare):
            earlier = json.loads((folder / "report.json").read_text(encoding="utf-8"))
            panels[panel_title(earlier, folder.name)] = earlier["curves"]
        panels[panel_title(report, out.name)] = curve
        (out / "organism.png").write_bytes(figure_png(panels))
    return report


def markdown(report: dict) -> str:
    lines = ["| arm | size | group | accuracy | P(true) | P(misconception) | TV to corpus |", "|" + "---|" * 7]
    for r in report["table"]:
        cells = " | ".join(ci(r.get(m)) for m in METRICS)
        lines.append(f"| {r['arm']} | {r['size']} | {r['group']} | {cells} |")
    lines += ["", "| prediction | claim | effect [95%] | verdict |", "|---|---|---|---|"]
    for p in report["predictions"]:
        lines.append(f"| ({p['prediction']}) | {p['claim']} | {ci(p['effect'])} | {p['verdict']} |")
        if "probe" in p:
            lines.append(
                f"| | probe share {ci(p['probe'])}; shuffled-label null {ci(p['null'])}; "
                f"probe - null {ci(p['probe_minus_null'])}; "
                f"model's own output {ci(p['output'])}; layers {p['layers']} | | |"
            )
    lines += ["", "| size contrast | group | measure | effect [95%] |", "|---|---|---|---|"]
    for e in report.get("size_effects", []):
        lines.append(f"| {e['contrast']} | {e['group']} | {e['metric']} | {ci(e['effect'])} |")
    return "\n".join(lines) + "\n"
