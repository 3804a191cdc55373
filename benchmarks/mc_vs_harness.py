"""TruthfulQA multiple choice: truthscope against lm-evaluation-harness, same model, same questions,
one process, one run.

    pip install -e ".[bench]"      # lm-eval[hf]==0.4.13
    python benchmarks/mc_vs_harness.py --model smollm2-135m [--data DIR] [--limit N]

The harness reads the same local `mc_task.json` (converted to the hub layout, through a copy of its
own task YAML with only the dataset source changed) and the same converted safetensors weights.
Prints both tools' MC1 and MC2, the largest per-answer log-likelihood difference, wall and CPU
times, their ratios, and each tool's peak resident memory. Each tool runs in a fresh child process
(one after the other, never side by side), so the peak memory is its own.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import re
import resource
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

from truthscope.data.files import read_data_text  # noqa: E402
from truthscope.models import BUNDLED, bundled_model_dir  # noqa: E402
from truthscope.paths import data_dir  # noqa: E402
from truthscope.runlog import Sample  # noqa: E402
from truthscope.tasks import Resources  # noqa: E402
from truthscope.tasks.base import run_task  # noqa: E402


def harness_task_folder(mc_task_json: str, folder: Path) -> list[str]:
    """Local copies of the harness's truthfulqa_mc1/mc2 tasks that read the same `mc_task.json` items."""
    import lm_eval

    items = json.loads(mc_task_json)
    with open(folder / "mc_task.jsonl", "w", encoding="utf-8") as f:
        for item in items:
            row = {"question": item["question"]}
            for name in ("mc1_targets", "mc2_targets"):
                row[name] = {"choices": list(item[name]), "labels": list(item[name].values())}
            f.write(json.dumps(row) + "\n")
    source = Path(lm_eval.__file__).parent / "tasks" / "truthfulqa"
    local_data = (
        "dataset_path: json\ndataset_name: null\n"
        f"dataset_kwargs:\n  data_files:\n    validation: {folder / 'mc_task.jsonl'}\n"
    )
    mc1 = (source / "truthfulqa_mc1.yaml").read_text()
    mc1 = re.sub(r"dataset_path: .*\ndataset_name: .*\n", local_data, mc1)
    mc1 = mc1.replace("task: truthfulqa_mc1", "task: ts_truthfulqa_mc1").replace(
        "  - truthfulqa\n", "  - ts_truthfulqa\n"
    )
    mc2 = (source / "truthfulqa_mc2.yaml").read_text()
    mc2 = mc2.replace("include: truthfulqa_mc1.yaml", "include: ts_mc1.yaml").replace(
        "task: truthfulqa_mc2", "task: ts_truthfulqa_mc2"
    )
    (folder / "ts_mc1.yaml").write_text(mc1)
    (folder / "ts_mc2.yaml").write_text(mc2)
    (folder / "utils.py").write_text((source / "utils.py").read_text())
    return [item["question"].strip() for item in items]


def harness_indices(data: str | None, version: str, folder: Path, questions: list[str]) -> list[int]:
    """Write the harness's task folder for the local `mc_task.json`; the harness's indices of `questions`."""
    folder.mkdir(parents=True, exist_ok=True)
    mc_task = read_data_text(data_dir(data), f"truthfulqa/{'v1/' if version == '2021' else ''}mc_task.json")
    order = {q: i for i, q in enumerate(harness_task_folder(mc_task, folder))}
    return sorted(order[q] for q in questions)


def harness_answers(samples: dict) -> dict[tuple, tuple[str, float]]:
    """(question, "mc1"/"mc2", answer index) -> (answer text, log-likelihood), from the harness's samples."""
    out = {}
    for task, key in (("ts_truthfulqa_mc1", "mc1"), ("ts_truthfulqa_mc2", "mc2")):
        for sample in samples[task]:
            choices = sample["doc"][f"{key}_targets"]["choices"]
            for k, (text, resp) in enumerate(zip(choices, sample["filtered_resps"], strict=True)):
                out[sample["doc"]["question"].strip(), key, k] = (text, float(resp[0]))
    return out


def truthscope_answers(records) -> dict[tuple, tuple[str, float]]:
    """The same keys, from an `mc` run's records."""
    return {
        (r["question"], key, k): (a["text"], a["logprob"])
        for r in records
        for key in ("mc1", "mc2")
        for k, a in enumerate(r["answers"][key])
    }


def compare_answers(reference: dict, other: dict) -> tuple[int, float, list[str]]:
    """(answers compared, largest |log-likelihood difference|, questions whose answer lists differ)."""
    mismatched = sorted({key[0] for key in reference.keys() ^ other.keys()})
    mismatched += sorted({key[0] for key in reference.keys() & other.keys() if reference[key][0] != other[key][0]})
    shared = [key for key in reference.keys() & other.keys() if key[0] not in mismatched]
    largest = max((abs(reference[key][1] - other[key][1]) for key in shared), default=0.0)
    return len(shared), largest, sorted(set(mismatched))


