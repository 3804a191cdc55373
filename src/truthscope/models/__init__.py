"""Models behind the `LanguageModel` contract, and `load_model` to get one from a spec string."""

from __future__ import annotations

import os

from truthscope.models.base import GenerationRequest, LanguageModel, Loglikelihood, LoglikelihoodRequest
from truthscope.models.bundled import BUNDLED, bundled_model_dir
from truthscope.models.mock import MockModel


def load_model(
    spec: str,
    *,
    device: str = "auto",
    dtype: str = "float32",
    batch_size: int = 16,
    trust_remote_code: bool = False,
    revision: str | None = None,
    allow_pickle: bool = False,
    base_url: str | None = None,
    engine_options: dict | None = None,
):
    """`spec` is a bundled alias (`smollm2-135m`, `gemma3-270m`), `mock`, a local folder or a hub id;
    `vllm:ID_OR_PATH[?option=value&...]` (vLLM in process, `truthscope.models.vllm`); or
    `openai:MODEL` / `openai-chat:MODEL` with `base_url` (an OpenAI-compatible endpoint,
    `truthscope.models.openai`)."""
    from truthscope.models.huggingface import HuggingFaceModel

    if spec == "mock":
        return MockModel()
    if spec.startswith(("openai:", "openai-chat:")):
        from truthscope.models.openai import OpenAIModel

        return OpenAIModel.load(spec, base_url=base_url, batch_size=batch_size)
    if spec.startswith("vllm:"):
        from truthscope.models.vllm import VLLMModel, parse_spec

        target, options = parse_spec(spec)
        return VLLMModel.load(
            bundled_model_dir(target) if target in BUNDLED else target,
            dtype=dtype,
            trust_remote_code=trust_remote_code,
            revision=revision,
            name=spec,
            engine_options={**options, **(engine_options or {})},
        )
    path: str | os.PathLike = bundled_model_dir(spec) if spec in BUNDLED else spec
    return HuggingFaceModel.load(
        path,
        device=device,
        dtype=dtype,
        batch_size=batch_size,
        trust_remote_code=trust_remote_code,
        revision=revision,
        allow_pickle=allow_pickle,
        name=spec,
    )


__all__ = [
    "BUNDLED",
    "GenerationRequest",
    "LanguageModel",
    "Loglikelihood",
    "LoglikelihoodRequest",
    "MockModel",
    "bundled_model_dir",
    "load_model",
]
