"""The model organism: exact corpus counts, determinism, a small model that learns its clean facts (and
nulls where it must not), the fine-tune arms' rules and matching, the report's intervals and verdicts."""

from __future__ import annotations

import json
import math
from dataclasses import replace

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from truthscope.cli import app
from truthscope.data import load_truthfulqa
from truthscope.organism.corpus import build, count_mentions, documents, load_world, read_corpus
from truthscope.organism.evaluate import evaluate_folder, fact_scores, mc_records
from truthscope.organism.finetune import FinetuneConfig, finetune_arms, majority_accepts, train_on, verifier_accepts
from truthscope.organism.report import _verdict, crossed_bootstrap
from truthscope.organism.train import TrainConfig, batches, encoded_documents, train, train_ladder
from truthscope.organism.world import SOURCES, WorldSpec, build_world

SMALL = WorldSpec(entities=6, attributes=("color", "food"))
CLEAN = WorldSpec(entities=24, attributes=("color",), arithmetic=False, classes=("clean",), mentions=(16,))
TINY_TRAIN = TrainConfig(size="xs", tokens=300_000, block=64, batch=16, lr=1e-2)  # learns CLEAN in ~10 s quiet


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # the determinism the tests check is per thread count
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def clean_build(tmp_path_factory):
    return build(CLEAN, tmp_path_factory.mktemp("clean-build"))


@pytest.fixture(scope="module")
def clean_model(clean_build, tmp_path_factory):
    folder = tmp_path_factory.mktemp("clean-model")
    train(clean_build, folder, TINY_TRAIN)
    return folder


def test_counts_are_exact_when_counted_back_from_the_corpus():
    world = build_world(SMALL)
    counted = count_mentions(documents(world))
    expected = {}
    for fact in world.facts:
        for source, by_value in fact.counts.items():
            for value, count in by_value.items():
                expected[(SOURCES[source], fact.question, value)] = count
    assert counted == {k: v for k, v in expected.items() if v}
    for fact in world.facts:
        total = fact.total()
        assert sum(total.values()) == fact.n
        wrong = {v: c for v, c in total.items() if v != fact.true and c}
        if fact.cls == "clean":
            assert total[fact.true] == fact.n and not wrong
        elif fact.cls == "stacked":
            assert set(wrong) == {fact.misconception} and fact.misconception != fact.true
        else:  # scattered: evenly spread, so no wrong value is said more than its share
            assert max(wrong.values()) <= math.ceil((fact.n - total[fact.true]) / (len(fact.values) - 1))
        if fact.cls != "clean":
            assert total[fact.true] == math.floor(fact.f_level * fact.n + 0.5)


def test_scholar_is_more_truthful_than_the_gossip_and_arithmetic_is_checkable():
    world = build_world(WorldSpec())
    rate = {s: [] for s in SOURCES}
    for fact in world.facts:
        for source, by_value in fact.counts.items():
            rate[source] += [v == fact.true for v, c in by_value.items() for _ in range(c)]
    assert np.mean(rate["reliable"]) > np.mean(rate["plain"]) > np.mean(rate["careless"])
    sums = [f for f in world.facts if f.domain == "arithmetic"]
    assert sums and all(int(f.true) == sum(map(int, f.subject.split("+"))) for f in sums)
    # truth rate and mention count are crossed: every (f, n) cell of the stacked class is filled
    cells = {(f.f_level, f.n) for f in world.facts if f.cls == "stacked" and f.domain != "arithmetic"}
    assert len({n for _, n in cells}) == 3 and len({round(f, 1) for f, _ in cells}) >= 3


def test_same_seed_same_corpus_other_seed_another(tmp_path):
    a, b = build(SMALL, tmp_path / "a"), build(SMALL, tmp_path / "b")
    assert (a / "corpus.txt").read_bytes() == (b / "corpus.txt").read_bytes()
    assert (a / "build.json").read_bytes() == (b / "build.json").read_bytes()
    c = build(SMALL.model_copy(update={"seed": 1}), tmp_path / "c")
    assert (a / "corpus.txt").read_bytes() != (c / "corpus.txt").read_bytes()
    assert len(read_corpus(a)) == len(documents(load_world(a)))


