"""Truth-neuron selection, controls and suppression: statistics on synthetic attributions with known
answers, the random-control sampler, and both commands end to end on a tiny random model."""

from __future__ import annotations

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
    halves_overlap,
    max_t_permutation,
    minimum_detectable_effect,
    per_layer_counts,
    power_of,
    split_questions,
    storey_pi0,
    t_test_neurons,
    top_neurons,
)
from truthscope.interp.suppression import (
    activation_strata,
    neuron_edits,
    random_controls,
    set_level_test,
    summarise_suppression,
)
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


def test_random_controls_match_per_layer_counts_and_avoid_only_the_excluded_neurons():
    selected = [(0, 1), (0, 2), (2, 5), (2, 6), (2, 7), (4, 0)]
    exclude = [(2, 8), (4, 1)]
    controls = random_controls(selected, d_mlp=12, n_controls=40, seed=1, exclude=exclude)
    assert len(controls) == 40 and len(set(controls)) > 30
    for control in controls:
        assert per_layer_counts(control, 5) == per_layer_counts(selected, 5) == [2, 0, 3, 0, 1]
        assert len(set(control)) == len(control)
        assert not set(control) & set(exclude)
        assert all(0 <= i < 12 for _, i in control)
    # the selected neurons are drawn as often as any other (that keeps the set-level test exact)
    assert any(set(control) & set(selected) for control in controls)
    assert random_controls(selected, 12, 6, seed=1, exclude=exclude) == controls[:6]
    assert random_controls(selected, 12, 6, seed=2, exclude=exclude) != controls[:6]
    with pytest.raises(TruthscopeError, match="only 3 others"):
        random_controls([(0, i) for i in range(4)], d_mlp=4, n_controls=1, exclude=[(0, 3)])


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
    items = {
        c: {"mc2": {i: float(v + shift + rng.normal(0, 0.01)) for i, v in enumerate(base)}}
        for c, shift in shifts.items()
    }
    costs = {c: {"lm_loss": 3.0 - shift, "kl": -shift, "tokens": 100} for c, shift in shifts.items()}
    metrics = summarise_suppression(items, list(shifts), costs)["metrics"]
    metric = metrics["mc2"]
    assert metric["selected_minus_none"]["mean"] == pytest.approx(-0.2, abs=0.01)
    assert metric["selected_minus_random"]["mean"] == pytest.approx(-0.19, abs=0.01)
    assert metric["selected_minus_random"]["ci_high"] < 0 and metric["selected_minus_random"]["p_value"] < 1e-6
    assert metric["set_test"]["p_lower"] == pytest.approx(1 / 4) and metric["set_test"]["p_two_sided"] == 0.25
    assert metric["none"]["n"] == 30 and len(metric["random_effects"]) == 3
    assert metrics["kl"]["set_test"]["effect"] == pytest.approx(0.2) and metrics["kl"]["set_test"]["p_upper"] == 0.25


def test_random_sets_match_layer_and_activation_decile():
    rng = np.random.default_rng(5)
    activation = rng.lognormal(size=(3, 200))
    strata = activation_strata(activation)
    assert strata.min() == 0 and strata.max() == 9 and (np.bincount(strata[0]) == 20).all()
    selected = [(0, int(i)) for i in np.argsort(activation[0])[-6:]] + [(2, 3), (2, 4)]  # the most active
    controls = random_controls(selected, 200, 20, seed=1, strata=strata)
    for control in controls:
        assert per_layer_counts(control, 3) == per_layer_counts(selected, 3)
        assert sorted(strata[n] for n in control) == sorted(strata[n] for n in selected)
    # a decile that runs short is filled from the nearest ones of the same layer
    order = np.argsort(activation[1])
    top, excluded = [(1, int(i)) for i in order[-10:]], [(1, int(i)) for i in order[-20:-5]]  # decile 9: 5 left
    for control in random_controls(top, 200, 3, seed=0, exclude=excluded, strata=strata):
        assert len(control) == 10 and not set(control) & set(excluded)
        assert sorted(strata[n] for n in control) == [8] * 5 + [9] * 5


