"""Latent knowledge versus output: the 2x2 table, the MC1 rule applied to probe scores, and
`truthscope latent` end to end."""

from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pytest

from truthscope.interp.latent import CELLS, cell, latent_by_group, latent_records, latent_table, question_mc1


def test_cells_and_table_shares():
    records = [
        {"knows": True, "says": True, "n_answers": 4, "category": "A"},
        {"knows": True, "says": False, "n_answers": 4, "category": "A"},
        {"knows": True, "says": False, "n_answers": 2, "category": "B"},
        {"knows": False, "says": True, "n_answers": 2, "category": "B"},
        {"knows": False, "says": False, "n_answers": 5, "category": "B"},
    ]
    assert [cell(r["knows"], r["says"]) for r in records] == [
        "knows_and_says",
        "knows_not_says",
        "knows_not_says",
        "says_not_knows",
        "neither",
    ]
    table = latent_table(records)
    assert [table[c]["mean"] for c in CELLS] == pytest.approx([0.2, 0.4, 0.2, 0.2])
    assert sum(table[c]["mean"] for c in CELLS) == pytest.approx(1.0)
    assert table["knows"]["mean"] == pytest.approx(0.6) and table["says"]["mean"] == pytest.approx(0.4)
    assert table["knows_given_says_false"]["mean"] == pytest.approx(2 / 3)
    assert table["knows_chance"] == pytest.approx(np.mean([1 / 4, 1 / 4, 1 / 2, 1 / 2, 1 / 5]))
    assert table["knows_not_says"]["ci_low"] <= 0.4 <= table["knows_not_says"]["ci_high"]
    by = latent_by_group(records)
    assert by["A"]["knows_not_says"]["mean"] == 0.5 and by["B"]["knows"]["n"] == 3


@pytest.fixture(scope="module")
def tqa(data_dir):
    from truthscope.data import load_presets, load_truthfulqa

    dataset = load_truthfulqa(data_dir, "2021")
    return replace(dataset, questions=dataset.questions[:30]), load_presets(data_dir)


@pytest.mark.parametrize("protocol", ["harness", "upstream"])
def test_question_mc1_agrees_with_the_mc_task(tqa, protocol, tmp_path):
    """The MC1 that `latent` computes from item scores is `truthscope mc`'s MC1 for the same scores."""
    from truthscope.interp.activations import truthfulqa_items
    from truthscope.models import MockModel
    from truthscope.models.base import LoglikelihoodRequest
    from truthscope.runlog import RunLog
    from truthscope.tasks.multiple_choice import run_multiple_choice

    dataset, presets = tqa
    items = truthfulqa_items(dataset, presets, protocol)
    model = MockModel()
    scores = np.array(
        [r.logprob for r in model.loglikelihood([LoglikelihoodRequest(it.context, it.continuation) for it in items])]
    )
    mine = question_mc1(dataset.questions, items, scores, protocol, "qa", presets)
    run_multiple_choice(model, dataset, presets, RunLog(tmp_path, {}), protocol=protocol, progress=False)
    theirs = {
        json.loads(line)["id"]: json.loads(line)["scores"]["mc1"]
        for line in (tmp_path / "records.jsonl").read_text().splitlines()
    }
    assert mine == theirs and 0 < sum(mine.values()) < len(mine)


def test_latent_records_separate_knowing_from_saying(tqa):
    from truthscope.interp.activations import truthfulqa_items

    dataset, presets = tqa
    items = truthfulqa_items(dataset, presets)
    labels = np.array([it.label for it in items], dtype=float)
    # a probe that always prefers true answers; a model that always prefers false ones
    records = latent_records(dataset.questions, items, labels, -labels, "harness", "qa", presets)
    assert [r["cell"] for r in records] == ["knows_not_says"] * len(dataset.questions)
    assert [r["id"] for r in records] == [q.id for q in dataset.questions]
    assert all(r["n_answers"] == len(q.mc1_targets) for r, q in zip(records, dataset.questions))
    agree = latent_records(dataset.questions, items, labels, labels, "harness", "qa", presets)
    assert latent_table(agree)["knows_and_says"]["mean"] == 1.0


def test_latent_command_holds_out_questions(tiny_model_dir, data_dir, tmp_path, monkeypatch):
    from typer.testing import CliRunner

    from truthscope.cli import app

    monkeypatch.setenv("TRUTHSCOPE_CACHE", str(tmp_path / "cache"))
    out = tmp_path / "run"
    args = [
        "latent",
        "-m",
        str(tiny_model_dir),
        "--data",
        str(data_dir),
        "--sample",
        "30",
        "--out",
        str(out),
        "--device",
        "cpu",
    ]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    summary = json.loads((out / "summary.json").read_text())
    assert summary["questions"] == {"train": 15, "test": 15}
    assert sum(summary["table"][c]["mean"] for c in CELLS) == pytest.approx(1.0)
    assert summary["table"]["knows"]["n"] == 15 and summary["by_category"]
    records = [json.loads(line) for line in (out / "records.jsonl").read_text().splitlines()]
    assert len(records) == 15 and {r["cell"] for r in records} <= set(CELLS)
    assert max(r["id"] for r in records) > 100  # --sample draws from all questions, not the first 30
    assert (out / "latent.png").stat().st_size > 0