def test_question_files_load_as_truthfulqa(tmp_path):
    folder = build(SMALL, tmp_path / "b")
    tqa = load_truthfulqa(folder / "data", "2021")
    world = load_world(folder)
    assert len(tqa) == len(world.facts)
    for q, fact in zip(tqa, world.facts, strict=True):
        assert q.question == fact.question and q.category == fact.category and q.best_answer == fact.true
        assert sorted(a for a, _ in q.mc2_targets) == sorted(fact.values)
        assert [a for a, label in q.mc1_targets if label] == [fact.true]


def test_fact_scores_of_a_known_distribution():
    fact = next(f for f in build_world(SMALL).facts if f.cls == "stacked")
    logp = {v: math.log(0.05) for v in fact.values}
    logp[fact.misconception] = math.log(0.6)
    logp[fact.true] = math.log(0.05)
    record = {"answers": {"mc2": [{"text": v, "logprob": lp} for v, lp in logp.items()]}}
    scores = fact_scores(record, fact)
    total = sum(math.exp(v) for v in logp.values())
    assert scores["acc"] == 0.0
    assert scores["p_mis"] == pytest.approx(0.6 / total)
    assert scores["p_true"] == pytest.approx(0.05 / total)
    plain = fact.counts["plain"]
    corpus = np.array([plain.get(v, 0) for v in fact.values]) / sum(plain.values())
    model = np.array([math.exp(logp[v]) / total for v in fact.values])
    assert scores["tv"] == pytest.approx(0.5 * np.abs(model - corpus).sum())


def test_same_seed_identical_weights(clean_build, clean_model, tmp_path):
    from safetensors.torch import load_file

    config = TINY_TRAIN.model_copy(update={"tokens": 8192})
    first, second, other = tmp_path / "1", tmp_path / "2", tmp_path / "3"
    train(clean_build, first, config)
    train(clean_build, second, config)
    train(clean_build, other, config.model_copy(update={"seed": 1}))
    a, b, c = (load_file(str(f / "model.safetensors")) for f in (first, second, other))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert not all(torch.equal(a[k], c[k]) for k in a)
    losses = [[(r["step"], r["loss"]) for r in map(json.loads, (f / "train_log.jsonl").read_text().splitlines())]
              for f in (first, second)]  # fmt: skip
    assert losses[0] == losses[1]


def test_small_model_learns_clean_facts_and_the_nulls_stay_at_chance(clean_build, clean_model, tmp_path):
    from truthscope.models import load_model

    chance, n = 1 / 8, len(CLEAN.attributes) * CLEAN.entities  # 8 values per fact
    bound = chance + 2.6 * math.sqrt(chance * (1 - chance) / n)  # one-sided binomial 99.5% at chance
    records = mc_records(load_model(str(clean_model)), clean_build, tmp_path / "mc")
    world = load_world(clean_build)
    learned = np.mean([fact_scores(r, f)["acc"] for r, f in zip(records, world.facts, strict=True)])
    assert learned >= 0.7, learned
    # null 1: the same answers scored against a shuffled truth table (each fact's truth replaced by
    # another of its values) are at chance: the accuracy above is about these facts, not the format
    rng = np.random.default_rng(0)
    decoys = [replace(f, true=[v for v in f.values if v != f.true][rng.integers(7)]) for f in world.facts]
    shuffled = np.mean([fact_scores(r, f)["acc"] for r, f in zip(records, decoys, strict=True)])
    assert shuffled <= bound, shuffled
    # null 2: an untrained model of the same size is at chance
    untrained = tmp_path / "untrained"
    train(clean_build, untrained, TINY_TRAIN.model_copy(update={"tokens": 1, "lr": 0.0}))
    null = np.mean([s["acc"] for s in evaluate_folder(untrained, clean_build, ("qa",))["qa"]])
    assert null <= bound, null


