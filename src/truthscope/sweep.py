"""Sweeps: a grid of models x presets x tasks, each cell one `RunLog` directory, run once.

A sweep folder holds

    sweep.json          the spec as given, and one entry per cell: status (done / failed / pending;
                        running while it runs, or if the process died in it), the error and
                        traceback of a failed cell, the model's parameter count, wall time
    <model>/<task>-<preset>/   (statements: <model>/statements)   one run directory per cell

A cell is done when its run directory holds `summary.json`; running the sweep again skips done
cells and resumes an interrupted one from its records. A cell that raises is recorded as failed
(with the error) and the sweep goes on to the next; the next run retries it. Statement sets carry
no prompt preset, so `statements` is one cell per model, not one per preset.

Each cell is a task of the registry (`truthscope.tasks.TASKS`) built from the spec: the block named
after the task holds its options plus `limit` (items; per set for statements), `draw` (`seeded`, the
default, or `first`) and `save_every` (items per model call and write); tasks with a `preset` option
get one cell per preset. Facts about the loaded model (total and non-embedding parameter counts,
family, dtype, quantisation) are stored in each cell's config, so reports built from the logs alone
can place the cell on a scaling axis.
"""

from __future__ import annotations

import re
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StrictBool,
    StrictStr,
    ValidationError,
    field_validator,
    model_validator,
)

from truthscope.errors import RunLogError, SpecError, TruthscopeError
from truthscope.limits import MAX_SPEC_BYTES, load_yaml, read_text
from truthscope.models.facts import model_facts
from truthscope.runlog import RunLog, Sample, environment, lock_folder, read_json, write_json_atomic
from truthscope.sampling import sample_of
from truthscope.tasks.base import Resources, build_task, evaluate


