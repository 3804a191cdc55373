"""TruthfulQA generation throughput: truthscope's batched `generate` against a plain one-question-at-
a-time `model.generate` loop, same model, same questions, same process; and, for the transformers
backend, the same batches without the preset's shared cache (plain left padding), which shows what
the prefix cache alone buys.

    python benchmarks/generation.py --model smollm2-135m [--data DIR] [--questions 32] [--batch-size 16]
    python benchmarks/generation.py --compare runs/gen-bs1 runs/gen-bs16     # answers of two `gen` runs

The questions are spread evenly over the dataset (every k-th), prompts and stop strings are the `gen`
task's. Prints wall time and questions/s of each schedule, their ratio, and every question whose greedy
answer differs between the two (batching pads prompts on the left, which can flip a near-tie argmax).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

from truthscope.data import load_presets, load_truthfulqa
from truthscope.data.presets import generation_prompt
from truthscope.models import GenerationRequest, load_model
from truthscope.paths import data_dir
from truthscope.runlog import read_run
from truthscope.tasks.generation import stop_strings


def differing(a: list[str], b: list[str], labels: list[str]) -> list[dict]:
    return [{"question": q, "first": x, "second": y} for q, x, y in zip(labels, a, b, strict=True) if x != y]


def benchmark(args) -> dict:
    import torch

    dataset = load_truthfulqa(data_dir(args.data), args.version)
    presets = load_presets(data_dir(args.data))
    step = max(1, len(dataset.questions) // args.questions)
    questions = list(dataset.questions[::step][: args.questions])
    stop = stop_strings(args.preset)
    requests = [GenerationRequest(generation_prompt(q.question, args.preset, presets), stop, 50) for q in questions]
    model = load_model(args.model, device=args.device, batch_size=args.batch_size)
    model.generate(requests[:1])  # warm-up: first-call allocations are in neither timing

    started = time.perf_counter()
    one_at_a_time = [model.generate([r])[0] for r in requests]
    loop_seconds = time.perf_counter() - started

    started = time.perf_counter()
    batched = model.generate(requests)
    batched_seconds = time.perf_counter() - started

    no_prefix_seconds, no_prefix_diffs = None, None
    if hasattr(model, "_generation_prefix"):
        model._generation_prefix = lambda part, requests: ()  # noqa: SLF001
        started = time.perf_counter()
        no_prefix = model.generate(requests)
        no_prefix_seconds = time.perf_counter() - started
        no_prefix_diffs = differing(no_prefix, batched, [q.question for q in questions])

    tokens = sum(len(model.tokenizer(text).input_ids) for text in batched)
    diffs = differing(one_at_a_time, batched, [q.question for q in questions])
    return {
        "model": args.model,
        "questions": len(questions),
        "preset": args.preset,
        "batch_size": args.batch_size,
        "loop_seconds": round(loop_seconds, 2),
        "batched_seconds": round(batched_seconds, 2),
        "loop_questions_per_s": round(len(questions) / loop_seconds, 3),
        "batched_questions_per_s": round(len(questions) / batched_seconds, 3),
        "speedup": round(loop_seconds / batched_seconds, 2),
        "batched_without_prefix_cache_seconds": no_prefix_seconds and round(no_prefix_seconds, 2),
        "prefix_cache_speedup": no_prefix_seconds and round(no_prefix_seconds / batched_seconds, 2),
        "identical_without_prefix_cache": None if no_prefix_diffs is None else len(questions) - len(no_prefix_diffs),
        "answer_tokens": tokens,
        "identical_answers": len(questions) - len(diffs),
        "differing": diffs,
        "differing_without_prefix_cache": no_prefix_diffs,
        "load_average": os.getloadavg()[0],
        "machine": {
            "cpus": os.cpu_count(),
            "torch_threads": torch.get_num_threads(),
            "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS"),
            "platform": platform.platform(),
            "device": str(model.device),
        },
    }


def compare_runs(first: Path, second: Path) -> dict:
    _, a, _ = read_run(first)
    _, b, _ = read_run(second)
    by_id = {r["id"]: r for r in b}
    shared = [r for r in a if r["id"] in by_id]
    diffs = [
        {"id": r["id"], "question": r["question"], "first": r["raw"], "second": by_id[r["id"]]["raw"]}
        for r in shared
        if r["raw"] != by_id[r["id"]]["raw"]
    ]
    answers_differ = sum(r["answer"] != by_id[r["id"]]["answer"] for r in shared)
    return {
        "questions": len(shared),
        "identical_raw_outputs": len(shared) - len(diffs),
        "identical_share": round((len(shared) - len(diffs)) / max(1, len(shared)), 4),
        "differing_trimmed_answers": answers_differ,
        "differing": diffs,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="smollm2-135m")
    parser.add_argument("--data", default=None, help="data folder (default: the packaged copy)")
    parser.add_argument("--version", default="2021")
    parser.add_argument("--preset", default="qa")
    parser.add_argument("--questions", type=int, default=32)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--compare", nargs=2, type=Path, metavar=("RUN_A", "RUN_B"))
    args = parser.parse_args()
    result = compare_runs(*args.compare) if args.compare else benchmark(args)
    json.dump(result, sys.stdout, indent=1, ensure_ascii=False)
    print()


if __name__ == "__main__":
    main()
