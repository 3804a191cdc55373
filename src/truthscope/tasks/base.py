"""Tasks and `evaluate`, the one loop that runs any task on any model into a run log.

A task is, in the manner of inspect_ai's Task and lm-evaluation-harness's configurable tasks:

    options     a frozen pydantic model: everything about the task that changes its numbers
    items()     what is evaluated, each with an integer `id` (questions, statements, answers)
    requests()  what one item asks of the model (log-likelihoods, generations)
    followups() what it asks next, given the answers so far (a second turn, a judgement of the
                model's own answer); asked in rounds until none is left (default: none)
    score()     records for a group of items from the model's results (each with `id` and `scores`)
    summarise() the aggregate of all records: `scores` with 95% intervals, and task-specific views

`evaluate(task, model, run)` owns everything else, once: deduplicating requests across a group of
items, strict zips (a backend that returns the wrong number of results is an error), resume (items
already in the run are skipped; a group is recomputed whole, so a resumed run batches exactly as an
uninterrupted one and its records are identical), progress, timing and provenance. Backends sort
requests by length inside a call (they know the token lengths). Tasks are found by name in `TASKS`.
"""

from __future__ import annotations

import json
import os
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, TypeVar

from pydantic import BaseModel, ConfigDict, ValidationError
from tqdm import tqdm

from truthscope.errors import TruthscopeError
from truthscope.models.base import GenerationRequest, LanguageModel, LoglikelihoodRequest
from truthscope.runlog import DataFacts, ModelFacts, RunConfig, RunLog, Sample

Request = LoglikelihoodRequest | GenerationRequest


