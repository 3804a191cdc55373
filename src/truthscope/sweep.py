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

The cells not yet done go to an executor, the one seam between the sweep and where cells run:
`run_local` (the default: one after another in this process, each model loaded once) or
`RayExecutor` (each cell a Ray task with the CPUs and GPUs of the spec's `resources`).
"""

from __future__ import annotations

import logging
import os
import re
import time
import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, Protocol

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
from truthscope.runlog import ModelFacts, RunLog, Sample, environment, lock_folder, read_json, write_json_atomic
from truthscope.sampling import sample_of
from truthscope.tasks.base import Resources, TaskOptions, build_task, evaluate


class _Strict(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class CellResources(_Strict):
    """What one cell asks of a Ray cluster (`--executor ray`); the local executor ignores it."""

    cpus: float = Field(default=1.0, ge=0, strict=True)
    gpus: float | None = Field(default=None, ge=0, strict=True)  # None: see `SweepSpec.resources_for`


class ModelEntry(_Strict):
    spec: StrictStr = Field(min_length=1)  # bundled alias, local folder or hub id
    label: StrictStr | None = None  # the name used in folders and plots (default: derived from spec)
    trust_remote_code: StrictBool = False
    revision: StrictStr | None = None
    resources: CellResources | None = None  # this model's cells (default: the spec's `resources`)

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
    seed: int = Field(default=0, ge=0, strict=True)  # numpy takes no negative seed
    batch_size: int = Field(default=16, ge=1, strict=True)
    dtype: StrictStr = "float32"
    device: StrictStr = "auto"
    caveats: tuple[StrictStr, ...] = ()  # stated in the report as written
    resources: CellResources = CellResources()  # what each cell asks of a Ray cluster

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

    @field_validator("presets")
    @classmethod
    def _presets(cls, value):
        # a preset names a cell's folder: one plain path component, nothing to escape or to trip on
        unsafe = [p for p in value if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}", p)]
        if unsafe:
            raise ValueError(f"{unsafe} are not preset names (letters, digits, '.', '_', '-')")
        if len(set(value)) != len(value):
            raise ValueError("a preset is listed twice")
        return value

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

    def resources_for(self, model: ModelEntry, *, gpus_available: bool) -> tuple[float, float]:
        """(CPUs, GPUs) one cell of `model` asks for: the model's own `resources`, else the spec's;
        GPUs not given are one where the device is cuda (or auto on a cluster with GPUs), else none."""
        own = model.resources
        cpus = own.cpus if own is not None and "cpus" in own.model_fields_set else self.resources.cpus
        gpus = own.gpus if own is not None and own.gpus is not None else self.resources.gpus
        if gpus is None:
            gpus = 1.0 if self.device.startswith("cuda") or (self.device == "auto" and gpus_available) else 0.0
        return float(cpus), float(gpus)

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
    executor: Executor | None = None,
) -> dict:
    """Run every cell not yet done; return (and write to `out/sweep.json`) the sweep summary.

    `load(entry, spec)` returns a `LanguageModel` (default: `truthscope.models.load_model`); tests
    pass their own. `executor` runs the cells not yet done (default `run_local`: one after another
    in this process; `RayExecutor`: each cell a task on a Ray cluster); everything else (checks,
    `sweep.json`, the lock on `out`) is the same for both. A failure to load a model fails that
    model's pending cells and nothing else. A model whose entry asks for remote code runs it only
    when `trust_remote_code` (the command line's flag) says so: sharing a spec never shares code.
    A done cell whose recorded options, sample or seed differ from the spec is refused, naming the
    difference, never silently reused."""
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

    jobs = [CellJob(c, *tasks[c.key], spec=spec, out=out) for c in grid if not is_done(out / c.key)]

    def cell_started(job: CellJob, params: int | None) -> None:
        status[job.cell.key] = {**status[job.cell.key], "status": "running", "params": params}
        save()

    def cell_finished(job: CellJob, entry: dict) -> None:
        status[job.cell.key] = entry
        echo(_report_line(entry))
        save()

    run_cells = executor or run_local
    run_cells(jobs, load=load, resources=resources, progress=progress, started=cell_started, finished=cell_finished)
    return save()


# --- executors: what runs the cells ------------------------------------------------------------


@dataclass(frozen=True)
class CellJob:
    """One cell to run, with everything it needs; it pickles (the Ray executor ships it to a worker)."""

    cell: Cell
    options: TaskOptions
    sample: Sample
    spec: SweepSpec
    out: Path


class Executor(Protocol):
    """Runs `jobs`, calling `started(job, params)` when a cell starts (where it can tell) and
    `finished(job, entry)` with each cell's status entry (done, or failed with its error): a failed
    cell never stops the others. `load` and `resources` are `run_sweep`'s."""

    def __call__(
        self,
        jobs: Sequence[CellJob],
        *,
        load: Callable,
        resources: Resources,
        progress: bool,
        started: Callable[[CellJob, int | None], None],
        finished: Callable[[CellJob, dict], None],
    ) -> None: ...


def run_local(jobs, *, load, resources, progress, started, finished) -> None:
    """The default executor: the cells one after another in this process, each model loaded once."""
    for model in dict.fromkeys(job.cell.model for job in jobs):
        todo = [job for job in jobs if job.cell.model == model]
        try:
            lm = load(model, todo[0].spec)
            facts = model_facts(lm, model.spec, model.name)
        except Exception as err:  # noqa: BLE001  (reported per cell; the sweep goes on)
            for job in todo:
                finished(job, _failed(job.cell, job.out, err, phase="loading the model"))
            continue
        for job in todo:
            started(job, facts.params)
            finished(job, run_cell(job, lm, facts, resources, progress=progress))
        del lm


def run_cell(job: CellJob, lm, facts: ModelFacts, resources: Resources, *, progress: bool = False) -> dict:
    """Evaluate one cell on its loaded model into its run folder; its status entry (never raises
    for the cell's own failure: that is a failed entry with the error and traceback)."""
    cell, spec = job.cell, job.spec
    t0 = time.time()
    try:
        task = build_task(cell.task, job.options, resources, job.sample, spec.seed)
        execution = {"batch_size": spec.batch_size, "group_size": spec.block(cell.task).save_every or task.group_size}
        run = RunLog(job.out / cell.key, task.config(facts, job.sample, sweep=spec.name, execution=execution))
        summary = evaluate(task, lm, run, group_size=execution["group_size"], progress=progress)
    except Exception as err:  # noqa: BLE001
        return {**_failed(cell, job.out, err, phase="running"), "params": facts.params}
    return {
        **_entry(cell, job.out),
        "status": "done",
        "params": facts.params,
        "wall_seconds": round(time.time() - t0, 3),
        "scores": {k: v["mean"] for k, v in summary["scores"].items()},
    }


class RayExecutor:
    """Each cell a Ray task asking for the CPUs and GPUs the spec gives it (`resources:`, top level
    or per model; see `SweepSpec.resources_for`), so a grid of models spreads over a cluster.

    `address`: a running cluster (`host:port` of its head, `auto` for the one `ray start` began on
    this machine, or `ray://...`); None starts a local Ray instance for this sweep and stops it at the
    end. Every node must see the driver's working folder at the same path (a shared filesystem): the
    cells write their run folders there, with the same layout, resume and per-folder lock as
    `run_local`. Each task runs in a fresh worker process (`max_calls=1`), so a cell's lock and
    (GPU) memory are released when it ends. A cell whose needs no node of the cluster meets fails at
    once, rather than waiting forever. Cells are `pending` in `sweep.json` until they end."""

    def __init__(self, address: str | None = None):
        self.address = address

    def __call__(self, jobs, *, load, resources, progress, started, finished) -> None:
        if not jobs:
            return
        ray = _import_ray()
        owner = not ray.is_initialized()
        if owner:
            try:
                if self.address:
                    ray.init(address=self.address, logging_level=logging.WARNING)
                else:
                    ray.init(address="local", include_dashboard=False, logging_level=logging.WARNING)
            except (ConnectionError, ValueError, RuntimeError) as err:
                raise TruthscopeError(
                    f"cannot start or reach the Ray cluster {self.address or '(local)'}: {err}"
                ) from None
        try:
            self._run(ray, jobs, load, resources.data, finished)
        finally:
            if owner:
                ray.shutdown()

    @staticmethod
    def _run(ray, jobs, load, data, finished) -> None:
        nodes = [n.get("Resources", {}) for n in ray.nodes() if n.get("Alive")]
        has_gpus = any(n.get("GPU", 0) > 0 for n in nodes)
        task = ray.remote(max_calls=1)(_ray_cell)
        pending = {}
        for job in jobs:
            cpus, gpus = job.spec.resources_for(job.cell.model, gpus_available=has_gpus)
            if not any(n.get("CPU", 0) >= cpus and n.get("GPU", 0) >= gpus for n in nodes):
                need = TruthscopeError(f"needs {cpus:g} CPU(s) and {gpus:g} GPU(s); no node of the cluster has them")
                finished(job, _failed(job.cell, job.out, need, phase="scheduling"))
                continue
            options = {"num_cpus": cpus, "num_gpus": gpus, "name": f"truthscope sweep {job.cell.key}"}
            pending[task.options(**options).remote(job, load, data, os.getcwd(), gpus > 0)] = job
        while pending:
            ready, _ = ray.wait(list(pending), num_returns=1)
            for ref in ready:
                job = pending.pop(ref)
                try:
                    entry = ray.get(ref)
                except Exception as err:  # noqa: BLE001  (a worker that died: this cell fails, the rest go on)
                    entry = _failed(job.cell, job.out, err, phase="on the cluster")
                if entry["status"] == "done" and not is_done(job.out / job.cell.key):
                    lost = TruthscopeError(
                        f"done on {entry.get('node', '?')}, but {job.out / job.cell.key} is not on this machine: "
                        "--out must be on a filesystem every node shares"
                    )
                    entry = _failed(job.cell, job.out, lost, phase="collecting")
                finished(job, entry)


def _ray_cell(job: CellJob, load: Callable, data: str | None, cwd: str, has_gpu: bool) -> dict:
    """One cell on a Ray worker: load its model, evaluate, return the status entry."""
    import socket

    node = socket.gethostname()
    try:
        os.chdir(cwd)  # relative --out, --data and model folders mean what they meant to the driver
    except OSError:
        err = TruthscopeError(f"the sweep's folder {cwd} is not on node {node}: use a filesystem every node shares")
        return _failed(job.cell, job.out, err, phase="starting")
    spec = job.spec
    if not has_gpu and spec.device == "auto":  # no GPU was reserved for this cell: do not take one
        spec = spec.model_copy(update={"device": "cpu"})
    try:
        lm = load(job.cell.model, spec)
        facts = model_facts(lm, job.cell.model.spec, job.cell.model.name)
    except Exception as err:  # noqa: BLE001
        return {**_failed(job.cell, job.out, err, phase="loading the model"), "node": node}
    resources = Resources(data, spec.version, {"device": spec.device})
    return {**run_cell(job, lm, facts, resources), "node": node}


def _import_ray():
    try:
        import ray
    except ImportError:
        raise TruthscopeError("--executor ray needs Ray: pip install 'truthscope[engines]'") from None
    return ray


def _report_line(entry: dict) -> str:
    if entry["status"] == "done":
        scores = ", ".join(f"{k} {v:.3f}" for k, v in entry["scores"].items())
        return f"[done] {entry['key']} in {entry['wall_seconds']:.0f} s: {scores}"
    phase = f"{entry['phase']}: " if entry.get("phase") not in (None, "running") else ""
    return f"[failed] {entry['key']}: {phase}{entry['error']}"


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