class _Strict(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class ModelEntry(_Strict):
    spec: StrictStr = Field(min_length=1)  # bundled alias, local folder or hub id
    label: StrictStr | None = None  # the name used in folders and plots (default: derived from spec)
    trust_remote_code: StrictBool = False
    revision: StrictStr | None = None

    @property
    def name(self) -> str:
        """The model's folder name in the sweep: always one safe path component."""
        return slug(self.label or self.spec)


class TaskBlock(BaseModel):
    """A task's block in the spec: how its items are drawn and batched; every other key is an option
    of the task itself (validated against the task's options when the spec loads)."""

    model_config = ConfigDict(frozen=True, extra="allow")

    limit: int | None = Field(default=None, ge=1, strict=True)  # items (statements: per set)
    draw: Literal["seeded", "first"] = "seeded"
    save_every: int | None = Field(default=None, ge=1, strict=True)  # items per model call and per write

    def options(self) -> dict:
        return dict(self.model_extra or {})


class SweepSpec(_Strict):
    """What a sweep YAML file holds (see examples/sweeps/)."""

    name: StrictStr = Field(min_length=1)
    models: tuple[ModelEntry, ...] = Field(min_length=1)
    presets: tuple[StrictStr, ...] = Field(default=("qa",), min_length=1)
    tasks: tuple[StrictStr, ...] = Field(default=("mc",), min_length=1)
    version: StrictStr = "2021"
    data: StrictStr | None = None  # default: --data, $TRUTHSCOPE_DATA, the packaged copy
    blocks: dict[str, TaskBlock] = {}  # in YAML: one top-level key per task (`mc:`, `gen:`, ...)
    seed: int = Field(default=0, strict=True)
    batch_size: int = Field(default=16, ge=1, strict=True)
    dtype: StrictStr = "float32"
    device: StrictStr = "auto"
    caveats: tuple[StrictStr, ...] = ()  # stated in the report as written

    @field_validator("models", mode="before")
    @classmethod
    def _models(cls, value):
        # a plain string in the list is shorthand for {spec: ...}; a bare string is not a list
        if not isinstance(value, list | tuple):
            raise ValueError("must be a list of models (`models: [mock]`, not `models: mock`)")
        return [{"spec": v} if isinstance(v, str) else v for v in value]

    @model_validator(mode="before")
    @classmethod
    def _task_blocks(cls, raw):
        # top-level keys named after a registered task are that task's block
        from truthscope.tasks import TASKS

        if isinstance(raw, dict):
            raw = dict(raw)
            blocks = dict(raw.get("blocks") or {})
            for name in TASKS:
                if name in raw:
                    blocks[name] = raw.pop(name)
            raw["blocks"] = blocks
        return raw

    @field_validator("tasks")
    @classmethod
    def _tasks(cls, value):
        from truthscope.tasks import TASKS

        unknown = [t for t in value if t not in TASKS]
        if unknown:
            raise ValueError(f"unknown task(s) {unknown}; known: {', '.join(TASKS)}")
        return value

    def block(self, task: str) -> TaskBlock:
        return self.blocks.get(task, TaskBlock())

    def task_options(self, task: str, preset: str | None):
        """The validated options of `task` in a cell at `preset`."""
        from truthscope.tasks import task_options

        options = self.block(task).options()
        if preset is not None:
            options["preset"] = preset
        return task_options(task, options, where=f"sweep {self.name}: ", strict=True)

    def sample(self, task: str) -> Sample:
        block = self.block(task)
        return sample_of(block.limit, block.draw, self.seed)


def slug(text: str) -> str:
    """A folder-safe short name: the last path component, other characters replaced by '-'."""
    last = text.replace("\\", "/").rstrip("/").split("/")[-1] or text
    return re.sub(r"[^A-Za-z0-9._-]+", "-", last).strip("-.") or "model"


def load_spec(path: str | Path) -> SweepSpec:
    path = Path(path)
    try:
        raw = load_yaml(read_text(path, MAX_SPEC_BYTES, "sweep spec"), str(path))
    except SpecError:
        raise
    except TruthscopeError as err:
        raise SpecError(str(err)) from None
    if not isinstance(raw, dict):
        raise SpecError(f"{path}: expected a mapping with at least `models`")
    raw.setdefault("name", path.stem)
    try:
        spec = SweepSpec.model_validate(raw)
    except ValidationError as err:
        problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in err.errors())
        raise SpecError(f"{path}: {problems}") from None
    for task, block in spec.blocks.items():  # a block nothing reads is a mistake, not a no-op
        if task not in spec.tasks:
            raise SpecError(f"{path}: `{task}:` is given but {task!r} is not in `tasks` ({', '.join(spec.tasks)})")
        if "preset" in block.options() and _has_preset(task):
            raise SpecError(f"{path}: {task}.preset: presets are set by the top-level `presets` list")
        try:
            spec.task_options(task, spec.presets[0] if _has_preset(task) else None)
        except TruthscopeError as err:
            raise SpecError(f"{path}: {err}") from None
    names = [m.name for m in spec.models]
    if len(set(names)) != len(names):
        raise SpecError(f"{path}: two models share a name ({names}); give them distinct `label`s")
    return spec


@dataclass(frozen=True)
class Cell:
    model: ModelEntry
    task: str
    preset: str | None  # None for tasks without a preset option (statements)

    @property
    def key(self) -> str:
        return f"{self.model.name}/{self.task}" + (f"-{self.preset}" if self.preset else "")


def _has_preset(task: str) -> bool:
    from truthscope.tasks import TASKS

    return "preset" in TASKS[task].Options.model_fields


def cells(spec: SweepSpec) -> list[Cell]:
    """The grid, model-major so each model is loaded once per run; within a model every task at the
    first preset comes before the other presets, so a sweep cut short still holds the core
    comparison (all models, all tasks, one preset)."""
    out = []
    for model in spec.models:
        for i, preset in enumerate(spec.presets):
            for task in spec.tasks:
                if _has_preset(task):
                    out.append(Cell(model, task, preset))
                elif i == 0:
                    out.append(Cell(model, task, None))
    return out


