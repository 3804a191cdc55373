"""Latent knowledge versus output: does the model "know" the true answer and still say a false one?

For each held-out TruthfulQA question, rankings of the same candidate answers are compared, each
turned into a 0/1 by the MC1 rule (the true answer ranked first):

    knows            a truth probe on the model's activations at the end of each answer
    says             the model's summed log-likelihood (its MC1)
    says_per_token   ... divided by the answer's number of tokens (length-normalised)
    says_calibrated  log P(answer | question) - log P(answer | "Q: N/A" prompt) (content-free calibration)

"knows" is a probe trained on TruthfulQA's own labels, so part of it is learnt from the answer text
alone: a negation regex with no model reaches MC1 0.48 (chance 0.22), and with independent cells
knows 0.48 and says 0.25 already give knows-not-says 0.48 x 0.75 = 0.36. The table is therefore
read against controls, each through the same split and the same MC1 rule:

    knows_text       logistic regression on the answer text only (words, bigrams, negation features)
    knows_random     the same probe pipeline on a randomly initialised model of the same architecture
    knows_transfer   a probe trained on statement sets only, never on TruthfulQA
    independence     the table expected if knowing and saying were independent (P(knows) P(not says))

and `excess` is knows-not-says minus each control's, with paired bootstrap intervals over questions.
McNemar's exact test compares knows with says on the same questions. Training items whose answer
string is also a test item's are dropped ("I have no comment." answers 111 questions), so no string
is both trained on and tested. With shuffled training labels (`shuffle_labels`), knows falls to
chance and every excess to about zero: the null test.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace

import numpy as np

from truthscope.data.truthfulqa import Question
from truthscope.interp.probes import choose_probe, drop_shared_answers, features_of, fit_probe, select_layer
from truthscope.models.base import LoglikelihoodRequest
from truthscope.scoring.intervals import N_RESAMPLES, bootstrap_mean
from truthscope.tasks.multiple_choice import AnswerSet, answer_sets, score_question

CELLS = ("knows_and_says", "knows_not_says", "says_not_knows", "neither")
SAYS = ("says", "says_per_token", "says_calibrated")
CONTROLS = ("knows_text", "knows_random", "knows_transfer")
CONTENT_FREE = "N/A"  # the question of the content-free prompt that calibrates `says`


def cell(knows: bool, says: bool) -> str:
    if knows:
        return "knows_and_says" if says else "knows_not_says"
    return "says_not_knows" if says else "neither"


def _bootstrap(statistic: Callable[[np.ndarray], float], n: int, seed: int = 0) -> dict:
    """{"mean", "ci_low", "ci_high", "n"}: `statistic(indices)` on the questions and its percentile
    bootstrap interval over resampled questions."""
    value = float(statistic(np.arange(n)))
    if n < 2:
        return {"mean": value, "ci_low": value, "ci_high": value, "n": n, "method": "bootstrap"}
    rng = np.random.default_rng(seed)
    draws = [statistic(rng.integers(0, n, n)) for _ in range(N_RESAMPLES)]
    low, high = np.quantile(draws, [0.025, 0.975])
    return {"mean": value, "ci_low": float(low), "ci_high": float(high), "n": n, "method": "bootstrap"}


def mcnemar(knows: np.ndarray, says: np.ndarray) -> dict:
    """McNemar's exact test of knows against says on the same questions (the discordant pairs)."""
    from scipy.stats import binomtest

    b = int(np.sum(knows & ~says))
    c = int(np.sum(~knows & says))
    p = float(binomtest(b, b + c, 0.5).pvalue) if b + c else None
    return {"knows_not_says": b, "says_not_knows": c, "p_value": p, "test": "McNemar exact (binomial)"}


