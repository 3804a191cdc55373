"""Integrated-gradients attribution of MLP neurons: the batched computation against the obvious loop,
same model, same questions, same layers, one process, one run.

    python benchmarks/attribution.py --model smollm2-135m --data ../shared/data [--questions 2]

    batched  `integrated_gradients`: the prompt prefix once (key/value cache), then one forward and one
             backward pass for (steps + 1) rows per layer, many layers per pass
    naive    `naive_integrated_gradients`: one full forward and backward pass per layer per step

The loop is too slow to run on every layer, so both run on the same few `--layers` of the same
`--questions` 2025 binary-choice prompts; the batched one also runs on all layers (the throughput a
`neurons find` run gets). Prints neurons x questions per second, the ratio, and the largest
difference between the two results (they compute the same numbers).
"""

from __future__ import annotations

import argparse
import json
import os
import time

import torch

from truthscope.data import load_truthfulqa
from truthscope.interp.attribution import integrated_gradients, naive_integrated_gradients
from truthscope.interp.hooks import dimensions
from truthscope.interp.neurons import binary_prompt
from truthscope.models import load_model
from truthscope.paths import data_dir
from truthscope.runlog import environment


def timed(fn):
    wall, cpu = time.perf_counter(), time.process_time()
    result = fn()
    return result, time.perf_counter() - wall, time.process_time() - cpu


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="smollm2-135m")
    parser.add_argument("--data", default=None)
    parser.add_argument("--questions", type=int, default=2, help="First N questions of the 2025 data.")
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--layers", default=None, help="Comma-separated layers for the comparison (default: 3 spread).")
    parser.add_argument("--max-rows", type=int, default=128)
    args = parser.parse_args()

    lm = load_model(args.model, device="cpu")
    dims = dimensions(lm.model)
    layers = (
        [int(x) for x in args.layers.split(",")] if args.layers else sorted({0, dims.n_layers // 2, dims.n_layers - 1})
    )
    questions = load_truthfulqa(data_dir(args.data), "2025").questions[: args.questions]
    prompts = [binary_prompt(lm, q) for q in questions]
    targets = [{p.correct_token: 1.0, p.incorrect_token: -1.0} for p in prompts]
    integrated_gradients(lm.model, prompts[0].ids, targets[0], layers=layers[:1], steps=2)  # warm-up

    def run_all(fn, **kw):
        return [fn(lm.model, p.ids, t, steps=args.steps, **kw) for p, t in zip(prompts, targets)]

    full, full_wall, full_cpu = timed(lambda: run_all(integrated_gradients, max_rows=args.max_rows))
    batched, batched_wall, batched_cpu = timed(
        lambda: run_all(integrated_gradients, layers=layers, max_rows=args.max_rows)
    )
    naive, naive_wall, naive_cpu = timed(lambda: run_all(naive_integrated_gradients, layers=layers))
    difference = max(float((b.scores - n).abs().max()) for b, n in zip(batched, naive))
    scale = max(float(b.scores.abs().max()) for b in batched)

    n_q, subset = len(prompts), len(layers) * dims.d_mlp
    report = {
        "model": args.model,
        "questions": n_q,
        "prompt_tokens": [len(p.ids) for p in prompts],
        "steps": args.steps,
        "comparison_layers": layers,
        "all_layers": {
            "neurons": dims.n_layers * dims.d_mlp,
            "wall_s": round(full_wall, 2),
            "neurons_x_questions_per_s": round(dims.n_layers * dims.d_mlp * n_q / full_wall, 1),
            "s_per_question": round(full_wall / n_q, 2),
        },
        "batched": {
            "wall_s": round(batched_wall, 2),
            "cpu_s": round(batched_cpu, 2),
            "neurons_x_questions_per_s": round(subset * n_q / batched_wall, 1),
        },  # fmt: skip
        "naive": {
            "wall_s": round(naive_wall, 2),
            "cpu_s": round(naive_cpu, 2),
            "neurons_x_questions_per_s": round(subset * n_q / naive_wall, 1),
        },  # fmt: skip
        "speedup": round(naive_wall / batched_wall, 2),
        "max_abs_difference": difference,
        "max_abs_attribution": scale,
        "completeness_error_max": max(float(r.completeness_error.abs().max()) for r in full),
        "torch_threads": torch.get_num_threads(),
        "load_average": os.getloadavg(),
        "environment": environment(),
    }
    print(json.dumps(report, indent=1))
    print(
        f"batched {report['batched']['neurons_x_questions_per_s']} vs "
        f"naive {report['naive']['neurons_x_questions_per_s']} "
        f"neurons x questions/s on layers {layers}: {report['speedup']}x; all {dims.n_layers} layers: "
        f"{report['all_layers']['s_per_question']} s per question"
    )


if __name__ == "__main__":
    main()
