"""A finished run in the formats other tools open: an Inspect AI eval log, lm-evaluation-harness results.

    inspect   an `inspect_ai.log.EvalLog` built from inspect_ai's own types and written by its own
              writer (`.eval`, or `.json`), so `inspect view` and `inspect log` read it: one sample
              per record (input: the question or statement; for multiple choice the answers are the
              choices and the true ones the target; output: the model's answer, for multiple
              choice the one it gives the highest log-likelihood), every truthscope metric a score
              on each sample, and per metric the run's mean, its standard error and the 95% interval
              the summary gives (with the interval's method).
    lm-eval   the results JSON lm-evaluation-harness writes (`results`, `group_subtasks`, `configs`,
              `versions`, `n-shot`, `higher_is_better`, `n-samples`, `config`, `date`): an mc run
              as `truthfulqa_mc1` and `truthfulqa_mc2`, a gen run as `truthfulqa_gen`, each metric
              as `METRIC,none` with `METRIC_stderr,none` (sample standard deviation / sqrt(n), as
              the harness computes it). Only runs whose numbers mean what the harness's task names
              mean are exported: 2021 data and the `qa` preset, mc on the harness protocol, gen
              without the chat template. truthscope's gen stops and trims answers as the original
              TruthfulQA code does (50 tokens, stops at a blank line or "Q:"); the harness's
              `truthfulqa_gen` generates up to 256 tokens until a blank line. The prompts are the
              same, the BLEU/ROUGE references and formulas too, and the exported config says which
              generation settings ran; the alias says it is truthscope's.

Runs are read only through `truthscope.analysis.runs` (the one run-log reader).
"""

from __future__ import annotations

import hashlib
import json
import math
from datetime import datetime, timezone
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from scipy import stats

from truthscope.analysis.runs import Run, find_runs
from truthscope.errors import TruthscopeError

FORMATS = ("inspect", "lm-eval")

# lm-evaluation-harness 0.4.x: its TruthfulQA tasks, the truthscope metric each reports as its `acc`,
# and the task versions in the harness's YAML (`metadata.version`)
LM_EVAL_MC = {"truthfulqa_mc1": ("mc1", 2.0, "mc1_targets"), "truthfulqa_mc2": ("mc2", 3.0, "mc2_targets")}
LM_EVAL_GEN_VERSION = 3.0
LM_EVAL_ORIGINAL = 817  # questions in the hub dataset `truthful_qa` (validation) the harness reads


def load_run(path: str | Path) -> Run:
    """The one finished run at `path` (a run folder)."""
    runs, _ = find_runs([path])
    if len(runs) != 1:
        raise TruthscopeError(f"{path} holds {len(runs)} runs; name one run folder")
    return runs[0]