def test_the_set_level_p_is_uniform_when_the_selected_set_is_random():
    """A cheap synthetic effect model: each neuron has a fixed effect (larger for more active
    neurons), a set's effect is their sum plus evaluation noise. The "selected" set is itself a
    random set, so the null holds; p < 0.05 must happen about 5% of the time."""
    rejections, lower, n_sims = 0, 0, 400
    for sim in range(n_sims):
        rng = np.random.default_rng(sim)
        activation = rng.lognormal(size=(4, 60))
        weight = rng.normal(0, 1, size=(4, 60)) * activation - 0.3 * activation  # big neurons matter more
        strata = activation_strata(activation)
        flat = rng.choice(240, size=12, replace=False)
        selected = [(int(i) // 60, int(i) % 60) for i in flat]
        controls = random_controls(selected, 60, 99, seed=sim, strata=strata)

        def effect(neurons, rng=rng, weight=weight):
            return float(sum(weight[n] for n in neurons) + rng.normal(0, 0.5))

        test = set_level_test(effect(selected), [effect(c) for c in controls])
        rejections += test["p_two_sided"] < 0.05
        lower += test["p_lower"] < 0.05
    assert 0.02 <= rejections / n_sims <= 0.09 and 0.02 <= lower / n_sims <= 0.09
    # and a real effect is found: the same neurons made 3 sd stronger
    strong = set_level_test(10.0, np.random.default_rng(0).normal(0, 1, 99))
    assert strong["p_two_sided"] == strong["p_upper"] == 0.01


# --- power and permutation tests ----------------------------------------------------------------


def test_minimum_detectable_effect_has_80_percent_power():
    d = minimum_detectable_effect(50, 0.05)
    assert d == pytest.approx(0.40, abs=0.01)  # the textbook one-sample value at alpha 0.05, n 50
    assert power_of(d, 50, 0.05) == pytest.approx(0.8, abs=1e-4)
    strict = minimum_detectable_effect(50, 0.05 / 46080)  # Bonferroni over SmolLM2-135M's neurons
    assert strict > 0.8 and minimum_detectable_effect(400, 0.05 / 46080) < strict / 2.5


def test_max_t_and_pi0_under_the_null():
    """D with no signal: the family-wise max-T p rejects about alpha of the time, and pi0 ~ 1."""
    rejections, pi0s = 0, []
    for seed in range(200):
        d = np.random.default_rng(seed).normal(size=(16, 2, 40))
        result = max_t_permutation(d, n_permutations=199, seed=seed)
        rejections += result["family_wise_p"] < 0.05
        assert result["adjusted_p"].shape == (2, 40) and result["adjusted_p"].min() >= 1 / 200
        pi0s.append(storey_pi0(t_test_neurons(d).p))
    assert 0.02 <= rejections / 200 <= 0.09
    assert np.mean(pi0s) > 0.93


def test_max_t_finds_a_planted_neuron_and_the_t_matches_scipy():
    d = synthetic_d(n_questions=20)
    result = max_t_permutation(d, n_permutations=499, seed=0)
    assert result["family_wise_p"] == pytest.approx(1 / 500)
    test = t_test_neurons(d)
    from scipy import stats

    np.testing.assert_allclose(test.t, stats.ttest_1samp(d, 0.0, axis=0).statistic, rtol=1e-10)
    assert all(result["adjusted_p"][n] < 0.05 for n in POSITIVE)


def test_halves_overlap_null_by_sign_flips():
    halves = (list(range(0, 20)), list(range(20, 40)))
    null = np.random.default_rng(1).normal(size=(40, 4, 50))
    result = halves_overlap(null, halves, top_k=20, n_permutations=99, seed=0)
    assert 0 < result["top_k"]["p_value"] <= 1 and result["top_k"]["null_mean"] == pytest.approx(2.0, abs=1.0)
    shared = halves_overlap(synthetic_d(), halves, top_k=20, n_permutations=99, seed=0)
    assert shared["observed"] >= 4 and shared["p_value"] == pytest.approx(0.01)
    assert shared["top_k"]["observed"] >= 5 and shared["top_k"]["p_value"] < 0.05


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


def _letter_neuron_model(folder, strength):
    """The tiny model with neuron 0 of the last layer turned into a pure letter neuron: it writes
    " A" up and " B" down (through the final norm), whatever the question."""
    from truthscope.models import load_model

    lm = load_model(str(folder), device="cpu")
    head = lm.model.lm_head.weight
    a, b = lm.tokenizer(" A").input_ids[0], lm.tokenizer(" B").input_ids[0]
    with torch.no_grad():
        direction = (head[a] - head[b]) * lm.model.model.norm.weight
        lm.model.model.layers[-1].mlp.down_proj.weight[:, 0] = strength * direction / direction.norm()
    return lm


def _fires_at_one(t):  # the letter neuron is on at 1.0 at every position, like a bias unit
    t = t.clone()
    t[..., 0] = 1.0
    return t


def test_a_letter_neuron_gets_d_zero_once_both_orders_are_averaged(letter_model_dir, data_dir):
    """A neuron that only favours "A": D = +lambda when A is correct and -lambda when B is, in one
    order (the paper's single random order); the mean over both orders cancels it."""
    from truthscope.interp.neurons import attribute_question
    from truthscope.tasks.base import Resources

    lm = _letter_neuron_model(letter_model_dir, strength=40.0)
    resources = Resources(str(data_dir), "2025")
    single, averaged, letters, other = [], [], [], []
    for q in resources.truthfulqa().questions[:6]:
        # registered before the attribution's own hooks, so its clean capture sees the neuron at 1.0
        with edit(lm.model, {"blocks.2.mlp.neurons": _fires_at_one}):
            out = attribute_question(lm, q, "null", resources.presets(), steps=8, max_rows=64)
        single.append(out["by_order"][0][2, 0])
        averaged.append(out["d"][2, 0])
        letters.append(out["record"]["correct_letters"][0])
        other.append(np.abs(out["d"]).max())
    single, averaged = np.array(single), np.array(averaged)
    signs = np.array([1.0 if letter == "A" else -1.0 for letter in letters])
    # the 2025 file lists the correct answer first, so one order always has "A" correct: mean D = +lambda
    assert (np.sign(single) == signs).all() and abs(single.mean()) > 0.2
    assert abs(averaged.mean()) < 0.05 * abs(single.mean())  # cancelled in the mean of both orders
    assert np.abs(averaged).mean() < 0.15 * np.abs(single).mean()  # and nearly so question by question


def test_find_then_suppress_end_to_end(letter_model_dir, data_dir, tmp_path):
    runner = CliRunner()
    find_dir = tmp_path / "find"
    common = ["--data", str(data_dir), "--device", "cpu"]
    args = ["neurons", "find", "-m", str(letter_model_dir), "--train", "10", "--steps", "4", "--permutations", "99"]
    result = runner.invoke(app, [*args, "--alpha", "0.9999", "--out", str(find_dir), *common])
    assert result.exit_code == 0, result.output
    assert "max-T family-wise p" in result.output and "min detectable d" in result.output
    config, records, summary = read_run(find_dir)
    assert config["task"] == "neurons.find" and config["sample"] == {"how": "seeded", "n": 10, "seed": 0}
    assert len(records) == 10 and {r["id"] for r in records} == set(summary["split"]["train_ids"])
    assert all(len(r["correct_letters"]) == 2 and set(r["scores"]) == {"binary_acc", "margin"} for r in records)
    assert not set(summary["split"]["train_ids"]) & set(summary["split"]["held_out_ids"])
    assert (find_dir / "attributions" / f"{records[0]['id']}.npy").exists()
    stats_file = np.load(find_dir / "neuron_stats.npz")
    assert stats_file["t"].shape == stats_file["mean_abs_activation"].shape == stats_file["max_t_p"].shape == (3, 128)
    assert summary["completeness_error"]["max"] < 1e-2
    power = summary["power"]
    assert power["max_t"]["n_permutations"] == 99 and 0 < power["max_t"]["family_wise_p"] <= 1
    assert 0 <= power["pi0"] <= 1 and power["minimum_detectable_d_at_n"]["50"] > 0.3
    assert sum(power["p_histogram"]["counts"]) == 384
    assert "sign flips" in summary["subject_agnostic"]["null"]
    n_positive = len(summary["neurons"]["positive"])
    assert n_positive > 0 and sum(summary["per_layer"]["positive"]) == n_positive
    assert (find_dir / "layers.png").stat().st_size > 0 and (find_dir / "attribution.png").stat().st_size > 0

    # a rerun with another alpha only redoes the statistics; the attributions are kept
    again = runner.invoke(app, [*args, "--alpha", "1e-12", "--out", str(find_dir), *common])
    assert again.exit_code == 0, again.output
    assert read_run(find_dir)[2]["neurons"]["positive"] == [] and read_run(find_dir)[2]["resumed_with"] == 10
    # nothing significant: suppress says so, and --top takes the strongest candidates instead
    small = ["--controls", "2", "--limit", "2", "--sets", "cities,larger_than", "--set-limit", "2"]
    refused = runner.invoke(app, ["neurons", "suppress", "--from", str(find_dir), *small, *common])
    assert refused.exit_code == 2 and "--top" in refused.output
    top_dir = tmp_path / "top"
    suppress = ["neurons", "suppress", "--from", str(find_dir), "--top", "6", *small, "--out", str(top_dir), *common]
    top = runner.invoke(app, suppress)
    assert top.exit_code == 0, top.output
    t = stats_file["t"]
    _, conditions, summary = read_run(top_dir)
    chosen = {tuple(n) for n in summary["neurons"]}
    assert len(chosen) == 6 and min(t[n] for n in chosen) >= np.sort(t, axis=None)[-6]
    assert [r["condition"] for r in conditions] == ["none", "selected", "random_1", "random_2"]
    assert conditions[0]["scores"]["kl"] == 0.0 and conditions[1]["scores"]["kl"] > 0
    deciles = activation_strata(stats_file["mean_abs_activation"])
    for record in conditions[2:]:
        assert sorted(deciles[tuple(n)] for n in record["neurons"]) == sorted(deciles[n] for n in chosen)
    # every condition's evaluation is an ordinary run log of a registered task
    for name in ("none", "selected", "random_2"):
        mc_config, mc_records, mc_summary = read_run(top_dir / "conditions" / name / "mc")
        assert mc_config["task"] == "mc" and len(mc_records) == 2 and mc_summary["scores"]["mc0"]["n"] == 2
        assert read_run(top_dir / "conditions" / name / "statements")[0]["task"] == "statements"
    metrics = summary["metrics"]
    assert {"mc1", "mc2", "mc0", "mc0_acc", "cities.accuracy", "larger_than.accuracy", "lm_loss", "kl"} <= set(metrics)
    assert metrics["kl"]["set_test"]["n_random"] == 2 and metrics["mc2"]["set_test"]["p_two_sided"] >= 1 / 3
    assert (top_dir / "suppression.png").stat().st_size > 0
    # resuming a finished run recomputes nothing and gives the same numbers
    assert runner.invoke(app, suppress).exit_code == 0 and read_run(top_dir)[2]["metrics"] == metrics

    plot = runner.invoke(app, ["neurons", "plot", str(find_dir), str(find_dir), "--out", str(tmp_path / "figs")])
    assert plot.exit_code == 0 and (tmp_path / "figs" / "layers.png").exists()


def test_find_refuses_the_2021_data_and_non_torch_models(data_dir, tmp_path):
    runner = CliRunner()
    base = ["neurons", "find", "--data", str(data_dir), "--train", "4", "--out"]
    result = runner.invoke(app, [*base, str(tmp_path / "a"), "-m", "mock"])
    assert result.exit_code == 2 and "Hugging Face model" in result.output
    result = runner.invoke(app, [*base, str(tmp_path / "b"), "-m", "mock", "--data-version", "2021"])
    assert result.exit_code == 2 and "2025" in result.output


def test_top_neurons_are_the_largest_t_of_a_sign_significant_or_not():
    t = np.array([[0.5, -3.0, 2.0], [4.0, -0.1, 0.0]])
    assert top_neurons(t, 2) == [(1, 0), (0, 2)]
    assert top_neurons(t, 5, sign=-1) == [(0, 1), (1, 1)]  # only neurons of that sign
