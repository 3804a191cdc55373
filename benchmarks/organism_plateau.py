"""How often does a ladder model stay on its plateau, per training recipe? A sweep over (tokens, lr)
recipes x sizes x seeds, each model trained by `organism.train.train` and scored on the build's facts
(preset `qa`, every value of each fact's domain, as `organism.evaluate.fact_scores` reads an `mc` record).

A model "fits" when its accuracy on the clean attribute facts reaches --fit (0.8 by default; the fitted
models of the 1.5M-token ladder reach 0.83-1.00, the plateau ones 0.38-0.73). Prints, per recipe and
size, the share of seeds that fit and the means of the prediction measures, and writes every model's
figures to --out as JSON lines. Meant for a GPU (--device cuda --workers 12: models train side by
side); on CPU use --workers 2. Not bit-identical to a CPU ladder: it chooses a recipe, the CPU ladder
is what gets reported.

    python benchmarks/organism_plateau.py --build runs/organism/build --recipes 1.5M:3e-3,3M:3e-3 \\
        --seeds 0-4 --device cuda --workers 12 --out runs/organism/plateau.jsonl
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import tempfile
import time
from pathlib import Path


def parse_tokens(text: str) -> int:
    scale = {"K": 1_000, "M": 1_000_000}.get(text[-1].upper(), 1)
    return int(float(text[:-1] if scale > 1 else text) * scale)


def parse_seeds(text: str) -> list[int]:
    if "-" in text:
        lo, hi = text.split("-")
        return list(range(int(lo), int(hi) + 1))
    return [int(s) for s in text.split(",")]


def score(folder: Path, build: Path, device: str) -> dict:
    """Per-fact scores (preset qa) of the model in `folder` on `device`: the `mc` task's answer set and
    prompt, scored through the transformers backend without a run folder, then averaged per group."""
    import numpy as np

    from truthscope.models.base import LoglikelihoodRequest
    from truthscope.models.huggingface import HuggingFaceModel
    from truthscope.organism.corpus import load_world
    from truthscope.organism.evaluate import fact_scores
    from truthscope.organism.questions import presets
    from truthscope.organism.report import GROUPS

    world = load_world(build)
    lm = HuggingFaceModel.load(folder, device=device, batch_size=256)
    header = presets()["qa"]
    requests = [
        LoglikelihoodRequest(f"{header}\n\nQ: {fact.question}\nA:", " " + value)
        for fact in world.facts
        for value in fact.values
    ]
    logprobs = iter(r.logprob for r in lm.loglikelihood(requests))
    scores = [
        fact_scores({"answers": {"mc2": [{"text": v, "logprob": next(logprobs)} for v in fact.values]}}, fact, "qa")
        for fact in world.facts
    ]

    def mean(group: str, key: str):
        values = [s[key] for s in scores if GROUPS[group](s) and s[key] is not None]
        return float(np.mean(values)) if values else None

    return {
        "clean_acc": mean("clean", "acc"),
        "arith_clean_acc": mean("arithmetic-clean", "acc"),
        "arith_stacked_acc": mean("arithmetic-stacked f<0.5", "acc"),
        "stacked_p_true": mean("stacked f<0.5", "p_true"),
        "stacked_p_mis": mean("stacked f<0.5", "p_mis"),
        "stacked_tv": mean("stacked f<0.5", "tv"),
        "scattered_acc": mean("scattered f<0.5", "acc"),
    }


def job(args: tuple) -> dict:
    build, size, seed, tokens, lr, device, threads, keep = args
    import torch

    from truthscope.organism.train import TrainConfig, train

    torch.set_num_threads(threads)
    config = TrainConfig(size=size, seed=seed, tokens=tokens, lr=lr)
    with tempfile.TemporaryDirectory() as scratch:
        folder = Path(keep) / f"{size}-seed{seed}-{tokens}-{lr:g}" if keep else Path(scratch)
        started = time.time()
        facts = train(build, folder, config, device=device)
        row = {
            "arm": "base",
            "size": size,
            "seed": seed,
            "tokens": tokens,
            "lr": lr,
            "final_loss": facts["final_loss"],
            "train_seconds": facts["seconds"],
            **score(folder, Path(build), device),
            "seconds": round(time.time() - started, 1),
        }
    return row


def finetune_job(args: tuple) -> list[dict]:
    """Both fine-tune arms from a kept base model with one (lr, replay) recipe, each arm scored."""
    build, base, base_row, lr, replay, device, threads = args
    import torch

    from truthscope.organism.finetune import ARMS, FinetuneConfig, finetune_arms

    torch.set_num_threads(threads)
    config = FinetuneConfig(lr=lr, replay=replay)
    started = time.time()
    with tempfile.TemporaryDirectory() as out:
        log = finetune_arms(base, build, out, config, device=device)
        rows = [
            {**base_row, "arm": arm, "ft_lr": lr, "replay": replay, "examples": [r["examples"] for r in log["rounds"]],
             **score(Path(out) / arm, Path(build), device), "seconds": round(time.time() - started, 1)}
            for arm in ARMS
        ]  # fmt: skip
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--build", default="runs/organism/build")
    parser.add_argument("--recipes", default="1.5M:3e-3,3M:3e-3", help="tokens:lr, comma separated")
    parser.add_argument("--sizes", default="xs,s,m,l,xl")
    parser.add_argument("--seeds", default="0-4")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--threads", type=int, default=1, help="torch threads per worker")
    parser.add_argument("--fit", type=float, default=0.8)
    parser.add_argument("--finetunes", default="", help="lr:replay fine-tune recipes run from each base model")
    parser.add_argument("--keep", default="", help="folder for the base models (needed with --finetunes)")
    parser.add_argument("--out", default="runs/organism/plateau.jsonl")
    args = parser.parse_args()
    recipes = [(parse_tokens(t), float(lr)) for t, lr in (r.split(":") for r in args.recipes.split(","))]
    sizes = args.sizes.split(",")
    # the largest first, so the slowest jobs do not start last
    jobs = [
        (args.build, size, seed, tokens, lr, args.device, args.threads, args.keep)
        for size in reversed(sizes)
        for tokens, lr in recipes
        for seed in parse_seeds(args.seeds)
    ]
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    rows, rows_ft = [], []
    started = time.time()
    with mp.get_context("spawn").Pool(args.workers) as pool, out.open("w") as sink:
        for row in pool.imap_unordered(job, jobs):
            rows.append(row)
            sink.write(json.dumps(row) + "\n")
            sink.flush()
            print(
                f"[{time.time() - started:6.0f} s] {row['size']:>2} seed {row['seed']} "
                f"{row['tokens']:>9,} lr {row['lr']:g}: "
                f"clean {row['clean_acc']:.2f} loss {row['final_loss']:.3f} ({row['seconds']:.0f} s)",
                flush=True,
            )
        finetunes = [(float(lr), int(r)) for lr, r in (x.split(":") for x in args.finetunes.split(",") if x)]
        ft_jobs = [
            (args.build, str(Path(args.keep) / f"{r['size']}-seed{r['seed']}-{r['tokens']}-{r['lr']:g}"),
             {k: r[k] for k in ("size", "seed", "tokens", "lr")}, lr, replay, args.device, args.threads)
            for r in sorted(rows, key=lambda r: -len(r["size"]))
            for lr, replay in finetunes
        ]  # fmt: skip
        for arm_rows in pool.imap_unordered(finetune_job, ft_jobs):
            for row in arm_rows:
                sink.write(json.dumps(row) + "\n")
                print(
                    f"[{time.time() - started:6.0f} s] {row['size']:>2} seed {row['seed']} {row['arm']} "
                    f"lr {row['ft_lr']:g} "
                    f"replay {row['replay']}: clean {row['clean_acc']:.2f} P(mis) {row['stacked_p_mis']:.2f} "
                    f"arith-stacked {row['arith_stacked_acc']:.2f} ({row['seconds']:.0f} s)",
                    flush=True,
                )
            sink.flush()
            rows_ft.extend(arm_rows)
    print(f"\n{len(rows)} models in {time.time() - started:.0f} s; fits = clean attribute accuracy >= {args.fit}")
    print("| tokens | lr | size | fit | clean acc | arith clean | stacked f<0.5 P(mis) | stacked TV | scattered acc |")
    print("|---|---|---|---|---|---|---|---|---|")
    for tokens, lr in recipes:
        for size in sizes:
            group = [r for r in rows if (r["tokens"], r["lr"], r["size"]) == (tokens, lr, size)]
            if not group:
                continue

            def mean(key, group=group):
                return sum(r[key] for r in group) / len(group)

            fits = sum(r["clean_acc"] >= args.fit for r in group)
            print(
                f"| {tokens:,} | {lr:g} | {size} | {fits}/{len(group)} | {mean('clean_acc'):.2f} | "
                f"{mean('arith_clean_acc'):.2f} | "
                f"{mean('stacked_p_mis'):.2f} | {mean('stacked_tv'):.2f} | {mean('scattered_acc'):.2f} |"
            )
    if rows_ft:
        keys = ("clean_acc", "stacked_p_mis", "stacked_p_true", "arith_stacked_acc", "arith_clean_acc")
        print("\n| arm | ft lr | replay | models | " + " | ".join(keys) + " |")
        print("|---|---|---|---|" + "---|" * len(keys))
        recipes_ft = sorted({(r["ft_lr"], r["replay"]) for r in rows_ft})
        for arm, lr, replay in [("base", None, None)] + [
            (a, lr, rp) for lr, rp in recipes_ft for a in ("verifier", "majority")
        ]:
            group = (
                rows
                if arm == "base"
                else [r for r in rows_ft if (r["arm"], r["ft_lr"], r["replay"]) == (arm, lr, replay)]
            )
            cells = " | ".join(f"{sum(r[k] for r in group) / len(group):.2f}" for k in keys)
            print(f"| {arm} | {lr} | {replay} | {len(group)} | {cells} |")


if __name__ == "__main__":
    main()
