"""The one results-log format every run writes and every report reads.

A run directory holds:

    config.json    what was asked (model, task, protocol, preset, data version, ...)
    records.jsonl  one JSON object per item (question, statement, ...), each with an integer `id`
    summary.json   the aggregate scores plus provenance (data SHA-256, package versions, wall time)

Records are appended one batch per write (flushed and fsynced), so a killed run loses at most the
batch in flight. Started again with the same config and directory, a run skips the items already
recorded. `finish` rewrites the records sorted by id and writes the summary, each atomically.
"""

from __future__ import annotations

import contextlib
import json
import os
import platform
import time
from collections.abc import Iterable, Mapping
from importlib import metadata
from pathlib import Path

from truthscope.errors import TruthscopeError


class RunLog:
    def __init__(self, directory: str | os.PathLike, config: Mapping):
        """Open (or create) a run directory for `config`; refuses a directory that holds a run
        with a different config."""
        self.directory = Path(directory)
        self.config = json.loads(json.dumps(dict(config)))  # normalised as it will be stored
        self.directory.mkdir(parents=True, exist_ok=True)
        config_path = self.directory / "config.json"
        if config_path.exists():
            stored = json.loads(config_path.read_text(encoding="utf-8"))
            if stored != self.config:
                changed = sorted(k for k in set(stored) | set(self.config) if stored.get(k) != self.config.get(k))
                raise TruthscopeError(
                    f"{self.directory} holds a run with other arguments ({', '.join(changed)} differ); "
                    "use another --out, or the same arguments to resume it"
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
        records = [json.loads(json.dumps(r)) for r in records]
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
        raw = self.records_path.read_bytes()
        end = raw.rfind(b"\n") + 1
        if end < len(raw):
            with open(self.records_path, "r+b") as f:
                f.truncate(end)
        records = []
        for number, line in enumerate(raw[:end].splitlines(), start=1):
            try:
                records.append(json.loads(line))
            except json.JSONDecodeError:
                raise TruthscopeError(
                    f"{self.records_path}: line {number} is not valid JSON; remove it to resume"
                ) from None
        return records


def read_run(directory: str | os.PathLike) -> tuple[dict, list[dict], dict | None]:
    """(config, records sorted by id, summary or None) of a run directory."""
    directory = Path(directory)
    config_path = directory / "config.json"
    if not config_path.exists():
        raise TruthscopeError(f"{directory}: not a truthscope run (no config.json)")
    config = json.loads(config_path.read_text(encoding="utf-8"))
    records_path = directory / "records.jsonl"
    records = []
    if records_path.exists():
        records = [json.loads(line) for line in records_path.read_text(encoding="utf-8").splitlines() if line.strip()]
    summary_path = directory / "summary.json"
    summary = json.loads(summary_path.read_text(encoding="utf-8")) if summary_path.exists() else None
    return config, sorted(records, key=lambda r: r["id"]), summary


def write_text_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "w", encoding="utf-8") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


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
