"""Size and nesting limits on what truthscope reads, and the JSON/YAML readers that apply them.

Every input a user hands over (data files, answer files, sweep specs, run logs) goes through these,
so a 20 MB answer, a 10,000-deep list or a YAML alias bomb is a one-line `LimitError` naming the
file, never minutes of CPU, a RecursionError or a memory blow-up. Text with a lone surrogate
(`"\\ud800"` in JSON) is not Unicode and cannot be written back out: it is refused where it enters.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any

from truthscope.errors import LimitError, TruthscopeError

MAX_FILE_BYTES = 256 * 2**20  # any one input file (the largest packaged data file is ~1 MB)
MAX_SPEC_BYTES = 2**20  # a sweep spec
MAX_ANSWER_CHARS = 10_000  # one answer in `score` (upstream answers stop at 50 tokens)
MAX_DEPTH = 32  # nesting of a JSON/YAML value (run logs nest 6 deep)
MAX_NODES = 1_000_000  # values in one JSON/YAML document (the 2021 mc_task.json holds ~10,000)

_SURROGATE = re.compile("[\ud800-\udfff]")


def check_size(path: str | os.PathLike, limit: int = MAX_FILE_BYTES, what: str = "file") -> None:
    """Refuse a file over `limit` bytes before reading it (a missing file is left to the reader)."""
    try:
        size = os.stat(path).st_size
    except OSError:
        return
    if size > limit:
        raise LimitError(f"{path}: {what} of {size:,} bytes is over the limit of {limit:,} bytes")


def read_text(path: str | os.PathLike, limit: int = MAX_FILE_BYTES, what: str = "file", encoding="utf-8") -> str:
    """The text of `path` (at most `limit` bytes); missing, unreadable or non-UTF-8: one error naming it."""
    check_size(path, limit, what)
    try:
        return Path(path).read_text(encoding=encoding)
    except FileNotFoundError:
        raise TruthscopeError(f"{path}: file not found") from None
    except UnicodeDecodeError as err:
        raise TruthscopeError(f"{path}: bytes that are not UTF-8 (offset {err.start})") from None
    except OSError as err:
        raise TruthscopeError(f"{path}: cannot read: {err.strerror or err}") from None


def check_value(value: Any, where: str, depth: int = MAX_DEPTH, nodes: int = MAX_NODES) -> Any:
    """`value` (parsed JSON/YAML) after checking its nesting depth, its size and its strings (no lone
    surrogates, string keys only); iterative, and it stops at the first `nodes` values, so shared YAML
    aliases cannot make it run long. Returns `value`."""
    stack = [(value, 1)]
    seen = 0
    while stack:
        item, level = stack.pop()
        seen += 1
        if seen > nodes:
            raise LimitError(f"{where}: more than {nodes:,} values")
        if isinstance(item, str):
            if _SURROGATE.search(item):
                raise TruthscopeError(f"{where}: text with a lone surrogate ({_shown(item)}) is not Unicode")
            continue
        if isinstance(item, dict | list | tuple):
            if level > depth:
                raise LimitError(f"{where}: nested more than {depth} levels deep")
            if isinstance(item, dict):
                for key in item:
                    if not isinstance(key, str):
                        raise TruthscopeError(f"{where}: key {key!r} is not text")
                stack.extend((k, level + 1) for k in item)
                stack.extend((v, level + 1) for v in item.values())
            else:
                stack.extend((v, level + 1) for v in item)
    return value


def loads_json(text: str, where: str, depth: int = MAX_DEPTH, constants: bool = False) -> Any:
    """`json.loads` that raises only `TruthscopeError` (naming `where`, line and column) and applies
    the limits of `check_value`. NaN and Infinity are not JSON: refused unless `constants` (run logs,
    which Python's json writes with them, say a NaN log-probability)."""
    try:
        value = json.loads(text, parse_constant=None if constants else _no_constant)
    except json.JSONDecodeError as err:
        raise TruthscopeError(f"{where}: not valid JSON: line {err.lineno} column {err.colno}: {err.msg}") from None
    except RecursionError:
        raise LimitError(f"{where}: nested more than {depth} levels deep") from None
    except ValueError as err:  # a constant refused by _no_constant; an integer over Python's digit limit
        raise TruthscopeError(f"{where}: not valid JSON: {err}") from None
    return check_value(value, where, depth)


def load_yaml(text: str, where: str, depth: int = MAX_DEPTH) -> Any:
    """`yaml.safe_load` that raises only `TruthscopeError` and applies the limits of `check_value`."""
    import yaml

    try:
        value = yaml.safe_load(text)
    except yaml.YAMLError as err:
        raise TruthscopeError(f"{where}: not valid YAML: {' '.join(str(err).split())}") from None
    except RecursionError:
        raise LimitError(f"{where}: nested more than {depth} levels deep") from None
    except ValueError as err:  # e.g. a timestamp YAML reads but Python cannot hold
        raise TruthscopeError(f"{where}: not valid YAML: {err}") from None
    return check_value(value, where, depth)


def check_answer(answer: str, where: str, limit: int = MAX_ANSWER_CHARS) -> str:
    if len(answer) > limit:
        raise LimitError(f"{where}: an answer of {len(answer):,} characters is over the limit of {limit:,}")
    return answer


def _no_constant(name: str):
    raise ValueError(f"{name} is not a JSON number")


def _shown(text: str) -> str:
    match = _SURROGATE.search(text)
    start = match.start() if match else 0
    return ascii(text[max(0, start - 10) : start + 10])
