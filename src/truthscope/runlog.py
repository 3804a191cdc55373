"""The one results-log format every run writes and every report reads.

A run directory holds:

    config.json    what was asked: `RunConfig` (task and its options, the model and facts about it,
                   the data and its SHA-256, how the items were drawn, the seed)
    records.jsonl  one JSON object per item (question, statement, ...): a `Record`, with an integer
                   `id` and its per-item `scores`, plus whatever the task keeps about the item
    summary.json   the aggregate scores plus provenance (package versions, wall time)

Records are appended one batch per write (flushed and fsynced), so a killed run loses at most the
batch in flight. Started again with the same config and directory, a run skips the items already
recorded. `finish` rewrites the records sorted by id and writes the summary, each atomically.
Folders written before schema 2 are refused for resuming (with a message saying how to re-run) and
still load for reading.
"""

from __future__ import annotations

import contextlib
import json
import os
import platform
import tempfile
import time
from collections.abc import Iterable, Mapping
from importlib import metadata
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from truthscope import limits
from truthscope.errors import RunLogError, TruthscopeError
from truthscope.limits import check_size, loads_json

SCHEMA = 2


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class ModelFacts(_Frozen):
    """What a run needs to know about its model to be placed on a scaling axis."""

    spec: str  # what was asked for: bundled alias, folder, hub id
    label: str  # the short name in tables, plots and folders
    params: int | None = None  # every parameter
    non_embedding_params: int | None = None  # without token (and untied output) embeddings
    family: str | None = None  # the architecture (`config.model_type`), e.g. llama, gemma3
    dtype: str | None = None
    quantisation: str | None = None  # e.g. "gguf q4_1, dequantised"; None: full precision
    description: str | None = None


class Sample(_Frozen):
    """How a run's items were drawn from the full set: all of them, the first `n`, or a seeded
    random sample of `n` kept in their original order (see `truthscope.sampling.draw`)."""

    how: Literal["all", "first", "seeded"] = "all"
    n: int | None = Field(default=None, ge=1)
    seed: int = 0


class DataFacts(_Frozen):
    version: str | None = None
    sha256: dict[str, str] = {}


class RunConfig(_Frozen):
    """`config.json`: everything that defines a run's numbers; a resume must match it exactly."""

    schema_version: int = Field(default=SCHEMA, alias="schema")
    task: str
    options: dict[str, Any] = {}
    model: ModelFacts | None = None
    data: DataFacts | None = None
    sample: Sample = Sample()
    seed: int = 0
    sweep: str | None = None
    execution: dict[str, Any] = {}  # batch and group sizes: they change float rounding, so a resume keeps them

    model_config = ConfigDict(frozen=True, extra="forbid", populate_by_name=True)

    def dump(self) -> dict:
        return self.model_dump(mode="json", by_alias=True)


class Record(BaseModel):
    """One item's line in `records.jsonl`: its id, its scores, and any other fields the task keeps."""

    model_config = ConfigDict(extra="allow")

    id: int = Field(strict=True)
    scores: dict[str, float | None]