def in_child(function, *args):
    """`function(*args)` in a fresh process; its result and the child's peak resident memory (MiB)."""
    with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as pool:
        return pool.submit(_measured, function, *args).result()


def _measured(function, *args):
    result = function(*args)
    return result, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def run_harness(
    weights: Path, task_folder: Path, indices: list[int], batch_size: int, device: str = "cpu"
) -> tuple[dict, float, float]:
    from lm_eval import simple_evaluate
    from lm_eval.tasks import TaskManager

    started, cpu_started = time.time(), time.process_time()
    results = simple_evaluate(
        model="hf",
        model_args=f"pretrained={weights},dtype=float32",
        tasks=["ts_truthfulqa_mc1", "ts_truthfulqa_mc2"],
        samples={"ts_truthfulqa_mc1": indices, "ts_truthfulqa_mc2": indices},
        batch_size=batch_size,
        device=device,
        log_samples=True,
        task_manager=TaskManager(include_path=str(task_folder)),
    )
    seconds, cpu = time.time() - started, time.process_time() - cpu_started
    return {"results": results["results"], "samples": results["samples"]}, seconds, cpu


def run_truthscope(model: str, out: Path, data: str | None, version: str, limit: int | None, batch_size: int):
    resources = Resources(data, version)
    sample = Sample(how="first" if limit else "all", n=limit)
    started, cpu_started = time.time(), time.process_time()
    summary, run = run_task(
        "mc", model, out, resources=resources, sample=sample, progress=False,
        model_options={"device": "cpu", "batch_size": batch_size},
    )  # fmt: skip
    return summary, list(run.records.values()), time.time() - started, time.process_time() - cpu_started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="smollm2-135m", choices=sorted(BUNDLED))
    parser.add_argument("--data", default=None, help="data folder (default: $TRUTHSCOPE_DATA, else the packaged copy)")
    parser.add_argument("--version", default="2021", choices=["2021", "2025"])
    parser.add_argument("--limit", type=int, default=None, help="first N questions (default: all)")
    parser.add_argument("--harness-batch-size", type=int, default=8)
    parser.add_argument("--batch-size", type=int, default=16, help="truthscope's batch size")
    parser.add_argument("--out", default=None, help="folder for both tools' outputs (default: a temp folder)")
    args = parser.parse_args()

    resources = Resources(args.data, args.version)
    questions = resources.truthfulqa().questions[: args.limit] if args.limit else resources.truthfulqa().questions
    weights = bundled_model_dir(args.model)
    out = Path(args.out or tempfile.mkdtemp(prefix="mc-bench-"))
    out.mkdir(parents=True, exist_ok=True)
    task_folder = out / "harness_tasks"
    indices = harness_indices(args.data, args.version, task_folder, [q.question for q in questions])

    print(f"{len(questions)} questions, model {args.model}, {os.cpu_count()} CPUs", flush=True)
    (harness, harness_seconds, harness_cpu), harness_mib = in_child(
        run_harness, weights, task_folder, indices, args.harness_batch_size
    )
    print(f"harness done in {harness_seconds:.1f} s", flush=True)
    (summary, records, truthscope_seconds, truthscope_cpu), truthscope_mib = in_child(
        run_truthscope, args.model, out / "truthscope", args.data, args.version, args.limit, args.batch_size
    )

    n_answers, max_diff, mismatched = compare_answers(harness_answers(harness["samples"]), truthscope_answers(records))
    h = harness["results"]
    report = {
        "questions": len(questions),
        "answers_compared": n_answers,
        "harness": {"mc1": h["ts_truthfulqa_mc1"]["acc,none"], "mc2": h["ts_truthfulqa_mc2"]["acc,none"]},
        "truthscope": {"mc1": summary["scores"]["mc1"]["mean"], "mc2": summary["scores"]["mc2"]["mean"]},
        "max_abs_loglikelihood_diff": max_diff,
        "harness_seconds": round(harness_seconds, 1),
        "truthscope_seconds": round(truthscope_seconds, 1),
        "speedup": round(harness_seconds / truthscope_seconds, 2),
        # CPU seconds of all threads: less sensitive than wall time to other work on the machine
        "harness_cpu_seconds": round(harness_cpu, 1),
        "truthscope_cpu_seconds": round(truthscope_cpu, 1),
        "cpu_speedup": round(harness_cpu / truthscope_cpu, 2),
        "harness_peak_rss_mib": round(harness_mib),
        "truthscope_peak_rss_mib": round(truthscope_mib),
        "load_average_at_end": os.getloadavg(),
        "mismatched_answer_lists": mismatched,
    }
    report["mc1_diff"] = abs(report["harness"]["mc1"] - report["truthscope"]["mc1"])
    report["mc2_diff"] = abs(report["harness"]["mc2"] - report["truthscope"]["mc2"])
    (out / "benchmark.json").write_text(json.dumps(report, indent=1))
    print(json.dumps(report, indent=1))
    print(f"wrote {out / 'benchmark.json'}")
    sys.exit(0 if not mismatched else 1)


if __name__ == "__main__":
    main()
