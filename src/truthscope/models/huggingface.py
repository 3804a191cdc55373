"""`LanguageModel` for Hugging Face causal language models (any hub id or local folder).

Log-likelihoods follow lm-evaluation-harness's tokenisation exactly (`encode_pair`): trailing spaces
move from the context to the continuation, context+continuation is encoded as one string with the
tokenizer's own special tokens, and the continuation is whatever follows the context's tokens.

What is faster than the harness is the schedule, not the arithmetic. Requests are a prefix tree of
token ids: every context in a call shares a prefix (the few-shot preset), each context is shared by
all of its answers. Each level is computed once and its key/value cache reused:

    A  the longest common token prefix of all contexts     one pass, batch 1
    B  each distinct context after that prefix             batched, left-padded, past = A
    C  each continuation                                   batched, right-padded, past = A+B rows

Padding inside the cache is masked, and position ids are given explicitly, so every token sees
exactly the tokens and positions it would see in a single unpadded pass over context+continuation.
"""

from __future__ import annotations

import inspect
import os
from collections.abc import Sequence
from pathlib import Path

import torch

from truthscope.errors import TruthscopeError
from truthscope.models.base import GenerationRequest, Loglikelihood, LoglikelihoodRequest, cut_at_stop
from truthscope.models.kv_cache import common_prefix_length, output_cache, repeat_cache, select_cache

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


