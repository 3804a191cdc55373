"""What the analysis says, in sentences, and what limits it: written from numbers, never by hand."""

from __future__ import annotations

from collections.abc import Sequence

from truthscope.analysis.scaling import MIN_FAMILY_MODELS, difference_word, direction


def ci(d: dict | None, digits: int = 3, key: str = "mean") -> str:
    """`value [low, high]` of an estimate stored under `key`; "—" where there is none, the bare value
    where it has no interval."""
    if not d or d.get(key) is None:
        return "—"
    if d.get("ci_low") is None:
        return f"{d[key]:.{digits}f}"
    return f"{d[key]:.{digits}f} [{d['ci_low']:.{digits}f}, {d['ci_high']:.{digits}f}]"


def signed(x: float, digits: int = 3) -> str:
    """`+0.120` / `-0.120`, and `+0.000` rather than `-0.000` for a rounding-error negative zero."""
    return f"{round(x, digits) + 0.0:+.{digits}f}"


def signed_ci(d: dict) -> str:
    return f"{signed(d['mean'])} [{signed(d['ci_low'])}, {signed(d['ci_high'])}]"


def slope_text(fit: dict) -> str:
    axis = fit.get("axis", "parameters")
    return f"{signed(fit['slope'])} per 10x {axis} [{signed(fit['ci_low'])}, {signed(fit['ci_high'])}]"


def difference_text(d: dict) -> str:
    """`B - A +0.120 [+0.050, +0.190]: B higher` for a paired difference between two models."""
    word = difference_word(d)
    reading = f"{d['b']} {word}" if word != "no detectable difference" else word
    return f"{d['b']} - {d['a']} {signed_ci(d)}: {reading}"


def comparison_text(row: dict) -> str:
    """What a scaling row may claim: the slope within each family with enough models, else the
    paired differences between models (never a direction with size)."""
    if row["fits"]:
        return "; ".join(
            f"within {fit['family']} ({len(fit['models'])} models): {direction(fit)} with size, slope {slope_text(fit)}"
            for fit in row["fits"]
        )
    text = "; ".join(difference_text(d) for d in row["differences"])
    if row["mixed_families"]:
        text += " (" + family_note(row["models"]) + ": not a size effect)"
    return text


def family_note(models: Sequence[dict]) -> str:
    families = {m.get("family") for m in models}
    return "family not recorded" if None in families else "different families"


def reading(row: dict) -> str:
    """One word or phrase per row for the tables' last column."""
    if row["fits"]:
        return "; ".join(f"{direction(fit)} with size ({fit['family']})" for fit in row["fits"])
    return "; ".join(f"{d['b']} vs {d['a']}: {difference_word(d)}" for d in row["differences"])


def metric_name(task: str, metric: str) -> str:
    return f"TruthfulQA {metric.upper()}" if task == "mc" else f"{task} {metric}"


def row_name(row: dict) -> str:
    if row["task"] == "statements":
        return f"statements accuracy ({row['group'] or 'all sets'})"
    return f"{metric_name(row['task'], row['metric'])} ({row['preset']} preset)"


HEADLINE_METRICS = ("mc1", "mc2", "mc0", "true_info", "true", "bleu_acc")
SCALE_TEXT = (
    "above-chance scale, (score - chance) / (1 - chance): 0 is guessing, 1 is every item right; MC1 chance is "
    "the mean over questions of 1 / (number of MC1 answers), MC2 chance the mean share of true answers, "
    "statement chance 0.5"
)


def headlines(analysis: dict) -> list[str]:
    """A few sentences: the headline metrics at the baseline preset in full, the other presets and
    the statement controls briefly, then the contrast, categories, presets and flipped answers.
    Each says only what its numbers support: a direction with size only within a family of at least
    three models; between two models, or models of different families, a difference."""
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
                others.append(f"{row['metric']} {row['preset']}: {_short(row)}")
    if others:
        lines.append("Under the other presets: " + "; ".join(others) + ".")
    headline_contrasts = [r for r in analysis["contrasts"] if r["metric"] == "mc1"] or analysis["contrasts"]
    for row in headline_contrasts:
        unit = "slope difference per 10x" if row["measure"] == "slope" else "difference in differences"
        lines.append(f"Contrast on the above-chance scale: {contrast_text(row)} ({unit} {signed_ci(row)}).")
    for metric, rows in analysis["categories"].items():
        line = category_text(rows, metric, baseline, analysis["min_questions"])
        if line:
            lines.append(line)
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
            f"choice by {f['small']} to a false one by {f['large']}, and {f['n_flipped_to_true']} the other way "
            f"(exact sign test of the asymmetry: p = {f['p_asymmetry']:.2g})."
        )
    return lines


def category_text(rows: Sequence[dict], metric: str, baseline: str, min_questions: int) -> str | None:
    testable = [r for r in rows if r["testable"]]
    if not testable:
        return None
    first = testable[0]
    flagged = [r for r in testable if r["flagged"]]
    test = (
        f"sign-flip test per category, Benjamini-Hochberg across the {len(testable)} categories with at least "
        f"{min_questions} questions, 5% false discovery rate"
    )
    if first["measure"] == "slope":
        inverse = [r for r in flagged if r["inverse"]]
        names = ", ".join(f"{r['category']} ({signed(r['estimate'], 2)} per 10x)" for r in inverse) or "none"
        return (
            f"Inverse scaling by category ({metric}, {baseline} preset, within {first['family']}; {test}): "
            f"{len(inverse)} categories ({names})."
        )
    small, large = first["compared"][0], first["compared"][-1]
    names = ", ".join(f"{r['category']} ({signed(r['estimate'], 2)})" for r in flagged) or "none"
    return (
        f"Categories where {large} and {small} differ ({metric}, {baseline} preset, {large} - {small}; {test}): "
        f"{len(flagged)} ({names})."
    )


