"""Truth neurons the way Li, Cao, Yu, Suchow and Zhu find them ("Truth Neurons", arXiv 2505.12182),
with the letter bias of the binary prompt removed and the statistics a null result needs.

1. Each training question becomes a binary choice: the question, then the best answer and the best
   incorrect answer as (A)/(B), then the answer cue (`tasks.multiple_choice.binary_answer_sets` under
   a preset, `null` by default: "Q: ...\\n\\nA:"). It is asked in BOTH orders (`mc0`, `mc0_swapped`).
2. For every MLP neuron n (`blocks.{l}.mlp.neurons`, at the last prompt token) and each order,
   D_o(n) = Attr(n | correct letter) - Attr(n | incorrect letter), an integrated-gradients
   attribution of P(correct) - P(incorrect) (`attribution.integrated_gradients`, one pass). A neuron
   that only pushes the letter "A" gets +lambda when A is correct and -lambda when B is; one order
   per question (the paper's random order) leaves that +-lambda in every D. The question's D is the
   mean of the two orders, in which the letter term cancels and what favours the correct ANSWER,
   whichever letter it has, remains. (It costs two attributions per question.)
3. A one-sample t-test per neuron of D over the training questions, two-sided, with a correction
   for testing every neuron (Benjamini-Hochberg by default, or Bonferroni). Truth neurons: corrected
   p below alpha and mean D > 0; the mean D < 0 ones are reported as negative neurons.

What every run also reports (`power_report`), so that "nothing found" can be read:

    minimum detectable effect   Cohen's d (mean D / sd D) a single neuron needs for 80% power at the
                                per-neuron p threshold the correction applied (Bonferroni alpha/N; BH:
                                the largest p it rejected, or alpha/N when it rejected none), for
                                this run's n and for other n
    max-T permutation test      Westfall & Young single-step max-T over sign flips of whole questions
                                (every neuron of a question flipped together, so their correlation is
                                kept): the family-wise p of the largest |t|, and per-neuron adjusted p
    p-values                    their histogram and Storey's pi0 (share of true nulls, lambda = 0.5)

Subject-agnostic check: split the training categories into two disjoint halves, select neurons on
each half alone, and compare their overlap with a null built by sign-flipping D within each half
(flipping whole questions keeps the correlation between neurons, which a hypergeometric null of
independent neurons ignores); both the significant sets and the exploratory top-k by t.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from scipy import optimize, stats

from truthscope.data.truthfulqa import Question
from truthscope.errors import TruthscopeError
from truthscope.interp.attribution import DEFAULT_STEPS, integrated_gradients
from truthscope.interp.hooks import dimensions
from truthscope.runlog import RunLog, Sample
from truthscope.sampling import draw
from truthscope.tasks.base import Task, TaskOptions, evaluate
from truthscope.tasks.multiple_choice import binary_answer_sets

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


def binary_prompts(lm, question: Question, preset: str, presets: dict[str, str]) -> tuple[BinaryPrompt, ...]:
    """The MC0 letter prompt of `question` in both orders (`mc0`, `mc0_swapped`), tokenised for `lm`."""
    if question.mc0_targets is None:
        raise TruthscopeError("truth neurons need the binary pairs (mc0_targets): use --data-version 2025")
    prompts = []
    for answer_set in binary_answer_sets(question, preset, presets)[:2]:
        context_ids, a = lm.encode_pair(answer_set.context, " A")
        _, b = lm.encode_pair(answer_set.context, " B")
        if len(a) != 1 or len(b) != 1:
            raise TruthscopeError(f"{lm.name}: ' A' / ' B' after the prompt are not single tokens; cannot attribute")
        correct, letters = answer_set.labels.index(1), (a[0], b[0])
        prompts.append(
            BinaryPrompt(
                question.id, answer_set.context, context_ids, letters[correct], letters[1 - correct], "AB"[correct]
            )
        )
    return tuple(prompts)


def attribution_difference(lm, prompt: BinaryPrompt, steps: int = DEFAULT_STEPS, max_rows: int = 128):
    """(D of one order [n_layers, d_mlp] as float32 numpy, the attribution behind it)."""
    result = integrated_gradients(
        lm.model, prompt.ids, {prompt.correct_token: 1.0, prompt.incorrect_token: -1.0}, steps=steps, max_rows=max_rows
    )
    return result.scores.numpy().astype(np.float32), result


def order_averaged(d_by_order: Sequence[np.ndarray]) -> np.ndarray:
    """A question's D: the mean over the letter orders (the letter-position term cancels)."""
    return np.mean(np.stack(d_by_order), axis=0).astype(np.float32)


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
    cells = [np.unravel_index(i, t.shape) for i in order if t.flat[i] > 0]
    return [(int(layer), int(index)) for layer, index in cells]


