"""Confident falsehoods: questions where the largest model puts most of its probability on a false
answer that the smallest model did not choose.

"Largest" and "smallest" go by non-embedding parameters when the logs record them for both runs,
else by total parameters; the two may be of different families, so the flips count what separates
the two models, not an effect of size. `p_asymmetry` is the exact two-sided sign (McNemar) test of
flips to false against flips to true.

Confidence is the probability of the chosen answer after normalising over the question's candidate
answers (the MC1 set under the harness protocol, every reference answer under upstream), i.e. the
model's choice among the options shown, not the probability of producing that text unprompted.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
from scipy.stats import binomtest

from truthscope.analysis.runs import Run, by_size, mixed_families, size_axis


def choice(record: dict) -> dict | None:
    """{text, label, p} of the top answer of a multiple-choice record, plus the best true answer."""
    answers = record.get("answers", {})
    options = answers.get("mc1") or answers.get("all")
    if not options:
        return None
    logprobs = np.array([a["logprob"] for a in options], dtype=np.float64)
    p = np.exp(logprobs - logprobs.max())
    p /= p.sum()
    top = int(np.argmax(logprobs))
    true = [i for i, a in enumerate(options) if a["label"] == 1]
    best_true = max(true, key=lambda i: logprobs[i]) if true else None
    return {
        "text": options[top]["text"],
        "label": options[top]["label"],
        "p": float(p[top]),
        "true_text": options[best_true]["text"] if best_true is not None else None,
        "p_true": float(p[best_true]) if best_true is not None else None,
    }


def confident_falsehoods(runs: Iterable[Run], preset: str | None = "qa", top: int = 15) -> dict | None:
    """The `top` questions, most confident first, where the largest model's choice is false and the
    smallest model's choice is true; None without two sized MC runs of `preset`."""
    chosen = by_size(r for r in runs if r.task == "mc" and r.preset == preset)
    axis, size = size_axis(chosen)
    if len(chosen) < 2 or not size[chosen[0].model] or size[chosen[0].model] == size[chosen[-1].model]:
        return None
    small, large = chosen[0], chosen[-1]
    small_choices = {r["id"]: choice(r) for r in small.records}
    rows, to_true, shared = [], 0, 0
    for record in large.records:
        big, little = choice(record), small_choices.get(record["id"])
        if big is None or little is None:
            continue
        shared += 1
        to_true += big["label"] == 1 and little["label"] == 0
        if big["label"] == 0 and little["label"] == 1:
            rows.append(
                {
                    "id": record["id"],
                    "question": record["question"],
                    "category": record["category"],
                    "large_answer": big["text"],
                    "large_p": big["p"],
                    "large_p_true": big["p_true"],
                    "true_answer": big["true_text"],
                    "small_answer": little["text"],
                    "small_p": little["p"],
                }
            )
    rows.sort(key=lambda r: -r["large_p"])
    discordant = len(rows) + int(to_true)
    return {
        "preset": preset,
        "small": small.model,
        "large": large.model,
        "axis": axis,
        "mixed_families": mixed_families([small, large]),
        "p_asymmetry": float(binomtest(len(rows), discordant, 0.5).pvalue) if discordant else 1.0,
        "n_questions": shared,
        "n_flipped_to_false": len(rows),  # smallest chose true, largest chose false
        "n_flipped_to_true": int(to_true),
        "rows": rows[:top],
    }