def latent_table(records: Sequence[Mapping], knows: str = "knows", says: str = "says", seed: int = 0) -> dict:
    """The 2x2 table of `knows` x `says` (keys of each record's `scores`), observed and expected.

    Cell shares with bootstrap intervals; `expected` the shares if knowing and saying were
    independent; `excess_over_independence` = knows-not-says - P(knows) P(not says), with an interval;
    `knows` and `says` (their MC1 rates), the chance rate of `knows` (mean 1/k), `knows_given_says_false`
    and McNemar's test."""
    if not records:
        raise ValueError("no records")
    k = np.array([bool(r["scores"][knows]) for r in records])
    s = np.array([bool(r["scores"][says]) for r in records])
    table: dict = {name: bootstrap_mean([float(cell(a, b) == name) for a, b in zip(k, s, strict=True)], seed=seed)
                   for name in CELLS}  # fmt: skip
    pk, ps = float(k.mean()), float(s.mean())
    table["expected"] = {
        "knows_and_says": pk * ps, "knows_not_says": pk * (1 - ps),
        "says_not_knows": (1 - pk) * ps, "neither": (1 - pk) * (1 - ps),
    }  # fmt: skip
    table["excess_over_independence"] = _bootstrap(
        lambda i: float(np.mean(k[i] & ~s[i]) - np.mean(k[i]) * (1 - np.mean(s[i]))), len(k), seed
    )
    table["knows"] = bootstrap_mean(k.astype(float).tolist(), seed=seed)
    table["says"] = bootstrap_mean(s.astype(float).tolist(), seed=seed)
    table["knows_chance"] = float(np.mean([1.0 / r["n_answers"] for r in records]))
    wrong = k[~s].astype(float).tolist()
    table["knows_given_says_false"] = bootstrap_mean(wrong, seed=seed) if wrong else None
    table["mcnemar"] = mcnemar(k, s)
    table["rows"] = {"knows": knows, "says": says}
    return table


def excess_over(records: Sequence[Mapping], control: str, knows: str = "knows", says: str = "says", seed: int = 0):
    """Knows-not-says of the probe minus that of `control` (another ranker of the same answers), paired
    over questions, with a bootstrap interval."""
    diff = [float(bool(r["scores"][knows]) and not r["scores"][says])
            - float(bool(r["scores"][control]) and not r["scores"][says]) for r in records]  # fmt: skip
    return bootstrap_mean(diff, seed=seed)


def latent_by_group(records: Sequence[Mapping], key: str = "category", seed: int = 0) -> dict[str, dict]:
    groups: dict[str, list] = defaultdict(list)
    for r in records:
        groups[r[key]].append(r)
    return {name: latent_table(rows, seed=seed) for name, rows in sorted(groups.items())}


def latent_summary(records: Sequence[Mapping], seed: int = 0) -> dict:
    """The main table, the table for each way of reading `says`, each control with its excess, by
    category and by type."""
    present = set(records[0]["scores"]) if records else set()
    controls = [c for c in CONTROLS if c in present]
    return {
        "table": latent_table(records, seed=seed),
        "says_variants": {v: latent_table(records, "knows", v, seed) for v in SAYS if v in present},
        "controls": {
            c: {
                "knows": bootstrap_mean([float(r["scores"][c]) for r in records], seed=seed),
                "knows_not_says": bootstrap_mean(
                    [float(bool(r["scores"][c]) and not r["scores"]["says"]) for r in records], seed=seed
                ),
                "excess": excess_over(records, c, seed=seed),
            }
            for c in controls
        },
        "by_category": latent_by_group(records, "category", seed=seed),
        "by_type": latent_by_group(records, "type", seed=seed),
    }


def mc1_sets(question: Question, protocol: str, preset: str, presets: dict[str, str]) -> list[AnswerSet]:
    """The answer sets MC1 is scored on: `mc1_targets` (harness) or all references (upstream)."""
    return [s for s in answer_sets(question, protocol, preset, presets) if s.name in ("mc1", "all")]


def competing_answers(sets: Sequence[AnswerSet]) -> int:
    """How many answers MC1 ranks: all of `mc1_targets` (harness); the best answer and the false
    ones (upstream). A random ranking gets MC1 = 1 / this."""
    s = sets[0]
    return len(s.answers) if s.name == "mc1" else 1 + s.labels.count(0)


def question_mc1(
    questions: Sequence[Question],
    items: Sequence,
    scores: np.ndarray,
    protocol: str,
    preset: str,
    presets: dict[str, str],
) -> dict[int, float]:
    """MC1 of each question computed from per-item scores (probe scores or log-likelihoods): the
    same rule as `truthscope mc`, applied to whatever ranks the answers."""
    by_request = {LoglikelihoodRequest(it.context, it.continuation): float(v)
                  for it, v in zip(items, scores, strict=True)}  # fmt: skip
    return {q.id: score_question(mc1_sets(q, protocol, preset, presets), by_request)["mc1"] for q in questions}


