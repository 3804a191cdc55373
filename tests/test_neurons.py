"""Truth-neuron selection, controls and suppression: statistics on synthetic attributions with known
answers, the random-control sampler, and both commands end to end on a tiny random model."""

from __future__ import annotations

import json
from math import comb

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from truthscope.cli import app
from truthscope.data.truthfulqa import Question
from truthscope.errors import TruthscopeError
from truthscope.interp.hooks import capture, edit
from truthscope.interp.neurons import (
    category_halves,
    overlap_vs_chance,
    per_layer_counts,
    split_questions,
    t_test_neurons,
    top_neurons,
)
from truthscope.interp.suppression import neuron_edits, random_controls, summarise_suppression
from truthscope.runlog import read_run

POSITIVE = [(0, 3), (1, 10), (1, 11), (3, 49), (2, 0)]
NEGATIVE = [(0, 7), (2, 20), (3, 1)]


def synthetic_d(n_questions=40, seed=0, effect=1.5):
    rng = np.random.default_rng(seed)
    d = rng.normal(0.0, 1.0, size=(n_questions, 4, 50))
    for layer, index in POSITIVE:
        d[:, layer, index] += effect
    for layer, index in NEGATIVE:
        d[:, layer, index] -= effect
    return d


def test_the_t_test_finds_exactly_the_planted_neurons():
    test = t_test_neurons(synthetic_d(), alpha=0.05, correction="bonferroni")
    assert sorted(test.selected(+1)) == sorted(POSITIVE)
    assert sorted(test.selected(-1)) == sorted(NEGATIVE)
    strongest = test.selected(+1)[0]
    assert abs(test.t[strongest]) == max(abs(test.t[n]) for n in POSITIVE)


def test_benjamini_hochberg_finds_all_planted_neurons_with_few_false_discoveries():
    """BH controls the false discovery rate, not the family-wise error: some noise may pass."""
    found = set(t_test_neurons(synthetic_d(), alpha=0.05, correction="bh").selected(+1))
    assert set(POSITIVE) <= found and len(found - set(POSITIVE)) <= 1


def test_pure_noise_selects_nothing_and_a_weak_effect_needs_the_correction():
    noise = np.random.default_rng(3).normal(size=(40, 4, 50))
    assert t_test_neurons(noise).selected(+1) == [] and t_test_neurons(noise).selected(-1) == []
    # uncorrected, about 5% of 200 noise neurons would pass; corrected p-values are never smaller
    test = t_test_neurons(noise)
    assert (test.p < 0.05).sum() > 0 and (test.q >= test.p - 1e-12).all()
    bonferroni = t_test_neurons(synthetic_d(effect=0.6), correction="bonferroni")
    bh = t_test_neurons(synthetic_d(effect=0.6), correction="bh")
    assert set(bonferroni.selected(+1)) <= set(bh.selected(+1))


def test_constant_neurons_and_too_few_questions():
    d = synthetic_d()
    d[:, 0, 0] = 0.0  # a dead neuron: zero variance must not become a discovery or a NaN
    test = t_test_neurons(d)
    assert test.p[0, 0] == 1.0 and (0, 0) not in test.selected(+1) + test.selected(-1)
    with pytest.raises(TruthscopeError, match="at least 3"):
        t_test_neurons(d[:2])
    with pytest.raises(TruthscopeError, match="correction"):
        t_test_neurons(d, correction="holm")


def test_random_controls_match_per_layer_counts_and_avoid_the_selected_neurons():
    selected = [(0, 1), (0, 2), (2, 5), (2, 6), (2, 7), (4, 0)]
    exclude = [(2, 8), (4, 1)]
    controls = random_controls(selected, d_mlp=12, n_controls=6, seed=1, exclude=exclude)
    assert len(controls) == 6 and len(set(controls)) == 6
    for control in controls:
        assert per_layer_counts(control, 5) == per_layer_counts(selected, 5) == [2, 0, 3, 0, 1]
        assert len(set(control)) == len(control)
        assert not set(control) & (set(selected) | set(exclude))
        assert all(0 <= i < 12 for _, i in control)
    assert random_controls(selected, 12, 6, seed=1, exclude=exclude) == controls
    assert random_controls(selected, 12, 6, seed=2, exclude=exclude) != controls
    with pytest.raises(TruthscopeError, match="only 1 others"):
        random_controls([(0, i) for i in range(3)], d_mlp=4, n_controls=1)


def test_overlap_against_chance_is_hypergeometric():
    a = {(0, 0), (0, 1), (0, 2)}
    b = {(0, 1), (0, 2), (0, 9)}
    result = overlap_vs_chance(a, b, n_total=10)
    assert result["observed"] == 2 and result["expected_by_chance"] == pytest.approx(0.9)
    assert result["p_value"] == pytest.approx((comb(3, 2) * comb(7, 1) + comb(3, 3)) / comb(10, 3))
    assert result["jaccard"] == pytest.approx(2 / 4)
    assert overlap_vs_chance(set(), b, 10)["p_value"] == 1.0


