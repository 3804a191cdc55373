"""Export: an mc and a gen run written as an Inspect AI log (read back with inspect_ai's own reader)
and as lm-evaluation-harness results (values equal to the summary, read by the harness's table)."""

from __future__ import annotations

import importlib.util
import json
import math
import os

import pytest

from truthscope.errors import TruthscopeError
from truthscope.export import export_run
from truthscope.models import MockModel
from truthscope.runlog import Sample, read_run
from truthscope.tasks.base import Resources, run_task


@pytest.fixture(scope="module")
def runs(data_dir, tmp_path_factory):
    """A harness mc run and a gen run (similarity metrics only) of the mock model on 8 questions."""
    root = tmp_path_factory.mktemp("runs")
    resources = Resources(str(data_dir), "2021")
    sample = Sample(how="seeded", n=8)
    for folder, task, options in (
        ("mc", "mc", {}),
        ("gen", "gen", {"judge": "none", "embed": False}),
        ("upstream", "mc", {"protocol": "upstream"}),
    ):
        run_task(task, MockModel(), root / folder, options=options, resources=resources, sample=sample, progress=False)
    return root


def inspect_log():
    """inspect_ai's log module; skip where it is not installed, fail where CI requires the engines."""
    if os.environ.get("TRUTHSCOPE_REQUIRE_ENGINES") and importlib.util.find_spec("inspect_ai") is None:
        pytest.fail("TRUTHSCOPE_REQUIRE_ENGINES is set but inspect_ai is not installed (truthscope[engines])")
    return pytest.importorskip("inspect_ai.log", reason="inspect_ai is not installed (truthscope[engines])")


def sem(values):
    mean = sum(values) / len(values)
    return math.sqrt(sum((v - mean) ** 2 for v in values) / (len(values) - 1)) / math.sqrt(len(values))


@pytest.mark.parametrize("task", ["mc", "gen"])
def test_inspect_log_reads_back_with_the_records_scores(runs, tmp_path, task):
    log_module = inspect_log()
    config, records, summary = read_run(runs / task)
    path = export_run(runs / task, "inspect", tmp_path / "logs" / f"{task}.eval")
    log = log_module.read_eval_log(str(path))
    assert log.status == "success" and log.eval.model == "truthscope/mock"
    assert log.eval.task_args == config["options"]
    assert log.samples is not None and [s.id for s in log.samples] == [r["id"] for r in records]
    for sample, record in zip(log.samples, records, strict=True):
        assert sample.scores is not None
        assert {m: s.value for m, s in sample.scores.items()} == record["scores"]
        assert sample.input == record["question"]
        if task == "gen":
            assert sample.output.completion == record["answer"]
        else:  # the choices are the MC1 answers, the target the true one, the output the model's pick
            answers = record["answers"]["mc1"]
            assert sample.choices == [a["text"] for a in answers]
            assert sample.target == [a["text"] for a in answers if a["label"] == 1]
            assert sample.output.completion == max(answers, key=lambda a: a["logprob"])["text"]
    assert log.results is not None
    results = {s.name: s.metrics for s in log.results.scores}
    assert set(results) == set(summary["scores"])
    for metric, stat in summary["scores"].items():
        assert results[metric]["mean"].value == stat["mean"]
        assert results[metric]["ci_low"].value == stat["ci_low"]
        assert results[metric]["stderr"].value == pytest.approx(sem([r["scores"][metric] for r in records]))
    # `inspect view` / `inspect log list` find it in its folder
    assert [info.name for info in log_module.list_eval_logs(str(tmp_path / "logs"))] == [path.as_uri()]


def test_inspect_default_name_is_one_inspect_lists(runs, tmp_path):
    log_module = inspect_log()
    import shutil

    run = tmp_path / "run"
    shutil.copytree(runs / "mc", run)
    path = export_run(run, "inspect")
    assert path.parent == run and path.suffix == ".eval" and "truthscope-mc" in path.name
    assert len(log_module.list_eval_logs(str(run))) == 1
    json_path = export_run(run, "inspect", tmp_path / "log.json")
    assert log_module.read_eval_log(str(json_path)).eval.task == "truthscope_mc"


