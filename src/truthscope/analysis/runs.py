"""Finished run logs, found under the folders a user names, and the per-item values analyses need."""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TypeGuard

from truthscope.errors import RunLogError, TruthscopeError
from truthscope.runlog import read_json, read_run


@dataclass(frozen=True)
class Run:
    """One finished run. Analyses read a run only through these properties, which understand both
    log layouts: schema 2 (`model`, `options`, `data`, `sample` blocks; every record has `scores`)
    and the older flat one (`model_label`, `params`, `preset`, `protocol`, `version` at the top;
    statements records with `correct`). Old logs do not record a model's family or its
    non-embedding parameter count: those are None."""

    directory: Path
    config: dict
    records: list[dict]
    summary: dict

    @property
    def schema(self) -> int:
        return int(self.config.get("schema") or 1)

    @property
    def _model(self) -> dict:
        model = self.config.get("model")
        return model if isinstance(model, dict) else {}

    @property
    def _options(self) -> dict:
        options = self.config.get("options")
        return options if isinstance(options, dict) else {}

    def _option(self, key: str):
        """A task option: under `options` (schema 2) or at the top (old layout)."""
        if key in self._options:
            return self._options[key]
        return self.config.get(key) if self.schema < 2 else None

    @property
    def task(self) -> str:
        return self.config.get("task") or self.summary.get("task", "?")

    @property
    def model(self) -> str:
        """The short name shown in tables and plots."""
        if self._model:
            return str(self._model.get("label") or self._model.get("spec"))
        return self.config.get("model_label") or self.summary.get("model") or str(self.config.get("model"))

    @property
    def spec(self) -> str | None:
        """What the model was loaded from (alias, hub id or folder)."""
        if self._model:
            return self._model.get("spec")
        model = self.config.get("model")
        return model if isinstance(model, str) else None

    @property
    def params(self) -> int | None:
        """Total parameter count (embeddings included)."""
        return self._model.get("params") if self._model else self.config.get("params")

    @property
    def non_embedding_params(self) -> int | None:
        """Parameters outside the token (and tied output) embeddings; None where the log does not say."""
        return self._model.get("non_embedding_params")

    @property
    def family(self) -> str | None:
        """Model family / architecture (e.g. "llama", "gemma3"); None where the log does not say."""
        return self._model.get("family")

    @property
    def dtype(self) -> str | None:
        return self._model.get("dtype") if self._model else self.config.get("dtype")

    @property
    def quantisation(self) -> str | None:
        return self._model.get("quantisation")

    @property
    def description(self) -> str | None:
        return self._model.get("description")

    @property
    def preset(self) -> str | None:
        return self._option("preset")

    @property
    def protocol(self) -> str | None:
        return self._option("protocol")

    @property
    def sets(self) -> tuple[str, ...]:
        return tuple(self._option("sets") or ())

    @property
    def version(self) -> str | None:
        data = self.config.get("data")
        if isinstance(data, dict):
            return data.get("version")
        return self.config.get("version")

    @property
    def limit(self) -> int | None:
        """How many items per set / questions the run was limited to (None: all)."""
        sample = self.config.get("sample")
        if isinstance(sample, dict):
            return sample.get("n") if sample.get("how") != "all" else None
        return self.config.get("limit")

    @property
    def sample_how(self) -> str | None:
        sample = self.config.get("sample")
        if isinstance(sample, dict):
            return sample.get("how")
        return sample if isinstance(sample, str) else None

    @property
    def setting(self) -> tuple:
        """Runs comparable across models share this: the same task, preset, protocol, form (sycophancy's
        mc or gen), chat template or not, and data."""
        return (self.task, self.preset, self.protocol, self._option("form"), self._option("chat"), self.version,
                self.sets)  # fmt: skip

    def metrics(self) -> list[str]:
        scores = list(self.summary.get("scores", {}))
        if scores:
            return scores
        return list(dict.fromkeys(m for r in self.records for m in r.get("scores", {})))

    def values(self, metric: str) -> dict[int, float]:
        """Per-item values of `metric` from each record's `scores` (old statements logs: `accuracy`
        is each record's `correct`)."""
        out = {}
        for r in self.records:
            scores = r.get("scores")
            if isinstance(scores, Mapping) and metric in scores:
                value = scores[metric]
            elif self.task == "statements":
                value = r.get({"accuracy": "correct"}.get(metric, metric))
            else:
                continue
            if _finite(value):
                out[r["id"]] = float(value)
        return out

    def groups(self, by: str) -> dict[int, str]:
        """Item id -> its `category` / `type` (questions) or `kind` / `set` (statements)."""
        return {r["id"]: str(r[by]) for r in self.records if by in r}

    def chance(self, metric: str) -> dict[int, float]:
        """Per-item score of an answer picked at random, from the answers each record lists: MC1 is
        1/(number of MC1 answers) (upstream: 1/(false answers + 1), the best true answer against
        every false one), MC2 the share of true answers; statement accuracy is 0.5. Items whose
        record lists no answers are left out."""
        if self.task == "statements":
            return dict.fromkeys(self.values(metric), 0.5) if metric == "accuracy" else {}
        out = {}
        for r in self.records:
            answers = r.get("answers") or {}
            if metric == "mc1" and answers.get("mc1"):
                out[r["id"]] = 1 / len(answers["mc1"])
            elif metric == "mc1" and answers.get("all"):
                out[r["id"]] = 1 / (1 + sum(a["label"] == 0 for a in answers["all"]))
            elif metric == "mc2" and (answers.get("mc2") or answers.get("all")):
                options = answers.get("mc2") or answers["all"]
                out[r["id"]] = sum(a["label"] == 1 for a in options) / len(options)
        return out