def is_done(folder: Path) -> bool:
    return (folder / "summary.json").exists()


# --- running -------------------------------------------------------------------------------------


def run_sweep(
    spec: SweepSpec,
    out: str | Path,
    *,
    data: str | None = None,
    load: Callable | None = None,
    progress: bool = True,
    echo: Callable[[str], None] = print,
    trust_remote_code: bool = False,
) -> dict:
    """Run every cell not yet done; return (and write to `out/sweep.json`) the sweep summary.

    `load(entry, spec)` returns a `LanguageModel` (default: `truthscope.models.load_model`); tests
    pass their own. A failure to load a model fails that model's pending cells and nothing else.
    A model whose entry asks for remote code runs it only when `trust_remote_code` (the command
    line's flag) says so: sharing a spec never shares code. A done cell whose recorded options,
    sample or seed differ from the spec is refused, naming the difference, never silently reused."""
    remote = [m.name for m in spec.models if m.trust_remote_code]
    if remote and not trust_remote_code:
        raise TruthscopeError(
            f"sweep {spec.name}: {', '.join(remote)} ask for the repository's own code: "
            "pass --trust-remote-code on the command line to allow it"
        )
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise TruthscopeError(f"{out} is a file; --out must be a folder")
    out.mkdir(parents=True, exist_ok=True)
    _lock = lock_folder(out, ".sweep.lock")  # noqa: F841  (held until the sweep returns)
    load = load or _load_model
    grid = cells(spec)
    for c in grid:  # labels are slugs, but a spec must still never write outside `out`
        if not (out / c.key).resolve().is_relative_to(out.resolve()):
            raise TruthscopeError(f"sweep {spec.name}: cell {c.key!r} would be written outside {out}")
    # options are checked before anything runs: a bad option fails the sweep, not every cell
    tasks = {c.key: (spec.task_options(c.task, c.preset), spec.sample(c.task)) for c in grid}
    stale = [
        f"{c.key} ({', '.join(diff)})"
        for c in grid
        if is_done(out / c.key) and (diff := _stale(out / c.key, c, spec, *tasks[c.key]))
    ]
    if stale:
        raise TruthscopeError(
            f"{out}: done cells were run with other settings than the spec now gives: {'; '.join(stale)}. "
            "Use another --out, or delete those cell folders to run them again"
        )
    status = {c.key: _previous_status(out, c) for c in grid}
    resources = Resources(data if data is not None else spec.data, spec.version, {"device": spec.device})
    started = time.time()

    def save() -> dict:
        summary = {
            "name": spec.name,
            "spec": spec.model_dump(mode="json"),
            "cells": [status[c.key] for c in grid],
            "counts": {
                s: sum(v["status"] == s for v in status.values()) for s in ("done", "failed", "running", "pending")
            },
            "environment": environment(),
            "wall_seconds_last_run": round(time.time() - started, 3),
        }
        write_json_atomic(out / "sweep.json", summary)
        return summary

    save()
    if any(not is_done(out / c.key) for c in grid) and any(c.task != "statements" for c in grid):
        # a bad --data fails the whole sweep here, before any model is loaded, not every cell
        resources.truthfulqa()

    for model in spec.models:
        todo = [c for c in grid if c.model == model and not is_done(out / c.key)]
        if not todo:
            continue
        try:
            lm = load(model, spec)
            facts = model_facts(lm, model.spec, model.name)
        except Exception as err:  # noqa: BLE001  (reported per cell; the sweep goes on)
            for c in todo:
                status[c.key] = _failed(c, out, err, phase="loading the model")
                echo(f"[failed] {c.key}: loading the model: {_one_line(err)}")
            save()
            continue
        for c in todo:
            status[c.key] = {**status[c.key], "status": "running", "params": facts.params}
            save()
            t0 = time.time()
            try:
                options, sample = tasks[c.key]
                task = build_task(c.task, options, resources, sample, spec.seed)
                block = spec.block(c.task)
                execution = {"batch_size": spec.batch_size, "group_size": block.save_every or task.group_size}
                run = RunLog(out / c.key, task.config(facts, sample, sweep=spec.name, execution=execution))
                summary = evaluate(task, lm, run, group_size=execution["group_size"], progress=progress)
            except Exception as err:  # noqa: BLE001
                status[c.key] = {**_failed(c, out, err, phase="running"), "params": facts.params}
                echo(f"[failed] {c.key}: {_one_line(err)}")
            else:
                status[c.key] = {
                    **_entry(c, out),
                    "status": "done",
                    "params": facts.params,
                    "wall_seconds": round(time.time() - t0, 3),
                    "scores": {k: v["mean"] for k, v in summary["scores"].items()},
                }
                echo(
                    f"[done] {c.key} in {time.time() - t0:.0f} s: "
                    + ", ".join(f"{k} {v['mean']:.3f}" for k, v in summary["scores"].items())
                )
            save()
        del lm
    return save()


