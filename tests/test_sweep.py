"""Sweeps: the grid, resuming, failing cells that do not stop the rest, and a real SIGKILL."""

import json
import os
import signal
import subprocess
import sys
import time

import pytest

from truthscope.errors import TruthscopeError
from truthscope.models import MockModel
from truthscope.runlog import read_run
from truthscope.sweep import SweepSpec, cells, load_spec, run_sweep


class SizedMock(MockModel):
    """A mock with a torch module behind it, so the sweep can count its parameters."""

    def __init__(self, name: str, n_params: int):
        import torch

        super().__init__(name=name)
        self.model = torch.nn.Linear(n_params, 1, bias=False)


def spec_of(**overrides) -> SweepSpec:
    raw = {
        "name": "test",
        "models": [{"spec": "small", "label": "small"}, {"spec": "large", "label": "large"}],
        "presets": ["qa", "help"],
        "tasks": ["mc", "statements"],
        "mc": {"limit": 12, "save_every": 4},
        "statements": {"sets": ["larger_than", "cities"], "limit": 6},
        **overrides,
    }
    return SweepSpec.model_validate(raw)


def loader(calls=None, broken=()):
    def load(entry, spec):
        if calls is not None:
            calls.append(entry.spec)
        if entry.spec in broken:
            raise OSError(f"cannot open {entry.spec}")
        return SizedMock(entry.name, 100 if entry.spec == "small" else 1000)

    return load


def test_grid_has_one_statements_cell_per_model_and_one_mc_cell_per_preset_first_preset_first():
    keys = [c.key for c in cells(spec_of())]
    assert keys == [
        "small/mc-qa",
        "small/statements",
        "small/mc-help",
        "large/mc-qa",
        "large/statements",
        "large/mc-help",
    ]