class RunLog:
    def __init__(self, directory: str | os.PathLike, config: RunConfig | Mapping):
        """Open (or create) a run directory for `config`; refuses a directory that holds a run
        with a different config, or one written by an older truthscope."""
        self.directory = Path(directory)
        config = config.dump() if isinstance(config, RunConfig) else {"schema": SCHEMA, **config}
        self.config = json.loads(json.dumps(config))  # normalised as it will be stored
        if self.directory.exists() and not self.directory.is_dir():
            raise TruthscopeError(f"{self.directory} is a file; --out must be a folder")
        self.directory.mkdir(parents=True, exist_ok=True)
        self._lock = lock_folder(self.directory)
        config_path = self.directory / "config.json"
        if config_path.exists():
            try:
                stored = read_json(config_path)
            except TruthscopeError as err:
                raise RunLogError(f"{err}: the run folder is damaged; use another --out") from None
            if not isinstance(stored, dict) or stored.get("schema") != self.config.get("schema"):
                raise RunLogError(
                    f"{self.directory} was written by an older truthscope (run-log schema "
                    f"{stored.get('schema', 1) if isinstance(stored, dict) else '?'}, now {SCHEMA}); "
                    "it can still be reported, but not resumed: run again with a new --out"
                )
            if stored != self.config:
                raise RunLogError(
                    f"{self.directory} holds a run with other arguments ({', '.join(_differences(stored, self.config))}"
                    " differ); use another --out, or the same arguments to resume it"
                )
        else:
            write_json_atomic(config_path, self.config)
        self.records: dict[int, dict] = {r["id"]: r for r in self._read_records()}

    @property
    def records_path(self) -> Path:
        return self.directory / "records.jsonl"

    def done(self, item_id: int) -> bool:
        return item_id in self.records

    def append(self, records: Iterable[Mapping]) -> None:
        records = [json.loads(json.dumps(_validated(r))) for r in records]
        if not records:
            return
        with open(self.records_path, "a", encoding="utf-8") as f:
            f.write("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records))
            f.flush()
            os.fsync(f.fileno())
        for r in records:
            self.records[r["id"]] = r

    def provenance(self, started: float, resumed_with: int | None = None) -> dict:
        """The keys every summary ends with: package versions, this run's config, wall time (of this
        invocation, `started` being its `time.time()`), and how many items an earlier one recorded."""
        out = {"environment": environment(), "config": self.config, "wall_seconds": round(time.time() - started, 3)}
        if resumed_with is not None:
            out["resumed_with"] = resumed_with
        return out

    def finish(self, summary: Mapping) -> None:
        ordered = [self.records[k] for k in sorted(self.records)]
        write_text_atomic(self.records_path, "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in ordered))
        write_json_atomic(self.directory / "summary.json", summary)

    def _read_records(self) -> list[dict]:
        """Complete lines only: a line cut by a kill is dropped (and cut from the file)."""
        if not self.records_path.exists():
            return []
        check_size(self.records_path)
        raw = self.records_path.read_bytes()
        seen: dict[int, int] = {}
        end = raw.rfind(b"\n") + 1
        if end < len(raw):
            with open(self.records_path, "r+b") as f:
                f.truncate(end)
        records = []
        for number, line in enumerate(raw[:end].splitlines(), start=1):
            try:
                records.append(_validated(loads_json(line.decode("utf-8"), "record", constants=True)))
            except (UnicodeDecodeError, TruthscopeError) as err:
                raise RunLogError(
                    f"{self.records_path}: line {number} is not a valid record ({err}); remove it to resume"
                ) from None
            if records[-1]["id"] in seen:
                raise RunLogError(
                    f"{self.records_path}: line {number} repeats record id {records[-1]['id']} (first at line "
                    f"{seen[records[-1]['id']]}); remove it to resume"
                )
            seen[records[-1]["id"]] = number
        return records


def _validated(record: Mapping) -> dict:
    try:
        return Record.model_validate(record).model_dump(mode="json")
    except ValidationError as err:
        where = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in err.errors())
        raise TruthscopeError(f"not a record ({where})") from None


def _differences(stored: Mapping, current: Mapping, prefix: str = "") -> list[str]:
    out = []
    for key in sorted(set(stored) | set(current)):
        a, b = stored.get(key), current.get(key)
        if isinstance(a, Mapping) and isinstance(b, Mapping):
            out += _differences(a, b, f"{prefix}{key}.")
        elif a != b:
            out.append(prefix + key)
    return out


def read_run(directory: str | os.PathLike) -> tuple[dict, list[dict], dict | None]:
    """(config, records sorted by id, summary or None) of a run directory (any schema). A damaged
    file is a `RunLogError` naming it (and the line of a bad record); see `check_run` for what the
    readers of a run may rely on."""
    directory = Path(directory)
    config_path = directory / "config.json"
    if not config_path.exists():
        raise RunLogError(f"{directory}: not a truthscope run (no config.json)")
    config = read_json(config_path)
    records_path = directory / "records.jsonl"
    records = []
    if records_path.exists():
        check_size(records_path)
        try:
            lines = records_path.read_text(encoding="utf-8").splitlines()
        except UnicodeDecodeError as err:
            raise RunLogError(f"{records_path}: bytes that are not UTF-8 (offset {err.start})") from None
        records = [
            loads_json(line, f"{records_path}: line {n}", constants=True)
            for n, line in enumerate(lines, start=1)
            if line.strip()
        ]
    summary_path = directory / "summary.json"
    summary = read_json(summary_path) if summary_path.exists() else None
    check_run(directory, config, records, summary)
    return config, sorted(records, key=lambda r: r["id"]), summary


def check_run(directory: Path, config, records: list, summary) -> None:
    """What every reader of a run log relies on, checked once where it is read: a config object, a
    summary object whose `scores` map metrics to numbers, records that are objects with a unique
    integer `id` and numeric `scores`, and model facts of the right types."""

    def fail(file: str, what: str):
        raise RunLogError(f"{directory / file}: {what}; is this folder a truthscope run?")

    if not isinstance(config, dict):
        fail("config.json", "not a JSON object")
    model = config.get("model")
    facts = model if isinstance(model, dict) else config  # schema 2, or the old flat layout
    for key in ("params", "non_embedding_params"):
        value = facts.get(key)
        if value is not None and (not isinstance(value, int) or isinstance(value, bool) or value < 0):
            fail("config.json", f"model {key} is {value!r}, not a count")
    for key in ("label", "spec", "family", "dtype", "quantisation", "description", "model_label"):
        if facts.get(key) is not None and not isinstance(facts.get(key), str):
            fail("config.json", f"model {key} is {facts.get(key)!r}, not text")
    if not isinstance(model, dict | str | None):
        fail("config.json", f"model is {model!r}")
    for key in ("task", "preset", "protocol", "version"):
        if config.get(key) is not None and not isinstance(config.get(key), str):
            fail("config.json", f"{key} is {config.get(key)!r}, not text")
    for key in ("options", "data", "sample"):
        if config.get(key) is not None and not isinstance(config.get(key), dict | str):
            fail("config.json", f"{key} is {config.get(key)!r}, not an object")
    if summary is not None:
        if not isinstance(summary, dict):
            fail("summary.json", "not a JSON object")
        scores = summary.get("scores", {})
        if not isinstance(scores, dict):
            fail("summary.json", "scores is not an object")
        for metric, score in scores.items():
            if not isinstance(score, dict) or not _number(score.get("mean"), none=True):
                fail("summary.json", f"scores.{metric} has no numeric mean")
            for key in ("ci_low", "ci_high", "n"):
                if not _number(score.get(key), none=True):
                    fail("summary.json", f"scores.{metric}.{key} is {score.get(key)!r}, not a number")
    seen = set()
    for number, record in enumerate(records, start=1):
        where = f"line {number}"
        if not isinstance(record, dict):
            fail("records.jsonl", f"{where} is not a JSON object")
        if not isinstance(record.get("id"), int) or isinstance(record.get("id"), bool):
            fail("records.jsonl", f"{where}: id {record.get('id')!r} is not an integer")
        if record["id"] in seen:
            fail("records.jsonl", f"{where}: id {record['id']} appears twice")
        seen.add(record["id"])
        scores = record.get("scores", {})
        if not isinstance(scores, dict) or not all(_number(v, none=True) for v in scores.values()):
            fail("records.jsonl", f"{where}: scores must map metrics to numbers")


def _number(value, none: bool = False) -> bool:
    if value is None:
        return none
    return isinstance(value, int | float) and not isinstance(value, bool)


def read_json(path: Path):
    """A JSON file of a run folder (or a cache), any damage a `RunLogError` naming it."""
    try:
        text = limits.read_text(path)
        return loads_json(text, str(path), constants=True)
    except TruthscopeError as err:
        raise RunLogError(str(err)) from None


def write_text_atomic(path: Path, text: str) -> None:
    """Write through a uniquely named temporary file in the same folder, then rename over `path`."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with open(fd, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def lock_folder(directory: Path, name: str = ".lock"):
    """Hold an exclusive lock on `directory` for as long as the returned file stays open (this
    process's life, for a run): a second process gets a one-line error naming the holder's PID."""
    try:
        import fcntl
    except ImportError:  # not POSIX: no locking
        return None
    key = (directory / name).resolve()
    if key in _HELD:  # this process holds it already (a run opened again to resume it)
        return _HELD[key]
    handle = open(directory / name, "a+", encoding="utf-8")  # noqa: SIM115  (held open on purpose)
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        handle.seek(0)
        holder = handle.read().strip() or "?"
        handle.close()
        raise TruthscopeError(f"{directory} is in use by PID {holder}; wait for it, or use another --out") from None
    handle.seek(0)
    handle.truncate()
    handle.write(str(os.getpid()))
    handle.flush()
    _HELD[key] = handle
    return handle


_HELD: dict[Path, object] = {}  # locks this process holds, kept until it exits


def write_json_atomic(path: Path, obj) -> None:
    write_text_atomic(path, json.dumps(obj, indent=1, ensure_ascii=False) + "\n")


def environment() -> dict:
    """Versions that can change a number: Python, the platform and the packages that compute."""
    versions = {}
    for package in (
        "truthscope",
        "torch",
        "transformers",
        "numpy",
        "scipy",
        "scikit-learn",
        "sacrebleu",
        "rouge-score",
    ):
        with contextlib.suppress(metadata.PackageNotFoundError):
            versions[package] = metadata.version(package)
    return {"python": platform.python_version(), "platform": platform.platform(), "packages": versions}
