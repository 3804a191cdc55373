"""What every on-disk cache shares: content hashes of its sources, and the message when a cached
artefact is damaged or stale and is rebuilt rather than used.

A cached artefact records the SHA-256 of what it was made from (a weights file, a module's weights,
a package version) and the shape of what it holds; a reader compares both before using it. A
mismatch is never used: the artefact is rebuilt with a warning (`rebuilding`), or refused with a
`CacheError` where it cannot be rebuilt here.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import weakref
from pathlib import Path

log = logging.getLogger("truthscope.cache")

_MODULE_HASHES: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def file_sha256(path: str | os.PathLike, chunk: int = 2**22) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def module_sha256(module) -> str:
    """SHA-256 of a torch module's weights (every parameter and buffer: name, dtype, shape, bytes)
    and of its config when it has one. Remembered per module until a tensor changes in place
    (torch counts in-place writes in `tensor._version`)."""
    import torch

    tensors = list(module.state_dict(keep_vars=True).items())
    versions = tuple(t._version for _, t in tensors)
    known = _MODULE_HASHES.get(module)
    if known is not None and known[0] == versions:
        return known[1]
    digest = hashlib.sha256()
    config = getattr(module, "config", None)
    if config is not None and hasattr(config, "to_json_string"):
        digest.update(config.to_json_string(use_diff=False).encode())
    with torch.no_grad():
        for name, tensor in tensors:
            data = tensor.detach().contiguous().cpu()
            digest.update(json.dumps([name, str(data.dtype), list(data.shape)]).encode())
            digest.update(data.reshape(-1).view(torch.uint8).numpy().tobytes())
    _MODULE_HASHES[module] = (versions, digest.hexdigest())
    return digest.hexdigest()


def rebuilding(path: str | Path, problem: str, what: str) -> None:
    """Say (once, on stderr through logging) that a cached artefact is not used and why."""
    log.warning("truthscope: %s: %s; %s", path, problem, what)
