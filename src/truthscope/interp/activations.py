"""Activation datasets for probes: hook-point activations at the last token of each item, cached on disk.

An item is a (context, continuation) pair with a truth label and a group:

    TruthfulQA   context = the question prompt (preset + question), continuation = " " + a reference
                 answer, in the `harness` or `upstream` format of `tasks.multiple_choice`;
                 group = the question, so its answers are never split between train and test
    statements   context = "", continuation = the statement (Geometry of Truth sets); group = the row

One forward pass per item gives both its activations (at the last token, where the whole answer has
been read) and the model's own log-likelihood of the continuation, so latent-versus-output compares
the two on exactly the same tokens. The shared prompt prefix (the few-shot preset) is computed once
and its key/value cache reused, as in `HuggingFaceModel.loglikelihood`.

Cache: `<cache>/activations/<model>/<dataset>-<key>/<hook>.npy` plus `logprobs.npy`, where the key
hashes the model's name, the SHA-256 of its weights and config (a folder retrained in place gets a
new key), its dtype and every item's text and label; `meta.json` records each array's shape, dtype
and SHA-256, and an array that does not match its record (truncated, replaced, another shape) is
computed again, with a warning, never used. Hooks missing from a cached set are computed and added.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from truthscope.cache import file_sha256, module_sha256, rebuilding
from truthscope.data.truthfulqa import TruthfulQA
from truthscope.interp.hooks import capture
from truthscope.models.huggingface import HuggingFaceModel
from truthscope.models.kv_cache import common_prefix_length, output_cache, repeat_cache
from truthscope.paths import cache_dir
from truthscope.runlog import write_json_atomic
from truthscope.tasks.multiple_choice import answer_sets
from truthscope.tasks.statements import Statement


@dataclass(frozen=True)
class ProbeItem:
    group: int  # question id / statement row
    label: int  # 1 = true
    context: str
    continuation: str
    category: str = ""


@dataclass(frozen=True)
class ActivationSet:
    name: str  # "truthfulqa" or a statement set
    items: tuple[ProbeItem, ...]
    features: dict[str, np.ndarray]  # hook -> [n_items, ...] at each item's last token
    logprobs: np.ndarray  # [n_items] log P(continuation | context); NaN where the context is empty

    @cached_property
    def labels(self) -> np.ndarray:
        return np.array([it.label for it in self.items], dtype=np.int64)

    @cached_property
    def groups(self) -> np.ndarray:
        return np.array([it.group for it in self.items], dtype=np.int64)


def truthfulqa_items(
    dataset: TruthfulQA, presets: dict[str, str], protocol: str = "harness", preset: str = "qa"
) -> list[ProbeItem]:
    """Every distinct reference answer of every question (the binary MC0 set excluded: it is a letter choice)."""
    items = []
    for q in dataset.questions:
        seen = set()
        for s in answer_sets(q, protocol, preset, presets):
            if s.name == "mc0":
                continue
            for answer, label in zip(s.answers, s.labels, strict=True):
                if answer not in seen:
                    seen.add(answer)
                    items.append(ProbeItem(q.id, label, s.context, " " + answer, q.category))
    return items


def statement_items(statements: Sequence[Statement]) -> list[ProbeItem]:
    return [ProbeItem(s.id, s.label, "", s.text, s.set) for s in statements]


# --- computing -----------------------------------------------------------------------------------


def _tokens(model: HuggingFaceModel, item: ProbeItem) -> tuple[tuple[int, ...], int]:
    """(token ids of context + continuation, number of continuation tokens; 0 when not scored)."""
    if not item.context:
        return tuple(model.tokenizer(item.continuation).input_ids), 0
    context, continuation = model.encode_pair(item.context, item.continuation)
    return context + continuation, len(continuation)


def compute_activations(
    model: HuggingFaceModel, items: Sequence[ProbeItem], hooks: Sequence[str], progress: bool = False
) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """(hook -> [n, ...] activations at each item's last token, continuation log-likelihoods)."""
    encoded = [_tokens(model, it) for it in items]
    # the shared prefix must end before every scored continuation's first prediction
    cap = min(len(ids) - n - 1 for ids, n in encoded)
    prefix_len = min(common_prefix_length([ids for ids, _ in encoded]), cap)
    features: dict[str, list] = {h: [None] * len(items) for h in hooks}
    logprobs = np.full(len(items), np.nan)
    order = sorted(range(len(items)), key=lambda i: len(encoded[i][0]))
    module = model.model
    with torch.inference_mode():
        prefix_cache = None
        if prefix_len:
            prefix = torch.tensor([encoded[0][0][:prefix_len]], device=model.device)
            prefix_cache = output_cache(module(input_ids=prefix, use_cache=True))
        batches = [order[s : s + model.batch_size] for s in range(0, len(order), model.batch_size)]
        for batch in tqdm(batches, desc=f"activations {model.name}", disable=not progress):
            suffixes = [encoded[i][0][prefix_len:] for i in batch]
            n, width = len(batch), max(len(s) for s in suffixes)
            ids = torch.full((n, width), model.pad_id, dtype=torch.long)
            mask = torch.zeros((n, prefix_len + width), dtype=torch.long)
            positions = torch.zeros((n, width), dtype=torch.long)
            mask[:, :prefix_len] = 1
            for row, s in enumerate(suffixes):  # left-padded: every item ends at the last column
                ids[row, width - len(s) :] = torch.tensor(s)
                mask[row, prefix_len + width - len(s) :] = 1
                positions[row, width - len(s) :] = torch.arange(prefix_len, prefix_len + len(s))
            longest = max(encoded[i][1] for i in batch)
            with capture(module, hooks) as acts:
                out = module(
                    input_ids=ids.to(model.device),
                    attention_mask=mask.to(model.device),
                    position_ids=positions.to(model.device),
                    logits_to_keep=longest + 1,
                    use_cache=prefix_cache is not None,
                    **(
                        {model._cache_arg: repeat_cache(prefix_cache, n, module.config)}
                        if prefix_cache is not None
                        else {}
                    ),
                )
            for h in hooks:
                last = acts[h][:, -1].float().cpu().numpy()
                for row, i in enumerate(batch):
                    features[h][i] = last[row]
            if longest:
                logits = out.logits[:, :-1].float()  # [n, longest, vocab]: the predictions of continuation tokens
                normaliser = torch.logsumexp(logits, dim=-1)  # no full log-softmax: vocabularies reach 262k
                for row, i in enumerate(batch):
                    ids_i, k = encoded[i]
                    if k:
                        target = torch.tensor(ids_i[-k:], device=logits.device)
                        picked = logits[row, -k:].gather(1, target[:, None])[:, 0] - normaliser[row, -k:]
                        logprobs[i] = float(picked.double().sum())
    return {h: np.stack(v) for h, v in features.items()}, logprobs


# --- the cache -----------------------------------------------------------------------------------


def cache_key(model_name: str, dtype: str, items: Sequence[ProbeItem], weights_sha256: str = "") -> str:
    digest = hashlib.sha256(json.dumps([model_name, dtype, weights_sha256]).encode())
    for it in items:
        digest.update(json.dumps([it.group, it.label, it.context, it.continuation]).encode())
    return digest.hexdigest()[:16]


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", name).strip("_") or "model"


def load_activations(
    model: HuggingFaceModel,
    name: str,
    items: Sequence[ProbeItem],
    hooks: Sequence[str],
    *,
    cache: Path | None = None,
    progress: bool = False,
) -> ActivationSet:
    """Activations of `items` at `hooks`, from the cache where present, computed (and stored) otherwise."""
    dtype = str(next(model.model.parameters()).dtype).removeprefix("torch.")
    weights = module_sha256(model.model)
    folder = (
        (cache or cache_dir())
        / "activations"
        / _safe(model.name)
        / f"{_safe(name)}-{cache_key(model.name, dtype, items, weights)}"
    )
    meta = _read_meta(folder)
    arrays = {h: _cached(folder, h, meta, len(items)) for h in (*hooks, "logprobs")}
    missing = [h for h in hooks if arrays[h] is None]
    if missing or arrays["logprobs"] is None:
        computed, logprobs = compute_activations(model, items, missing, progress=progress)
        folder.mkdir(parents=True, exist_ok=True)
        files = dict(meta.get("files") or {})
        for h, array in {**computed, "logprobs": logprobs}.items():
            _save_npy(folder / f"{h}.npy", array)
            files[h] = _record(folder / f"{h}.npy", array)
            arrays[h] = array
        meta = {"model": model.name, "weights_sha256": weights, "dtype": dtype, "dataset": name,
                "items": len(items), "files": files}  # fmt: skip
        write_json_atomic(folder / "meta.json", meta)
    logprobs = arrays.pop("logprobs")
    assert logprobs is not None
    return ActivationSet(name, tuple(items), {h: a for h, a in arrays.items() if a is not None}, logprobs)


def _read_meta(folder: Path) -> dict:
    try:
        meta = json.loads((folder / "meta.json").read_text(encoding="utf-8"))
    except FileNotFoundError:
        return {}
    except (OSError, ValueError):
        rebuilding(folder / "meta.json", "damaged", "computing the activations again")
        return {}
    return meta if isinstance(meta, dict) and isinstance(meta.get("files"), dict) else {}


def _record(path: Path, array: np.ndarray) -> dict:
    return {"shape": list(array.shape), "dtype": str(array.dtype), "sha256": file_sha256(path)}


def _cached(folder: Path, name: str, meta: dict, n_items: int) -> np.ndarray | None:
    """The array `name` from the cache when it matches its record in meta.json (None otherwise,
    with a warning when a file was there but did not match)."""
    path = folder / f"{name}.npy"
    if not path.exists():
        return None
    expected = (meta.get("files") or {}).get(name)
    problem = None
    if not isinstance(expected, dict):
        problem = "not recorded in meta.json"
    elif file_sha256(path) != expected.get("sha256"):
        problem = "its SHA-256 does not match meta.json (truncated or replaced)"
    else:
        try:
            array = np.load(path, allow_pickle=False)
        except (OSError, ValueError, EOFError) as err:
            array, problem = None, f"unreadable ({err})"
        if array is not None:
            if list(array.shape) != expected.get("shape") or array.shape[:1] != (n_items,):
                problem = f"shape {list(array.shape)}, expected {expected.get('shape')} for {n_items} items"
            else:
                return array
    rebuilding(path, problem or "damaged", "computing it again")
    return None


def _save_npy(path: Path, array: np.ndarray) -> None:
    tmp = path.with_name(f".{path.name}.tmp.npy")
    np.save(tmp, array)
    tmp.replace(path)  # a killed run never leaves a half-written array under the real name