def export_run(path: str | Path, fmt: str, out: str | Path | None = None) -> Path:
    """Write the run at `path` as `fmt` (`inspect` or `lm-eval`) to `out` (default: inside the run
    folder, named as the tool names its own files); the file written."""
    if fmt not in FORMATS:
        raise TruthscopeError(f"unknown format {fmt!r}; use {' or '.join(FORMATS)}")
    run = load_run(path)
    created = _finished_at(run)
    stamp = created.strftime("%Y-%m-%dT%H-%M-%S+00-00")
    if fmt == "inspect":
        target = Path(out) if out else run.directory / f"{stamp}_truthscope-{run.task}_{_digest(run)[:22]}.eval"
        if target.suffix not in (".eval", ".json"):
            raise TruthscopeError(f"{target}: an Inspect log ends in .eval or .json")
        return write_inspect_log(to_inspect(run), target)
    target = Path(out) if out else run.directory / f"results_{stamp}.json"
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(json.dumps(to_lm_eval(run), indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    return target


# --- Inspect AI ----------------------------------------------------------------------------------


def to_inspect(run: Run):
    """The run as an `inspect_ai.log.EvalLog` (status `success`: only finished runs are read)."""
    log = _inspect()
    finished = _finished_at(run)
    started = datetime.fromtimestamp(finished.timestamp() - float(run.summary.get("wall_seconds") or 0), timezone.utc)
    digest = _digest(run)
    model = f"truthscope/{run.model}"
    records = run.records
    scores = []
    for metric, stat in run.summary.get("scores", {}).items():
        values = list(run.values(metric).values())
        metrics = {"mean": log.EvalMetric(name="mean", value=stat["mean"])}
        if len(values) > 1:
            metrics["stderr"] = log.EvalMetric(name="stderr", value=_stderr(values))
        for bound in ("ci_low", "ci_high"):
            if _finite(stat.get(bound)):
                metrics[bound] = log.EvalMetric(name=bound, value=stat[bound])
        scores.append(
            log.EvalScore(
                name=metric,
                scorer=metric,
                scored_samples=len(values),
                unscored_samples=len(records) - len(values),
                metrics=metrics,
                metadata={"interval": stat.get("method"), "level": 0.95},
            )
        )
    spec = log.EvalSpec(
        eval_id=digest[:22],
        run_id=digest[22:44],
        created=finished.isoformat(),
        task=f"truthscope_{run.task}",
        task_id=digest[44:],
        task_args=dict(run.config.get("options") or {}),
        dataset=log.EvalDataset(
            name="Geometry of Truth" if run.task == "statements" else "TruthfulQA",
            location=f"TruthfulQA {run.version}" if run.version else None,
            samples=len(records),
            sample_ids=[r["id"] for r in records],
            shuffled=False,
        ),
        model=model,
        model_args={k: v for k, v in (run.config.get("model") or {}).items() if v is not None},
        config=log.EvalConfig(limit=run.limit),
        packages=dict((run.summary.get("environment") or {}).get("packages") or {}),
        metadata={"truthscope": {"run": str(run.directory), "config": run.config}},
    )
    return log.EvalLog(
        version=2,
        status="success",
        eval=spec,
        results=log.EvalResults(total_samples=len(records), completed_samples=len(records), scores=scores),
        stats=log.EvalStats(started_at=started.isoformat(), completed_at=finished.isoformat()),
        samples=[_sample(log, record, model) for record in records],
    )


def write_inspect_log(eval_log, path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    _inspect().write_eval_log(eval_log, str(path))
    return path


def _sample(log, record: dict, model: str):
    text = record.get("question") or record.get("statement") or ""
    choices, target = _choices(record)
    answer = record.get("answer") if isinstance(record.get("answer"), str) else _top_choice(record)
    values = {m: float(v) for m, v in (record.get("scores") or {}).items() if _finite(v)}
    kept = {k: v for k, v in record.items() if k not in ("id", "scores", "question", "statement", "answer")}
    messages = [log.ChatMessageUser(content=text)]
    if answer is not None:
        messages.append(log.ChatMessageAssistant(content=answer, model=model))
    return log.EvalSample(
        id=record["id"],
        epoch=1,
        input=text,
        choices=choices,
        target=target,
        messages=messages,
        output=log.ModelOutput.from_content(model, answer or ""),
        scores={m: log.Score(value=v, answer=answer) for m, v in values.items()},
        metadata=kept,
    )


def _answer_set(record: dict) -> list[dict] | None:
    """The answers MC1 is scored on (harness: `mc1`; upstream: `all`), if the record has any."""
    answers = record.get("answers")
    if not isinstance(answers, dict):
        return None
    return answers.get("mc1") or answers.get("all")


def _choices(record: dict) -> tuple[list[str] | None, str | list[str]]:
    options = _answer_set(record)
    if options:
        return [a["text"] for a in options], [a["text"] for a in options if a["label"] == 1]
    if "label" in record:  # a statement: true or false
        return None, "true" if record["label"] in (1, True, "true") else "false"
    return None, ""


def _top_choice(record: dict) -> str | None:
    """The answer the model gives the highest log-likelihood (its multiple-choice answer)."""
    options = _answer_set(record)
    if not options:
        return None
    return max(options, key=lambda a: a["logprob"])["text"]


def _inspect() -> SimpleNamespace:
    """inspect_ai's log types and writer, and the sample parts, imported on first use (an extra)."""
    try:
        from inspect_ai import log
        from inspect_ai.model import ChatMessageAssistant, ChatMessageUser, ModelOutput
        from inspect_ai.scorer import Score
    except ImportError:
        raise TruthscopeError("--format inspect needs inspect_ai: pip install 'truthscope[engines]'") from None
    return SimpleNamespace(
        **{name: getattr(log, name) for name in log.__all__},
        ChatMessageAssistant=ChatMessageAssistant,
        ChatMessageUser=ChatMessageUser,
        ModelOutput=ModelOutput,
        Score=Score,
    )


# --- lm-evaluation-harness -----------------------------------------------------------------------


def to_lm_eval(run: Run) -> dict:
    """The run as lm-evaluation-harness's results JSON (see the module docstring)."""
    refused = _lm_eval_mismatch(run)
    if refused:
        raise TruthscopeError(
            f"{run.directory}: lm-eval's truthfulqa tasks are {refused[0]}; this run has {refused[1]}, "
            "so its numbers are not theirs (export it with --format inspect)"
        )
    scores = run.summary["scores"]
    if run.task == "mc":
        tasks = {name: {"acc": metric} for name, (metric, _, _) in LM_EVAL_MC.items()}
        versions = {name: version for name, (_, version, _) in LM_EVAL_MC.items()}
        aliases = {name: name for name in tasks}
    else:
        tasks = {"truthfulqa_gen": {m: m for m in scores}}
        versions = {"truthfulqa_gen": LM_EVAL_GEN_VERSION}
        aliases = {"truthfulqa_gen": "truthfulqa_gen (truthscope)"}
    results, configs, n_samples = {}, {}, {}
    for name, metrics in tasks.items():
        entry: dict[str, Any] = {"name": name, "alias": aliases[name], "sample_len": 0}
        for theirs, ours in metrics.items():
            values = list(run.values(ours).values())
            entry[f"{theirs},none"] = scores[ours]["mean"]
            entry[f"{theirs}_stderr,none"] = _stderr(values) if len(values) > 1 else "N/A"
            entry["sample_len"] = max(entry["sample_len"], len(values))
        results[name] = entry
        configs[name] = _lm_eval_config(run, name, list(metrics), versions[name])
        n_samples[name] = {"original": LM_EVAL_ORIGINAL, "effective": entry["sample_len"]}
    execution = run.config.get("execution") or {}
    finished = _finished_at(run)
    seed = run.config.get("seed", 0)
    return {
        "results": results,
        "group_subtasks": {name: [] for name in results},
        "configs": configs,
        "versions": versions,
        "n-shot": dict.fromkeys(results, 0),
        "higher_is_better": {name: dict.fromkeys(tasks[name], True) for name in results},
        "n-samples": n_samples,
        "config": {
            "model": "truthscope",
            "model_args": f"pretrained={run.spec},dtype={run.dtype}",
            "model_num_parameters": run.params,
            "model_dtype": run.dtype,
            "batch_size": execution.get("batch_size"),
            "batch_sizes": [],
            "device": None,
            "use_cache": None,
            "limit": run.limit,
            "bootstrap_iters": 0,
            "gen_kwargs": configs.get("truthfulqa_gen", {}).get("generation_kwargs"),
            "random_seed": seed,
            "numpy_seed": seed,
            "torch_seed": seed,
            "fewshot_seed": seed,
        },
        "date": finished.timestamp() - float(run.summary.get("wall_seconds") or 0),
        "model_source": "truthscope",
        "model_name": run.spec,
        "truthscope": {
            "run": str(run.directory),
            "sample": run.config.get("sample"),
            "quantisation": run.quantisation,
            "note": "exported from a truthscope run log; lm-eval's --limit takes the first N questions, "
            "a truthscope sample is described under `sample`",
        },
    }


def _lm_eval_mismatch(run: Run) -> tuple[str, str] | None:
    """(what the harness's tasks are, what this run is) where they differ; None where they agree."""
    if run.task not in ("mc", "gen"):
        return "multiple choice (mc) and generation (gen)", f"task {run.task!r}"
    if run.version != "2021":
        return "on the 2021 data", f"data version {run.version}"
    if run.preset != "qa":
        return "on the qa preset", f"preset {run.preset!r}"
    if run.task == "mc" and run.protocol != "harness":
        return "the harness protocol", f"protocol {run.protocol!r}"
    if run.task == "gen" and (run.config.get("options") or {}).get("chat"):
        return "without a chat template", "--chat"
    return None


def _lm_eval_config(run: Run, name: str, metrics: list[str], version: float) -> dict:
    """The task's config as the harness dumps it, with what truthscope ran (prompt, generation)."""
    from truthscope.tasks.base import Resources

    preset = Resources(data=None).preset("qa")["qa"].replace("'", "\\'")
    end = " + '\nA:'" if run.task == "mc" else ""  # real newlines, as the harness's YAML unfolds them
    config: dict[str, Any] = {
        "task": name,
        "tag": ["truthfulqa"],
        "dataset_path": "truthfulqa/truthful_qa",
        "dataset_name": "multiple_choice" if run.task == "mc" else "generation",
        "validation_split": "validation",
        "doc_to_text": f"{{% set prompt_qa = '{preset}'%}}{{{{prompt_qa + '\n\nQ: ' + question{end}}}}}",
        "doc_to_target": 0 if run.task == "mc" else " ",
        "description": "",
        "target_delimiter": " ",
        "fewshot_delimiter": "\n\n",
        "num_fewshot": 0,
        "metric_list": [{"metric": m, "aggregation": "mean", "higher_is_better": True} for m in metrics],
        "output_type": "multiple_choice" if run.task == "mc" else "generate_until",
        "repeats": 1,
        "should_decontaminate": True,
        "doc_to_decontamination_query": "question",
        "metadata": {"version": version, "truthscope_options": run.config.get("options")},
    }
    if run.task == "mc":
        config["doc_to_choice"] = f"{{{{{LM_EVAL_MC[name][2]}.choices}}}}"
    else:
        from truthscope.tasks.generation import stop_strings

        options = run.config.get("options") or {}
        config["generation_kwargs"] = {
            "until": list(stop_strings("qa")),
            "max_gen_toks": options.get("max_new_tokens"),
            "do_sample": False,
            "temperature": 0.0,
        }
    return config


# --- shared ---------------------------------------------------------------------------------------


def _finished_at(run: Run) -> datetime:
    """When the run was finished: its summary's modification time, in UTC."""
    return datetime.fromtimestamp((run.directory / "summary.json").stat().st_mtime, timezone.utc)


def _digest(run: Run) -> str:
    text = json.dumps({"dir": str(run.directory.resolve()), "config": run.config}, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()


def _stderr(values: list[float]) -> float:
    """The standard error of the mean as the harness reports it: sample SD (n - 1) / sqrt(n)."""
    return float(stats.sem(values))


def _finite(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
