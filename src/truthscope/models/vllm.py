"""`LanguageModel` on vLLM, in process: `--model vllm:ID_OR_PATH`.

Log-likelihoods come from prompt log-probabilities: each request is one prompt of token ids,
context + continuation split by lm-evaluation-harness's rule (the transformers backend's own
`encode_pair`), and the continuation's score is the sum of its tokens' prompt log-probabilities
(raw, before any sampling transform), greedy where each has rank 1. Prefix caching is on, and the
shared preset and each question are put in the cache first, so the scoring pass computes little more
than the answers. (vLLM itself skips the cache for prompt log-probabilities, since it leaves the
cached positions' log-probabilities unset: truthscope reads it, and runs a request again without it
where the cache hit reaches into the continuation.)

Generation is greedy at temperature 0 and sampled otherwise, each sampled request with its own seed
(the same request gives the same text whatever it is batched with); stop strings are the engine's,
and the text is also cut with `cut_at_stop`.

Engine options (`engine_options`, or after the spec as a query, e.g.
`vllm:PATH?tensor_parallel_size=2&gpu_memory_utilization=0.8`): `tensor_parallel_size`,
`gpu_memory_utilization`, `max_model_len`, `block_size` (the prefix cache's unit: a smaller one
recomputes less of a cached context), `enforce_eager`, `enable_prefix_caching`, `seed`,
`kv_cache_gb` (the CPU build's KV-cache size, `VLLM_CPU_KVCACHE_SPACE`, default 4 GiB). The engine starts worker
processes with `spawn`: a script that loads one needs the `if __name__ == "__main__":` guard.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from urllib.parse import parse_qsl

from truthscope.errors import TruthscopeError
from truthscope.models.base import GenerationRequest, Loglikelihood, LoglikelihoodRequest, cut_at_stop
from truthscope.models.kv_cache import common_prefix_length
from truthscope.models.openai import encode_pair

ENGINE_OPTIONS = {
    "tensor_parallel_size": int,
    "gpu_memory_utilization": float,
    "max_model_len": int,
    "block_size": int,
    "enforce_eager": lambda v: str(v).lower() in ("1", "true", "yes"),
    "enable_prefix_caching": lambda v: str(v).lower() in ("1", "true", "yes"),
    "seed": int,
    "kv_cache_gb": float,
}
DTYPES = ("float32", "bfloat16", "float16", "auto")
CPU_KV_CACHE_GB = 4  # the CPU build's KV cache unless kv_cache_gb or VLLM_CPU_KVCACHE_SPACE says otherwise


def parse_spec(spec: str) -> tuple[str, dict]:
    """`vllm:ID_OR_PATH[?key=value&...]` -> (ID_OR_PATH, engine options)."""
    prefix, _, rest = spec.partition(":")
    if prefix != "vllm" or not rest:
        raise TruthscopeError(f"not a vLLM spec: {spec!r} (vllm:ID_OR_PATH)")
    target, _, query = rest.partition("?")
    options: dict = {}
    for key, value in parse_qsl(query, keep_blank_values=True, strict_parsing=bool(query)):
        if key not in ENGINE_OPTIONS:
            raise TruthscopeError(f"unknown vLLM option {key!r}; known: {', '.join(ENGINE_OPTIONS)}")
        try:
            options[key] = ENGINE_OPTIONS[key](value)
        except ValueError:
            raise TruthscopeError(f"vLLM option {key}: not a valid value: {value!r}") from None
    return target, options


class VLLMModel:
    def __init__(self, llm, name: str):
        self.llm = llm
        self.name = name
        self.tokenizer = llm.get_tokenizer()
        self.recomputed = 0  # requests run again because their cache hit reached the continuation

    @classmethod
    def load(
        cls,
        name_or_path: str | os.PathLike,
        *,
        dtype: str = "float32",
        trust_remote_code: bool = False,
        revision: str | None = None,
        name: str | None = None,
        engine_options: dict | None = None,
    ) -> VLLMModel:
        try:
            from vllm import LLM  # pyright: ignore[reportMissingImports]
        except ImportError as err:
            raise TruthscopeError(
                "vllm: models need vLLM in this environment (GPU: pip install vllm; CPU: bash scripts/install_vllm.sh,"
                " then use .venv-vllm/bin/python or .venv-vllm/bin/truthscope)"
            ) from err
        if dtype not in DTYPES:
            raise TruthscopeError(f"unknown dtype {dtype!r}; choose one of {', '.join(DTYPES)}")
        options = {"enable_prefix_caching": True, "max_model_len": 2048, **(engine_options or {})}
        kv_cache_gb = options.pop("kv_cache_gb", None)
        if kv_cache_gb is not None:
            os.environ["VLLM_CPU_KVCACHE_SPACE"] = str(kv_cache_gb)
        elif "VLLM_CPU_KVCACHE_SPACE" not in os.environ and _cpu_build():
            # otherwise the CPU build sizes its cache as a share of all memory and refuses to start
            # on a machine where others use some of it
            os.environ["VLLM_CPU_KVCACHE_SPACE"] = str(CPU_KV_CACHE_GB)
        source = str(name_or_path)
        try:
            llm = LLM(
                model=source,
                dtype=dtype,
                revision=revision,
                trust_remote_code=trust_remote_code,
                **options,
            )
        except (OSError, ValueError) as err:
            hint = "" if Path(source).exists() else " (a hub id needs network access, or pass a local folder)"
            raise TruthscopeError(f"vLLM could not load {source!r}{hint}: {err}") from err
        except RuntimeError as err:  # the engine's workers failed to start (their log says why)
            raise TruthscopeError(
                f"vLLM could not start on {source!r}: {err} (memory: on CPU set kv_cache_gb, now"
                f" {os.environ.get('VLLM_CPU_KVCACHE_SPACE')} GiB; on a GPU lower gpu_memory_utilization)"
            ) from err
        return cls(llm, name or f"vllm:{source}")

    # --- the contract ------------------------------------------------------------------------

    def loglikelihood(self, requests: Sequence[LoglikelihoodRequest]) -> list[Loglikelihood]:
        """Three passes, as the prefix tree of the transformers backend: the contexts' common prefix,
        then each distinct context (both only fill the prefix cache), then every context+continuation
        with prompt log-probabilities, reading the cache. vLLM leaves the log-probabilities of cached
        positions unset, so a request whose cache hit reaches into its continuation is run again
        without reading the cache."""
        if not requests:
            return []
        from vllm import SamplingParams  # pyright: ignore[reportMissingImports]

        encoded = [self.encode_pair(r.context, r.continuation) for r in requests]
        contexts = sorted({ctx for ctx, _ in encoded})
        warm = SamplingParams(max_tokens=1, temperature=0.0, detokenize=False)
        if len(contexts) > 1 and (shared := common_prefix_length(contexts)) > 1:
            self.llm.generate([{"prompt_token_ids": list(contexts[0][:shared])}], warm, use_tqdm=False)
        self.llm.generate([{"prompt_token_ids": list(c)} for c in contexts], warm, use_tqdm=False)

        results: list[Loglikelihood | None] = [None] * len(requests)
        todo = sorted(range(len(requests)), key=lambda i: encoded[i][0] + encoded[i][1])
        for skip_cache in (False, True):
            params = SamplingParams(
                max_tokens=1, temperature=0.0, prompt_logprobs=0, detokenize=False, skip_reading_prefix_cache=skip_cache
            )
            prompts = [{"prompt_token_ids": list(encoded[i][0] + encoded[i][1])} for i in todo]
            outputs = self.llm.generate(prompts, params, use_tqdm=False)  # pyright: ignore[reportArgumentType]
            again = []
            for i, out in zip(todo, outputs, strict=True):
                context, continuation = encoded[i]
                cached = out.num_cached_tokens or 0
                if not skip_cache and cached > len(context) - 1:
                    again.append(i)  # the first continuation token's logits came from the cache
                    continue
                results[i] = _continuation_score(out.prompt_logprobs, len(context), continuation)
            self.recomputed += len(again)
            todo = again
            if not todo:
                break
        return results  # type: ignore[return-value]

    def generate(self, requests: Sequence[GenerationRequest]) -> list[str]:
        if not requests:
            return []
        from vllm import SamplingParams  # pyright: ignore[reportMissingImports]

        params = [
            SamplingParams(
                max_tokens=r.max_new_tokens,
                temperature=r.temperature,
                seed=r.seed if r.temperature > 0 else None,
                stop=[s for s in r.stop if s] or None,
            )
            for r in requests
        ]
        outputs = self.llm.generate([r.prompt for r in requests], params, use_tqdm=False)
        return [cut_at_stop(out.outputs[0].text, r.stop) for out, r in zip(outputs, requests, strict=True)]

    def encode_pair(self, context: str, continuation: str) -> tuple[tuple[int, ...], tuple[int, ...]]:
        """lm-evaluation-harness's `_encode_pair`: the transformers backend's code, on vLLM's tokenizer."""
        return encode_pair(self.tokenizer, context, continuation)


def _cpu_build() -> bool:
    from vllm.platforms import current_platform  # pyright: ignore[reportMissingImports]

    return current_platform.is_cpu()


def _continuation_score(prompt_logprobs, start: int, continuation: Sequence[int]) -> Loglikelihood:
    """Sum the prompt log-probabilities of `continuation`, which starts at prompt position `start`."""
    total, greedy = 0.0, True
    for offset, token in enumerate(continuation):
        entry = prompt_logprobs[start + offset][token]
        total += entry.logprob
        greedy = greedy and entry.rank == 1
    return Loglikelihood(logprob=total, is_greedy=greedy, n_tokens=len(continuation))
