"""Finished run logs, found under the folders a user names, and the per-item values analyses need."""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

from truthscope.errors import TruthscopeError
from truthscope.runlog import read_run


@dataclass(frozen=True)
class Run:
    directory: Path
    config: dict
    records: list[dict]
    summary: dict

    @property
    def task(self) -> str:
        return self.config.get("task") or self.summary.get("task", "?")

    @property
    def model(self) -> str:
        """The short name shown in tables and plots."""
        return self.config.get("model_label") or self.summary.get("model") or str(self.config.get("model"))

    @property
    def params(self) -> int | None:
        return self.config.get("params")

    @property
    def preset(self) -> str | None:
        return self.config.get("preset")

    @property
    def setting(self) -> tuple:
        """Runs comparable across models share this: the same task, preset, protocol and data."""
        return (
            self.task,
            self.preset,
            self.config.get("protocol"),
            self.config.get("version"),
            tuple(self.config.get("sets") or ()),
        )

    def metrics(self) -> list[str]:
        return list(self.summary.get("scores", {}))

    def values(self, metric: str) -> dict[int, float]:
        """Per-item values of `metric` (statements: `accuracy` is each record's `correct`)."""
        if self.task == "statements":
            field = {"accuracy": "correct"}.get(metric, metric)
            return {r["id"]: float(r[field]) for r in self.records if _finite(r.get(field))}
        return {r["id"]: float(r["scores"][metric]) for r in self.records if _finite(r["scores"].get(metric))}

    def groups(self, by: str) -> dict[int, str]:
        """Item id -> its `category` / `type` (questions) or `kind` / `set` (statements)."""
        return {r["id"]: str(r[by]) for r in self.records if by in r}


def _finite(value) -> bool:
    return isinstance(value, (int, float)) and math.isfinite(value)  # bools count as 0/1


def find_runs(paths: Iterable[str | Path]) -> tuple[list[Run], list[Path]]:
    """(finished runs, unfinished run folders) under `paths`: each path is a run folder or a folder
    searched recursively for them (a sweep). The same run named twice counts once."""
    finished: dict[Path, Run] = {}
    unfinished: list[Path] = []
    for path in map(Path, paths):
        if not path.exists():
            raise TruthscopeError(f"{path}: no such folder")
        configs = [path / "config.json"] if (path / "config.json").exists() else sorted(path.rglob("config.json"))
        for config_path in configs:
            folder = config_path.parent.resolve()
            if folder in finished or folder in unfinished:
                continue
            if not (folder / "summary.json").exists():
                unfinished.append(folder)
                continue
            config, records, summary = read_run(folder)
            finished[folder] = Run(folder, config, records, summary)
    runs = list(finished.values())
    if not runs:
        raise TruthscopeError(f"no finished runs (folders with summary.json) under {', '.join(map(str, paths))}")
    _refuse_duplicates(runs)
    return runs, unfinished


def _refuse_duplicates(runs: list[Run]) -> None:
    seen: dict[tuple, Path] = {}
    for run in runs:
        key = (run.model, *run.setting)
        if key in seen:
            raise TruthscopeError(
                f"two runs of {run.model} {run.task} {run.preset or ''}: {seen[key]} and {run.directory}; "
                "name only one of them"
            )
        seen[key] = run.directory


def sweep_summaries(paths: Iterable[str | Path]) -> list[dict]:
    """The `sweep.json` of each named folder that is a sweep (failed cells, caveats)."""
    out = []
    for path in map(Path, paths):
        if (path / "sweep.json").exists():
            out.append(json.loads((path / "sweep.json").read_text(encoding="utf-8")))
    return out


def by_setting(runs: Iterable[Run]) -> dict[tuple, list[Run]]:
    """Runs grouped by setting, each group ordered by parameter count (unknown counts last)."""
    groups: dict[tuple, list[Run]] = {}
    for run in runs:
        groups.setdefault(run.setting, []).append(run)
    for group in groups.values():
        group.sort(key=lambda r: (r.params is None, r.params or 0, r.model))
    return groups


def shared_values(
    runs: Iterable[Run], metric: str, items: Mapping[int, str] | None = None
) -> dict[str, dict[int, float]]:
    """{model: {item: value}} restricted to the items every run scored (and to `items` if given)."""
    runs = list(runs)
    values = {r.model: r.values(metric) for r in runs}
    common = set.intersection(*(set(v) for v in values.values())) if values else set()
    if items is not None:
        common &= set(items)
    return {m: {i: v[i] for i in sorted(common)} for m, v in values.items()}