class TaskOptions(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class Task(ABC):
    """One evaluation: see the module docstring. Subclasses set `name` and `Options`."""

    name: ClassVar[str]
    Options: ClassVar[type[TaskOptions]]
    group_size: ClassVar[int] = 64  # items per model call and per write, unless the run says otherwise

    def __init__(self, options: TaskOptions, *, seed: int = 0, data: DataFacts | None = None):
        self.options = options
        self.seed = seed
        self.data = data

    @classmethod
    @abstractmethod
    def build(cls, options: Any, resources: Resources, sample: Sample, seed: int = 0) -> Task:
        """The task with its items drawn (by `sample`) from `resources`."""

    @abstractmethod
    def items(self) -> Sequence[Any]:
        """What is evaluated, in order; each item has an integer `id`, unique within the task."""

    def requests(self, item, model: LanguageModel) -> list[Request]:
        return []

    def followups(self, item, results: Mapping[Request, Any], model: LanguageModel) -> list[Request]:
        """Requests that depend on the results of item's earlier requests (all of them in `results`);
        asked after each round, for every item of the group together, until no item has any."""
        return []

    @abstractmethod
    def score(self, items: Sequence[Any], results: Sequence[Mapping[Request, Any]]) -> list[dict]:
        """One record per item, in order; `results[i]` maps each of item i's requests to its result."""

    @abstractmethod
    def summarise(self, records: Sequence[dict]) -> dict: ...

    def finish(self) -> None:  # noqa: B027  (optional hook)
        """Called once the summary is written (say, to save a cache the task filled)."""

    def config(
        self, model: ModelFacts | None, sample: Sample, *, sweep: str | None = None, execution: Mapping | None = None
    ) -> RunConfig:
        """The run config of this task on `model` (what a resume must match)."""
        return RunConfig(
            task=self.name,
            options=self.options.model_dump(mode="json"),
            model=model,
            data=self.data,
            sample=sample,
            seed=self.seed,
            sweep=sweep,
            execution=dict(execution or {}),
        )


def call_model(model: LanguageModel, requests: Sequence[Request]) -> dict[Request, Any]:
    """Each distinct request asked once; results keyed by request. A backend must return exactly one
    result per request: anything else is an error, never a silent truncation."""
    out: dict[Request, Any] = {}
    for kind, method in ((LoglikelihoodRequest, "loglikelihood"), (GenerationRequest, "generate")):
        unique = list(dict.fromkeys(r for r in requests if isinstance(r, kind)))
        if not unique:
            continue
        results = list(getattr(model, method)(unique))
        if len(results) != len(unique):
            raise TruthscopeError(
                f"model {model.name!r} returned {len(results)} results for {len(unique)} {kind.__name__}s"
            )
        out.update(zip(unique, results, strict=True))
    return out


MAX_ROUNDS = 8


def ask_in_rounds(task: Task, model: LanguageModel, group: Sequence[Any]) -> dict[int, dict[Request, Any]]:
    """Every request of every item of `group`, `requests` first and then `followups` round by round
    (each round one deduplicated call for the whole group); item id -> {request: result}."""
    pending = {item.id: task.requests(item, model) for item in group}
    known: dict[int, dict[Request, Any]] = {item.id: {} for item in group}
    for _ in range(MAX_ROUNDS):
        results = call_model(model, [r for asked in pending.values() for r in asked])
        for item_id, asked in pending.items():
            known[item_id].update((r, results[r]) for r in asked)
        pending = {
            item.id: [r for r in task.followups(item, known[item.id], model) if r not in known[item.id]]
            for item in group
        }
        if not any(pending.values()):
            return known
    raise TruthscopeError(f"task {task.name}: still asking follow-up requests after {MAX_ROUNDS} rounds")


def evaluate(
    task: Task,
    model: LanguageModel,
    run: RunLog,
    *,
    group_size: int | None = None,
    progress: bool = True,
    on_group: Callable[[int, int], None] | None = None,
) -> dict:
    """Evaluate every item of `task` not yet recorded in `run`; write and return the summary."""
    started = time.time()
    items = list(task.items())
    ids = [item.id for item in items]
    if len(set(ids)) != len(ids):
        raise TruthscopeError(f"task {task.name}: item ids are not unique")
    already = sum(run.done(i) for i in ids)
    size = group_size or task.group_size
    model_seconds = 0.0
    desc = f"{task.name} {getattr(model, 'name', '')}".strip()
    with tqdm(total=len(items), initial=already, desc=desc, unit="item", disable=not progress) as bar:
        for start in range(0, len(items), size):
            group = items[start : start + size]
            todo = [item for item in group if not run.done(item.id)]
            if not todo:
                continue
            t0 = time.time()
            known = ask_in_rounds(task, model, group)
            model_seconds += time.time() - t0
            records = task.score(todo, [known[item.id] for item in todo])
            if [r["id"] for r in records] != [item.id for item in todo]:
                raise TruthscopeError(f"task {task.name}: score() must return one record per item, in order")
            run.append(records)
            bar.update(len(todo))
            if on_group is not None:
                on_group(len(run.records), len(items))
    records = [run.records[i] for i in ids]
    summary = {
        "task": task.name,
        "model": getattr(model, "name", None),
        **task.summarise(records),
        **run.provenance(started, resumed_with=already),
        "model_seconds": round(model_seconds, 3),
    }
    run.finish(summary)
    task.finish()
    return summary


# --- where tasks get their data, judges and embedder -------------------------------------------


@dataclass
class Resources:
    """The data, presets, judges and embedder tasks draw on, each loaded once on first use and
    shared by every task built from it (the cells of a sweep, the conditions of an intervention)."""

    data: str | None = None  # --data: a folder, hf:DATASET, or None for the packaged copy
    version: str = "2021"
    model_options: dict = field(default_factory=dict)  # device/dtype for lm: judges
    _cache: dict = field(default_factory=dict, repr=False)

    def _once(self, key, make):
        if key not in self._cache:
            self._cache[key] = make()
        return self._cache[key]

    def data_dir(self) -> Path:
        from truthscope.paths import data_dir

        # statement sets and presets come from a local folder, also when questions come from the hub
        return data_dir(None if self.data and self.data.startswith("hf:") else self.data)

    def truthfulqa(self):
        from truthscope.data import load_truthfulqa, load_truthfulqa_hub

        if self.data and self.data.startswith("hf:"):
            return self._once("tqa", lambda: load_truthfulqa_hub(self.data[3:] or "truthful_qa"))  # type: ignore[index]
        return self._once("tqa", lambda: load_truthfulqa(self.data_dir(), self.version))

    def presets(self) -> dict[str, str]:
        from truthscope.data import load_presets

        return self._once("presets", lambda: load_presets(self.data_dir()))

    def preset(self, name: str) -> dict[str, str]:
        """The presets, after checking `name` is one of them."""
        presets = self.presets()
        if name not in presets:
            raise TruthscopeError(f"unknown preset {name!r}; known: {', '.join(sorted(presets))}")
        return presets

    def scorers(self, judge: str, embed: bool):
        """(judges, embedder) for judging answers: see `truthscope.judges.load_scorers`."""
        from truthscope.judges import load_scorers

        return self._once(("scorers", judge, embed), lambda: load_scorers(judge, embed, **self.model_options))


# --- the registry ----------------------------------------------------------------------------------

TASKS: dict[str, type[Task]] = {}


TaskClass = TypeVar("TaskClass", bound=type[Task])


def register(cls: TaskClass) -> TaskClass:
    """Class decorator: make the task findable by its `name` (sweeps, `build_task`)."""
    TASKS[cls.name] = cls
    return cls


def build_task(
    name: str, options: Mapping | TaskOptions | None, resources: Resources, sample: Sample | None = None, seed: int = 0
) -> Task:
    """The task called `name` with `options`, its items drawn from `resources`."""
    if not isinstance(options, TaskOptions):
        options = task_options(name, options)
    return TASKS[name].build(options, resources, sample or Sample(seed=seed), seed)


def task_options(name: str, options: Mapping | None, where: str = "", strict: bool = False) -> TaskOptions:
    """Validated options of the task called `name` (unknown task or option: a one-line error).
    `strict` (options from a file): types as written, so `limit: true` or `sets: 3` is an error, not 1."""
    import truthscope.tasks  # noqa: F401  (registers the built-in tasks)

    if name not in TASKS:
        raise TruthscopeError(f"{where}unknown task {name!r}; known: {', '.join(sorted(TASKS))}")
    try:
        if strict:  # JSON's strict mode: a list may fill a tuple, nothing else changes type
            return TASKS[name].Options.model_validate_json(json.dumps(dict(options or {}), default=str), strict=True)
        return TASKS[name].Options.model_validate(dict(options or {}))
    except ValidationError as err:
        problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in err.errors())
        raise TruthscopeError(f"{where}{name} options: {problems}") from None


