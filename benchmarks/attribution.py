"""Integrated-gradients attribution of MLP neurons: the batched computation against what people
actually run, same model, same prompts, same layers, one process, one run.

    python benchmarks/attribution.py --model smollm2-135m [--questions 1] [--layers 3,15]

    batched    `integrated_gradients`: the prompt prefix once (key/value cache), then one forward
               and one backward pass for (steps + 1) one-token rows per layer, many layers per pass,
               the layers below a chunk run once and fanned out
    per-layer  the knowledge-neurons code (Dai et al.; the Truth Neurons paper follows it): for each
               layer, one batch of the m scaled activations, the WHOLE prompt in every row, one
               forward and one backward pass
    captum     Captum's `IntegratedGradients` with `internal_batch_size = m` and the midpoint rule, on
               a forward function of the layer's last-position activation (Captum's
               `LayerIntegratedGradients` would interpolate the layer at every position, not the
               quantity of the paper; this is its batching of the same integral), per layer
    naive      `naive_integrated_gradients`: one full forward and backward per layer per step

All four compute the same numbers (the largest difference to `batched` is printed). The slow ones
run on a few `--layers`; the batched one also on all layers (what a `neurons find` run pays per
prompt; a question is two prompts, one per letter order). Prints seconds, neurons x prompts per
second and the ratios, all measured in this run. Captum is optional (`pip install captum`).
"""

from __future__ import annotations

import argparse
import json
import os
import time

import torch

from truthscope.interp.attribution import (
    integrated_gradients,
    naive_integrated_gradients,
    step_alphas,
    target_value,
)
from truthscope.interp.hooks import capture, dimensions, edit
from truthscope.interp.neurons import binary_prompts
from truthscope.models import load_model
from truthscope.runlog import environment
from truthscope.tasks.base import Resources


def timed(fn):
    wall, cpu = time.perf_counter(), time.process_time()
    result = fn()
    return result, time.perf_counter() - wall, time.process_time() - cpu


def _clean(module, ids, layer):
    name = f"blocks.{layer}.mlp.neurons"
    with torch.no_grad(), capture(module, [name]) as cache:
        module(input_ids=ids)
    return cache[name][0, -1].float()


def _replace_last(z):
    def fn(t):
        new = t.clone()
        new[:, -1] = z.to(t.dtype)
        return new

    return fn


def per_layer_batched(module, prompt_ids, target, layers, steps):
    """The knowledge-neurons way: per layer, m rows of the whole prompt, one forward and backward."""
    ids = torch.tensor([list(prompt_ids)])
    rows = []
    for layer in layers:
        clean = _clean(module, ids, layer)
        z = (step_alphas(steps)[:, None] * clean[None]).requires_grad_(True)
        with torch.enable_grad(), edit(module, {f"blocks.{layer}.mlp.neurons": _replace_last(z)}):
            f = target_value(module(input_ids=ids.expand(steps, -1)).logits[:, -1], target)
            (grad,) = torch.autograd.grad(f.sum(), [z])
        rows.append(clean * grad.mean(0))
    return torch.stack(rows)


