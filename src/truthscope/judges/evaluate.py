"""A judge's agreement with the human labels on the frozen test split, with 95% intervals.

Per subset (all test answers; those that are not verbatim reference answers):

    accuracy, sensitivity (true positive rate), specificity (true negative rate)
                    proportions with Wilson intervals (`scoring.intervals.wilson_interval`)
    balanced accuracy, AUROC
                    percentile bootstrap resampling whole questions (all answers to a question
                    together, as the split holds them out), seeded

The Wilson intervals treat answers as independent; answers to one question are not quite, so they
are somewhat narrow. `counts` (tp, fn, tn, fp) are what `scoring.judge_error` corrects with.
"""

from __future__ import annotations

import numpy as np
from scipy.stats import rankdata

from truthscope.judges.base import THRESHOLD
from truthscope.runlog import RunLog
from truthscope.scoring.intervals import N_RESAMPLES, wilson_interval

SUBSETS = ("all_answers", "non_reference_answers")
METRICS = ("accuracy", "balanced_accuracy", "auroc", "sensitivity", "specificity")


def auroc(labels: np.ndarray, probs: np.ndarray) -> float | None:
    """Area under the ROC curve (Mann-Whitney, ties counted half); None without both classes."""
    labels = np.asarray(labels).astype(bool)
    n_pos, n_neg = int(labels.sum()), int((~labels).sum())
    if not n_pos or not n_neg:
        return None
    ranks = rankdata(np.asarray(probs, dtype=np.float64))
    return float((ranks[labels].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def _proportion(successes: int, n: int) -> dict:
    if n == 0:
        return {"mean": None, "ci_low": None, "ci_high": None, "n": 0, "method": "wilson"}
    low, high = wilson_interval(successes, n)
    return {"mean": successes / n, "ci_low": low, "ci_high": high, "n": n, "method": "wilson"}


def _balanced(labels: np.ndarray, predicted: np.ndarray) -> float | None:
    pos, neg = labels == 1, labels == 0
    if not pos.any() or not neg.any():
        return None
    return float((predicted[pos].mean() + (1 - predicted[neg]).mean()) / 2)


def _grouped_bootstrap(
    labels: np.ndarray, probs: np.ndarray, predicted: np.ndarray, groups: np.ndarray, n_resamples: int, seed: int
) -> dict[str, tuple[float | None, float | None]]:
    """(low, high) of balanced accuracy and AUROC, resampling questions with replacement."""
    unique, inverse = np.unique(groups, return_inverse=True)
    members = [np.flatnonzero(inverse == g) for g in range(len(unique))]
    rng = np.random.default_rng(seed)
    draws: dict[str, list[float]] = {"balanced_accuracy": [], "auroc": []}
    if len(unique) >= 2:
        for _ in range(n_resamples):
            rows = np.concatenate([members[g] for g in rng.integers(0, len(unique), size=len(unique))])
            b, a = _balanced(labels[rows], predicted[rows]), auroc(labels[rows], probs[rows])
            if b is not None:
                draws["balanced_accuracy"].append(b)
            if a is not None:
                draws["auroc"].append(a)
    out: dict[str, tuple[float | None, float | None]] = {}
    for name, values in draws.items():
        if len(values) < max(2, n_resamples // 2):  # too few resamples hold both classes
            out[name] = (None, None)
        else:
            low, high = np.quantile(values, [0.025, 0.975])
            out[name] = (float(low), float(high))
    return out


def agreement_with_intervals(
    labels, probs, groups, threshold: float = THRESHOLD, n_resamples: int = N_RESAMPLES, seed: int = 0
) -> dict:
    """Each of METRICS as {"mean", "ci_low", "ci_high", "n", "method"}, plus the confusion counts."""
    labels = np.asarray(labels).astype(np.int64)
    probs = np.asarray(probs, dtype=np.float64)
    groups = np.asarray(groups)
    predicted = (probs >= threshold).astype(np.int64)
    tp = int(((predicted == 1) & (labels == 1)).sum())
    tn = int(((predicted == 0) & (labels == 0)).sum())
    n_pos, n_neg = int(labels.sum()), int((labels == 0).sum())
    boot = _grouped_bootstrap(labels, probs, predicted, groups, n_resamples, seed)
    method = f"bootstrap over questions ({n_resamples} resamples)"
    n_questions = len(np.unique(groups))
    return {
        "accuracy": _proportion(tp + tn, labels.size),
        "balanced_accuracy": {
            "mean": _balanced(labels, predicted), "ci_low": boot["balanced_accuracy"][0],
            "ci_high": boot["balanced_accuracy"][1], "n": int(labels.size), "method": method,
        },
        "auroc": {
            "mean": auroc(labels, probs), "ci_low": boot["auroc"][0], "ci_high": boot["auroc"][1],
            "n": int(labels.size), "method": method,
        },
        "sensitivity": _proportion(tp, n_pos),
        "specificity": _proportion(tn, n_neg),
        "counts": {"tp": tp, "fn": n_pos - tp, "tn": tn, "fp": n_neg - tn},
        "n": int(labels.size),
        "questions": n_questions,
        "positive_rate": float(labels.mean()) if labels.size else None,
        "threshold": threshold,
    }  # fmt: skip


def evaluate(labels, probs, groups, is_reference, threshold: float = THRESHOLD, seed: int = 0, n_resamples=N_RESAMPLES):
    """{"all_answers": ..., "non_reference_answers": ...}, each from `agreement_with_intervals`."""
    labels, probs, groups = np.asarray(labels), np.asarray(probs), np.asarray(groups)
    model = ~np.asarray(is_reference, dtype=bool)
    return {
        "all_answers": agreement_with_intervals(labels, probs, groups, threshold, n_resamples, seed),
        "non_reference_answers": agreement_with_intervals(
            labels[model], probs[model], groups[model], threshold, n_resamples, seed
        ),
    }


# --- `truthscope judge eval` ---------------------------------------------------------------------

ID_STRIDE = 1_000_000  # record id = kind's index * ID_STRIDE + the answer's line index in its file
BATCH = 256


def score_key(kind: str, subset: str, metric: str) -> str:
    return f"{kind}.{'all' if subset == 'all_answers' else 'non_reference'}.{metric}"


def run_eval(
    spec: str,
    data_dir,
    out,
    *,
    limit: int | None = None,
    seed: int = 0,
    model_options: dict | None = None,
    log=lambda _: None,
) -> tuple[dict, RunLog]:
    """Score the frozen test split's labelled answers with the judges of `spec` (both kinds), in a
    run folder (resumable); `limit`: a seeded sample of that many answers per kind. Returns
    (summary, run). An `lm:` judge evaluated on the whole split keeps its figures for gen/score."""
    import time
    from datetime import datetime, timezone

    from truthscope.errors import TruthscopeError
    from truthscope.judges import LanguageModelJudge, load_scorers
    from truthscope.judges.labels import load_labelled
    from truthscope.judges.lm_judge import measured_path
    from truthscope.judges.split import load_split
    from truthscope.runlog import DataFacts, RunConfig, write_json_atomic
    from truthscope.sampling import draw, sample_of

    started = time.time()
    split = load_split()
    sample = sample_of(limit, "seeded", seed)
    tests = {}
    for kind in ("truth", "info"):
        data = load_labelled(data_dir, kind)
        rows = np.flatnonzero(split.is_test(data.questions))
        if not rows.size:
            raise TruthscopeError(f"{data.path} holds no answers to the test split's questions")
        rows = np.array(draw(list(rows), sample, purpose=f"judge-eval-{kind}"), dtype=np.int64)
        tests[kind] = (data, rows)
    hashes = {f"truthfulqa/finetune_{k}.jsonl": d.sha256 for k, (d, _) in tests.items()}
    config = RunConfig(
        task="judge-eval",
        options={"judge": spec, "split_sha256": split.sha256},
        data=DataFacts(version="2021", sha256=hashes),
        sample=sample,
        seed=seed,
    )
    run = RunLog(out, config)
    judges, _ = load_scorers(spec, embed=False, **(model_options or {}))
    if not judges:
        raise TruthscopeError(
            "--judge none has nothing to evaluate; use trained, crossencoder, lm:MODEL or llama2-judge:MODEL"
        )
    summary_scores, evaluation = {}, {}
    for k_index, (kind, (data, rows)) in enumerate(tests.items()):
        judge = judges[kind]
        ids = [k_index * ID_STRIDE + int(r) for r in rows]
        todo = [(i, int(r)) for i, r in zip(ids, rows, strict=True) if not run.done(i)]
        log(f"{kind}: {len(rows)} test answers to {len(np.unique(data.groups[rows]))} questions, {len(todo)} to score")
        for start in range(0, len(todo), BATCH):
            chunk = todo[start : start + BATCH]
            probs = judge.score([data.items[r] for _, r in chunk])
            run.append(
                {
                    "id": i, "kind": kind, "row": r, "question": data.items[r].question, "answer": data.items[r].answer,
                    "label": int(data.labels[r]), "is_reference": bool(data.is_reference[r]), "prob": float(p),
                    "scores": {"prob": float(p), "correct": float((p >= THRESHOLD) == bool(data.labels[r]))},
                }
                for (i, r), p in zip(chunk, probs, strict=True)
            )  # fmt: skip
            if len(todo) > BATCH:
                log(f"{kind}: {min(start + BATCH, len(todo))}/{len(todo)}")
        probs = np.array([run.records[i]["prob"] for i in ids])
        result = evaluate(data.labels[rows], probs, data.groups[rows], data.is_reference[rows], seed=seed)
        evaluation[kind] = result
        for subset in SUBSETS:
            for metric in METRICS:
                block = result[subset][metric]
                if block["mean"] is not None:
                    summary_scores[score_key(kind, subset, metric)] = block
        if limit is None and isinstance(judge, LanguageModelJudge):
            path = measured_path(judge.model.name, kind, judge.prefix)
            path.parent.mkdir(parents=True, exist_ok=True)
            write_json_atomic(path, {
                "judge": judge.name, "split": split.describe(), "test_split": result,
                "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            })  # fmt: skip
            log(f"kept the {kind} judge's test-split figures in {path} (gen/score use them)")
    summary = {
        "task": "judge eval",
        "model": spec,
        "scores": summary_scores,
        "test_split": {**split.describe(), "answers": {k: int(len(r)) for k, (_, r) in tests.items()}},
        "evaluation": evaluation,
        "judges": {kind: j.describe() for kind, j in judges.items()},
        **run.provenance(started),
    }
    run.finish(summary)
    return summary, run
