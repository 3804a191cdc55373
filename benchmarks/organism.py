"""The organism's ladder: measured training tokens/s per size, and the estimated time of the full ladder
(sizes x seeds at the same token budget, both fine-tune arms from every model, and the report's
evaluation of every model), printed before the ladder starts (`--run`).

    python benchmarks/organism.py [--jobs 2] [--tokens 3000000] [--seeds 0,1,2] [--run]

With `--jobs N` (> 1) every part runs N models side by side, one thread each, so the parts are timed
at one thread and the estimate divides their sum by N (even packing: a lower bound on the wall time);
with `--jobs 1` they are timed and run at `--threads`.
Each size trains `--probe-steps` steps into a scratch folder (after a warm-up; tokens/s counted from the
first logged step, since the first step also builds the token stream); the largest size's scratch model is
then evaluated (three presets and the truth probe) and fine-tuned with both arms once, to
time those parts. The estimate takes the largest model's evaluation and fine-tune times for every size, so
it is an upper bound for those parts. Figures on a machine with other work running are slower: the
script prints the load average beside them.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

from truthscope.organism.corpus import build
from truthscope.organism.evaluate import evaluate_folder, truth_probe
from truthscope.organism.finetune import FinetuneConfig, finetune_arms
from truthscope.organism.train import SIZES, TrainConfig, train
from truthscope.organism.world import WorldSpec


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=2, help="models side by side, one thread each")
    parser.add_argument("--threads", type=int, default=2, help="threads of the one model at a time (--jobs 1)")
    parser.add_argument("--tokens", type=int, default=TrainConfig().tokens)
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--probe-steps", type=int, default=24)
    parser.add_argument("--build", type=Path, default=Path("runs/organism/build"))
    parser.add_argument("--ladder", type=Path, default=Path("runs/organism/ladder"))
    parser.add_argument("--budget-hours", type=float, default=3.0)
    parser.add_argument("--run", action="store_true", help="Start the full ladder after the estimate.")
    args = parser.parse_args()
    threads = 1 if args.jobs > 1 else args.threads
    torch.set_num_threads(threads)
    seeds = [int(s) for s in args.seeds.split(",")]
    print(f"jobs {args.jobs}, threads {threads} each, load average {os.getloadavg()[0]:.2f} (1 min)")
    build(WorldSpec(), args.build)
    base = TrainConfig(tokens=args.tokens)
    per_size = {}
    with tempfile.TemporaryDirectory() as scratch:
        for size in SIZES:
            train(args.build, Path(scratch) / "warm", base.model_copy(update={"size": size, "tokens": 1}))
            tokens = args.probe_steps * base.block * base.batch
            probe = base.model_copy(update={"size": size, "tokens": tokens, "log_every": args.probe_steps // 3})
            facts = train(args.build, Path(scratch) / size, probe)
            # steady state: from the first logged step on (the first step also builds the token stream)
            log = [json.loads(line) for line in (Path(scratch) / size / "train_log.jsonl").read_text().splitlines()]
            first, last = log[0], log[-1]
            facts["tokens_per_second"] = (last["tokens"] - first["tokens"]) / (last["seconds"] - first["seconds"])
            per_size[size] = facts
            print(
                f"{size:>3}: {facts['non_embedding_params']:>9,} non-embedding params  "
                f"{facts['tokens_per_second']:>8,.0f} tokens/s  "
                f"-> {args.tokens / facts['tokens_per_second']:>6.0f} s per model"
            )
        # a trained largest model of the ladder if there is one: an untrained one keeps almost no
        # fine-tune examples, which would make the fine-tunes look faster than they are
        largest = Path(scratch) / list(SIZES)[-1]
        trained_largest = args.ladder / f"{largest.name}-seed0"
        if (trained_largest / "organism.json").is_file():
            shutil.rmtree(largest)
            shutil.copytree(trained_largest, largest, ignore=shutil.ignore_patterns("eval"))
            print(f"evaluation and fine-tunes timed on a copy of {trained_largest}")
        else:
            print(f"no trained model in {trained_largest}: fine-tunes timed on an untrained one (a lower bound)")
        started = time.time()
        evaluate_folder(largest, args.build)
        truth_probe(largest, args.build)
        evaluation = time.time() - started
        started = time.time()
        finetune_arms(largest, args.build, Path(scratch) / "ft", FinetuneConfig())
        finetuning = time.time() - started
    ratio = max(f["non_embedding_params"] for f in per_size.values()) / min(
        f["non_embedding_params"] for f in per_size.values()
    )
    training = len(seeds) * sum(args.tokens / f["tokens_per_second"] for f in per_size.values())
    evaluations = len(SIZES) * len(seeds) * 3 * evaluation
    finetunes = len(SIZES) * len(seeds) * finetuning
    total = (training + evaluations + finetunes) / args.jobs
    print(f"span: {ratio:.0f}x non-embedding parameters; {len(SIZES)} sizes x {len(seeds)} seeds")
    parts = (("training", training), ("fine-tunes", finetunes), ("evaluation", evaluations))
    print(" + ".join(f"{name} {seconds / 60:.1f} min" for name, seconds in parts) + f" (thread time, {threads} each)")
    budget = f"budget {args.budget_hours} h"
    print(f"estimated full ladder: {total / 3600:.2f} h ({budget}), {args.jobs} job(s) side by side")
    if args.run:
        command = ["truthscope", "organism"]
        where = ["--build", str(args.build), "--ladder", str(args.ladder), "--jobs", str(args.jobs)]
        for step in (
            ["train", *where, "--seeds", args.seeds, "--tokens", str(args.tokens)],
            ["finetune", *where, "--seeds", args.seeds],
            ["report", *where],
        ):
            print("$", " ".join(command + step), flush=True)
            subprocess.run(command + step, check=True, env={**os.environ, "OMP_NUM_THREADS": str(threads)})


if __name__ == "__main__":
    sys.exit(main())
