"""`LanguageModel` for OpenAI-compatible HTTP endpoints (vLLM and llama.cpp servers, LM Studio, Ollama,
hosted APIs): `--model openai:MODEL --base-url URL`.

Two protocols, and the spec says which, so a run config never mixes them:

    openai:MODEL        /v1/completions. Log-likelihoods from the prompt's own log-probabilities
                        (`echo` + `logprobs`, lm-evaluation-harness's API protocol); generation from
                        the same endpoint.
    openai-chat:MODEL   /v1/chat/completions, for chat-only endpoints. A log-likelihood can be asked
                        only of a one-letter continuation (" A", " B", ...): the context is sent as
                        one user turn and the letter's log-probability is read from the first reply
                        token's `top_logprobs` (letter choice: MC0/MC1 through `mc_letters`, never
                        the cloze `mc`). Generation through chat completions.

Continuation tokens: where a local tokenizer is known (`tokenizer=`, or MODEL is a local folder),
prompts are sent as token ids split by the harness rule (`encode_pair`, as the transformers backend);
otherwise as text, and the continuation is the tokens whose `text_offset` falls after the context.

The key is read from an environment variable (`OPENAI_API_KEY` unless `key_env` names another) and
sent only in the Authorization header: it is never part of a cache key, a record, a log line or an
error message. Every answered request is kept in a SQLite cache (`<cache>/api/requests.sqlite`)
keyed by endpoint, model and request body, so a repeated or interrupted run never pays twice.
Requests are batched (`batch_size` prompts per completions call), sent `concurrency` at a time, with
a timeout, and retried with exponential backoff on connection errors, timeouts, 429 and 5xx.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import random
import sqlite3
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl

from truthscope.errors import CacheError, TruthscopeError
from truthscope.models.base import GenerationRequest, Loglikelihood, LoglikelihoodRequest, cut_at_stop
from truthscope.paths import cache_dir

RETRY_STATUS = {408, 409, 429, 500, 502, 503, 504}
SPEC_OPTIONS = {"concurrency": int, "timeout": float, "max_retries": int, "key_env": str, "tokenizer": str}
TOP_LOGPROBS = 20  # the most OpenAI's chat endpoint returns


class RequestCache:
    """Answered requests, persistent across runs: key = SHA-256 of (endpoint, model, request body)."""

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        try:
            self._db = sqlite3.connect(self.path, check_same_thread=False, timeout=30)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("CREATE TABLE IF NOT EXISTS responses (key TEXT PRIMARY KEY, response TEXT NOT NULL)")
            self._db.commit()
        except sqlite3.DatabaseError as err:
            raise CacheError(
                f"the request cache {self.path} is unreadable ({err}): delete it to start afresh"
            ) from None

    @staticmethod
    def key(endpoint: str, model: str, body: dict) -> str:
        text = json.dumps({"endpoint": endpoint, "model": model, "request": body}, sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()

    def get(self, key: str) -> Any | None:
        with self._lock:
            row = self._db.execute("SELECT response FROM responses WHERE key = ?", (key,)).fetchone()
        return None if row is None else json.loads(row[0])

    def put(self, items: Sequence[tuple[str, Any]]) -> None:
        with self._lock:
            self._db.executemany(
                "INSERT OR REPLACE INTO responses (key, response) VALUES (?, ?)",
                [(k, json.dumps(v)) for k, v in items],
            )
            self._db.commit()

    def __len__(self) -> int:
        with self._lock:
            return self._db.execute("SELECT COUNT(*) FROM responses").fetchone()[0]

    def close(self) -> None:
        self._db.close()


class OpenAIModel:
    def __init__(
        self,
        model: str,
        base_url: str,
        *,
        chat: bool = False,
        key_env: str = "OPENAI_API_KEY",
        tokenizer=None,
        batch_size: int = 16,
        concurrency: int = 4,
        timeout: float = 120.0,
        max_retries: int = 6,
        backoff: float = 1.0,
        cache: RequestCache | str | os.PathLike | None = None,
        transport=None,
        sleep: Callable[[float], None] = time.sleep,
    ):
        try:
            import httpx
        except ImportError as err:
            raise TruthscopeError("OpenAI-compatible endpoints need httpx: pip install 'truthscope[api]'") from err
        if not base_url:
            raise TruthscopeError("openai: models need --base-url (or OPENAI_BASE_URL), e.g. http://127.0.0.1:8000/v1")
        self.model = model
        self.base_url = base_url.rstrip("/")
        self.chat = chat
        self.protocol = "chat-letters" if chat else "completions-echo"
        self.name = f"{'openai-chat' if chat else 'openai'}:{model}"
        self.tokenizer = tokenizer
        self.batch_size = 1 if chat else batch_size
        self.concurrency = concurrency
        self.max_retries = max_retries
        self.backoff = backoff
        self._sleep = sleep
        self._key = os.environ.get(key_env) or ""
        headers = {"Authorization": f"Bearer {self._key}"} if self._key else {}
        self._client = httpx.Client(
            base_url=self.base_url, headers=headers, timeout=httpx.Timeout(timeout), transport=transport
        )
        if cache is None:
            cache = cache_dir() / "api" / "requests.sqlite"
        self.cache = cache if isinstance(cache, RequestCache) else RequestCache(cache)
        self.requests_sent = 0  # HTTP calls made (answered or not)
        self._count_lock = threading.Lock()

    @classmethod
    def load(cls, spec: str, *, base_url: str | None = None, tokenizer: str | None = None, **options) -> OpenAIModel:
        """`openai:MODEL[?option=value&...]` or `openai-chat:MODEL[?...]`, options `concurrency`,
        `timeout`, `max_retries`, `key_env` and `tokenizer` (which defaults to MODEL where that is a
        local folder)."""
        prefix, _, rest = spec.partition(":")
        model, _, query = rest.partition("?")
        if prefix not in ("openai", "openai-chat") or not model:
            raise TruthscopeError(f"not an endpoint spec: {spec!r} (openai:MODEL or openai-chat:MODEL)")
        for key, value in parse_qsl(query, keep_blank_values=True, strict_parsing=bool(query)):
            if key not in SPEC_OPTIONS:
                raise TruthscopeError(f"unknown endpoint option {key!r}; known: {', '.join(SPEC_OPTIONS)}")
            try:
                options[key] = SPEC_OPTIONS[key](value)
            except ValueError:
                raise TruthscopeError(f"endpoint option {key}: not a valid value: {value!r}") from None
        tokenizer = options.pop("tokenizer", tokenizer)
        base_url = base_url or os.environ.get("OPENAI_BASE_URL")
        if tokenizer is None and (Path(model) / "tokenizer_config.json").exists():
            tokenizer = model
        tok = None
        if tokenizer is not None and prefix == "openai":
            from transformers import AutoTokenizer

            tok = AutoTokenizer.from_pretrained(tokenizer)
        return cls(model, base_url or "", chat=prefix == "openai-chat", tokenizer=tok, **options)

    # --- the contract ------------------------------------------------------------------------

    def loglikelihood(self, requests: Sequence[LoglikelihoodRequest]) -> list[Loglikelihood]:
        if self.chat:
            return self._letter_loglikelihoods(requests)
        prompts, starts = [], []
        for r in requests:
            prompt, start = self._prompt(r.context, r.continuation)
            prompts.append(prompt)
            starts.append(start)
        bodies = [{"prompt": p, "max_tokens": 1, "temperature": 0, "echo": True, "logprobs": 1} for p in prompts]
        choices = self._post_many("/completions", bodies)
        return [
            _echo_loglikelihood(c, start, isinstance(p, str))
            for c, start, p in zip(choices, starts, prompts, strict=True)
        ]

    def generate(self, requests: Sequence[GenerationRequest]) -> list[str]:
        bodies = []
        for r in requests:
            body: dict[str, Any] = {"max_tokens": r.max_new_tokens, "temperature": r.temperature}
            if r.temperature > 0:
                body["seed"] = r.seed
            stop = [s for s in r.stop if s][:4]  # OpenAI takes at most four; cut_at_stop does the rest
            if stop:
                body["stop"] = stop
            if self.chat:
                body["messages"] = [{"role": "user", "content": r.prompt}]
            else:
                body["prompt"] = r.prompt
            bodies.append(body)
        choices = self._post_many("/chat/completions" if self.chat else "/completions", bodies)
        texts = [(c["message"]["content"] or "") if self.chat else c["text"] for c in choices]
        return [cut_at_stop(t, r.stop) for t, r in zip(texts, requests, strict=True)]

    def close(self) -> None:
        self._client.close()
        self.cache.close()

    # --- prompts ------------------------------------------------------------------------------

    def _prompt(self, context: str, continuation: str) -> tuple[str | list[int], int]:
        """(prompt, where the continuation starts): token ids and a token index with a tokenizer,
        else text and a character offset (trailing context spaces moved to the continuation)."""
        if self.tokenizer is not None:
            ctx, cont = encode_pair(self.tokenizer, context, continuation)
            return list(ctx + cont), len(ctx)
        n_spaces = len(context) - len(context.rstrip())
        return context + continuation, len(context) - n_spaces

    def _letter_loglikelihoods(self, requests: Sequence[LoglikelihoodRequest]) -> list[Loglikelihood]:
        for r in requests:
            if len(r.continuation.strip()) != 1 or not r.continuation.strip().isalpha():
                raise TruthscopeError(
                    f"{self.name} (chat protocol) scores only one-letter answers (letter choice:"
                    f" `truthscope mc --protocol letters`); got continuation {r.continuation[:40]!r}"
                )
        contexts = list(dict.fromkeys(r.context for r in requests))
        bodies = [
            {
                "messages": [{"role": "user", "content": c}],
                "max_tokens": 1,
                "temperature": 0,
                "logprobs": True,
                "top_logprobs": TOP_LOGPROBS,
            }
            for c in contexts
        ]
        choices = self._post_many("/chat/completions", bodies)
        tops = {c: _first_token_top(choice) for c, choice in zip(contexts, choices, strict=True)}
        return [_letter_logprob(tops[r.context], r.continuation.strip()) for r in requests]

    # --- HTTP: cache, batches, concurrency, retries ------------------------------------------

    def _post_many(self, path: str, bodies: Sequence[dict]) -> list[dict]:
        """One choice per body, from the cache or the endpoint; completions bodies go `batch_size`
        prompts per call, `concurrency` calls at a time."""
        keys = [RequestCache.key(self.base_url + path, self.model, b) for b in bodies]
        results: list[dict | None] = [self.cache.get(k) for k in keys]
        missing = [i for i, r in enumerate(results) if r is None]
        # identical bodies are asked once
        first: dict[str, int] = {}
        for i in missing:
            first.setdefault(keys[i], i)
        # one call carries several prompts only where everything else in their bodies is the same
        groups: dict[str, list[int]] = {}
        for i in first.values():
            rest = {k: v for k, v in bodies[i].items() if k != "prompt"}
            groups.setdefault(json.dumps(rest, sort_keys=True), []).append(i)
        batches = [g[s : s + self.batch_size] for g in groups.values() for s in range(0, len(g), self.batch_size)]

        def send(batch: list[int]) -> None:
            if path == "/completions" and len(batch) > 1:
                body = {**bodies[batch[0]], "prompt": [bodies[i]["prompt"] for i in batch]}
            else:
                body = bodies[batch[0]]
            choices = sorted(self._post(path, body)["choices"], key=lambda c: c.get("index", 0))
            if len(choices) != len(batch):
                raise TruthscopeError(f"{self.name}: {len(choices)} choices for {len(batch)} prompts")
            self.cache.put([(keys[i], c) for i, c in zip(batch, choices, strict=True)])
            for i, c in zip(batch, choices, strict=True):
                results[i] = c

        with ThreadPoolExecutor(max_workers=self.concurrency) as pool:
            list(pool.map(send, batches))
        return [results[i] if results[i] is not None else results[first[keys[i]]] for i in range(len(bodies))]  # type: ignore[misc]

    def _post(self, path: str, body: dict) -> dict:
        import httpx

        payload = {"model": self.model, **body}
        for attempt in range(self.max_retries + 1):
            last = attempt == self.max_retries
            try:
                with self._count_lock:
                    self.requests_sent += 1
                response = self._client.post(path, json=payload)
            except (httpx.TimeoutException, httpx.TransportError) as err:
                if last:
                    raise TruthscopeError(self._redact(f"{self.name}: {self.base_url}{path}: {err!r}")) from None
            else:
                if response.status_code < 400:
                    try:
                        return response.json()
                    except ValueError:
                        raise TruthscopeError(f"{self.name}: {self.base_url}{path} answered with no JSON") from None
                if response.status_code not in RETRY_STATUS or last:
                    raise TruthscopeError(
                        self._redact(
                            f"{self.name}: {self.base_url}{path} answered {response.status_code}: {response.text[:300]}"
                        )
                    )
            self._sleep(self.backoff * 2**attempt * (1 + random.random()))
        raise AssertionError("unreachable")

    def _redact(self, message: str) -> str:
        return message.replace(self._key, "***") if self._key else message


# --- reading responses -------------------------------------------------------------------------


def encode_pair(tokenizer, context: str, continuation: str) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """lm-evaluation-harness's `_encode_pair`, with the transformers backend's own code."""
    from truthscope.models.huggingface import HuggingFaceModel

    return HuggingFaceModel.encode_pair(_Tokenized(tokenizer), context, continuation)  # type: ignore[arg-type]


class _Tokenized:
    """Just what `HuggingFaceModel.encode_pair` reads: the tokenizer and its `_encode`."""

    def __init__(self, tokenizer):
        self.tokenizer = tokenizer

    def _encode(self, text: str) -> list[int]:
        from truthscope.models.huggingface import HuggingFaceModel

        return HuggingFaceModel._encode(self, text)  # type: ignore[arg-type]


def _echo_loglikelihood(choice: dict, start: int, by_offset: bool) -> Loglikelihood:
    """Sum of the continuation tokens' log-probabilities in an echoed completion choice (the one
    generated token at the end is not part of the prompt)."""
    lp = choice["logprobs"]
    tokens, logprobs, tops = lp["tokens"], lp["token_logprobs"], lp.get("top_logprobs") or []
    if by_offset:
        offsets = lp["text_offset"]
        first = next((i for i, off in enumerate(offsets) if off >= start), len(offsets))
    else:
        first = start
    n_prompt = len(tokens) - 1 if len(tokens) > 1 else len(tokens)
    if first >= n_prompt:
        raise TruthscopeError("empty continuation after tokenisation")
    total, greedy = 0.0, True
    for i in range(first, n_prompt):
        if logprobs[i] is None:
            raise TruthscopeError("the endpoint returned no log-probability for a continuation token")
        total += logprobs[i]
        top = tops[i] if i < len(tops) else None
        if top and max(top, key=top.get) != tokens[i]:
            greedy = False
    return Loglikelihood(logprob=total, is_greedy=greedy, n_tokens=n_prompt - first)


def _first_token_top(choice: dict) -> dict[str, float]:
    content = (choice.get("logprobs") or {}).get("content") or []
    if not content:
        raise TruthscopeError("the chat endpoint returned no logprobs (does it support `top_logprobs`?)")
    return {t["token"]: t["logprob"] for t in content[0]["top_logprobs"]}


def _letter_logprob(top: dict[str, float], letter: str) -> Loglikelihood:
    """log P(the reply starts with `letter`): the log-sum over the listed tokens that are the letter
    with or without spaces. A letter outside the top list gets the lowest listed log-probability,
    an upper bound on its own."""
    matches = [lp for tok, lp in top.items() if tok.strip() == letter]
    if matches:
        peak = max(matches)
        value = peak + math.log(sum(math.exp(m - peak) for m in matches))
    else:
        value = min(top.values())
    best = max(top, key=lambda tok: top[tok])
    return Loglikelihood(logprob=value, is_greedy=best.strip() == letter, n_tokens=1)