def captum_ig(module, prompt_ids, target, layers, steps):
    from captum.attr import IntegratedGradients

    ids = torch.tensor([list(prompt_ids)])
    rows = []
    for layer in layers:
        clean = _clean(module, ids, layer)

        def forward(z, layer=layer):
            with edit(module, {f"blocks.{layer}.mlp.neurons": _replace_last(z)}):
                return target_value(module(input_ids=ids.expand(z.shape[0], -1)).logits[:, -1], target)

        ig = IntegratedGradients(forward)
        attribution = ig.attribute(
            clean[None], baselines=torch.zeros_like(clean[None]), n_steps=steps, method="riemann_middle",
            internal_batch_size=steps,
        )  # fmt: skip
        rows.append(attribution[0].detach())
    return torch.stack(rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="smollm2-135m")
    parser.add_argument("--data", default=None)
    parser.add_argument("--questions", type=int, default=1, help="First N questions of the 2025 data (2 prompts each).")
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--layers", default=None, help="Comma-separated layers for the comparison (default: 2 spread).")
    parser.add_argument("--max-rows", type=int, default=128)
    parser.add_argument("--preset", default="null")
    parser.add_argument("--skip-naive", action="store_true", help="Leave out the slowest method.")
    args = parser.parse_args()

    lm = load_model(args.model, device="cpu")
    dims = dimensions(lm.model)
    layers = [int(x) for x in args.layers.split(",")] if args.layers else [dims.n_layers // 4, 3 * dims.n_layers // 4]
    resources = Resources(args.data, "2025")
    questions = resources.truthfulqa().questions[: args.questions]
    prompts = [p for q in questions for p in binary_prompts(lm, q, args.preset, resources.presets())]
    targets = [{p.correct_token: 1.0, p.incorrect_token: -1.0} for p in prompts]
    integrated_gradients(lm.model, prompts[0].ids, targets[0], layers=layers[:1], steps=2)  # warm-up

    def each(fn):
        return [fn(p, t) for p, t in zip(prompts, targets, strict=True)]

    methods = {
        "batched": lambda p, t: (
            integrated_gradients(lm.model, p.ids, t, layers=layers, steps=args.steps, max_rows=args.max_rows).scores
        ),
        "per_layer": lambda p, t: per_layer_batched(lm.model, p.ids, t, layers, args.steps),
    }
    try:
        import captum  # noqa: F401

        methods["captum"] = lambda p, t: captum_ig(lm.model, p.ids, t, layers, args.steps)
    except ImportError:
        print("captum not installed: its row is left out (pip install captum)")
    if not args.skip_naive:
        methods["naive"] = lambda p, t: naive_integrated_gradients(lm.model, p.ids, t, layers=layers, steps=args.steps)

    full, full_wall, _ = timed(lambda: each(lambda p, t: integrated_gradients(
        lm.model, p.ids, t, steps=args.steps, max_rows=args.max_rows)))  # fmt: skip
    results, rows = {}, {}
    subset, n_p = len(layers) * dims.d_mlp, len(prompts)
    for name, fn in methods.items():
        scores, wall, cpu = timed(lambda fn=fn: each(fn))
        results[name] = scores
        rows[name] = {"wall_s": round(wall, 2), "cpu_s": round(cpu, 2), "neurons_x_prompts_per_s": subset * n_p / wall}
    for name, row in rows.items():
        row["neurons_x_prompts_per_s"] = round(row["neurons_x_prompts_per_s"], 1)
        row["slower_than_batched"] = round(row["wall_s"] / rows["batched"]["wall_s"], 2)
        row["max_abs_difference"] = max(
            float((a - b).abs().max()) for a, b in zip(results[name], results["batched"], strict=True)
        )
    report = {
        "model": args.model,
        "prompts": n_p,
        "prompt_tokens": [len(p.ids) for p in prompts],
        "steps": args.steps,
        "comparison_layers": layers,
        "methods": rows,
        "max_abs_attribution": max(float(s.abs().max()) for s in results["batched"]),
        "all_layers_batched": {
            "neurons": dims.n_layers * dims.d_mlp,
            "wall_s": round(full_wall, 2),
            "s_per_prompt": round(full_wall / n_p, 2),
            "s_per_question_both_orders": round(2 * full_wall / n_p, 2),
            "completeness_error_max": max(float(r.completeness_error.abs().max()) for r in full),
        },
        "torch_threads": torch.get_num_threads(),
        "load_average": os.getloadavg(),
        "captum": _version("captum"),
        "environment": environment(),
    }
    print(json.dumps(report, indent=1))
    print(
        f"on layers {layers}, {n_p} prompts, {args.steps} steps: "
        + ", ".join(f"{k} {v['wall_s']} s ({v['slower_than_batched']}x)" for k, v in rows.items())
        + f"; all {dims.n_layers} layers batched: {report['all_layers_batched']['s_per_prompt']} s per prompt"
    )


def _version(package: str) -> str | None:
    from importlib import metadata

    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return None


if __name__ == "__main__":
    main()