def _question(i, category):
    return Question(i, f"q{i}?", category, "Adversarial", "yes", ("yes",), ("no",), (("yes", 1), ("no", 0)),
                    (("yes", 1), ("no", 0)), "no", (("yes", 1), ("no", 0)))  # fmt: skip


def test_splits_are_disjoint_seeded_and_category_halves_balanced():
    questions = [_question(i, c) for i, c in enumerate("aaaaabbbbccddeeeffgh" * 2)]
    train, held = split_questions(questions, 15, seed=4)
    assert len(train) == 15 and len(held) == 25 and not {q.id for q in train} & {q.id for q in held}
    assert [q.id for q in split_questions(questions, 15, seed=4)[0]] == [q.id for q in train]
    first, second = category_halves(questions, seed=0)
    assert first.isdisjoint(second) and first | second == set("abcdefgh")
    sizes = [sum(q.category in half for q in questions) for half in (first, second)]
    assert abs(sizes[0] - sizes[1]) <= 4
    with pytest.raises(TruthscopeError, match="--train"):
        split_questions(questions, 40)


def test_neuron_edits_zero_or_scale_exactly_the_chosen_neurons():
    from test_hooks import IDS, tiny

    model = tiny("llama")
    chosen = [(1, 4), (1, 30), (2, 0)]
    with capture(model, ["blocks.1.mlp.neurons", "blocks.2.mlp.neurons"]) as clean:
        model(IDS)
    for mode, factor in (("zero", 0.0), ("scale", 0.25)):
        with edit(model, neuron_edits(chosen, mode, factor)), capture(model, ["blocks.1.mlp.neurons"]) as got:
            model(IDS)
        layer1 = got["blocks.1.mlp.neurons"]
        torch.testing.assert_close(layer1[..., [4, 30]], factor * clean["blocks.1.mlp.neurons"][..., [4, 30]])
        torch.testing.assert_close(layer1[..., 5:30], clean["blocks.1.mlp.neurons"][..., 5:30])
    with pytest.raises(TruthscopeError, match="mode"):
        neuron_edits(chosen, "ablate")


def test_suppression_summary_recovers_known_effects():
    rng = np.random.default_rng(0)
    base = rng.uniform(0.3, 0.9, size=30)
    shifts = {"none": 0.0, "selected": -0.2, "random_1": -0.01, "random_2": 0.0, "random_3": -0.02}
    records = [
        {"condition": c, "item": f"q{i}", "scores": {"mc2": float(v + shift + rng.normal(0, 0.01))}}
        for c, shift in shifts.items()
        for i, v in enumerate(base)
    ]
    metric = summarise_suppression(records, list(shifts))["metrics"]["mc2"]
    assert metric["selected_minus_none"]["mean"] == pytest.approx(-0.2, abs=0.01)
    assert metric["selected_minus_random"]["mean"] == pytest.approx(-0.19, abs=0.01)
    assert metric["selected_minus_random"]["ci_high"] < 0 and metric["selected_minus_random"]["p_value"] < 1e-6
    assert metric["random_minus_none"]["ci_low"] < 0 < metric["selected_minus_none"]["ci_high"] + 0.3
    assert metric["rank_p"] == pytest.approx(1 / 4)
    assert metric["means"]["none"]["n"] == 30


# --- end to end on a tiny model ------------------------------------------------------------------


@pytest.fixture(scope="module")
def letter_model_dir(tmp_path_factory):
    """A tiny random Llama whose tokenizer has " A" and " B" as single tokens (the binary prompt's
    answer letters), as real tokenizers do."""
    from tiny_models import CORPUS, tiny_llama
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    corpus = CORPUS * 20 + ["Answer: A", "Answer: B"] * 200
    tok = Tokenizer(models.BPE(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=320, special_tokens=["<unk>", "<s>", "</s>"], initial_alphabet=pre_tokenizers.ByteLevel.alphabet()
    )
    tok.train_from_iterator(corpus, trainer=trainer)
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="<unk>", bos_token="<s>", eos_token="</s>")
    assert len(tokenizer(" A").input_ids) == 1
    folder = tmp_path_factory.mktemp("letters")
    tiny_llama(len(tokenizer)).save_pretrained(folder, safe_serialization=True)
    tokenizer.save_pretrained(folder)
    return folder


