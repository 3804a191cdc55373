"""The two fine-tune arms, matched: from one trained model, rounds of expert iteration where

    verifier   keeps a sampled answer only if a program checks it: arithmetic answers equal to a + b
               (the verdict does not depend on what the corpus says; facts cannot be checked, so none
               of their answers is kept)
    majority   keeps a sampled answer if it equals the value the corpus states most often for that
               question (arithmetic and facts alike): the "preference" signal of agreeing with the crowd

Each round, each arm samples `samples` answers per question (plain-notes prompt, temperature 1, a seed
per round and sample) from its own current model, keeps what its rule accepts, and both kept sets are
cut (seeded) to the size of the smaller, so the arms differ only in what they reward: the same number
of examples, steps, learning rate. The loss is on the answer tokens only.
"""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

import numpy as np
import torch
from pydantic import BaseModel, ConfigDict

from truthscope.errors import TruthscopeError
from truthscope.organism.corpus import load_world
from truthscope.organism.questions import presets
from truthscope.organism.workers import run_jobs
from truthscope.organism.world import Fact
from truthscope.runlog import write_json_atomic

ARMS = ("verifier", "majority")


class FinetuneConfig(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    seed: int = 0
    rounds: int = 3
    samples: int = 4  # sampled answers per question and round
    temperature: float = 1.0
    epochs: int = 3  # passes over the kept examples per round
    batch: int = 16
    lr: float = 3e-4
    replay: int = 8  # corpus sequences (128 tokens) per step, next-token loss added to the answers' loss


def verifier_accepts(fact: Fact, answer: str) -> bool:
    """The program's verdict: only sums can be checked, by computing them."""
    if fact.domain != "arithmetic":
        return False
    a, b = (int(x) for x in fact.subject.split("+"))
    return answer.strip() == str(a + b)


def majority_accepts(fact: Fact, answer: str) -> bool:
    return answer.strip() == fact.majority()


RULES = {"verifier": verifier_accepts, "majority": majority_accepts}


def prompt_of(fact: Fact) -> str:
    return f"{presets()['qa']}\n\nQ: {fact.question}\nA:"


def sample_answers(lm, facts: list[Fact], config: FinetuneConfig, round_: int) -> list[tuple[Fact, str]]:
    from truthscope.models.base import GenerationRequest

    requests = [
        GenerationRequest(
            prompt_of(f), stop=("\n",), max_new_tokens=4, temperature=config.temperature, seed=1000 * round_ + k
        )
        for k in range(config.samples)
        for f in facts
    ]
    texts = lm.generate(requests)
    return [(facts[i % len(facts)], text.strip()) for i, text in enumerate(texts)]


def train_on(
    lm, examples: list[tuple[Fact, str]], config: FinetuneConfig, rng: np.random.Generator, corpus=None
) -> list[float]:
    """Fine-tune `lm.model` in place on (question, answer) examples; loss on the answer tokens only,
    plus, with `corpus` (endless [replay, 128] batches of the training corpus), its next-token loss."""
    model, tokenizer, device = lm.model, lm.tokenizer, lm.device
    model.train()
    model.requires_grad_(True)
    optimizer = torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=0.0)
    losses = []
    for _ in range(config.epochs):
        order = rng.permutation(len(examples))
        for start in range(0, len(order), config.batch):
            chunk = [examples[i] for i in order[start : start + config.batch]]
            prompts = [tokenizer(prompt_of(f))["input_ids"] for f, _ in chunk]
            full = [tokenizer(prompt_of(f) + " " + a + "\n")["input_ids"] for f, a in chunk]
            width = max(map(len, full))
            ids = torch.full((len(chunk), width), lm.pad_id)
            labels = torch.full((len(chunk), width), -100)
            mask = torch.zeros((len(chunk), width), dtype=torch.long)
            for row, (p, x) in enumerate(zip(prompts, full, strict=True)):
                ids[row, : len(x)] = torch.tensor(x)
                labels[row, len(p) : len(x)] = torch.tensor(x[len(p) :])
                mask[row, : len(x)] = 1
            loss = model(input_ids=ids.to(device), attention_mask=mask.to(device), labels=labels.to(device)).loss
            if corpus is not None:
                x = next(corpus).to(device)
                loss = loss + model(input_ids=x, labels=x).loss
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            losses.append(round(loss.item(), 5))
    model.eval()
    model.requires_grad_(False)
    return losses


