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
    if summary_path.exists() and not isinstance(summary, dict):
        raise RunLogError(f"{summary_path}: not a JSON object; is this folder a truthscope run?")
    check_run(directory, config, records, summary)
    return config, sorted(records, key=lambda r: r["id"]), summary


class _View(BaseModel):
    """What readers of a run log rely on, checked strictly; everything else passes through."""

    model_config = ConfigDict(extra="allow", strict=True)


class _AnswerView(_View):
    text: str
    label: Literal[0, 1]
    logprob: float | None = None


class _RecordView(_View):
    id: int
    scores: dict[str, float | None] = {}
    question: str | None = None
    category: str | None = None
    type: str | None = None
    set: str | None = None
    kind: str | None = None
    answers: dict[str, list[_AnswerView]] | None = None
    believed_true: bool | float | None = None
    correct: bool | float | None = None


class _ScoreView(_View):
    mean: float | None
    ci_low: float | None = None
    ci_high: float | None = None
    n: int | None = None
    method: str | None = None


class _SummaryView(_View):
    task: str | None = None
    model: str | None = None
    scores: dict[str, _ScoreView] = {}
    by_set: dict[str, dict[str, Any]] | None = None
    rule: str | None = None
    wall_seconds: float | None = None


class _FactsView(_View):  # `model` in a schema-2 config, the top level of an old one
    spec: str | None = None
    label: str | None = None
    model_label: str | None = None
    params: int | None = Field(default=None, ge=0)
    non_embedding_params: int | None = Field(default=None, ge=0)
    family: str | None = None
    dtype: str | None = None
    quantisation: str | None = None
    description: str | None = None


class _OptionsView(_View):  # `options` in a schema-2 config, the top level of an old one
    task: str | None = None
    preset: str | None = None
    protocol: str | None = None
    version: str | None = None
    sets: list[str] | None = None
    limit: int | None = None


class _SampleView(_View):
    how: str | None = None
    n: int | None = None


def check_run(directory: Path, config, records: list, summary) -> None:
    """What every reader of a run log relies on, checked once where it is read (a `RunLogError`
    naming the file, line and field): a config object whose model facts, options, data and sample
    have their types, a summary whose scores are numbers, and records that are objects with a
    unique integer `id`, numeric `scores` and well-formed answers."""

    def check(view: type[BaseModel], value, file: str, where: str = "") -> None:
        try:
            view.model_validate(value)
        except ValidationError as err:
            first = err.errors()[0]
            field = ".".join(map(str, first["loc"]))
            raise RunLogError(
                f"{directory / file}: {where}{field or 'value'}: {first['msg']}; is this folder a truthscope run?"
            ) from None

    if not isinstance(config, dict):
        raise RunLogError(f"{directory / 'config.json'}: not a JSON object; is this folder a truthscope run?")
    model = config.get("model")
    if not isinstance(model, dict | str | None):
        raise RunLogError(f"{directory / 'config.json'}: model is {model!r}; is this folder a truthscope run?")
    check(_FactsView, model if isinstance(model, dict) else {k: v for k, v in config.items() if k != "model"},
          "config.json", "model." if isinstance(model, dict) else "")  # fmt: skip
    options = config.get("options", {})
    check(_OptionsView, options if isinstance(options, dict) else None, "config.json", "options.")
    check(_OptionsView, {k: config.get(k) for k in ("task", "preset", "protocol", "version", "sets")}, "config.json")
    data, sample = config.get("data"), config.get("sample")
    if isinstance(data, dict):
        check(_OptionsView, {"version": data.get("version")}, "config.json", "data.")
    if data is not None and not isinstance(data, dict):
        raise RunLogError(f"{directory / 'config.json'}: data is {data!r}; is this folder a truthscope run?")
    if isinstance(sample, dict):
        check(_SampleView, sample, "config.json", "sample.")
    elif sample is not None and not isinstance(sample, str):
        raise RunLogError(f"{directory / 'config.json'}: sample is {sample!r}; is this folder a truthscope run?")
    if summary is not None:
        check(_SummaryView, summary, "summary.json")
    seen = set()
    for number, record in enumerate(records, start=1):
        if not isinstance(record, dict) or not isinstance(record.get("id"), int) or isinstance(record["id"], bool):
            shown = record.get("id") if isinstance(record, dict) else record
            raise RunLogError(f"{directory / 'records.jsonl'}: line {number}: id {shown!r} is not an integer")
        check(_RecordView, record, "records.jsonl", f"line {number}: ")
        if record["id"] in seen:
            raise RunLogError(f"{directory / 'records.jsonl'}: line {number}: id {record['id']} appears twice")
        seen.add(record["id"])


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
