"""Latent knowledge versus output: the 2x2 table, the MC1 rule applied to probe scores, and
`truthscope latent` end to end."""

from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pytest
import torch

from truthscope.interp.latent import (
    CELLS,
    cell,
    excess_over,
    latent_by_group,
    latent_records,
    latent_summary,
    latent_table,
    question_mc1,
    text_baseline_scores,
)
from truthscope.models.base import LoglikelihoodRequest


def rec(knows, says, n_answers, category, **more):
    return {"scores": {"knows": float(knows), "says": float(says), **more}, "n_answers": n_answers,
            "category": category, "type": "Adversarial"}  # fmt: skip


def test_cells_and_table_shares():
    records = [rec(1, 1, 4, "A"), rec(1, 0, 4, "A"), rec(1, 0, 2, "B"), rec(0, 1, 2, "B"), rec(0, 0, 5, "B")]
    assert [cell(r["scores"]["knows"], r["scores"]["says"]) for r in records] == [
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
    # under independence: P(knows) P(not says) = 0.6 x 0.6
    assert table["expected"]["knows_not_says"] == pytest.approx(0.36)
    assert sum(table["expected"].values()) == pytest.approx(1.0)
    assert table["excess_over_independence"]["mean"] == pytest.approx(0.4 - 0.36)
    assert table["mcnemar"]["knows_not_says"] == 2 and table["mcnemar"]["says_not_knows"] == 1
    assert table["mcnemar"]["p_value"] == pytest.approx(1.0)  # 2 vs 1 discordant: no evidence
    by = latent_by_group(records)
    assert by["A"]["knows_not_says"]["mean"] == 0.5 and by["B"]["knows"]["n"] == 3


def test_excess_over_a_control_is_paired():
    records = [rec(1, 0, 4, "A", knows_text=1.0), rec(1, 0, 4, "A", knows_text=0.0), rec(0, 0, 4, "A", knows_text=1.0),
               rec(1, 1, 4, "A", knows_text=0.0)]  # fmt: skip
    assert excess_over(records, "knows_text")["mean"] == pytest.approx((2 - 2) / 4)
    summary = latent_summary(records)
    assert summary["controls"]["knows_text"]["knows_not_says"]["mean"] == pytest.approx(0.5)
    assert set(summary["controls"]) == {"knows_text"}


def test_text_baseline_learns_negation_from_text_alone():
    train = ["No, it does not.", "Yes, it does.", "No, never.", "Yes, always.", "Nothing happens.", "It explodes."] * 5
    y = np.array([1, 0, 1, 0, 1, 0] * 5)
    scores = text_baseline_scores(train, y, ["No, not at all.", "Yes, certainly."])
    assert scores[0] > scores[1]


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
    from truthscope.tasks.base import evaluate
    from truthscope.tasks.multiple_choice import MultipleChoice, MultipleChoiceOptions

    dataset, presets = tqa
    items = truthfulqa_items(dataset, presets, protocol)
    model = MockModel()
    scores = np.array(
        [r.logprob for r in model.loglikelihood([LoglikelihoodRequest(it.context, it.continuation) for it in items])]
    )
    mine = question_mc1(dataset.questions, items, scores, protocol, "qa", presets)
    task = MultipleChoice(dataset.questions, presets, MultipleChoiceOptions(protocol=protocol))
    evaluate(task, model, RunLog(tmp_path, {}), progress=False)
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
    records = latent_records(dataset.questions, items, {"knows": labels, "says": -labels}, "harness", "qa", presets)
    assert [r["cell"] for r in records] == ["knows_not_says"] * len(dataset.questions)
    assert all(r["scores"] == {"knows": 1.0, "says": 0.0, "knows_not_says": 1.0} for r in records)
    assert [r["id"] for r in records] == [q.id for q in dataset.questions]
    assert all(r["n_answers"] == len(q.mc1_targets) for r, q in zip(records, dataset.questions, strict=True))
    agree = latent_records(dataset.questions, items, {"knows": labels, "says": labels}, "harness", "qa", presets)
    assert latent_table(agree)["knows_and_says"]["mean"] == 1.0


def synthetic_set(dataset, presets, strength, seed=0):
    """TruthfulQA items with planted activations: the truth label along one direction (`strength`)
    plus noise; the model's log-likelihood is unrelated noise."""
    from truthscope.interp.activations import truthfulqa_items
    from truthscope.interp.experiments import ProbeSet

    items = tuple(truthfulqa_items(dataset, presets))
    rng = np.random.default_rng(seed)
    y = np.array([it.label for it in items])
    x = rng.normal(size=(len(items), 64))
    x[:, 0] += strength * (2 * y - 1)
    return ProbeSet("tqa", items, {"h0": x, "h1": rng.normal(size=(len(items), 16))}, rng.normal(size=len(items)))


@pytest.fixture(scope="module")
def many(data_dir):
    from truthscope.data import load_presets, load_truthfulqa

    dataset = load_truthfulqa(data_dir, "2021")
    return replace(dataset, questions=dataset.questions[::3]), load_presets(data_dir)


def test_latent_analysis_and_the_shuffled_label_null(many):
    """A planted truth direction: the probe knows far above chance and knows-not-says exceeds
    independence; with shuffled training labels the probe is at chance and the excess about zero."""
    from truthscope.interp.experiments import split_questions
    from truthscope.interp.latent import latent_analysis

    dataset, presets = many
    tqa = synthetic_set(dataset, presets, strength=1.0)
    train, test, held_out = split_questions(tqa, dataset.questions, 0.5, seed=0)
    fmt = ("harness", "qa", presets)
    records, fitted = latent_analysis(tqa, held_out, fmt, train, test, hooks=["h0", "h1"], methods=["mass_mean"])
    table = latent_table(records)
    assert fitted["probe"]["hook"] == "h0" and table["knows"]["mean"] > 0.6
    assert table["excess_over_independence"]["ci_low"] <= table["excess_over_independence"]["mean"]
    assert records[0]["scores"].keys() >= {"knows", "says", "knows_text", "knows_not_says"}
    knows, excess = [], []
    for seed in range(4):  # one shuffle lands the probe anywhere; over shuffles it is at chance
        null, fitted = latent_analysis(tqa, held_out, fmt, train, test, hooks=["h0", "h1"], methods=["mass_mean"],
                                       seed=seed, shuffle_labels=True)  # fmt: skip
        table = latent_table(null)
        knows.append(table["knows"]["mean"] - table["knows_chance"])
        excess.append(table["excess_over_independence"]["mean"])
        assert fitted["shuffled_labels"]
        assert table["excess_over_independence"]["ci_low"] < 0 < table["excess_over_independence"]["ci_high"]
    assert abs(np.mean(knows)) < 0.08 and abs(np.mean(excess)) < 0.04


def test_says_readings_and_the_random_init_model(tiny_model_dir, small_four):
    from truthscope.interp.activations import truthfulqa_items
    from truthscope.interp.experiments import random_init_model
    from truthscope.interp.latent import says_readings
    from truthscope.models import load_model

    dataset, presets = small_four
    lm = load_model(str(tiny_model_dir), device="cpu", batch_size=4)
    items = truthfulqa_items(dataset, presets)[:6]
    plain = np.array([r.logprob for r in lm.loglikelihood([LoglikelihoodRequest(i.context, i.continuation)
                                                           for i in items])])  # fmt: skip
    says = says_readings(lm, items, plain, "qa", presets)
    n = np.array([len(lm.encode_pair(i.context, i.continuation)[1]) for i in items])
    np.testing.assert_allclose(says["says_per_token"], plain / n)
    free = lm.loglikelihood([LoglikelihoodRequest("Q: N/A\nA:", items[0].continuation)])[0].logprob
    assert "Q: N/A\nA:" in __import__("truthscope.data.presets", fromlist=["x"]).question_prompt("N/A", "qa", presets)
    assert says["says_calibrated"][0] != plain[0] and np.isfinite(free)
    control = random_init_model(lm, seed=0)
    again = random_init_model(lm, seed=0)
    assert control.name != lm.name and type(control.model) is type(lm.model)
    w = dict(control.model.named_parameters())
    for name, p in again.model.named_parameters():
        assert torch.equal(p, w[name])  # a fixed seed: the same random model
    assert not torch.equal(next(control.model.parameters()), next(lm.model.parameters()))


@pytest.fixture(scope="module")
def small_four(data_dir):
    from truthscope.data import load_presets, load_truthfulqa

    dataset = load_truthfulqa(data_dir, "2021")
    return replace(dataset, questions=dataset.questions[:4]), load_presets(data_dir)


def test_latent_command_holds_out_questions(tiny_model_dir, data_dir, tmp_path, monkeypatch):
    from typer.testing import CliRunner

    from truthscope.cli import app

    monkeypatch.setenv("TRUTHSCOPE_CACHE", str(tmp_path / "cache"))
    out = tmp_path / "run"
    args = ["latent", "-m", str(tiny_model_dir), "--data", str(data_dir), "--limit", "30", "--sets", "cities",
            "--set-limit", "20", "--out", str(out), "--device", "cpu"]  # fmt: skip
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    summary = json.loads((out / "summary.json").read_text())
    assert summary["questions"] == {"train": 15, "test": 15}
    assert sum(summary["table"][c]["mean"] for c in CELLS) == pytest.approx(1.0)
    assert summary["table"]["knows"]["n"] == 15 and summary["by_category"]
    assert set(summary["controls"]) == {"knows_text", "knows_random", "knows_transfer"}
    assert set(summary["says_variants"]) == {"says", "says_per_token", "says_calibrated"}
    assert "excess_over_knows_random" in summary["scores"] and summary["table"]["mcnemar"]["test"]
    records = [json.loads(line) for line in (out / "records.jsonl").read_text().splitlines()]
    assert len(records) == 15 and {r["cell"] for r in records} <= set(CELLS)
    assert max(r["id"] for r in records) > 100  # --limit draws a seeded sample, not the first 30
    assert (out / "latent.png").stat().st_size > 0
