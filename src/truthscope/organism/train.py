"""The ladder: one Llama-style architecture (`transformers.LlamaConfig`) at several sizes, trained from
scratch on the organism's corpus with the same token budget, and saved as ordinary Hugging Face
folders (safetensors weights, the corpus tokenizer, `train_log.jsonl`, `organism.json`) that
`truthscope mc|gen|probe --model FOLDER` loads unchanged.

The tokenizer is a byte-level BPE (`tokenizers`) trained on the corpus once per build folder
(`tokenizer.json` there); every text starts with its `<|endoftext|>` token, as every document did in
training. Training is deterministic for a given (build, size, seed, budget, thread count): the seed
sets the initialisation and the order of the documents.
"""

from __future__ import annotations

import json
import math
import shutil
import time
from functools import partial
from pathlib import Path

import numpy as np
import torch
from pydantic import BaseModel, ConfigDict

from truthscope.errors import TruthscopeError
from truthscope.organism.corpus import read_corpus
from truthscope.organism.workers import run_jobs
from truthscope.runlog import write_json_atomic

BOS = "<|endoftext|>"
# name: (d_model, layers, heads, d_mlp); non-embedding parameters ~ 16 d^2 per layer (17K ... 1.3M, 80x)
SIZES: dict[str, tuple[int, int, int, int]] = {
    "xs": (32, 1, 2, 128),
    "s": (48, 2, 3, 192),
    "m": (64, 3, 4, 256),
    "l": (96, 4, 4, 384),
    "xl": (128, 5, 4, 512),
}


class TrainConfig(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    size: str = "s"
    seed: int = 0
    tokens: int = 3_000_000  # training tokens, the same for every size (~33 passes over the default corpus)
    block: int = 128  # tokens per sequence
    batch: int = 16  # sequences per step
    lr: float = 3e-3
    warmup: float = 0.05  # share of steps with a linear warm-up; then cosine to lr / 10
    weight_decay: float = 0.0  # memorising facts is the point
    log_every: int = 10

    @property
    def steps(self) -> int:
        return max(1, self.tokens // (self.block * self.batch))


def corpus_tokenizer(build_dir: str | Path, vocab_size: int = 640):
    """The build's byte-level BPE (trained on the corpus the first time, then read from `tokenizer.json`),
    wrapped as a transformers fast tokenizer."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    path = Path(build_dir) / "tokenizer.json"
    if path.is_file():
        tokenizer = Tokenizer.from_file(str(path))
    else:
        tokenizer = Tokenizer(models.BPE())
        tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
        tokenizer.decoder = decoders.ByteLevel()
        trainer = trainers.BpeTrainer(
            vocab_size=vocab_size,
            special_tokens=[BOS],
            initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
            show_progress=False,
        )
        tokenizer.train_from_iterator(read_corpus(build_dir), trainer=trainer)
        bos_id = tokenizer.token_to_id(BOS)
        tokenizer.post_processor = processors.TemplateProcessing(
            single=f"{BOS} $A", pair=f"{BOS} $A $B", special_tokens=[(BOS, bos_id)]
        )
        tokenizer.save(str(path))
    return PreTrainedTokenizerFast(tokenizer_object=tokenizer, bos_token=BOS, eos_token=BOS, pad_token=BOS)


def llama_config(size: str, vocab_size: int, block: int, bos_id: int):
    from transformers import LlamaConfig

    if size not in SIZES:
        raise TruthscopeError(f"unknown size {size!r}; known: {', '.join(SIZES)}")
    d, layers, heads, mlp = SIZES[size]
    return LlamaConfig(
        vocab_size=vocab_size,
        hidden_size=d,
        intermediate_size=mlp,
        num_hidden_layers=layers,
        num_attention_heads=heads,
        num_key_value_heads=heads,
        max_position_embeddings=max(256, block),
        tie_word_embeddings=True,
        bos_token_id=bos_id,
        eos_token_id=bos_id,
        pad_token_id=bos_id,
    )


def non_embedding_params(model) -> int:
    embedding = model.get_input_embeddings().weight
    return int(sum(p.numel() for p in model.parameters() if p is not embedding))


def encoded_documents(build_dir: str | Path, tokenizer) -> list[list[int]]:
    return [list(ids) for ids in tokenizer(read_corpus(build_dir))["input_ids"]]


def batches(docs: list[list[int]], config: TrainConfig, rng: np.random.Generator):
    """Endless batches [batch, block]: each pass shuffles the documents and cuts their concatenation
    into blocks (a pass's last partial block is dropped)."""
    size = config.block * config.batch
    while True:
        stream = np.concatenate([docs[i] for i in rng.permutation(len(docs))])
        for start in range(0, len(stream) - size + 1, size):
            yield torch.from_numpy(stream[start : start + size].reshape(config.batch, config.block).astype(np.int64))


def train(build_dir: str | Path, out: str | Path, config: TrainConfig, *, progress=None, device: str = "cpu") -> dict:
    """Train one model of the ladder into `out`; returns what `organism.json` records. The initial
    weights and the data order depend on the seed alone; on another `device` the arithmetic differs,
    so only CPU runs with the same thread count repeat bit for bit."""
    from transformers import LlamaForCausalLM

    build_dir, out = Path(build_dir), Path(out)
    tokenizer = corpus_tokenizer(build_dir)
    docs = encoded_documents(build_dir, tokenizer)
    torch.manual_seed(config.seed)
    bos_id = tokenizer.convert_tokens_to_ids(BOS)
    assert isinstance(bos_id, int)
    model = LlamaForCausalLM(llama_config(config.size, len(tokenizer), config.block, bos_id)).to(device)  # pyright: ignore[reportArgumentType]
    model.train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=config.lr, betas=(0.9, 0.95), weight_decay=config.weight_decay)
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, _schedule(config.steps, config.warmup))
    out.mkdir(parents=True, exist_ok=True)
    log = []
    started = time.time()
    data = batches(docs, config, np.random.default_rng(config.seed))
    for step in range(1, config.steps + 1):
        x = next(data).to(device)
        loss = model(input_ids=x, labels=x).loss
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        schedule.step()
        if step % config.log_every == 0 or step == config.steps:
            log.append(
                {
                    "step": step,
                    "tokens": step * config.block * config.batch,
                    "loss": round(loss.item(), 5),
                    "lr": schedule.get_last_lr()[0],
                    "seconds": round(time.time() - started, 2),
                }
            )
            if progress:
                progress(log[-1])
    seconds = time.time() - started
    model.eval()
    shutil.rmtree(out / "eval", ignore_errors=True)  # evaluations of an earlier model in this folder
    model.save_pretrained(out, safe_serialization=True)
    tokenizer.save_pretrained(out)
    (out / "train_log.jsonl").write_text("".join(json.dumps(r) + "\n" for r in log), encoding="utf-8")
    facts = {
        "config": config.model_dump(),
        "build": json.loads((build_dir / "build.json").read_text(encoding="utf-8"))["sha256"],
        "params": int(sum(p.numel() for p in model.parameters())),
        "non_embedding_params": non_embedding_params(model),
        "corpus_tokens": int(sum(len(d) for d in docs)),
        "final_loss": log[-1]["loss"],
        "seconds": round(seconds, 2),
        "tokens_per_second": round(config.steps * config.block * config.batch / seconds, 1),
        "threads": torch.get_num_threads(),
        "device": str(device),
    }
    write_json_atomic(out / "organism.json", facts)
    return facts


def _schedule(steps: int, warmup: float):
    warm = max(1, int(steps * warmup))

    def factor(step: int) -> float:
        if step < warm:
            return (step + 1) / warm
        progress = (step - warm) / max(1, steps - warm)
        return 0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * progress))

    return factor