def _load_model(entry: ModelEntry, spec: SweepSpec):
    from truthscope.models import load_model

    lm = load_model(
        entry.spec,
        device=spec.device,
        dtype=spec.dtype,
        batch_size=spec.batch_size,
        trust_remote_code=entry.trust_remote_code,
        revision=entry.revision,
    )
    lm.name = entry.name
    return lm


def _entry(cell: Cell, out: Path) -> dict:
    return {
        "key": cell.key,
        "model": cell.model.name,
        "spec": cell.model.spec,
        "task": cell.task,
        "preset": cell.preset,
        "dir": str(out / cell.key),
    }


def _previous_status(out: Path, cell: Cell) -> dict:
    folder = out / cell.key
    if not is_done(folder):
        return {**_entry(cell, out), "status": "pending"}
    summary = read_json(folder / "summary.json")
    scores = summary.get("scores") if isinstance(summary, dict) else None
    if not isinstance(scores, dict) or not all(isinstance(v, dict) and "mean" in v for v in scores.values()):
        raise RunLogError(f"{folder / 'summary.json'}: no scores; delete the cell folder to run it again")
    return {
        **_entry(cell, out),
        "status": "done",
        "params": (summary.get("config", {}).get("model") or {}).get("params"),
        "wall_seconds": summary.get("wall_seconds"),  # of the session that finished it
        "scores": {k: v["mean"] for k, v in summary["scores"].items()},
    }


def _stale(folder: Path, cell: Cell, spec: SweepSpec, options, sample: Sample) -> list[str]:
    """What a done cell's config says differently from the spec (empty: it is this spec's cell)."""
    try:
        stored = read_json(folder / "config.json")
    except TruthscopeError:
        return ["config.json unreadable"]
    if not isinstance(stored, dict):
        return ["config.json is not an object"]
    expected = {
        "task": cell.task,
        "options": options.model_dump(mode="json"),
        "sample": sample.model_dump(mode="json"),
        "seed": spec.seed,
        "spec": cell.model.spec,
    }
    stored_view = {**{k: stored.get(k) for k in expected}, "spec": (stored.get("model") or {}).get("spec")}
    return [k for k in expected if stored_view[k] != expected[k]]


def _failed(cell: Cell, out: Path, err: BaseException, phase: str) -> dict:
    tb = traceback.format_exception(type(err), err, err.__traceback__)
    return {
        **_entry(cell, out),
        "status": "failed",
        "phase": phase,
        "error": _one_line(err),
        "traceback": "".join(tb)[-4000:],
    }


def _one_line(err: BaseException) -> str:
    text = str(err).strip().splitlines()
    return f"{type(err).__name__}: {text[0] if text else ''}"