def mc1_rate(
    questions: Sequence[Question], items: Sequence, scores: np.ndarray, protocol: str, preset: str, presets
) -> float:
    """Mean MC1 over `questions` when `scores` rank the answers."""
    return float(np.mean(list(question_mc1(questions, items, scores, protocol, preset, presets).values())))


def latent_records(
    questions: Sequence[Question],
    items: Sequence,
    rankers: Mapping[str, np.ndarray],
    protocol: str,
    preset: str,
    presets: dict[str, str],
) -> list[dict]:
    """One record per question: for each ranker (per-item scores of `items`; `knows` and `says` at
    least), whether it ranks the true answer first, under `scores`; the cell of knows x says and
    how many answers compete (chance of `knows` = 1 / that)."""
    mc1 = {name: question_mc1(questions, items, v, protocol, preset, presets) for name, v in rankers.items()}
    records = []
    for q in questions:
        scores = {name: float(per[q.id]) for name, per in mc1.items()}
        k, s = bool(scores["knows"]), bool(scores["says"])
        scores["knows_not_says"] = float(k and not s)
        records.append(
            {
                "id": q.id,
                "question": q.question,
                "category": q.category,
                "type": q.type,
                "cell": cell(k, s),
                "n_answers": competing_answers(mc1_sets(q, protocol, preset, presets)),
                "scores": scores,
            }
        )
    return records


# --- the controls ------------------------------------------------------------------------------------


def text_features(texts: Sequence[str]):
    """Negation and form features of answer texts (the judge's polarity words): starts with "no",
    has a negation, how many, is a hedge / "no comment", log length."""
    from truthscope.judges.features import _HEDGES, _NEGATIONS, words

    rows = []
    for text in texts:
        w = words(text)
        negations = sum(t in _NEGATIONS for t in w)
        hedge = any(h in text.lower() for h in _HEDGES)
        rows.append([float(w[:1] == ["no"]), float(negations > 0), negations, float(hedge), np.log1p(len(w))])
    return np.array(rows, dtype=np.float64)


def text_baseline_scores(train_texts: Sequence[str], y: np.ndarray, test_texts: Sequence[str]) -> np.ndarray:
    """A model-free ranker: logistic regression on words, bigrams and negation features of the answer
    text, fitted on the training answers' labels; the log-odds of each test answer."""
    from scipy.sparse import csr_matrix, hstack
    from sklearn.feature_extraction.text import CountVectorizer
    from sklearn.linear_model import LogisticRegression

    vectoriser = CountVectorizer(binary=True, ngram_range=(1, 2), min_df=1)
    x = hstack([vectoriser.fit_transform(train_texts), csr_matrix(text_features(train_texts))]).tocsr()
    model = LogisticRegression(C=1.0, max_iter=2000).fit(x, y)
    x_test = hstack([vectoriser.transform(test_texts), csr_matrix(text_features(test_texts))]).tocsr()
    return model.decision_function(x_test)


def shuffled(s, indices: np.ndarray, seed: int = 0):
    """`s` with the labels of `indices` permuted among themselves (the null test)."""
    items = list(s.items)
    perm = np.random.default_rng(seed).permutation(indices)
    for i, j in zip(indices, perm, strict=True):
        items[i] = replace(s.items[i], label=s.items[j].label)
    out = replace(s, items=tuple(items))
    return out


def transfer_scores(statement_sets: Sequence, tqa, test: np.ndarray, hooks, methods, seed: int = 0) -> dict:
    """A probe trained on the statement sets only (method and hook chosen on their own validation
    split), applied to TruthfulQA's test items."""
    methods = [m for m in methods if m != "ccs"] or ["mass_mean"]
    y = np.concatenate([s.labels for s in statement_sets])
    groups = np.concatenate([s.groups + 1_000_000 * i for i, s in enumerate(statement_sets)])
    best = None
    for method in methods:
        features = [np.concatenate([s.features[h] for s in statement_sets]) for h in hooks]
        index, aurocs = select_layer(features, y, groups, method, seed)
        if best is None or aurocs[index] > best[0]:
            best = (aurocs[index], method, hooks[index], features[index])
    assert best is not None
    auroc, method, hook, x = best
    probe = fit_probe(method, x, y, groups, seed)
    return {"scores": probe.scores(tqa.features[hook][test]), "method": method, "hook": hook,
            "validation_auroc": auroc, "sets": [s.name for s in statement_sets]}  # fmt: skip