def test_finetune_rules():
    world = build_world(SMALL)
    arithmetic = next(f for f in world.facts if f.domain == "arithmetic" and f.cls == "stacked")
    a, b = map(int, arithmetic.subject.split("+"))
    assert verifier_accepts(arithmetic, str(a + b)) and not verifier_accepts(arithmetic, arithmetic.misconception)
    colour = next(f for f in world.facts if f.domain == "color")
    assert not verifier_accepts(colour, colour.true)  # facts cannot be checked by a program
    stacked = next(f for f in world.facts if f.cls == "stacked" and f.f_level < 0.5)
    assert majority_accepts(stacked, stacked.misconception) and not majority_accepts(stacked, stacked.true)


def test_finetune_arms_are_matched(clean_build, clean_model, tmp_path):
    small = build(SMALL, tmp_path / "small")
    base = tmp_path / "base"
    train(small, base, TINY_TRAIN.model_copy(update={"tokens": 16384}))
    log = finetune_arms(base, small, tmp_path / "ft", FinetuneConfig(rounds=1, samples=2, epochs=1))
    entry = log["rounds"][0]
    assert entry["examples"] == min(entry["verifier"]["kept"], entry["majority"]["kept"])
    assert len(entry["verifier"]["loss"]) == len(entry["majority"]["loss"])
    assert (tmp_path / "ft" / "verifier" / "model.safetensors").is_file()
    assert (tmp_path / "ft" / "majority" / "tokenizer.json").is_file()


def test_replay_adds_the_corpus_loss_and_keeps_the_arms_matched(tmp_path):
    """With `replay`, every fine-tune step also takes a corpus batch: the same batches for both arms
    (one seeded stream each), and the weights move differently from a fine-tune without it."""
    from truthscope.models.huggingface import HuggingFaceModel

    small = build(SMALL, tmp_path / "small")
    base = tmp_path / "base"
    train(small, base, TINY_TRAIN.model_copy(update={"tokens": 16384}))
    examples = [(f, f.true) for f in load_world(small).facts[:8]]
    shape = TrainConfig(block=128, batch=2)

    def tuned(replay: int):
        lm = HuggingFaceModel.load(base, device="cpu")
        docs = encoded_documents(small, lm.tokenizer)
        corpus = batches(docs, shape, np.random.default_rng([0, 2])) if replay else None
        config = FinetuneConfig(epochs=1, batch=4, replay=replay)
        losses = train_on(lm, examples, config, np.random.default_rng(0), corpus)
        return losses, lm.model.state_dict()

    with_replay, weights = tuned(2)
    again, weights_again = tuned(2)
    without, weights_without = tuned(0)
    assert with_replay == again and all(torch.equal(weights[k], weights_again[k]) for k in weights)
    assert len(with_replay) == len(without) == 2
    assert with_replay[0] > without[0]  # the corpus loss is added to the answers' loss
    assert not all(torch.equal(weights[k], weights_without[k]) for k in weights)


def test_models_trained_side_by_side_equal_those_trained_one_by_one(tmp_path):
    """`--jobs 2` trains in worker processes of one thread each: the same weights as one at a time
    on one thread (the thread count this module's tests run at)."""
    from safetensors.torch import load_file

    small = build(SMALL, tmp_path / "small")
    config = TINY_TRAIN.model_copy(update={"tokens": 4096})
    one = train_ladder(small, tmp_path / "one", ["xs"], [0, 1], config, echo=lambda _: None)
    two = train_ladder(small, tmp_path / "two", ["xs"], [0, 1], config, jobs=2, echo=lambda _: None)
    for a, b in zip(one, two, strict=True):
        wa, wb = load_file(a / "model.safetensors"), load_file(b / "model.safetensors")
        assert wa.keys() == wb.keys() and all(torch.equal(wa[k], wb[k]) for k in wa)
    seeds = [load_file(f / "model.safetensors") for f in one]
    assert not all(torch.equal(seeds[0][k], seeds[1][k]) for k in seeds[0])  # the seed matters