class HuggingFaceModel:
    def __init__(self, model, tokenizer, name: str, batch_size: int = 16, progress: bool = False):
        self.model = model.eval()
        self.tokenizer = tokenizer
        self.name = name
        self.batch_size = batch_size
        self.progress = progress
        self.device = next(model.parameters()).device
        # transformers 5 renamed `past_key_values` to `cache`
        self._cache_arg = "cache" if "cache" in inspect.signature(model.forward).parameters else "past_key_values"
        self.pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
        if self.pad_id is None:
            self.pad_id = 0

    @classmethod
    def load(
        cls,
        name_or_path: str | os.PathLike,
        *,
        device: str = "auto",
        dtype: str = "float32",
        trust_remote_code: bool = False,
        revision: str | None = None,
        allow_pickle: bool = False,
        batch_size: int = 16,
        name: str | None = None,
    ) -> HuggingFaceModel:
        """Load a hub id or a local folder. Weights load from safetensors only unless
        `allow_pickle`; remote code runs only with `trust_remote_code`."""
        from transformers import AutoModelForCausalLM, AutoTokenizer

        if dtype not in DTYPES:
            raise TruthscopeError(f"unknown dtype {dtype!r}; choose one of {', '.join(DTYPES)}")
        torch_device = resolve_device(device)
        source = str(name_or_path)
        common = {"revision": revision, "trust_remote_code": trust_remote_code}
        try:
            tokenizer = AutoTokenizer.from_pretrained(source, **common)
            model = AutoModelForCausalLM.from_pretrained(
                source, dtype=DTYPES[dtype], use_safetensors=None if allow_pickle else True, **common
            )
        except (OSError, ValueError) as err:
            hint = "" if Path(source).exists() else " (a hub id needs network access, or pass a local folder)"
            raise TruthscopeError(f"could not load model {source!r}{hint}: {err}") from err
        model.requires_grad_(False)
        # PreTrainedModel.to is `functools.wraps(nn.Module.to)`, which pyright reads as unbound (device as self)
        model = model.to(torch_device)  # pyright: ignore[reportArgumentType]
        return cls(model, tokenizer, name=name or source, batch_size=batch_size)

    # --- the contract ------------------------------------------------------------------------

    def loglikelihood(self, requests: Sequence[LoglikelihoodRequest]) -> list[Loglikelihood]:
        if not requests:
            return []
        encoded = [self.encode_pair(r.context, r.continuation) for r in requests]
        contexts = sorted({ctx for ctx, _ in encoded}, key=lambda c: (-len(c), c))
        by_context: dict[tuple[int, ...], list[int]] = {c: [] for c in contexts}
        for i, (ctx, _) in enumerate(encoded):
            by_context[ctx].append(i)

        longest = max(len(c) for c in contexts) + max(len(cont) for _, cont in encoded)
        window = getattr(self.model.config.get_text_config(), "sliding_window", None)
        if window and longest >= window - 1:
            # a rebuilt sliding-window cache keeps only the last window - 1 positions: no reuse
            return [self._full_pass(ctx, cont) for ctx, cont in encoded]

        prefix_len = min(common_prefix_length(contexts), min(len(c) for c in contexts) - 1)
        with torch.inference_mode():
            prefix_cache = self._forward_prefix(contexts[0][:prefix_len])
            results: list[Loglikelihood | None] = [None] * len(requests)
            for start in range(0, len(contexts), self.batch_size):
                batch = contexts[start : start + self.batch_size]
                first_logprobs, cache, ctx_mask = self._forward_contexts(batch, prefix_len, prefix_cache)
                rows = [(b, i) for b, ctx in enumerate(batch) for i in by_context[ctx]]
                rows.sort(key=lambda row: -len(encoded[row[1]][1]))
                for chunk_start in range(0, len(rows), self.batch_size):
                    chunk = rows[chunk_start : chunk_start + self.batch_size]
                    scored = self._score_continuations(
                        [encoded[i] for _, i in chunk],
                        [b for b, _ in chunk],
                        prefix_len,
                        first_logprobs,
                        cache,
                        ctx_mask,
                    )
                    for (_, i), result in zip(chunk, scored, strict=True):
                        results[i] = result
        return results  # type: ignore[return-value]

    def generate(self, requests: Sequence[GenerationRequest]) -> list[str]:
        """Greedy or sampled decoding, batched over prompts of similar length (left-padded).

        Sampled requests are batched only with requests of the same temperature and seed, and the
        seed is set before their batch, so the same requests in the same groups give the same text."""
        if not requests:
            return []
        encoded = [self._encode(r.prompt) for r in requests]
        outputs: list[str] = [""] * len(requests)
        # HF stops a row at any stop string of the batch: batch only requests that share theirs
        groups: dict[tuple, list[int]] = {}
        for i, r in enumerate(requests):
            groups.setdefault((r.stop, r.max_new_tokens, r.temperature, r.seed), []).append(i)
        batches = []
        for members in groups.values():
            members.sort(key=lambda i: (-len(encoded[i]), i))
            batches += [members[s : s + self.batch_size] for s in range(0, len(members), self.batch_size)]
        for idx in batches:
            width = max(len(encoded[i]) for i in idx)
            ids = torch.full((len(idx), width), self.pad_id, dtype=torch.long)
            mask = torch.zeros((len(idx), width), dtype=torch.long)
            for row, i in enumerate(idx):
                ids[row, width - len(encoded[i]) :] = torch.tensor(encoded[i])
                mask[row, width - len(encoded[i]) :] = 1
            stop = [s for s in requests[idx[0]].stop if s]
            first = requests[idx[0]]
            max_new_tokens = first.max_new_tokens
            sampling = {"do_sample": False}
            if first.temperature > 0:
                torch.manual_seed(first.seed or 0)
                sampling = {"do_sample": True, "temperature": first.temperature, "top_k": 0, "top_p": 1.0}
            with torch.inference_mode():
                generated = self.model.generate(
                    input_ids=ids.to(self.device),
                    attention_mask=mask.to(self.device),
                    **sampling,
                    max_new_tokens=max_new_tokens,
                    pad_token_id=self.pad_id,
                    stop_strings=stop or None,
                    tokenizer=self.tokenizer if stop else None,
                )
            for row, i in enumerate(idx):
                new_tokens = generated[row, width:]
                text = self.tokenizer.decode(new_tokens, skip_special_tokens=True)
                outputs[i] = cut_at_stop(text, requests[i].stop)
        return outputs

    # --- tokenisation ------------------------------------------------------------------------

    def encode_pair(self, context: str, continuation: str) -> tuple[tuple[int, ...], tuple[int, ...]]:
        """lm-evaluation-harness's `_encode_pair` for causal models."""
        n_spaces = len(context) - len(context.rstrip())
        if n_spaces:
            continuation = context[-n_spaces:] + continuation
            context = context[:-n_spaces]
        if not context:
            prefix = self.tokenizer.bos_token_id
            prefix = prefix if prefix is not None else self.tokenizer.eos_token_id
            return (prefix,), tuple(self._encode(continuation))
        whole = self._encode(context + continuation)
        context_ids = self._encode(context)
        continuation_ids = tuple(whole[len(context_ids) :])
        if not continuation_ids:
            raise TruthscopeError(f"empty continuation after tokenisation: {continuation!r}")
        return tuple(context_ids), continuation_ids

    def _encode(self, text: str) -> list[int]:
        ids = self.tokenizer(text).input_ids
        bos = self.tokenizer.bos_token
        # like the harness: no second BOS when the text already starts with it
        if bos and text.startswith(bos) and len(ids) > 1 and ids[0] == ids[1] == self.tokenizer.bos_token_id:
            ids = ids[1:]
        return ids

    def _full_pass(self, context: tuple[int, ...], continuation: tuple[int, ...]) -> Loglikelihood:
        """One unpadded pass over context + continuation, without any cache."""
        ids = torch.tensor([context + continuation], device=self.device)
        with torch.inference_mode():
            logits = self.model(input_ids=ids, use_cache=False).logits[0, len(context) - 1 : -1]
        return _score_steps(torch.log_softmax(logits.float(), dim=-1), continuation)

    # --- the three levels of the prefix tree ---------------------------------------------------

    def _forward_prefix(self, prefix: tuple[int, ...]):
        if not prefix:
            return None
        ids = torch.tensor([prefix], device=self.device)
        return output_cache(self.model(input_ids=ids, use_cache=True))

    def _forward_contexts(self, contexts: list[tuple[int, ...]], prefix_len: int, prefix_cache):
        """Left-padded pass over each context after the shared prefix. Returns the log-softmax at
        each context's last token, the cache (prefix + padded contexts) and its attention mask."""
        suffixes = [c[prefix_len:] for c in contexts]
        width = max(len(s) for s in suffixes)
        n = len(suffixes)
        ids = torch.full((n, width), self.pad_id, dtype=torch.long)
        mask = torch.zeros((n, prefix_len + width), dtype=torch.long)
        positions = torch.zeros((n, width), dtype=torch.long)
        mask[:, :prefix_len] = 1
        for row, s in enumerate(suffixes):
            ids[row, width - len(s) :] = torch.tensor(s)
            mask[row, prefix_len + width - len(s) :] = 1
            positions[row, width - len(s) :] = torch.arange(prefix_len, prefix_len + len(s))
        past = repeat_cache(prefix_cache, n, self.model.config)
        out = self.model(
            input_ids=ids.to(self.device),
            attention_mask=mask.to(self.device),
            position_ids=positions.to(self.device),
            use_cache=True,
            logits_to_keep=1,
            **{self._cache_arg: past},
        )
        first_logprobs = torch.log_softmax(out.logits[:, -1, :].float(), dim=-1)
        return first_logprobs, output_cache(out), mask

    def _score_continuations(self, pairs, context_rows, prefix_len, first_logprobs, context_cache, context_mask):
        """Right-padded pass over continuations, each on top of its context's cached rows."""
        rows = torch.tensor(context_rows)
        n, width = len(pairs), max(len(cont) for _, cont in pairs)
        ids = torch.full((n, width), self.pad_id, dtype=torch.long)
        cont_mask = torch.zeros((n, width), dtype=torch.long)
        positions = torch.zeros((n, width), dtype=torch.long)
        for row, (ctx, cont) in enumerate(pairs):
            ids[row, : len(cont)] = torch.tensor(cont)
            cont_mask[row, : len(cont)] = 1
            positions[row] = torch.arange(len(ctx), len(ctx) + width)
        mask = torch.cat([context_mask[rows], cont_mask], dim=1)
        logprobs = None
        if width > 1:  # the last continuation token predicts nothing we score
            past = select_cache(context_cache, rows.to(self.device), self.model.config)
            out = self.model(
                input_ids=ids[:, :-1].to(self.device),
                attention_mask=mask[:, :-1].to(self.device),
                position_ids=positions[:, :-1].to(self.device),
                use_cache=False,
                **{self._cache_arg: past},
            )
            logprobs = torch.log_softmax(out.logits.float(), dim=-1)
        results = []
        for row, (_, cont) in enumerate(pairs):
            steps = [first_logprobs[context_rows[row]]]
            if len(cont) > 1:
                assert logprobs is not None  # set above: width > 1
                steps.extend(logprobs[row, : len(cont) - 1])
            results.append(_score_steps(torch.stack(steps), cont))
        return results


def _score_steps(step_logprobs: torch.Tensor, continuation: Sequence[int]) -> Loglikelihood:
    """Sum and greediness of a continuation, from the log-softmax that predicts each of its tokens
    (`step_logprobs[k]` predicts `continuation[k]`; shape [len(continuation), vocab])."""
    target = torch.tensor(continuation, device=step_logprobs.device)
    picked = step_logprobs.gather(1, target[:, None])[:, 0]
    greedy = bool((step_logprobs.argmax(dim=-1) == target).all())
    return Loglikelihood(float(picked.double().sum()), greedy, len(continuation))


def resolve_device(device: str) -> torch.device:
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise TruthscopeError(f"device {device!r} asked for, but CUDA is not available here")
    return torch.device(device)