def latent_analysis(
    tqa,
    questions: Sequence[Question],
    fmt: tuple[str, str, dict[str, str]],
    train: np.ndarray,
    test: np.ndarray,
    *,
    hooks: Sequence[str],
    methods: Sequence[str],
    seed: int = 0,
    says: Mapping[str, np.ndarray] | None = None,
    random_set=None,
    statement_sets: Sequence = (),
    text_baseline: bool = True,
    shuffle_labels: bool = False,
) -> tuple[list[dict], dict]:
    """Records (one per held-out question) and what was fitted, from activation sets alone.

    `tqa` (a `ProbeSet`) is split into `train` / `test` item indices by question; `questions` are the
    held-out ones. `says` maps each way of reading the model's output (see `SAYS`) to per-test-item
    scores (default: the summed log-likelihood). `random_set`: the same items on the random-init
    model. Training items sharing an answer string with a test item are dropped first."""
    train = drop_shared_answers(tqa.texts, train, test)
    if shuffle_labels:
        tqa = shuffled(tqa, train, seed)
        random_set = None if random_set is None else shuffled(random_set, train, seed)
        statement_sets = [shuffled(s, np.arange(len(s.items)), seed) for s in statement_sets]
    chosen = choose_probe(tqa, train, hooks, methods, seed)
    test_items = [tqa.items[i] for i in test]
    rankers = {"knows": chosen["probe"].scores(features_of(tqa, chosen["hook"], chosen["method"])[test])}
    rankers.update(says or {"says": tqa.logprobs[test]})
    fitted: dict = {
        "probe": {k: v for k, v in chosen.items() if k != "probe"},
        "train_items": int(len(train)),
        "shuffled_labels": shuffle_labels,
    }
    if text_baseline:
        texts = tqa.texts
        rankers["knows_text"] = text_baseline_scores([texts[i] for i in train], tqa.labels[train],
                                                     [texts[i] for i in test])  # fmt: skip
    if random_set is not None:
        random_methods = [m for m in methods if m != "ccs"] or ["mass_mean"]
        control = choose_probe(random_set, train, hooks, random_methods, seed)
        x = features_of(random_set, control["hook"], control["method"])[test]
        rankers["knows_random"] = control["probe"].scores(x)
        fitted["random_init_probe"] = {k: v for k, v in control.items() if k != "probe"}
    if statement_sets:
        transfer = transfer_scores(statement_sets, tqa, test, hooks, methods, seed)
        rankers["knows_transfer"] = transfer.pop("scores")
        fitted["transfer_probe"] = transfer
    return latent_records(questions, test_items, rankers, *fmt), fitted


def says_readings(lm, items: Sequence, logprobs: np.ndarray, preset: str, presets: dict[str, str]) -> dict:
    """The model's output read three ways for `items`: summed log-likelihood, per token, and
    calibrated by the content-free prompt (one extra log-likelihood per distinct answer)."""
    from truthscope.data.presets import question_prompt

    n_tokens = np.array([len(lm.encode_pair(it.context, it.continuation)[1]) for it in items], dtype=np.float64)
    empty = question_prompt(CONTENT_FREE, preset, presets)
    answers = list(dict.fromkeys(it.continuation for it in items))
    free = dict(zip(answers, (r.logprob for r in lm.loglikelihood([LoglikelihoodRequest(empty, a) for a in answers])),
                    strict=True))  # fmt: skip
    logprobs = np.asarray(logprobs, dtype=np.float64)
    return {
        "says": logprobs,
        "says_per_token": logprobs / np.maximum(n_tokens, 1),
        "says_calibrated": logprobs - np.array([free[it.continuation] for it in items]),
    }