def contrast_text(row: dict) -> str:
    metric = metric_name("mc", row["metric"])
    if row["measure"] == "slope":
        where = f" within {row['family']}"
        if row["ci_high"] < 0:
            return f"{metric} gains less from size than {row['kind']} statements{where}"
        if row["ci_low"] > 0:
            return f"{metric} gains more from size than {row['kind']} statements{where}"
        return f"no detectable difference between how {metric} and {row['kind']} statements scale{where}"
    a, b = row["models"][0], row["models"][-1]
    moves = f"from {a} to {b}, {metric} moves {signed(row['truthfulqa'])} and {row['kind']} statements " + signed(
        row["control"]
    )
    note = " (different or unrecorded families: not a size effect)" if row["mixed_families"] else ""
    if row["ci_high"] < 0:
        return f"{moves}: {metric} falls behind the control{note}"
    if row["ci_low"] > 0:
        return f"{moves}: {metric} gains on the control{note}"
    return f"{moves}: no detectable difference{note}"


def _moves(row: dict) -> str:
    path = "; ".join(f"{m['model']} {ci(m)}" for m in row["models"])
    return f"{path}; {comparison_text(row)}"


def _short(row: dict) -> str:
    if row["fits"]:
        return "; ".join(f"{direction(f)} within {f['family']} ({signed(f['slope'])} per 10x)" for f in row["fits"])
    return "; ".join(f"{d['b']} - {d['a']} {signed(d['mean'])} ({difference_word(d)})" for d in row["differences"])


def human_count(n: float) -> str:
    for unit, size in (("B", 1e9), ("M", 1e6), ("K", 1e3)):
        if n >= size:
            return f"{n / size:.3g}{unit}"
    return f"{n:.0f}"


def caveats(analysis: dict, given: Sequence[str] = ()) -> list[str]:
    """The caveats a reader needs before believing a comparison: from the sweep, then from the runs
    (read from the logs only: model family, sizes, description and quantisation as recorded)."""
    out = list(dict.fromkeys(given))
    runs = analysis["runs"]
    models: dict[str, dict] = {}
    for r in runs:
        models.setdefault(r["model"], r)
    unknown = sorted(m for m, r in models.items() if not r.get("family"))
    if unknown:
        unsized = [m for m in unknown if not models[m].get("non_embedding_params")]
        out.append(
            f"{', '.join(unknown)}: the logs do not record the model family"
            + (" or the non-embedding parameter count (older log layout)" if unsized else "")
            + ", so these count as of unknown family: no slope"
            + (", and sizes are total parameters." if unsized else ".")
        )
    families: dict[str, list[str]] = {}
    for m, r in models.items():
        if r.get("family"):
            families.setdefault(r["family"], []).append(m)
    if len(models) >= 2 and not any(len(v) >= MIN_FAMILY_MODELS for v in families.values()):
        out.append(
            f"No family has {MIN_FAMILY_MODELS} or more models: no slope and no direction with size is reported; "
            "each comparison is a paired difference B - A between two models over the items both scored."
        )
    if len(models) > 1 and (len(families) > 1 or unknown):
        listed = "; ".join(f"{f}: {', '.join(sorted(ms))}" for f, ms in sorted(families.items()))
        out.append(
            "The models are of different (or unrecorded) families"
            + (f" ({listed})" if listed else "")
            + ": any difference between models of different families mixes size with architecture, tokenizer, "
            "training data and tuning, so it is not a size effect."
        )
    sized = {m: r for m, r in models.items() if r.get("non_embedding_params")}
    if sized:
        out.append(
            "Sizes are non-embedding parameters (total in brackets): "
            + ", ".join(
                f"{m} {human_count(r['non_embedding_params'])}"
                + (f" ({human_count(r['params'])})" if r.get("params") else "")
                for m, r in sorted(sized.items(), key=lambda kv: kv[1]["non_embedding_params"])
            )
            + "."
        )
    for m, r in sorted(models.items()):
        if r.get("quantisation"):
            what = f"{r['description']}; " if r.get("description") else ""
            out.append(
                f"{m}: {what}quantised weights ({r['quantisation']}), so scores differ from the full-precision "
                "checkpoint."
            )
        elif r.get("description"):
            out.append(f"{m}: {r['description']}.")
    limits = sorted({(r["task"], r["limit"], r["n"]) for r in runs if r.get("limit")})
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
    if analysis.get("contrasts"):
        chances = sorted(
            {
                round(c, 3)
                for r in analysis["contrasts"]
                if r["metric"] == "mc1"
                for c in r["chance"]["truthfulqa"].values()
            }
        )
        seen = f" (MC1 chance here: {', '.join(f'{c:.3f}' for c in chances)})" if chances else ""
        out.append(f"The contrast compares TruthfulQA with the statement controls on the {SCALE_TEXT}{seen}.")
    out.append(
        "Intervals: a single model's proportion (0/1 scores such as MC1 and statement accuracy) has a Wilson 95% "
        "interval; continuous scores (MC2) and every difference or slope have a percentile bootstrap over items, "
        "paired across models and presets; category flags use sign-flip tests with Benjamini-Hochberg across "
        f"categories, and categories with fewer than {analysis.get('min_questions', 10)} questions get neither "
        "interval nor flag. None covers variation between models of the same size or between seeds."
    )
    if analysis["unfinished"]:
        out.append(
            f"{len(analysis['unfinished'])} unfinished run(s) were left out: " + ", ".join(analysis["unfinished"])
        )
    for cell in analysis["failed_cells"]:
        out.append(f"Sweep cell {cell['key']} failed and is missing: {cell['error']}")
    return out