def test_lm_eval_results_equal_the_summary(runs, tmp_path):
    _, mc_records, mc_summary = read_run(runs / "mc")
    results = json.loads(export_run(runs / "mc", "lm-eval", tmp_path / "mc.json").read_text())
    assert {"results", "configs", "versions", "n-samples", "config", "n-shot", "higher_is_better"} <= set(results)
    assert set(results["results"]) == {"truthfulqa_mc1", "truthfulqa_mc2"}
    for task, metric in (("truthfulqa_mc1", "mc1"), ("truthfulqa_mc2", "mc2")):
        entry = results["results"][task]
        assert entry["acc,none"] == mc_summary["scores"][metric]["mean"]
        assert entry["acc_stderr,none"] == pytest.approx(sem([r["scores"][metric] for r in mc_records]))
        assert results["n-samples"][task] == {"original": 817, "effective": 8}
        assert results["configs"][task]["num_fewshot"] == 0 and results["n-shot"][task] == 0
    assert results["versions"] == {"truthfulqa_mc1": 2.0, "truthfulqa_mc2": 3.0}
    assert results["config"]["limit"] == 8 and results["config"]["model_args"].startswith("pretrained=mock")

    _, gen_records, gen_summary = read_run(runs / "gen")
    gen = json.loads(export_run(runs / "gen", "lm-eval", tmp_path / "gen.json").read_text())["results"]
    assert set(gen) == {"truthfulqa_gen"}
    for metric in ("bleu_max", "bleu_acc", "bleu_diff", "rouge1_max", "rouge2_acc", "rougeL_diff"):
        assert gen["truthfulqa_gen"][f"{metric},none"] == gen_summary["scores"][metric]["mean"]
    assert {k.split(",")[0] for k in gen["truthfulqa_gen"] if k.endswith(",none")} == {
        *gen_summary["scores"],
        *(f"{m}_stderr" for m in gen_summary["scores"]),
    }


def test_lm_eval_config_is_the_harness_task_and_its_table_reads_it(runs, tmp_path):
    """Where lm-eval is installed: the exported prompt and choices are its own task YAML's, and its
    results table prints the exported numbers."""
    pytest.importorskip("lm_eval", reason="lm-eval is not installed (truthscope[bench])")
    from lm_eval.tasks import TaskManager
    from lm_eval.utils import make_table

    results = json.loads(export_run(runs / "mc", "lm-eval", tmp_path / "mc.json").read_text())
    manager = TaskManager()
    for task in ("truthfulqa_mc1", "truthfulqa_mc2"):
        theirs = manager.task_index[task].cfg
        ours = results["configs"][task]
        for key in ("doc_to_text", "doc_to_choice", "doc_to_target", "dataset_path", "dataset_name", "output_type"):
            assert ours[key] == theirs[key], key
        assert ours["metadata"]["version"] == results["versions"][task] == theirs["metadata"]["version"]
    table = make_table(results)
    assert f"{results['results']['truthfulqa_mc1']['acc,none']:.4f}" in table


def test_exports_refuse_what_they_cannot_say(runs, tmp_path):
    with pytest.raises(TruthscopeError, match="protocol 'upstream'"):  # lm-eval's MC1 is another number
        export_run(runs / "upstream", "lm-eval", tmp_path / "x.json")
    with pytest.raises(TruthscopeError, match="unknown format"):
        export_run(runs / "mc", "csv")
    with pytest.raises(TruthscopeError, match="no finished runs"):
        export_run(tmp_path, "lm-eval")
    inspect_log()
    with pytest.raises(TruthscopeError, match=".eval or .json"):
        export_run(runs / "mc", "inspect", tmp_path / "log.txt")


def test_command_writes_the_file_and_names_it(runs, tmp_path):
    from typer.testing import CliRunner

    from truthscope.cli import app

    out = tmp_path / "lm.json"
    result = CliRunner().invoke(app, ["export", str(runs / "gen"), "--format", "lm-eval", "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert f"wrote {out}" in result.output and json.loads(out.read_text())["results"]["truthfulqa_gen"]
    bad = CliRunner().invoke(app, ["export", str(runs / "upstream"), "--format", "lm-eval", "--out", str(out)])
    assert bad.exit_code == 2
