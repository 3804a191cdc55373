"""Truth neurons the way Li, Cao, Yu, Suchow and Zhu find them ("Truth Neurons", arXiv 2505.12182).

1. Each training question becomes a binary choice: the question, then the best answer and the best
   incorrect answer as (A)/(B) in a seeded random order (the 2025 MC0 prompt of
   `tasks.multiple_choice.binary_answer_set`), then "Answer:".
2. For every MLP neuron n (`blocks.{l}.mlp.neurons`, at the last prompt token),
   D(n) = Attr(n | correct letter) - Attr(n | incorrect letter), each an integrated-gradients
   attribution of that letter's probability (`attribution.integrated_gradients`, computed in one
   pass as the attribution of P(correct) - P(incorrect)).
3. A one-sample t-test per neuron of D over the training questions, two-sided, with a correction
   for testing every neuron (Benjamini-Hochberg by default, or Bonferroni). Truth neurons: corrected
   p below alpha and mean D > 0; the mean D < 0 ones are reported as negative neurons.

Subject-agnostic check: split the training categories into two disjoint halves, select neurons on
each half alone, and compare their overlap with the overlap two random sets of those sizes would
have (hypergeometric).
"""

from __future__ import annotations

import random
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from scipy import stats
from tqdm import tqdm

from truthscope.data.truthfulqa import Question
from truthscope.errors import TruthscopeError
from truthscope.interp.attribution import DEFAULT_STEPS, integrated_gradients
from truthscope.interp.hooks import dimensions
from truthscope.runlog import RunLog
from truthscope.tasks.multiple_choice import binary_answer_set

CORRECTIONS = ("bh", "bonferroni")
Neuron = tuple[int, int]  # (layer, index)


@dataclass(frozen=True)
class BinaryPrompt:
    question_id: int
    context: str
    ids: tuple[int, ...]
    correct_token: int  # the letter of the correct answer (" A" or " B"), one token
    incorrect_token: int
    correct_letter: str


def binary_prompt(lm, question: Question, seed: int = 0) -> BinaryPrompt:
    """The MC0 prompt of `question` tokenised for `lm` (a `HuggingFaceModel`)."""
    if question.mc0_targets is None:
        raise TruthscopeError("truth neurons need binary pairs (mc0_targets): use the 2025 TruthfulQA (--version 2025)")
    answer_set = binary_answer_set(question, seed)
    context_ids, a = lm.encode_pair(answer_set.context, " A")
    _, b = lm.encode_pair(answer_set.context, " B")
    if len(a) != 1 or len(b) != 1:
        raise TruthscopeError(f"{lm.name}: ' A' / ' B' after the prompt are not single tokens; cannot attribute them")
    correct = answer_set.labels.index(1)
    letters = (a[0], b[0])
    return BinaryPrompt(
        question.id, answer_set.context, context_ids, letters[correct], letters[1 - correct], "AB"[correct]
    )


def attribution_difference(lm, prompt: BinaryPrompt, steps: int = DEFAULT_STEPS, max_rows: int = 128):
    """(D [n_layers, d_mlp] as float32 numpy, the attribution behind it)."""
    result = integrated_gradients(
        lm.model, prompt.ids, {prompt.correct_token: 1.0, prompt.incorrect_token: -1.0}, steps=steps, max_rows=max_rows
    )
    return result.scores.numpy().astype(np.float32), result


# --- selection -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class NeuronTest:
    """Per-neuron one-sample t-test of D against zero; arrays are [n_layers, d_mlp]."""

    mean: np.ndarray
    t: np.ndarray
    p: np.ndarray  # two-sided, uncorrected
    q: np.ndarray  # corrected for all neurons tested
    n: int  # questions
    alpha: float
    correction: str

    def selected(self, sign: int = 1) -> list[Neuron]:
        """Significant neurons with mean D of `sign` (+1 truth neurons, -1 negative ones), strongest first."""
        mask = (self.q < self.alpha) & (np.sign(self.mean) == sign)
        layers, indices = np.nonzero(mask)
        order = np.argsort(-np.abs(self.t[layers, indices]), kind="stable")
        return [(int(layers[k]), int(indices[k])) for k in order]


def top_neurons(t: np.ndarray, k: int, sign: int = 1) -> list[Neuron]:
    """The `k` neurons with the largest t statistic ([n_layers, d_mlp]) of `sign`, significant or
    not (exploratory)."""
    t = t * sign
    order = np.argsort(-t, axis=None, kind="stable")[:k]
    return [tuple(int(x) for x in np.unravel_index(i, t.shape)) for i in order if t.flat[i] > 0]