def t_statistics(d: np.ndarray) -> np.ndarray:
    """One-sample t of each column of `d` [n, ...] against 0 (0 where D never varies)."""
    d = np.asarray(d, dtype=np.float64)
    n = d.shape[0]
    mean = d.mean(0)
    sd = d.std(0, ddof=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        t = mean / (sd / np.sqrt(n))
    return np.where(sd > 1e-12 * (np.abs(mean) + 1e-30), t, 0.0)


def correct_p(p: np.ndarray, correction: str) -> np.ndarray:
    flat = p.ravel()
    q = stats.false_discovery_control(flat, method="bh") if correction == "bh" else np.minimum(flat * flat.size, 1.0)
    return q.reshape(p.shape)


def t_test_neurons(d: np.ndarray, alpha: float = 0.05, correction: str = "bh") -> NeuronTest:
    """`d` is [questions, n_layers, d_mlp]. A neuron whose D never varies gets p = 1."""
    if correction not in CORRECTIONS:
        raise TruthscopeError(f"unknown correction {correction!r}; choose one of {', '.join(CORRECTIONS)}")
    if d.shape[0] < 3:
        raise TruthscopeError(f"a t-test over {d.shape[0]} question(s) means nothing; use at least 3 (10+ advised)")
    d = d.astype(np.float64)
    t = t_statistics(d)
    p = np.where(t == 0, 1.0, 2 * stats.t.sf(np.abs(t), d.shape[0] - 1))
    return NeuronTest(d.mean(0), t, p, correct_p(p, correction), d.shape[0], alpha, correction)


def per_layer_counts(neurons: Sequence[Neuron], n_layers: int) -> list[int]:
    counts = [0] * n_layers
    for layer, _ in neurons:
        counts[layer] += 1
    return counts


# --- power: what a run of this size could have found ---------------------------------------------


def applied_threshold(p: np.ndarray, alpha: float, correction: str) -> float:
    """The per-neuron (uncorrected, two-sided) p threshold the correction applied: alpha/N for
    Bonferroni; for BH the largest p it rejected, or alpha/N (its threshold for a first discovery)."""
    flat = np.sort(np.asarray(p, dtype=np.float64).ravel())
    m = flat.size
    if correction == "bh":
        passed = np.nonzero(flat <= alpha * np.arange(1, m + 1) / m)[0]
        if passed.size:
            return float(flat[passed[-1]])
    return alpha / m


def power_of(d_effect: float, n: int, threshold: float) -> float:
    """Power of a two-sided one-sample t-test at level `threshold` with n observations, effect d
    (noncentral t; where scipy's noncentral t gives up, far in the tail, its normal limit)."""
    df, nc = n - 1, d_effect * np.sqrt(n)
    crit = stats.t.isf(threshold / 2, df)
    upper, lower = stats.nct.sf(crit, df, nc), stats.nct.cdf(-crit, df, nc)
    if not np.isfinite(upper):
        upper = stats.norm.sf(crit - nc)
    return float(upper + (lower if np.isfinite(lower) else 0.0))


def minimum_detectable_effect(n: int, threshold: float, power: float = 0.8) -> float:
    """Cohen's d (mean / sd of D) a neuron needs to be found with `power` at per-neuron level `threshold`."""
    if n < 3:
        return float("inf")
    if power_of(0.0, n, threshold) >= power:  # a threshold that lax rejects even without an effect
        return 0.0
    high = 0.05
    while power_of(high, n, threshold) < power and high < 1e3:
        high *= 2
    root = optimize.brentq(lambda x: power_of(x, n, threshold) - power, 0.0, high, xtol=1e-6)
    return float(root)  # pyright: ignore[reportArgumentType]  (a float unless full_output=True)


def storey_pi0(p: np.ndarray, lam: float = 0.5) -> float:
    """Storey's estimate of the share of true null hypotheses: #{p > lambda} / ((1 - lambda) m), at most 1."""
    p = np.asarray(p).ravel()
    return float(min(1.0, np.mean(p > lam) / (1 - lam)))


def p_histogram(p: np.ndarray, bins: int = 20) -> dict:
    counts, edges = np.histogram(np.asarray(p).ravel(), bins=bins, range=(0.0, 1.0))
    return {"edges": [round(float(e), 4) for e in edges], "counts": counts.tolist()}


def _signs(rng: np.random.Generator, b: int, n: int) -> np.ndarray:
    return rng.choice(np.array([-1.0, 1.0]), size=(b, n))


def _flipped_t(d: np.ndarray, signs: np.ndarray) -> np.ndarray:
    """t of every column of `d` [n, N] under each row of sign flips `signs` [B, n]: [B, N]. Flipping
    signs keeps sum(d^2), so only the mean changes."""
    n = d.shape[0]
    ss = (d * d).sum(0)
    mean = signs @ d / n
    var = np.maximum(ss - n * mean * mean, 0.0) / (n - 1)
    with np.errstate(invalid="ignore", divide="ignore"):
        t = mean / np.sqrt(var / n)
    return np.where(var > 1e-12 * ss / n, t, 0.0)


def max_t_permutation(
    d: np.ndarray, n_permutations: int = 1000, seed: int = 0, chunk_elements: int = 20_000_000
) -> dict:
    """Westfall-Young single-step max-T over sign flips of whole questions (rows of `d` [n, ...]).

    Under the null that each question's D is symmetric about 0, every sign pattern is equally
    likely; the observed pattern counts as one permutation, so p >= 1 / (1 + B). Returns the
    family-wise p of the largest |t|, the adjusted p of every neuron and the null's max |t|."""
    shape = d.shape[1:]
    flat = np.asarray(d, dtype=np.float64).reshape(d.shape[0], -1)
    observed = np.abs(_flipped_t(flat, np.ones((1, flat.shape[0]))))[0]
    rng = np.random.default_rng(seed)
    per_chunk = max(1, chunk_elements // max(flat.shape[1], 1))
    maxima = []
    for start in range(0, n_permutations, per_chunk):
        b = min(per_chunk, n_permutations - start)
        maxima.append(np.abs(_flipped_t(flat, _signs(rng, b, flat.shape[0]))).max(1))
    null = np.sort(np.concatenate(maxima)) if maxima else np.zeros(0)
    exceed = null.size - np.searchsorted(null, observed - 1e-12, side="left")
    adjusted = (1 + exceed) / (1 + n_permutations)
    return {
        "n_permutations": n_permutations,
        "seed": seed,
        "max_abs_t": float(observed.max()) if observed.size else 0.0,
        "family_wise_p": float(adjusted.min()) if adjusted.size else 1.0,
        "null_max_abs_t_95": float(np.quantile(null, 0.95)) if null.size else None,
        "adjusted_p": adjusted.reshape(shape),
    }


def power_report(
    test: NeuronTest, d: np.ndarray, n_permutations: int = 1000, seed: int = 0, other_n: Sequence[int] = (50, 100, 400)
) -> tuple[dict, np.ndarray]:
    """The summary's `power` section (see the module docstring) and the max-T adjusted p-values."""
    threshold = applied_threshold(test.p, test.alpha, test.correction)
    permutation = max_t_permutation(d, n_permutations, seed)
    adjusted = permutation.pop("adjusted_p")
    return {
        "per_neuron_p_threshold": threshold,
        "minimum_detectable_d": minimum_detectable_effect(test.n, threshold),
        "minimum_detectable_d_at_n": {
            str(n): minimum_detectable_effect(n, test.alpha / test.p.size) for n in sorted({*other_n, test.n})
        },
        "power": 0.8,
        "max_t": {**permutation, "significant_neurons": int((adjusted < test.alpha).sum())},
        "p_histogram": p_histogram(test.p),
        "pi0": storey_pi0(test.p),
    }, adjusted


# --- splits and the subject-agnostic check ----------------------------------------------------------


def split_questions(
    questions: Sequence[Question], n_train: int, seed: int = 0
) -> tuple[list[Question], list[Question]]:
    """(train, held out): a seeded sample of `n_train` questions (`sampling.draw`, purpose
    "neurons.train"), the rest held out; both in file order."""
    if not 3 <= n_train < len(questions):
        raise TruthscopeError(
            f"--train must be between 3 and {len(questions) - 1} (there are {len(questions)} questions)"
        )
    train = draw(questions, Sample(how="seeded", n=n_train, seed=seed), purpose="neurons.train")
    chosen = {q.id for q in train}
    return train, [q for q in questions if q.id not in chosen]


def category_halves(questions: Sequence[Question], seed: int = 0) -> tuple[set[str], set[str]]:
    """Two disjoint sets of categories holding about half of the questions each: categories in
    seeded random order, each to the half with fewer questions so far."""
    import random

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


def _half_sets(d: np.ndarray, alpha: float, correction: str, top_k: int) -> tuple[set[int], set[int]]:
    """(significant positive, top-k positive by t) of one half, as flat neuron indices."""
    if d.shape[0] < 3:
        return set(), set()
    t = t_statistics(d)
    p = np.where(t == 0, 1.0, 2 * stats.t.sf(np.abs(t), d.shape[0] - 1))
    significant = set(np.flatnonzero((correct_p(p, correction) < alpha) & (t > 0)).tolist())
    k = min(top_k, t.size)
    top = np.argpartition(-t, k - 1)[:k] if k else np.zeros(0, dtype=int)
    return significant, {int(i) for i in top if t[i] > 0}


def halves_overlap(
    d: np.ndarray,
    halves_rows: tuple[Sequence[int], Sequence[int]],
    *,
    alpha: float = 0.05,
    correction: str = "bh",
    top_k: int = 100,
    n_permutations: int = 200,
    seed: int = 0,
) -> dict:
    """Overlap of the neurons selected on each half of the questions (rows of `d` [n, ...]), the
    significant sets and the top-k by t, against the overlaps of the same selections after flipping
    the sign of each question's D at random within each half: p = (1 + #null >= observed) / (1 + B)."""
    flat = np.asarray(d, dtype=np.float64).reshape(d.shape[0], -1)
    parts = [flat[list(rows)] for rows in halves_rows]

    def overlaps(a, b):
        (sa, ta), (sb, tb) = _half_sets(a, alpha, correction, top_k), _half_sets(b, alpha, correction, top_k)
        return (sa, sb, len(sa & sb)), (ta, tb, len(ta & tb))

    (sa, sb, sig), (ta, tb, top) = overlaps(*parts)
    rng = np.random.default_rng(seed)
    null_sig, null_top = [], []
    for _ in range(n_permutations):
        flipped = [p * _signs(rng, 1, p.shape[0])[0][:, None] for p in parts]
        (_, _, s), (_, _, k) = overlaps(*flipped)
        null_sig.append(s)
        null_top.append(k)

    def describe(a, b, observed, null):
        null = np.asarray(null, dtype=float)
        union = len(a | b)
        return {
            "sizes": [len(a), len(b)],
            "observed": observed,
            "null_mean": float(null.mean()) if null.size else None,
            "null_95": float(np.quantile(null, 0.95)) if null.size else None,
            "jaccard": observed / union if union else None,
            "p_value": float((1 + np.sum(null >= observed)) / (1 + null.size)) if a and b else 1.0,
        }

    return {
        "null": f"sign flips of whole questions within each half, {n_permutations} permutations, seed {seed}",
        **describe(sa, sb, sig, null_sig),
        "top_k": {"k": top_k, **describe(ta, tb, top, null_top)},
    }


# --- the run --------------------------------------------------------------------------------------


def attribution_path(directory: Path, question_id: int) -> Path:
    return Path(directory) / "attributions" / f"{question_id}.npy"


def activation_path(directory: Path, question_id: int) -> Path:
    return Path(directory) / "activations" / f"{question_id}.npy"


def load_attributions(directory: Path, ids: Sequence[int]) -> np.ndarray:
    return np.stack([np.load(attribution_path(directory, i)) for i in ids])


def attribute_question(lm, question: Question, preset: str, presets: dict, steps: int, max_rows: int) -> dict:
    """Both orders of one question: D (order-averaged), D per order, mean |activation|, the record."""
    prompts = binary_prompts(lm, question, preset, presets)
    by_order, results = zip(*(attribution_difference(lm, p, steps, max_rows) for p in prompts), strict=True)
    activation = np.mean([r.activations.abs().numpy() for r in results], axis=0).astype(np.float32)
    errors = np.stack([r.completeness_error.numpy() for r in results])
    gaps = np.stack([(r.f_input - r.f_baseline).abs().numpy() for r in results])
    margins = [float(r.f_input) for r in results]
    record = {
        "id": question.id,
        "question": question.question,
        "category": question.category,
        "correct_letters": [p.correct_letter for p in prompts],
        "p_correct_minus_incorrect": margins,  # per order
        "completeness_error_max": float(np.abs(errors).max()),
        "completeness_error": [float(f"{e:.3g}") for e in np.abs(errors).max(0).tolist()],  # per layer
        "completeness_gap_max": float(gaps.max()),
        "scores": {
            "binary_acc": float(np.mean([m > 0 for m in margins])),  # the share of orders the model gets right
            "margin": float(np.mean(margins)),
        },
    }
    return {"d": order_averaged(by_order), "by_order": by_order, "activation": activation, "record": record}


class AttributionOptions(TaskOptions):
    preset: str = "null"
    steps: int = DEFAULT_STEPS
    alpha: float = 0.05
    correction: str = "bh"
    max_rows: int = 128
    top_k: int = 100
    permutations: int = 1000
    halves_permutations: int = 200


class TruthNeuronAttribution(Task):
    """`neurons find` as a task of the shared runner: one item per training question, scored by
    attributing both letter orders (D and activations saved beside the run log before its record,
    so a record always has its files; `evaluate` resumes and reports progress); the summary is the
    per-neuron test, the selection and the power report over all of them."""

    name = "neurons.find"
    Options = AttributionOptions
    options: AttributionOptions
    group_size = 1  # each question is minutes of work: write each as soon as it is done

    def __init__(self, lm, train, held_out, directory, presets, options: AttributionOptions, **kwargs):
        super().__init__(options, **kwargs)
        self.lm, self.train, self.held_out = lm, list(train), list(held_out)
        self.directory, self.presets = Path(directory), presets
        for folder in ("attributions", "activations"):
            (self.directory / folder).mkdir(parents=True, exist_ok=True)

    @classmethod
    def build(cls, options, resources, sample, seed=0):
        raise TruthscopeError("the attribution task needs a loaded model: use `run_find`")

    def items(self):
        return self.train

    def score(self, items, results):
        out = []
        for q in items:
            tick = time.time()
            o = self.options
            result = attribute_question(self.lm, q, o.preset, self.presets, o.steps, o.max_rows)
            np.save(attribution_path(self.directory, q.id), result["d"])
            np.save(activation_path(self.directory, q.id), result["activation"])
            out.append({**result["record"], "seconds": round(time.time() - tick, 3)})
        return out

    def summarise(self, records):
        o, seed = self.options, self.seed
        dims = dimensions(self.lm.model)
        ids = [q.id for q in self.train]
        d = load_attributions(self.directory, ids)
        activation = np.mean([np.load(activation_path(self.directory, i)) for i in ids], axis=0)
        test = t_test_neurons(d, o.alpha, o.correction)
        power, adjusted = power_report(test, d, o.permutations, seed)
        np.savez_compressed(
            self.directory / "neuron_stats.npz",
            mean=test.mean, t=test.t, p=test.p, q=test.q, max_t_p=adjusted, mean_abs_activation=activation,
        )  # fmt: skip
        positive, negative = test.selected(+1), test.selected(-1)
        halves = category_halves(self.train, seed)
        first, second = ([i for i, q in enumerate(self.train) if q.category in half] for half in halves)
        rows = (first, second)
        n_neurons = dims.n_layers * dims.d_mlp
        overlap = halves_overlap(
            d, rows, alpha=o.alpha, correction=o.correction, top_k=o.top_k, n_permutations=o.halves_permutations,
            seed=seed,
        )  # fmt: skip
        return {
            "method": "Truth Neurons (arXiv 2505.12182), D averaged over both letter orders; per-neuron t-test",
            "hook_point": "blocks.{l}.mlp.neurons at the last prompt token",
            "preset": o.preset,
            "steps": o.steps,
            "alpha": o.alpha,
            "correction": o.correction,
            "dimensions": {"n_layers": dims.n_layers, "d_mlp": dims.d_mlp, "neurons": n_neurons},
            "split": {"seed": seed, "train_ids": ids, "held_out_ids": [q.id for q in self.held_out]},
            "n_questions": len(ids),
            "scores": _scores(records, seed),
            "neurons": {
                "positive": [_describe(test, n) for n in positive],
                "negative": [_describe(test, n) for n in negative],
            },
            "per_layer": {
                "positive": per_layer_counts(positive, dims.n_layers),
                "negative": per_layer_counts(negative, dims.n_layers),
            },
            "power": power,
            "subject_agnostic": {
                "categories": [sorted(h) for h in halves],
                "questions": [len(r) for r in rows],
                **overlap,
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
            "torch_threads": torch.get_num_threads(),
        }


def find_truth_neurons(
    lm,
    train: Sequence[Question],
    held_out: Sequence[Question],
    run: RunLog,
    *,
    presets: dict[str, str],
    preset: str = "null",
    steps: int = DEFAULT_STEPS,
    alpha: float = 0.05,
    correction: str = "bh",
    seed: int = 0,
    max_rows: int = 128,
    top_k: int = 100,
    permutations: int = 1000,
    halves_permutations: int = 200,
    progress: bool = True,
) -> dict:
    """Attribute every training question not yet in `run`, then test, select and report power; the
    summary (see `TruthNeuronAttribution`)."""
    options = AttributionOptions(
        preset=preset, steps=steps, alpha=alpha, correction=correction, max_rows=max_rows, top_k=top_k,
        permutations=permutations, halves_permutations=halves_permutations,
    )  # fmt: skip
    task = TruthNeuronAttribution(lm, train, held_out, run.directory, presets, options, seed=seed)
    return evaluate(task, lm, run, progress=progress)


def _scores(records: Sequence[dict], seed: int) -> dict:
    from truthscope.scoring.intervals import bootstrap_mean

    return {k: bootstrap_mean([r["scores"][k] for r in records], seed=seed) for k in ("binary_acc", "margin")}


def _describe(test: NeuronTest, neuron: Neuron) -> dict:
    layer, index = neuron
    return {
        "layer": layer,
        "index": index,
        "mean_d": float(test.mean[layer, index]),
        "t": float(test.t[layer, index]),
        "q": float(test.q[layer, index]),
    }


# --- the whole `neurons find` run, as the command makes it -----------------------------------------


def run_find(
    model: str,
    resources,
    out: str | Path,
    *,
    train: int = 100,
    preset: str = "null",
    steps: int = DEFAULT_STEPS,
    alpha: float = 0.05,
    correction: str = "bh",
    seed: int = 0,
    max_rows: int = 128,
    permutations: int = 1000,
    halves_permutations: int = 200,
    model_options: dict | None = None,
    progress: bool = True,
) -> tuple[dict, RunLog]:
    """Split the questions, load the model, attribute and select into the run log at `out`.
    Resumable with the same arguments; alpha, correction and permutation counts may change on a
    rerun (only the statistics are redone)."""
    from truthscope.models import load_model
    from truthscope.models.facts import model_facts
    from truthscope.runlog import DataFacts, RunConfig

    dataset = resources.truthfulqa()
    if any(q.mc0_targets is None for q in dataset.questions):
        raise TruthscopeError(
            "truth neurons need the binary pairs (best vs best incorrect answer): --data-version 2025"
        )
    presets = resources.preset(preset)
    train_questions, held_out = split_questions(dataset.questions, train, seed)
    lm = load_model(model, **dict(model_options or {}))
    if not hasattr(lm, "model"):
        raise TruthscopeError(f"{model!r} has no torch module to look inside; use a Hugging Face model")
    config = RunConfig(
        task="neurons.find",
        options={"train": train, "steps": steps, "preset": preset},
        model=model_facts(lm, model),
        data=DataFacts(version=dataset.version, sha256=dataset.files),
        sample=Sample(how="seeded", n=train, seed=seed),
        seed=seed,
        execution={"max_rows": max_rows},  # batching changes float rounding: a resumed run keeps it
    )
    run = RunLog(out, config)
    summary = find_truth_neurons(
        lm, train_questions, held_out, run, presets=presets, preset=preset, steps=steps, alpha=alpha,
        correction=correction, seed=seed, max_rows=max_rows, permutations=permutations,
        halves_permutations=halves_permutations, progress=progress,
    )  # fmt: skip
    return summary, run


def find_table(summary: dict) -> dict:
    """The summary with the rows a person reads first as `scores` (for `cli.app.report_run`)."""
    power, halves = summary["power"], summary["subject_agnostic"]

    def row(value, n=None):
        return {"mean": value, "ci_low": None, "ci_high": None, "n": n}

    return {
        **summary,
        "scores": {
            **summary["scores"],
            "truth neurons (positive)": row(len(summary["neurons"]["positive"]), summary["dimensions"]["neurons"]),
            "negative neurons": row(len(summary["neurons"]["negative"]), summary["dimensions"]["neurons"]),
            "max-T family-wise p": row(power["max_t"]["family_wise_p"], power["max_t"]["n_permutations"]),
            "pi0 (Storey)": row(power["pi0"]),
            "min detectable d (80%)": row(power["minimum_detectable_d"], summary["n_questions"]),
            "halves top-k overlap": row(halves["top_k"]["observed"], halves["top_k"]["k"]),
            "halves top-k overlap p": row(halves["top_k"]["p_value"]),
            "seconds per question": row(summary["attribution_seconds_per_question"], summary["n_questions"]),
        },
    }
