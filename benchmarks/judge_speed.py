"""Judge scoring speed: the cross-encoder judges (`--judge crossencoder`) score one answer per TruthfulQA question,
truth and info, as `gen` and `score` call them.

    python benchmarks/judge_speed.py [--judge crossencoder] [--threads 2] [--repeats 3]

The 817 answers are, per 2021 question, its first labelled answer that is not a reference answer
(what a model writes; a question without one gives its first labelled answer). Timed: loading the
judges, then `repeats` times scoring all 817 for truth and for info from a fresh memo, the reference
vectors coming from the embedder's on-disk store as in a run (the first pass fills the store when it
is empty; it is reported apart). Prints JSON with the wall seconds of each pass, answers per second,
the thread count and the load average at start and end: timings on a busy machine are not the
judge's own.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time

import numpy as np


def answers_per_question(data) -> list:
    """One labelled item per question: the first non-reference answer, else the first answer."""
    chosen: dict[int, int] = {}
    for row, group in enumerate(data.groups):
        if int(group) not in chosen or (data.is_reference[chosen[int(group)]] and not data.is_reference[row]):
            chosen[int(group)] = row
    return [data.items[chosen[g]] for g in sorted(chosen)]


def benchmark(args) -> dict:
    import torch

    from truthscope.judges import load_scorers
    from truthscope.judges.labels import load_labelled
    from truthscope.paths import data_dir

    if args.threads:
        torch.set_num_threads(args.threads)
    load_before = os.getloadavg()
    items = answers_per_question(load_labelled(data_dir(args.data), "truth"))
    started = time.perf_counter()
    judges, embedder = load_scorers(args.judge, embed=False)
    load_seconds = time.perf_counter() - started
    passes = []
    for _ in range(args.repeats):
        for judge in judges.values():  # a fresh memo: every pass computes its scores
            memo = getattr(getattr(judge, "model", None), "_memo", None)
            if memo is not None:
                memo.clear()
        if embedder is not None:  # forget the answers (new in every run), keep what the store holds
            embedder._cache = {t: v for t, v in embedder._cache.items() if t in embedder._stored}
        started = time.perf_counter()
        scores = {kind: judge.score(items) for kind, judge in judges.items()}
        passes.append(time.perf_counter() - started)
        if embedder is not None:
            embedder.save()
    best = min(passes)
    return {
        "judge": args.judge,
        "answers": len(items),
        "load_seconds": round(load_seconds, 2),
        "pass_seconds": [round(p, 2) for p in passes],
        "best_seconds": round(best, 2),
        "answers_per_second": round(len(items) / best, 1),
        "mean_scores": {k: round(float(np.mean(v)), 4) for k, v in scores.items()},
        "threads": torch.get_num_threads(),
        "cpus": os.cpu_count(),
        "load_average_start": [round(x, 2) for x in load_before],
        "load_average_end": [round(x, 2) for x in os.getloadavg()],
        "python": sys.version.split()[0],
        "platform": platform.platform(),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--judge", default="crossencoder", help="a judge spec (crossencoder, trained, lm:MODEL, ...)")
    parser.add_argument("--data", default=None, help="data folder (default: the packaged copy)")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    print(json.dumps(benchmark(args), indent=1))


if __name__ == "__main__":
    main()