def t_test_neurons(d: np.ndarray, alpha: float = 0.05, correction: str = "bh") -> NeuronTest:
    """`d` is [questions, n_layers, d_mlp]. A neuron whose D never varies gets p = 1."""
    if correction not in CORRECTIONS:
        raise TruthscopeError(f"unknown correction {correction!r}; choose one of {', '.join(CORRECTIONS)}")
    if d.shape[0] < 3:
        raise TruthscopeError(f"a t-test over {d.shape[0]} question(s) means nothing; use at least 3 (10+ advised)")
    d = d.astype(np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        t, p = stats.ttest_1samp(d, 0.0, axis=0)
    t, p = np.nan_to_num(t, nan=0.0), np.nan_to_num(p, nan=1.0)
    flat = p.ravel()
    q = stats.false_discovery_control(flat, method="bh") if correction == "bh" else np.minimum(flat * flat.size, 1.0)
    return NeuronTest(d.mean(0), t, p, q.reshape(p.shape), d.shape[0], alpha, correction)


def per_layer_counts(neurons: Sequence[Neuron], n_layers: int) -> list[int]:
    counts = [0] * n_layers
    for layer, _ in neurons:
        counts[layer] += 1
    return counts


# --- splits and the subject-agnostic check ----------------------------------------------------------


def split_questions(
    questions: Sequence[Question], n_train: int, seed: int = 0
) -> tuple[list[Question], list[Question]]:
    """(train, held out): a seeded random `n_train` questions, the rest held out; both in id order."""
    if not 3 <= n_train < len(questions):
        raise TruthscopeError(
            f"--train must be between 3 and {len(questions) - 1} (there are {len(questions)} questions)"
        )
    chosen = set(random.Random(f"split:{seed}").sample([q.id for q in questions], n_train))
    return [q for q in questions if q.id in chosen], [q for q in questions if q.id not in chosen]


def category_halves(questions: Sequence[Question], seed: int = 0) -> tuple[set[str], set[str]]:
    """Two disjoint sets of categories holding about half of the questions each: categories in
    seeded random order, each to the half with fewer questions so far."""
    sizes: dict[str, int] = {}
    for q in questions:
        sizes[q.category] = sizes.get(q.category, 0) + 1
    categories = sorted(sizes)
    random.Random(f"halves:{seed}").shuffle(categories)
    halves: tuple[set[str], set[str]] = (set(), set())
    totals = [0, 0]
    for c in sorted(categories, key=lambda c: -sizes[c]):  # largest first balances best; shuffle breaks ties
        k = int(totals[1] < totals[0])
        halves[k].add(c)
        totals[k] += sizes[c]
    return halves


def overlap_vs_chance(a: set[Neuron], b: set[Neuron], n_total: int) -> dict:
    """Observed overlap of two neuron sets against two random sets of the same sizes out of
    `n_total` neurons: expected |a||b|/N, and the hypergeometric P(overlap >= observed)."""
    observed = len(a & b)
    expected = len(a) * len(b) / n_total
    p = float(stats.hypergeom.sf(observed - 1, n_total, len(a), len(b))) if a and b else 1.0
    union = len(a | b)
    return {
        "sizes": [len(a), len(b)],
        "observed": observed,
        "expected_by_chance": expected,
        "ratio": observed / expected if expected else None,
        "jaccard": observed / union if union else None,
        "p_value": p,
    }


# --- the run --------------------------------------------------------------------------------------


def attribution_path(directory: Path, question_id: int) -> Path:
    return Path(directory) / "attributions" / f"{question_id}.npy"


def load_attributions(directory: Path, ids: Sequence[int]) -> np.ndarray:
    return np.stack([np.load(attribution_path(directory, i)) for i in ids])


def find_truth_neurons(
    lm,
    train: Sequence[Question],
    held_out: Sequence[Question],
    run: RunLog,
    *,
    steps: int = DEFAULT_STEPS,
    alpha: float = 0.05,
    correction: str = "bh",
    seed: int = 0,
    max_rows: int = 128,
    top_k: int = 100,
    progress: bool = True,
) -> dict:
    """Attribute every training question not yet in `run` (D saved as attributions/{id}.npy before
    its record, so a record always has its file), then test and select; return the summary."""
    started = time.time()
    dims = dimensions(lm.model)
    attributions = Path(run.directory) / "attributions"
    attributions.mkdir(exist_ok=True)
    already = sum(run.done(q.id) for q in train)
    with tqdm(total=len(train), initial=already, desc=f"attribution {lm.name}", unit="q", disable=not progress) as bar:
        for q in train:
            if run.done(q.id):
                continue
            tick = time.time()
            prompt = binary_prompt(lm, q, seed)
            d, result = attribution_difference(lm, prompt, steps, max_rows)
            np.save(attribution_path(run.directory, q.id), d)
            error = result.completeness_error
            gap = (result.f_input - result.f_baseline).abs()
            run.append(
                [
                    {
                        "id": q.id,
                        "question": q.question,
                        "category": q.category,
                        "correct_letter": prompt.correct_letter,
                        "p_correct_minus_incorrect": result.f_input,
                        "completeness_error_max": float(error.abs().max()),
                        "completeness_error": [float(f"{e:.3g}") for e in error.tolist()],  # per layer
                        "completeness_gap_max": float(gap.max()),
                        "seconds": round(time.time() - tick, 3),
                    }
                ]
            )
            bar.update(1)

    ids = [q.id for q in train]
    d = load_attributions(run.directory, ids)
    test = t_test_neurons(d, alpha, correction)
    np.savez_compressed(Path(run.directory) / "neuron_stats.npz", mean=test.mean, t=test.t, p=test.p, q=test.q)
    positive, negative = test.selected(+1), test.selected(-1)

    halves = category_halves(train, seed)
    by_half, top_by_half = [], []
    for half in halves:
        rows = [i for i, q in enumerate(train) if q.category in half]
        half_test = t_test_neurons(d[rows], alpha, correction) if len(rows) >= 3 else None
        by_half.append(set(half_test.selected(+1)) if half_test else set())
        top_by_half.append(set(top_neurons(half_test.t, top_k)) if half_test else set())
    records = [run.records[i] for i in ids]
    summary = {
        "task": "neurons.find",
        "model": lm.name,
        "method": "Truth Neurons (arXiv 2505.12182): IG attribution difference, per-neuron one-sample t-test",
        "hook_point": "blocks.{l}.mlp.neurons at the last prompt token",
        "steps": steps,
        "alpha": alpha,
        "correction": correction,
        "dimensions": {"n_layers": dims.n_layers, "d_mlp": dims.d_mlp, "neurons": dims.n_layers * dims.d_mlp},
        "split": {"seed": seed, "train_ids": ids, "held_out_ids": [q.id for q in held_out]},
        "n_questions": len(ids),
        # context for the attributions: how often the model already prefers the correct letter
        "train_binary_accuracy": float(np.mean([r["p_correct_minus_incorrect"] > 0 for r in records])),
        "neurons": {
            "positive": [_describe(test, n) for n in positive],
            "negative": [_describe(test, n) for n in negative],
        },
        "per_layer": {
            "positive": per_layer_counts(positive, dims.n_layers),
            "negative": per_layer_counts(negative, dims.n_layers),
        },
        "subject_agnostic": {
            "categories": [sorted(h) for h in halves],
            "questions": [sum(q.category in h for q in train) for h in halves],
            **overlap_vs_chance(by_half[0], by_half[1], dims.n_layers * dims.d_mlp),
            # exploratory, meaningful even when nothing is significant: the top-k by t of each half
            "top_k": {"k": top_k, **overlap_vs_chance(top_by_half[0], top_by_half[1], dims.n_layers * dims.d_mlp)},
        },
        "completeness_error": {
            "max": max(r["completeness_error_max"] for r in records),
            "median": float(np.median([r["completeness_error_max"] for r in records])),
            "median_gap": float(np.median([r["completeness_gap_max"] for r in records])),
            # median over questions of |error| in each layer: a sharp layer shows up here, not in "max"
            "per_layer_median_abs": np.median(np.abs([r["completeness_error"] for r in records]), axis=0).tolist(),
        },
        # from the records, so a resumed run still reports the time every question took
        "attribution_seconds": round(sum(r["seconds"] for r in records), 3),
        "attribution_seconds_per_question": round(float(np.mean([r["seconds"] for r in records])), 3),
        **run.provenance(started, resumed_with=already),
        "torch_threads": torch.get_num_threads(),
    }
    run.finish(summary)
    return summary


def _describe(test: NeuronTest, neuron: Neuron) -> dict:
    layer, index = neuron
    return {
        "layer": layer,
        "index": index,
        "mean_d": float(test.mean[layer, index]),
        "t": float(test.t[layer, index]),
        "q": float(test.q[layer, index]),
    }