def test_find_then_suppress_end_to_end(letter_model_dir, data_dir, tmp_path):
    runner = CliRunner()
    find_dir = tmp_path / "find"
    common = ["--data", str(data_dir), "--device", "cpu"]
    args = ["neurons", "find", "-m", str(letter_model_dir), "--limit", "14", "--train", "10", "--steps", "4"]
    result = runner.invoke(app, [*args, "--alpha", "0.75", "--out", str(find_dir), *common])
    assert result.exit_code == 0, result.output
    config, records, summary = read_run(find_dir)
    assert len(records) == 10 and {r["id"] for r in records} == set(summary["split"]["train_ids"])
    assert not set(summary["split"]["train_ids"]) & set(summary["split"]["held_out_ids"])
    assert len(summary["split"]["held_out_ids"]) == 4
    assert (find_dir / "attributions" / f"{records[0]['id']}.npy").exists()
    assert np.load(find_dir / "neuron_stats.npz")["t"].shape == (3, 128)
    assert summary["completeness_error"]["max"] < 1e-2
    n_positive = len(summary["neurons"]["positive"])
    assert n_positive > 0 and sum(summary["per_layer"]["positive"]) == n_positive
    assert (find_dir / "layers.png").stat().st_size > 0 and (find_dir / "attribution.png").stat().st_size > 0

    # a rerun with another alpha only redoes the test; the attributions are kept
    again = runner.invoke(app, [*args, "--alpha", "1e-12", "--out", str(find_dir), *common])
    assert again.exit_code == 0, again.output
    assert read_run(find_dir)[2]["neurons"]["positive"] == [] and read_run(find_dir)[2]["resumed_with"] == 10
    # nothing significant: suppress says so, and --top takes the strongest candidates instead
    small = ["--controls", "1", "--eval-limit", "2", "--statements", "cities,larger_than", "--statement-limit", "2"]
    refused = runner.invoke(app, ["neurons", "suppress", "--from", str(find_dir), *small, *common])
    assert refused.exit_code == 2 and "--top" in refused.output
    top_dir = tmp_path / "top"
    top = runner.invoke(
        app, ["neurons", "suppress", "--from", str(find_dir), "--top", "6", *small, "--out", str(top_dir), *common]
    )
    assert top.exit_code == 0, top.output
    t = np.load(find_dir / "neuron_stats.npz")["t"]
    chosen = {tuple(n) for n in read_run(top_dir)[2]["neurons"]}
    assert len(chosen) == 6 and min(t[n] for n in chosen) >= np.sort(t, axis=None)[-6]
    runner.invoke(app, [*args, "--alpha", "0.75", "--out", str(find_dir), *common])

    suppress_dir = tmp_path / "suppress"
    result = runner.invoke(
        app,
        ["neurons", "suppress", "--from", str(find_dir), "--controls", "2", "--statement-limit", "4",
         "--statements", "cities,larger_than", "--out", str(suppress_dir), *common],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    _, records, summary = read_run(suppress_dir)
    n_items = 4 + 8 + 6  # held-out questions, statements, neutral texts
    assert len(records) == 4 * n_items  # none, selected, random_1, random_2
    assert set(summary["metrics"]) == {"mc1", "mc2", "mc0", "mc0_acc", "cities.accuracy", "larger_than.accuracy",
                                       "lm_loss", "kl"}  # fmt: skip
    kl = summary["metrics"]["kl"]
    assert kl["means"]["none"]["mean"] == pytest.approx(0.0, abs=1e-6) and kl["means"]["selected"]["mean"] > 0
    assert all(per_layer_counts([tuple(n) for n in c], 3) == summary["per_layer"] for c in summary["controls"])
    assert (suppress_dir / "suppression.png").stat().st_size > 0

    plot = runner.invoke(app, ["neurons", "plot", str(find_dir), str(find_dir), "--out", str(tmp_path / "l.png")])
    assert plot.exit_code == 0 and (tmp_path / "l.png").exists()
    printed = [json.loads(line) for line in result.stdout.splitlines() if line.startswith("{")]
    assert printed and set(printed[-1]) == set(summary["metrics"])


def test_find_refuses_the_2021_data_and_non_torch_models(data_dir, tmp_path):
    runner = CliRunner()
    base = ["neurons", "find", "--data", str(data_dir), "--limit", "8", "--train", "4", "--out"]
    result = runner.invoke(app, [*base, str(tmp_path / "a"), "-m", "mock"])
    assert result.exit_code == 2 and "Hugging Face model" in result.output
    result = runner.invoke(app, [*base, str(tmp_path / "b"), "-m", "mock", "--version", "2021"])
    assert result.exit_code == 2 and "--version 2025" in result.output


def test_top_neurons_are_the_largest_t_of_a_sign_significant_or_not():
    t = np.array([[0.5, -3.0, 2.0], [4.0, -0.1, 0.0]])
    assert top_neurons(t, 2) == [(1, 0), (0, 2)]
    assert top_neurons(t, 5, sign=-1) == [(0, 1), (1, 1)]  # only neurons of that sign
