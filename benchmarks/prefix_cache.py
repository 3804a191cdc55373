"""What the prefix cache saves on the calibration and sycophancy tasks' log-likelihood requests.

The same requests, in the same process, scored twice by the transformers backend: through its
prefix tree (`HuggingFaceModel.loglikelihood`: the prompt prefix shared by a call computed once,
each distinct context once, the answers on top) and with no cache at all (one full pass per
request). Prints requests, tokens computed by each path, wall time, and the largest difference in
log-likelihood (the faster path must give the same numbers).

    python benchmarks/prefix_cache.py [--model smollm2-135m] [--questions 40]

Requests: the sycophancy task's MC form (five conditions x the MC1 options), and P(True) zero-shot
and few-shot in both letter orders with each question's best answer as the proposed answer (so no
generation is needed). Run it alone: timings on a shared machine mean little.
"""

from __future__ import annotations

import argparse
import os
import time

from truthscope.models import load_model
from truthscope.models.kv_cache import common_prefix_length
from truthscope.tasks.base import Resources
from truthscope.tasks.calibration import p_true_requests
from truthscope.tasks.sycophancy import Sycophancy, SycophancyOptions, control_partners


def requests_of(questions, all_questions, presets):
    task = Sycophancy(questions, presets, SycophancyOptions(judge="none"), control_partners(all_questions, 0))
    out = {"sycophancy": [], "p_true": []}
    for q in questions:
        bodies = task.bodies(q)
        for body in bodies.values():
            out["sycophancy"] += task.options_of(task.mc_context(body), q)
        out["sycophancy"] += task.options_of(task.challenge_context(q, q.mc1_targets[1][0]), q)
        for few_shot in (False, True):
            out["p_true"] += [r for _, r in p_true_requests(q.question, q.best_answer, few_shot)]
    return out


def tokens_computed(model, requests) -> tuple[int, int]:
    """(with the prefix tree, without any cache): tokens run through the model, as each path runs them
    (per call: the shared prefix once, each distinct context's remainder once, each continuation
    but its last token; without a cache: every request's context and continuation but the last)."""
    encoded = [model.encode_pair(r.context, r.continuation) for r in requests]
    contexts = sorted({c for c, _ in encoded})
    prefix = min(common_prefix_length(contexts), min(len(c) for c in contexts) - 1)
    cached = prefix + sum(len(c) - prefix for c in contexts) + sum(len(k) - 1 for _, k in encoded)
    uncached = sum(len(c) + len(k) - 1 for c, k in encoded)
    return cached, uncached


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="smollm2-135m")
    parser.add_argument("--questions", type=int, default=40)
    parser.add_argument("--group", type=int, default=32, help="questions per call, as the tasks' group_size")
    args = parser.parse_args()
    resources = Resources()
    dataset = resources.truthfulqa()
    questions = list(dataset.questions[: args.questions])
    model = load_model(args.model)
    print(f"{args.model}, {len(questions)} questions, groups of {args.group}; load average {os.getloadavg()[0]:.2f}")
    for name in ("sycophancy", "p_true"):
        calls = [
            requests_of(questions[s : s + args.group], dataset.questions, resources.preset("qa"))[name]
            for s in range(0, len(questions), args.group)
        ]
        n = sum(len(c) for c in calls)
        t0 = time.perf_counter()
        cached = [r for call in calls for r in model.loglikelihood(list(dict.fromkeys(call)))]
        t_cached = time.perf_counter() - t0
        t0 = time.perf_counter()
        plain = [model._full_pass(*model.encode_pair(r.context, r.continuation))  # noqa: SLF001
                 for call in calls for r in dict.fromkeys(call)]  # fmt: skip
        t_plain = time.perf_counter() - t0
        tokens = [tokens_computed(model, list(dict.fromkeys(c))) for c in calls]
        with_cache, without = sum(t[0] for t in tokens), sum(t[1] for t in tokens)
        diff = max(abs(a.logprob - b.logprob) for a, b in zip(cached, plain, strict=True))
        print(
            f"{name}: {n} requests ({len(cached)} distinct); tokens computed {with_cache:,} with the prefix tree vs "
            f"{without:,} without ({without / with_cache:.1f}x); wall {t_cached:.1f} s vs {t_plain:.1f} s "
            f"({t_plain / t_cached:.1f}x); max |delta log-likelihood| {diff:.2e}"
        )


if __name__ == "__main__":
    main()
