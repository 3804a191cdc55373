"""One GPU: truthscope's transformers backend, truthscope on vLLM (`vllm:`) and lm-evaluation-harness,
same weights, same questions: MC1/MC2 on all questions and greedy generation on 200 of them.

    python benchmarks/gpu.py --model smollm2-135m [--device cuda] [--mc-limit N] [--gen-questions 200]
        [--vllm-python .venv-vllm/bin/python] [--skip vllm] [--out runs/gpu]

Each engine runs in a child process of its own, one after the other (never side by side), so the
times, the peak resident memory and the peak GPU memory are its own (for vLLM, of the process that
holds the engine: worker processes it starts are not counted). vLLM is often installed in an
environment of its own: `--vllm-python` runs that phase with that interpreter (truthscope must be
installed there too). The harness scores MC through its own `truthfulqa_mc1/mc2` task YAML pointed at
the same local `mc_task.json` (as `mc_vs_harness.py`), and generates through its HF model's
`generate_until` with the same prompts, stop strings and token limit as truthscope's `gen` task.

Prints and writes OUT/gpu.json: per engine MC1/MC2, MC and generation seconds, peak memory; the
ratios against the harness; the largest per-answer log-likelihood difference from the transformers
backend; and how many greedy generations differ from the transformers backend's (batched fp
arithmetic can flip a near-tie argmax, so a few may). On a machine without CUDA, `--device cpu` with
small limits runs the same code paths (the CPU build of vLLM stands in for the CUDA one).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

ENGINES = ("transformers", "vllm", "harness")


def questions_for(args):
    from truthscope.tasks import Resources

    questions = Resources(args.data, args.version).truthfulqa().questions
    mc = questions[: args.mc_limit] if args.mc_limit else questions
    step = max(1, len(questions) // args.gen_questions)
    return mc, list(questions[::step][: args.gen_questions])


def generation_requests(args, questions):
    from truthscope.data import load_presets
    from truthscope.data.presets import generation_prompt
    from truthscope.models import GenerationRequest
    from truthscope.paths import data_dir
    from truthscope.tasks.generation import stop_strings

    presets = load_presets(data_dir(args.data))
    stop = stop_strings(args.preset)
    return [GenerationRequest(generation_prompt(q.question, args.preset, presets), stop, 50) for q in questions]


def weights_folder(model: str) -> str:
    from truthscope.models import BUNDLED, bundled_model_dir

    return str(bundled_model_dir(model)) if model in BUNDLED else model


def run_truthscope(args, engine: str, out: Path) -> dict:
    """MC through the `mc` task (the run log is the answer) and greedy generation through the backend."""
    from mc_vs_harness import truthscope_answers

    from truthscope.models import load_model
    from truthscope.runlog import Sample
    from truthscope.tasks import Resources
    from truthscope.tasks.base import run_task

    mc_questions, gen_questions = questions_for(args)
    spec = weights_folder(args.model) if engine == "transformers" else f"vllm:{weights_folder(args.model)}"
    model = load_model(spec, device=args.device, batch_size=args.batch_size)
    started = time.perf_counter()
    summary, run = run_task(
        "mc", model, out / engine, resources=Resources(args.data, args.version), progress=False,
        sample=Sample(how="first" if args.mc_limit else "all", n=args.mc_limit),
    )  # fmt: skip
    mc_seconds = time.perf_counter() - started
    requests = generation_requests(args, gen_questions)
    started = time.perf_counter()
    texts = model.generate(requests)
    gen_seconds = time.perf_counter() - started
    return figures(
        summary["scores"]["mc1"]["mean"], summary["scores"]["mc2"]["mean"], len(mc_questions), mc_seconds,
        texts, gen_seconds, truthscope_answers(run.records.values()),
    )  # fmt: skip


def run_harness(args, out: Path) -> dict:
    from lm_eval.api.instance import Instance
    from lm_eval.models.huggingface import HFLM
    from mc_vs_harness import harness_answers, harness_indices
    from mc_vs_harness import run_harness as harness_mc

    mc_questions, gen_questions = questions_for(args)
    folder = out / "harness_tasks"
    indices = harness_indices(args.data, args.version, folder, [q.question for q in mc_questions])
    results, mc_seconds, _ = harness_mc(
        Path(weights_folder(args.model)), folder, indices, args.harness_batch_size, args.device
    )
    requests = generation_requests(args, gen_questions)
    lm = HFLM(
        pretrained=weights_folder(args.model), dtype="float32", device=args.device, batch_size=args.harness_batch_size
    )
    instances = [
        Instance("generate_until", {}, (r.prompt, {"until": list(r.stop), "max_gen_toks": 50, "do_sample": False}), i)
        for i, r in enumerate(requests)
    ]
    started = time.perf_counter()
    texts = lm.generate_until(instances)
    gen_seconds = time.perf_counter() - started
    return figures(
        results["results"]["ts_truthfulqa_mc1"]["acc,none"], results["results"]["ts_truthfulqa_mc2"]["acc,none"],
        len(mc_questions), mc_seconds, texts, gen_seconds, harness_answers(results["samples"]),
    )  # fmt: skip


def figures(mc1, mc2, mc_questions, mc_seconds, generations, gen_seconds, answers) -> dict:
    """One engine's figures, the same keys whatever ran it (answers: `mc_vs_harness`'s keys, as lists)."""
    return {
        "mc1": mc1,
        "mc2": mc2,
        "mc_questions": mc_questions,
        "mc_seconds": mc_seconds,
        "gen_questions": len(generations),
        "gen_seconds": gen_seconds,
        "generations": generations,
        "answers": [[*key, *value] for key, value in answers.items()],  # JSON has no tuple keys
    }


def phase(args) -> None:
    """One engine in this process; its figures to `args.result`."""
    out = Path(args.out)
    result = run_harness(args, out) if args.phase == "harness" else run_truthscope(args, args.phase, out)
    result["peak_rss_mib"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
    try:
        import torch

        if torch.cuda.is_available():
            result["peak_gpu_mib"] = round(torch.cuda.max_memory_allocated() / 2**20)
            result["device_name"] = torch.cuda.get_device_name()
    except ImportError:
        pass
    Path(args.result).write_text(json.dumps(result))


def child(args, engine: str, passthrough: list[str]) -> dict:
    python = args.vllm_python if engine == "vllm" and args.vllm_python else sys.executable
    with tempfile.NamedTemporaryFile(suffix=".json", delete=False) as f:
        result = Path(f.name)
    command = [python, __file__, *passthrough, "--phase", engine, "--result", str(result)]
    print(f"{engine}: {' '.join(command)}", flush=True)
    done = subprocess.run(command, check=False)
    if done.returncode != 0:
        return {"error": f"exit status {done.returncode}"}
    figures = json.loads(result.read_text())
    result.unlink()
    return figures


def compare(results: dict) -> dict:
    base = results.get("transformers", {})
    harness = results.get("harness", {})
    table = {}
    for engine, r in results.items():
        if "error" in r:
            table[engine] = r
            continue
        row = {k: r[k] for k in ("mc1", "mc2", "mc_questions", "mc_seconds", "gen_questions", "gen_seconds")}
        row.update({k: r[k] for k in ("peak_rss_mib", "peak_gpu_mib", "device_name") if k in r})
        if "mc_seconds" in harness and engine != "harness":
            row["mc_speedup_vs_harness"] = round(harness["mc_seconds"] / r["mc_seconds"], 2)
            row["gen_speedup_vs_harness"] = round(harness["gen_seconds"] / r["gen_seconds"], 2)
        if "answers" in base and engine != "transformers":
            from mc_vs_harness import compare_answers

            n, largest, mismatched = compare_answers(_answers(base), _answers(r))
            row.update(answers_compared=n, max_abs_loglikelihood_diff=largest, mismatched_answer_lists=mismatched)
            row["generations_differing"] = sum(
                a != b for a, b in zip(base["generations"], r["generations"], strict=True)
            )
        table[engine] = row
    return table


def _answers(figures: dict) -> dict[tuple, tuple[str, float]]:
    return {(q, name, k): (text, logprob) for q, name, k, text, logprob in figures["answers"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="smollm2-135m", help="bundled alias, local folder or hub id")
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--data", default=None)
    parser.add_argument("--version", default="2021", choices=["2021", "2025"])
    parser.add_argument("--preset", default="qa")
    parser.add_argument("--mc-limit", type=int, default=None, help="first N questions for MC (default: all)")
    parser.add_argument("--gen-questions", type=int, default=200)
    parser.add_argument("--batch-size", type=int, default=64, help="truthscope's batch size")
    parser.add_argument("--harness-batch-size", type=int, default=64)
    parser.add_argument("--vllm-python", default=None, help="interpreter of the vLLM environment")
    parser.add_argument("--skip", default="", help="engines to leave out, comma-separated")
    parser.add_argument("--out", default=None)
    parser.add_argument("--phase", choices=ENGINES, help=argparse.SUPPRESS)
    parser.add_argument("--result", help=argparse.SUPPRESS)
    args, _ = parser.parse_known_args()
    if args.phase:
        phase(args)
        return

    out = Path(args.out or tempfile.mkdtemp(prefix="gpu-bench-"))
    out.mkdir(parents=True, exist_ok=True)
    passthrough = [*_without(sys.argv[1:], "--out"), "--out", str(out)]
    skip = {e.strip() for e in args.skip.split(",") if e.strip()}
    results = {engine: child(args, engine, passthrough) for engine in ENGINES if engine not in skip}
    report = {
        "model": args.model,
        "device": args.device,
        "engines": compare(results),
        "load_average_at_end": os.getloadavg(),
    }
    (out / "gpu.json").write_text(json.dumps(report, indent=1))
    print(json.dumps(report, indent=1))
    print(f"wrote {out / 'gpu.json'}")
    sys.exit(1 if any("error" in r for r in results.values()) else 0)


def _without(argv: list[str], option: str) -> list[str]:
    """argv less `option VALUE` and `option=VALUE`."""
    kept, skip_next = [], False
    for a in argv:
        if skip_next:
            skip_next = False
        elif a == option:
            skip_next = True
        elif not a.startswith(option + "="):
            kept.append(a)
    return kept


if __name__ == "__main__":
    main()