def test_spec_file_errors_are_one_clear_message(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("models: [a]\ntasks: [mc, poetry]\n")
    with pytest.raises(TruthscopeError, match="unknown task"):
        load_spec(bad)
    twins = tmp_path / "twins.yaml"
    twins.write_text("models: [org/a, other/a]\n")
    with pytest.raises(TruthscopeError, match="distinct `label`s"):
        load_spec(twins)
    with pytest.raises(TruthscopeError, match="not found"):
        load_spec(tmp_path / "missing.yaml")
    good = tmp_path / "ladder.yaml"
    good.write_text("models: [smollm2-135m, {spec: /x/y/model-b, label: b}]\nmc: {limit: 5}\n")
    spec = load_spec(good)
    assert spec.name == "ladder" and [m.name for m in spec.models] == ["smollm2-135m", "b"]


def test_sweep_records_parameter_counts_and_scores(data_dir, tmp_path):
    summary = run_sweep(spec_of(), tmp_path, data=str(data_dir), load=loader(), progress=False, echo=lambda _: None)
    assert summary["counts"] == {"done": 6, "failed": 0, "running": 0, "pending": 0}
    config, records, cell_summary = read_run(tmp_path / "large" / "mc-qa")
    assert config["model"]["params"] == 1000 and config["options"]["preset"] == "qa"
    assert config["sample"] == {"how": "seeded", "n": 12, "seed": 0}
    assert len(records) == 12 and set(cell_summary["scores"]) == {"mc1", "mc2", "mc3"}
    # the question sample is the same in every cell, so cells pair by question id
    assert [r["id"] for r in records] == [r["id"] for r in read_run(tmp_path / "small" / "mc-help")[1]]
    _, statements, _ = read_run(tmp_path / "small" / "statements")
    assert len(statements) == 12 and {r["set"] for r in statements} == {"larger_than", "cities"}
    on_disk = json.loads((tmp_path / "sweep.json").read_text())
    assert {c["key"]: c["params"] for c in on_disk["cells"]}["small/statements"] == 100


def test_done_cells_are_skipped_and_a_broken_cell_is_resumed(data_dir, tmp_path):
    run_sweep(spec_of(), tmp_path, data=str(data_dir), load=loader(), progress=False, echo=lambda _: None)
    cell = tmp_path / "large" / "mc-help"
    before = (cell / "records.jsonl").read_text()
    # what a crash leaves: no summary, and the records of the questions done so far
    (cell / "summary.json").unlink()
    (cell / "records.jsonl").write_text("".join(before.splitlines(keepends=True)[:5]))
    untouched = (tmp_path / "small" / "mc-qa" / "summary.json").stat().st_mtime_ns

    calls = []
    summary = run_sweep(
        spec_of(), tmp_path, data=str(data_dir), load=loader(calls), progress=False, echo=lambda _: None
    )
    assert calls == ["large"]  # the small model is not even loaded: all its cells are done
    assert summary["counts"]["done"] == 6
    assert (cell / "records.jsonl").read_text() == before
    assert json.loads((cell / "summary.json").read_text())["resumed_with"] == 5
    assert (tmp_path / "small" / "mc-qa" / "summary.json").stat().st_mtime_ns == untouched


def test_failing_cells_are_reported_and_the_rest_still_run(data_dir, tmp_path, monkeypatch):
    # three kinds of failure: a model that cannot load, a preset that does not exist, a judge that
    # was never trained
    monkeypatch.setenv("TRUTHSCOPE_CACHE", str(tmp_path / "empty-cache"))
    spec = spec_of(
        models=[{"spec": "broken"}, {"spec": "small"}],
        presets=["qa", "no-such-preset"],
        tasks=["mc", "gen", "statements"],
        gen={"limit": 2, "judge": "trained", "embed": False},
    )
    lines = []
    summary = run_sweep(
        spec, tmp_path, data=str(data_dir), load=loader(broken=("broken",)), progress=False, echo=lines.append
    )
    status = {c["key"]: c for c in summary["cells"]}
    assert all(status[f"broken/{k}"]["status"] == "failed" for k in ("mc-qa", "gen-qa", "statements"))
    assert "cannot open broken" in status["broken/mc-qa"]["error"]
    assert status["small/mc-no-such-preset"]["status"] == "failed"
    assert "unknown preset" in status["small/mc-no-such-preset"]["error"]
    assert "judge train" in status["small/gen-qa"]["error"]
    assert status["small/mc-qa"]["status"] == "done" and status["small/statements"]["status"] == "done"
    assert summary["counts"] == {"done": 2, "failed": 8, "running": 0, "pending": 0}
    assert any(line.startswith("[failed] small/gen-qa") for line in lines)
    assert "Traceback" in status["small/gen-qa"]["traceback"]

    with pytest.raises(TruthscopeError, match="mc options: protocol"):  # a bad option stops the sweep at once
        run_sweep(spec_of(mc={"protocol": "exotic"}), tmp_path / "x", data=str(data_dir), load=loader(), progress=False)

    from truthscope.report import write_report

    written = write_report([tmp_path], tmp_path / "report")  # the report says what is missing
    html = written["html"].read_text()
    assert "Failed sweep cells" in html and "cannot open broken" in html


def test_model_facts_read_the_module(tiny_model_dir):
    from truthscope.models import load_model
    from truthscope.models.facts import model_facts

    lm = load_model(str(tiny_model_dir), device="cpu")
    facts = model_facts(lm, str(tiny_model_dir), "tiny")
    assert facts.params == sum(p.numel() for p in lm.model.parameters()) > 0
    embedding = lm.model.get_input_embeddings().weight.numel()
    untied = lm.model.get_output_embeddings().weight is not lm.model.get_input_embeddings().weight
    assert facts.non_embedding_params == facts.params - embedding * (2 if untied else 1)
    assert facts.family == "llama" and facts.dtype == "float32" and facts.label == "tiny"
    mock = model_facts(MockModel(), "mock")
    assert mock.params is None and mock.non_embedding_params is None


def sweep_yaml(path, model_dir):
    path.write_text(
        "name: killed\n"
        f"models: [{{spec: '{model_dir}', label: tiny}}]\n"
        "presets: [qa, help]\n"
        "tasks: [mc]\n"
        "mc: {limit: 40, save_every: 8}\n"
        "batch_size: 4\n"
        "device: cpu\n"
    )
    return path


def test_sigkill_midway_then_resume_matches_an_uninterrupted_sweep(tiny_model_dir, data_dir, tmp_path):
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    spec = sweep_yaml(tmp_path / "sweep.yaml", tiny_model_dir)

    def command(out):
        return [sys.executable, "-m", "truthscope", "sweep", str(spec), "--data", str(data_dir), "--out", str(out)]

    subprocess.run(command(tmp_path / "whole"), check=True, env=env, capture_output=True)

    killed = tmp_path / "killed"
    proc = subprocess.Popen(command(killed), env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    second = killed / "tiny" / "mc-help" / "records.jsonl"
    deadline = time.time() + 180
    while time.time() < deadline and not (second.exists() and second.read_text().count("\n") >= 8):
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert (killed / "tiny" / "mc-qa" / "summary.json").exists()
    assert not (killed / "tiny" / "mc-help" / "summary.json").exists(), "the kill must land in the second cell"
    counts = json.loads((killed / "sweep.json").read_text())["counts"]
    assert counts["done"] == 1 and counts["running"] == 1  # what the killed process left

    result = subprocess.run([*command(killed), "--report"], env=env, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert "2 cells done, 0 failed" in result.stdout
    assert (killed / "report" / "report.html").exists()  # one model: presets compared, no slope
    for cell in ("mc-qa", "mc-help"):
        assert (killed / "tiny" / cell / "records.jsonl").read_text() == (
            tmp_path / "whole" / "tiny" / cell / "records.jsonl"
        ).read_text()
    assert json.loads((killed / "tiny" / "mc-help" / "summary.json").read_text())["resumed_with"] >= 8


def test_a_missing_data_folder_stops_the_sweep_before_any_model_loads(tmp_path):
    calls = []
    with pytest.raises(TruthscopeError):
        run_sweep(spec_of(), tmp_path / "out", data=str(tmp_path / "nowhere"), load=loader(calls), progress=False)
    assert calls == []


def test_gen_cells_run_the_generation_task(data_dir, tmp_path):
    pytest.importorskip("truthscope.tasks.generation")
    spec = spec_of(
        tasks=["gen"], presets=["qa"], gen={"limit": 3, "max_new_tokens": 8, "judge": "none", "embed": False}
    )
    summary = run_sweep(spec, tmp_path, data=str(data_dir), load=loader(), progress=False, echo=lambda _: None)
    assert summary["counts"]["done"] == 2, summary["cells"]
    config, records, cell_summary = read_run(tmp_path / "small" / "gen-qa")
    assert config["options"]["judge"] == "none" and len(records) == 3 and cell_summary["scores"]


@pytest.mark.parametrize("name", ["offline.yaml", "pythia.yaml"])
def test_example_sweeps_are_valid(name):
    from pathlib import Path

    spec = load_spec(Path(__file__).resolve().parents[1] / "examples" / "sweeps" / name)
    assert len(spec.models) >= 2 and "mc" in spec.tasks and cells(spec)


def test_a_done_cell_run_with_other_settings_is_refused_not_reused(data_dir, tmp_path):
    run_sweep(spec_of(), tmp_path, data=str(data_dir), load=loader(), progress=False, echo=lambda _: None)
    changed = spec_of(mc={"limit": 10, "save_every": 4})
    with pytest.raises(TruthscopeError, match=r"small/mc-qa \(sample\)"):
        run_sweep(changed, tmp_path, data=str(data_dir), load=loader(), progress=False, echo=lambda _: None)


def test_labels_cannot_write_outside_the_sweep_and_remote_code_needs_the_flag(data_dir, tmp_path):
    spec = spec_of(models=[{"spec": "small", "label": "../../escape"}, {"spec": "/abs/path/.."}], tasks=["mc"])
    assert [m.name for m in spec.models] == ["escape", "model"]
    remote = spec_of(models=[{"spec": "small", "trust_remote_code": True}])
    with pytest.raises(TruthscopeError, match="--trust-remote-code"):
        run_sweep(remote, tmp_path / "r", data=str(data_dir), load=loader(), progress=False)
    assert not (tmp_path / "r").exists()


def test_a_second_process_on_the_same_run_folder_is_refused(tmp_path):
    from truthscope.runlog import RunLog

    code = (
        "import sys, time\n"
        "from truthscope.runlog import RunLog\n"
        f"run = RunLog({str(tmp_path)!r}, {{'task': 'x'}})\n"
        "print('locked', flush=True)\n"
        "time.sleep(30)\n"
    )
    holder = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        with pytest.raises(TruthscopeError, match=f"in use by PID {holder.pid}"):
            RunLog(tmp_path, {"task": "x"})
    finally:
        holder.kill()
        holder.wait()
    RunLog(tmp_path, {"task": "x"})  # free again once the holder is gone
