"""Key/value-cache plumbing shared by the Hugging Face backend and the interpretability code,
written against both transformers 4.5x (`key_cache` lists, `past_key_values`) and 5.x (`layers`, `cache`)."""

from __future__ import annotations

import torch


def common_prefix_length(sequences: list[tuple[int, ...]]) -> int:
    first, n = sequences[0], min(len(s) for s in sequences)
    for i in range(n):
        token = first[i]
        if any(s[i] != token for s in sequences):
            return i
    return n


def output_cache(output):
    return output["cache"] if "cache" in output else output["past_key_values"]


def cache_tensors(cache) -> list[tuple[torch.Tensor, torch.Tensor]]:
    if hasattr(cache, "layers"):
        return [(layer.keys, layer.values) for layer in cache.layers]
    return list(zip(cache.key_cache, cache.value_cache, strict=True))


def make_cache(tensors, config):
    from transformers import DynamicCache

    try:
        return DynamicCache(ddp_cache_data=tensors, config=config)
    except TypeError:  # transformers < 5
        # absent from the transformers 5 the type checker sees
        return DynamicCache.from_legacy_cache(tuple(tensors))  # pyright: ignore[reportAttributeAccessIssue]


def repeat_cache(cache, n: int, config):
    if cache is None:
        return None
    return make_cache([(k.expand(n, -1, -1, -1), v.expand(n, -1, -1, -1)) for k, v in cache_tensors(cache)], config)