# --- the whole run, as every command makes it ----------------------------------------------------


def run_task(
    name: str,
    model: LanguageModel | str | None,
    out: str | os.PathLike,
    *,
    options: Mapping | TaskOptions | None = None,
    resources: Resources | None = None,
    sample: Sample | None = None,
    seed: int = 0,
    group_size: int | None = None,
    model_options: Mapping | None = None,
    label: str | None = None,
    progress: bool = True,
) -> tuple[dict, RunLog]:
    """Build task `name`, load `model` (a spec string, or a loaded `LanguageModel`; None for tasks
    that ask no model, such as `score`), open the run log at `out` and evaluate; (summary, run).

    The task is built first, so bad data, options or a missing judge fail before a model loads."""
    from truthscope.models import load_model
    from truthscope.models.facts import model_facts

    resources = resources or Resources()
    sample = sample or Sample(seed=seed)
    task = build_task(name, options, resources, sample, seed)
    execution = {"group_size": group_size or task.group_size}
    facts = None
    if isinstance(model, str):
        spec, model_options = model, dict(model_options or {})
        execution["batch_size"] = model_options.get("batch_size", 16)
        model = load_model(spec, **model_options)
        facts = model_facts(model, spec, label)
    elif model is not None:
        facts = model_facts(model, model.name, label)
    run = RunLog(out, task.config(facts, sample, execution=execution))
    return evaluate(task, model or NO_MODEL, run, group_size=execution["group_size"], progress=progress), run


class _NoModel:
    """The model of a task that asks none (`score`): asking it anything is a bug."""

    name = "none"

    def loglikelihood(self, requests):
        raise TruthscopeError("this task was run without a model")

    generate = loglikelihood


NO_MODEL: LanguageModel = _NoModel()  # type: ignore[assignment]