def test_crossed_bootstrap_and_verdicts():
    rng = np.random.default_rng(0)
    null = rng.normal(0, 1, size=(3, 60)) - rng.normal(0, 1, size=(3, 60))  # no effect: interval holds 0
    effect = crossed_bootstrap(null)
    assert effect["ci_low"] < 0 < effect["ci_high"] and _verdict(effect, +1) == "unresolved"
    shifted = crossed_bootstrap(null + 3)
    assert _verdict(shifted, +1) == "supported" and _verdict(shifted, -1) == "contradicted"
    constant = crossed_bootstrap(np.full((2, 5), 0.25))
    assert constant["mean"] == constant["ci_low"] == constant["ci_high"] == 0.25
    with_nan = np.array([[1.0, np.nan], [0.0, np.nan]])
    assert crossed_bootstrap(with_nan)["facts"] == 1


def test_cli_build_and_errors(tmp_path):
    runner = CliRunner()
    result = runner.invoke(app, ["organism", "build", "--out", str(tmp_path / "b"), "--entities", "4"])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "b" / "data" / "truthfulqa" / "v1" / "mc_task.json").is_file()
    result = runner.invoke(app, ["organism", "build", "--out", str(tmp_path / "b"), "--entities", "5"])
    assert result.exit_code == 2 and "another spec" in result.output
    result = runner.invoke(app, ["organism", "train", "--build", str(tmp_path / "nowhere"), "--ladder", str(tmp_path)])
    assert result.exit_code == 2 and "no corpus" in result.output


def test_reduced_ladder_end_to_end_through_the_cli(tmp_path):
    """build -> train -> finetune -> report on a small world, two sizes x two seeds, two jobs: every
    model and arm is evaluated and every prediction is judged; a rerun keeps the finished models."""
    runner = CliRunner()
    build_dir, ladder, out = tmp_path / "b", tmp_path / "ladder", tmp_path / "report"
    where = ["--build", str(build_dir), "--ladder", str(ladder), "--sizes", "xs,s", "--seeds", "0,1", "--jobs", "2"]
    steps = (
        ["organism", "build", "--out", str(build_dir), "--entities", "6"],
        ["organism", "train", *where, "--tokens", "8192"],
        ["organism", "finetune", *where],
        ["organism", "report", "--build", str(build_dir), "--ladder", str(ladder), "--out", str(out), "--jobs", "2"],
    )
    for step in steps:
        result = runner.invoke(app, step)
        assert result.exit_code == 0, result.output
    report = json.loads((out / "report.json").read_text())
    assert len(report["models"]) == 2 * 2 * 3
    assert {p["prediction"] for p in report["predictions"]} == {"a", "b", "c", "d"}
    for p in report["predictions"]:
        e = p["effect"]
        assert e["ci_low"] <= e["mean"] <= e["ci_high"] and p["verdict"] in {"supported", "contradicted", "unresolved"}
    assert (out / "organism.png").read_bytes()[:4] == b"\x89PNG"
    beside = ["organism", "report", "--build", str(build_dir), "--ladder", str(ladder), "--no-probe"]
    result = runner.invoke(app, [*beside, "--out", str(tmp_path / "r2"), "--compare", str(out)])
    assert result.exit_code == 0, result.output  # the earlier report drawn as a panel beside this one
    assert json.loads((tmp_path / "r2" / "report.json").read_text())["tokens"] == 8192
    result = runner.invoke(app, [*beside, "--out", str(tmp_path / "r3"), "--compare", str(tmp_path / "nowhere")])
    assert result.exit_code == 2 and "no report.json" in result.output
    rerun = runner.invoke(app, ["organism", "train", *where, "--tokens", "8192"])
    assert rerun.exit_code == 0 and rerun.output.count("already trained") == 4