def _finite(value) -> TypeGuard[float]:
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
            assert summary is not None  # summary.json exists
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
            sweep = read_json(path / "sweep.json")
            spec = sweep.get("spec") if isinstance(sweep, dict) else None
            cells = sweep.get("cells") if isinstance(sweep, dict) else None
            if (
                not isinstance(spec, dict)
                or not isinstance(spec.get("caveats", []), list)
                or not all(isinstance(c, str) for c in spec.get("caveats", []))
                or not isinstance(cells, list)
                or not all(isinstance(c, dict) and isinstance(c.get("status"), str) for c in cells)
            ):
                raise RunLogError(f"{path / 'sweep.json'}: not a sweep summary (spec, cells with a status)")
            out.append(sweep)
    return out


def by_setting(runs: Iterable[Run]) -> dict[tuple, list[Run]]:
    """Runs grouped by setting, each group ordered by size (see `size_axis`; unknown sizes last)."""
    groups: dict[tuple, list[Run]] = {}
    for run in runs:
        groups.setdefault(run.setting, []).append(run)
    for group in groups.values():
        group[:] = by_size(group)
    return groups


def size_axis(runs: Iterable[Run]) -> tuple[str, dict[str, int | None]]:
    """(axis name, {model: size}): non-embedding parameters when every run records them (the
    embeddings of a small model are mostly vocabulary, not capacity), else total parameters."""
    runs = list(runs)
    if runs and all(r.non_embedding_params for r in runs):
        return "non-embedding parameters", {r.model: r.non_embedding_params for r in runs}
    return "parameters", {r.model: r.params for r in runs}


def mixed_families(runs: Iterable[Run]) -> bool:
    """True when the runs are not all of one known family."""
    families = {r.family for r in runs}
    return len(families) != 1 or None in families


def by_size(runs: Iterable[Run]) -> list[Run]:
    runs = list(runs)
    _, size = size_axis(runs)
    return sorted(runs, key=lambda r: (size[r.model] is None, size[r.model] or 0, r.model))


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