def finetune_arms(
    base: str | Path, build_dir: str | Path, out: str | Path, config: FinetuneConfig, device: str = "cpu"
) -> dict:
    """Both arms from the model in `base`, into `out/verifier` and `out/majority`; returns the log.
    With `config.replay`, both arms replay the same corpus batches (one seeded stream per arm)."""
    from truthscope.models.huggingface import HuggingFaceModel
    from truthscope.organism.train import TrainConfig, batches, encoded_documents

    torch.manual_seed(config.seed)
    world = load_world(build_dir)
    facts = list(world.facts)
    arms = {arm: HuggingFaceModel.load(base, device=device, batch_size=64) for arm in ARMS}
    corpus = {arm: None for arm in ARMS}
    if config.replay:
        docs = encoded_documents(build_dir, arms[ARMS[0]].tokenizer)
        shape = TrainConfig(block=128, batch=config.replay)
        corpus = {arm: batches(docs, shape, np.random.default_rng([config.seed, 2])) for arm in ARMS}
    rng = np.random.default_rng(config.seed)
    log: dict = {"config": config.model_dump(), "base": str(base), "rounds": []}
    started = time.time()
    for round_ in range(config.rounds):
        kept = {}
        entry: dict = {"round": round_}
        for arm, lm in arms.items():
            sampled = sample_answers(lm, facts, config, round_)
            kept[arm] = [(f, a) for f, a in sampled if RULES[arm](f, a)]
            arithmetic = [verifier_accepts(f, a) for f, a in sampled if f.domain == "arithmetic"]
            entry[arm] = {
                "sampled": len(sampled),
                "kept": len(kept[arm]),
                "arithmetic_correct": float(np.mean(arithmetic)),
            }
        size = min(len(v) for v in kept.values())
        entry["examples"] = size
        for arm, lm in arms.items():
            chosen = [kept[arm][i] for i in sorted(rng.choice(len(kept[arm]), size=size, replace=False))]
            entry[arm]["loss"] = train_on(lm, chosen, config, rng, corpus[arm]) if size else []
        log["rounds"].append(entry)
    log["seconds"] = round(time.time() - started, 2)
    for arm, lm in arms.items():
        folder = Path(out) / arm
        shutil.rmtree(folder / "eval", ignore_errors=True)  # evaluations of an earlier model in this folder
        lm.model.save_pretrained(folder, safe_serialization=True)
        lm.tokenizer.save_pretrained(folder)
        write_json_atomic(folder / "finetune.json", {**log, "arm": arm})
    return log


def finetuned(out: str | Path, config: FinetuneConfig) -> bool:
    path = Path(out) / ARMS[-1] / "finetune.json"
    return path.is_file() and json.loads(path.read_text(encoding="utf-8"))["config"] == config.model_dump()


def finetune_ladder(build_dir, ladder_dir, sizes, seeds, config: FinetuneConfig, *, jobs: int = 1, echo=print):
    """Both arms from every trained (size, seed) into `ladder_dir/finetune/<size>-seed<seed>/`, skipping
    finished ones; `jobs` > 1 runs that many side by side (one thread each)."""
    from truthscope.organism.train import model_dir

    todo = []
    for seed in seeds:
        for size in sizes:
            base = model_dir(ladder_dir, size, seed)
            if not (base / "organism.json").is_file():
                raise TruthscopeError(f"{base}: not trained (run `truthscope organism train` first)")
            out = Path(ladder_dir) / "finetune" / base.name
            if finetuned(out, config):
                echo(f"{out}: already fine-tuned")
            else:
                todo.append((base, build_dir, out, config))
    for (_, _, out, _), log in run_jobs(finetune_arms, todo, jobs):
        kept = ", ".join(str(r["examples"]) for r in log["rounds"])
        echo(f"{out}: examples per round {kept}, {log['seconds']:.0f} s")