def model_dir(ladder_dir: str | Path, size: str, seed: int) -> Path:
    return Path(ladder_dir) / f"{size}-seed{seed}"


def trained(folder: str | Path, config: TrainConfig) -> bool:
    """Whether `folder` holds a finished model trained with exactly `config`."""
    path = Path(folder) / "organism.json"
    return path.is_file() and json.loads(path.read_text(encoding="utf-8"))["config"] == config.model_dump()


def train_ladder(build_dir, ladder_dir, sizes, seeds, base: TrainConfig, *, jobs: int = 1, echo=print) -> list[Path]:
    """Every (size, seed) of the ladder into `ladder_dir/<size>-seed<seed>`, skipping finished ones.
    With `jobs` > 1, that many models train side by side in worker processes of one thread each
    (the largest first), which uses a small machine's cores better than threads inside one tiny model."""
    folders, todo = [], []
    for seed in seeds:
        for size in sizes:
            config = base.model_copy(update={"size": size, "seed": seed})
            folder = model_dir(ladder_dir, size, seed)
            folders.append(folder)
            if trained(folder, config):
                echo(f"{folder}: already trained")
            else:
                todo.append((folder, config))
    todo.sort(key=lambda job: -SIZES[job[1].size][0])  # the largest first, so the slowest do not start last
    for (folder, _), facts in run_jobs(partial(train, build_dir), todo, jobs):
        echo(
            f"{folder}: {facts['non_embedding_params']:,} non-embedding params, loss {facts['final_loss']:.3f}, "
            f"{facts['seconds']:.0f} s ({facts['tokens_per_second']:,.0f} tokens/s)"
        )
    return folders
