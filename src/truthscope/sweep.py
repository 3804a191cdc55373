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

The parameter count is read from the loaded model (`sum(p.numel())`) and stored in each cell's
config, so reports built from the logs alone can place the cell on a scaling axis.
"""

from __future__ import annotations

import json
import random
import re
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from truthscope.errors import TruthscopeError
from truthscope.runlog import RunLog, environment, write_json_atomic

TASKS = ("mc", "gen", "statements")
DEFAULT_STATEMENT_SETS = ("larger_than", "smaller_than", "cities", "sp_en_trans", "common_claim_true_false")


class _Strict(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class ModelEntry(_Strict):
    spec: str  # bundled alias, local folder or hub id
    label: str | None = None  # the name used in folders and plots (default: derived from spec)
    trust_remote_code: bool = False
    revision: str | None = None

    @property
    def name(self) -> str:
        return self.label or slug(self.spec)


class McOptions(_Strict):
    protocol: str = "harness"
    limit: int | None = Field(None, ge=1)  # questions: a seeded random sample, kept in id order
    save_every: int = Field(32, ge=1)


class GenOptions(_Strict):
    limit: int | None = Field(None, ge=1)
    judge: str = "none"  # none, trained (`truthscope judge train`), or lm:MODEL: see truthscope.judges
    max_new_tokens: int = Field(50, ge=1)
    chat: bool = False
    save_every: int = Field(16, ge=1)


class StatementOptions(_Strict):
    sets: tuple[str, ...] = DEFAULT_STATEMENT_SETS
    limit: int | None = Field(None, ge=1)  # statements per set, a seeded random sample


class SweepSpec(_Strict):
    """What a sweep YAML file holds (see examples/sweeps/)."""

    name: str
    models: tuple[ModelEntry, ...]
    presets: tuple[str, ...] = ("qa",)
    tasks: tuple[str, ...] = ("mc",)
    version: str = "2021"
    data: str | None = None  # default: --data, $TRUTHSCOPE_DATA, ../shared/data
    mc: McOptions = McOptions()
    gen: GenOptions = GenOptions()
    statements: StatementOptions = StatementOptions()
    seed: int = 0
    batch_size: int = Field(16, ge=1)
    dtype: str = "float32"
    device: str = "auto"
    caveats: tuple[str, ...] = ()  # stated in the report as written

    @field_validator("models", mode="before")
    @classmethod
    def _models(cls, value):
        # a plain string is shorthand for {spec: ...}
        return [{"spec": v} if isinstance(v, str) else v for v in value or ()]

    @field_validator("tasks")
    @classmethod
    def _tasks(cls, value):
        unknown = [t for t in value if t not in TASKS]
        if unknown:
            raise ValueError(f"unknown task(s) {unknown}; known: {', '.join(TASKS)}")
        return value


def slug(text: str) -> str:
    """A folder-safe short name: the last path component, other characters replaced by '-'."""
    last = text.rstrip("/").split("/")[-1] or text
    return re.sub(r"[^A-Za-z0-9._-]+", "-", last).strip("-") or "model"


def load_spec(path: str | Path) -> SweepSpec:
    path = Path(path)
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise TruthscopeError(f"{path}: file not found") from None
    except yaml.YAMLError as err:
        raise TruthscopeError(f"{path}: not valid YAML: {err}") from None
    if not isinstance(raw, dict):
        raise TruthscopeError(f"{path}: expected a mapping with at least `models`")
    raw.setdefault("name", path.stem)
    try:
        spec = SweepSpec.model_validate(raw)
    except ValidationError as err:
        problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in err.errors())
        raise TruthscopeError(f"{path}: {problems}") from None
    names = [m.name for m in spec.models]
    if len(set(names)) != len(names):
        raise TruthscopeError(f"{path}: two models share a name ({names}); give them distinct `label`s")
    return spec


@dataclass(frozen=True)
class Cell:
    model: ModelEntry
    task: str
    preset: str | None  # None for statements

    @property
    def key(self) -> str:
        return f"{self.model.name}/{self.task}" + (f"-{self.preset}" if self.preset else "")


def cells(spec: SweepSpec) -> list[Cell]:
    """The grid, model-major so each model is loaded once per run; within a model every task at the
    first preset comes before the other presets, so a sweep cut short still holds the core
    comparison (all models, all tasks, one preset)."""
    out = []
    for model in spec.models:
        for i, preset in enumerate(spec.presets):
            for task in spec.tasks:
                if task != "statements":
                    out.append(Cell(model, task, preset))
                elif i == 0:
                    out.append(Cell(model, task, None))
    return out


def is_done(folder: Path) -> bool:
    return (folder / "summary.json").exists()


def sample_questions(dataset, limit: int | None, seed: int):
    """A seeded random sample of `limit` questions in id order: the first N would be mostly one
    category (the files are grouped by category), which would starve the per-category analysis."""
    if limit is None or limit >= len(dataset.questions):
        return dataset
    keep = sorted(random.Random(f"{seed}:questions").sample(range(len(dataset.questions)), limit))
    return replace(dataset, questions=[dataset.questions[i] for i in keep])


def count_parameters(lm) -> int | None:
    """Parameters of the torch module behind `lm`; None for models without one (mock, API)."""
    module = getattr(lm, "model", None)
    if module is None or not hasattr(module, "parameters"):
        return None
    return int(sum(p.numel() for p in module.parameters()))


# --- running -------------------------------------------------------------------------------------


def run_sweep(
    spec: SweepSpec,
    out: str | Path,
    *,
    data: str | None = None,
    load: Callable | None = None,
    progress: bool = True,
    echo: Callable[[str], None] = print,
) -> dict:
    """Run every cell not yet done; return (and write to `out/sweep.json`) the sweep summary.

    `load(entry, spec)` returns a `LanguageModel` (default: `truthscope.models.load_model`); tests
    pass their own. A failure to load a model fails that model's pending cells and nothing else."""
    from truthscope.cli.common import load_dataset, load_presets_for

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    load = load or _load_model
    data = data if data is not None else spec.data
    grid = cells(spec)
    status = {c.key: _previous_status(out, c) for c in grid}
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
    # Data is read once, and only when some cell still has to run; a bad --data fails the whole
    # sweep here, before any model is loaded, rather than every cell one by one.
    shared: dict = {}
    if any(not is_done(out / c.key) for c in grid):
        from truthscope.paths import data_dir

        shared.update(
            dataset=load_dataset(data, spec.version, None),
            presets=load_presets_for(data),
            # statement sets are read from a local folder, also when questions come from the hub
            data_dir=data_dir(None if data and data.startswith("hf:") else data),
        )

    for model in spec.models:
        todo = [c for c in grid if c.model == model and not is_done(out / c.key)]
        if not todo:
            continue
        try:
            lm = load(model, spec)
            params = count_parameters(lm)
        except Exception as err:  # noqa: BLE001  (reported per cell; the sweep goes on)
            for c in todo:
                status[c.key] = _failed(c, out, err, phase="loading the model")
                echo(f"[failed] {c.key}: loading the model: {_one_line(err)}")
            save()
            continue
        for c in todo:
            status[c.key] = {**status[c.key], "status": "running", "params": params}
            save()
            t0 = time.time()
            try:
                summary = run_cell(c, lm, params, spec, out / c.key, shared, progress=progress)
            except Exception as err:  # noqa: BLE001
                status[c.key] = {**_failed(c, out, err, phase="running"), "params": params}
                echo(f"[failed] {c.key}: {_one_line(err)}")
            else:
                status[c.key] = {
                    **_entry(c, out),
                    "status": "done",
                    "params": params,
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


def cell_config(cell: Cell, spec: SweepSpec, params: int | None, dataset=None) -> dict:
    """What a cell's `RunLog` stores: everything that changes its numbers, plus `params`."""
    common = {
        "task": cell.task,
        "model": cell.model.spec,
        "model_label": cell.model.name,
        "params": params,
        "seed": spec.seed,
        "dtype": spec.dtype,
        "batch_size": spec.batch_size,
        "sweep": spec.name,
    }
    if cell.task == "statements":
        return {**common, "sets": list(spec.statements.sets), "limit": spec.statements.limit}
    options = spec.mc if cell.task == "mc" else spec.gen
    config = {
        **common,
        "preset": cell.preset,
        "version": dataset.version,
        "data_sha256": dataset.files,
        "limit": options.limit,
        "sample": "seeded random, id order",
        "save_every": options.save_every,
    }
    if cell.task == "mc":
        config["protocol"] = spec.mc.protocol
    else:
        config.update(max_new_tokens=spec.gen.max_new_tokens, chat=spec.gen.chat, judge=spec.gen.judge)
    return config


def run_cell(cell: Cell, lm, params, spec: SweepSpec, folder: Path, shared: dict, progress=True) -> dict:
    """Run (or resume) one cell; `shared` holds the dataset, presets and data folder."""
    if cell.task == "statements":
        from truthscope.tasks.statements import run_statements

        run = RunLog(folder, cell_config(cell, spec, params))
        return run_statements(
            lm,
            shared["data_dir"],
            spec.statements.sets,
            run,
            limit=spec.statements.limit,
            seed=spec.seed,
            progress=progress,
        )
    if cell.preset not in shared["presets"]:
        raise TruthscopeError(f"unknown preset {cell.preset!r}; known: {', '.join(sorted(shared['presets']))}")
    options = spec.mc if cell.task == "mc" else spec.gen
    dataset = sample_questions(shared["dataset"], options.limit, spec.seed)
    run = RunLog(folder, cell_config(cell, spec, params, dataset))
    if cell.task == "mc":
        from truthscope.tasks.multiple_choice import run_multiple_choice

        return run_multiple_choice(
            lm,
            dataset,
            shared["presets"],
            run,
            protocol=spec.mc.protocol,
            preset=cell.preset,
            seed=spec.seed,
            questions_per_call=spec.mc.save_every,
            progress=progress,
        )
    try:
        from truthscope.tasks.generation import run_generation
    except ImportError as err:
        raise TruthscopeError(f"the gen task is not available in this installation ({err})") from err
    judges, embedder = _judges(spec.gen.judge, shared)
    return run_generation(
        lm,
        dataset,
        shared["presets"],
        run,
        judges=judges,
        embedder=embedder,
        preset=cell.preset,
        chat=spec.gen.chat,
        max_new_tokens=spec.gen.max_new_tokens,
        seed=spec.seed,
        questions_per_call=spec.gen.save_every,
        progress=progress,
    )


def _judges(spec: str, shared: dict):
    """The gen task's judges, loaded on the first gen cell and kept for the others (the trained
    judges share one sentence embedder)."""
    if spec == "none":
        return None, None
    if "judges" not in shared:
        from truthscope.judges import TrainedJudge, load_judges
        from truthscope.scoring.similarity import SentenceEmbedder

        judges = load_judges(spec)
        embedder = None
        if any(isinstance(j, TrainedJudge) for j in judges.values()):
            embedder = SentenceEmbedder(store=SentenceEmbedder.default_store())
            for judge in judges.values():
                if isinstance(judge, TrainedJudge):
                    judge.embedder = embedder
        shared["judges"] = (judges, embedder)
    return shared["judges"]


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
    summary = json.loads((folder / "summary.json").read_text(encoding="utf-8"))
    return {
        **_entry(cell, out),
        "status": "done",
        "params": summary.get("config", {}).get("params"),
        "wall_seconds": summary.get("wall_seconds"),  # of the session that finished it
        "scores": {k: v["mean"] for k, v in summary["scores"].items()},
    }


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
