import json

import numpy as np
import pytest

from truthscope.errors import DataError
from truthscope.models import MockModel
from truthscope.models.base import Loglikelihood
from truthscope.runlog import Sample
from truthscope.tasks.base import Resources, run_task
from truthscope.tasks.statements import (
    STATEMENT_SETS,
    auroc,
    cluster_bootstrap,
    load_statements,
    score_statements,
    summarise_statements,
    weighted_auroc,
)

FORCED = ("cities", "neg_cities", "larger_than", "smaller_than", "sp_en_trans", "neg_sp_en_trans")
JUDGED = ("companies_true_false", "common_claim_true_false", "cities_cities_conj", "cities_cities_disj")


class ContinuationModel:
    """log P(continuation | context) = f(continuation): knows nothing about the context."""

    name = "continuation-only"

    def __init__(self, f):
        self.f = f

    def loglikelihood(self, requests):
        return [Loglikelihood(float(self.f(r.continuation)), False, 1) for r in requests]


class FirstAskedModel:
    """In each call, prefers the first continuation asked after each context (a position bias)."""

    name = "first-asked"

    def loglikelihood(self, requests):
        seen: set[str] = set()
        out = []
        for r in requests:
            out.append(Loglikelihood(-2.0 if r.context in seen else -1.0, False, 1))
            seen.add(r.context)
        return out


def always_true(continuation):
    return {" True": -0.5, " False": -1.5}.get(continuation, -1.0)


def shorter(continuation):
    return -float(len(continuation))


def test_forced_choices_hold_the_wording_fixed(data_dir):
    cities = load_statements(data_dir, "cities", limit=100)
    assert len(cities) == 100 and len({s.cluster for s in cities}) == 50  # both rows of each city
    for s in cities:
        own, other = s.options
        assert own.logprob.context == other.logprob.context == f"The city of {s.cluster[5:]} is in"
        assert own.baseline.context == other.baseline.context == "The city of N/A is in"
        assert s.text == own.logprob.context + own.logprob.continuation
    neg = load_statements(data_dir, "neg_cities", limit=10)
    assert all(s.options[0].logprob.context.endswith(" is not in") for s in neg)
    larger = load_statements(data_dir, "larger_than")
    for s in larger[:50]:
        a, _, _, _, b = s.text.rstrip(".").split(" ")
        assert s.counterpart == f"{b.capitalize()} is larger than {a.lower()}."
        assert sorted(s.text.lower()) == sorted(s.counterpart.lower())
    trans = load_statements(data_dir, "neg_sp_en_trans")
    assert all(s.counterpart == s.text.replace(" does not mean ", " means ") for s in trans)
    claims = load_statements(data_dir, "common_claim_true_false", limit=5)
    assert [o.text for o in claims[0].options] == [" True", " False"]


def test_limit_is_a_seeded_sample_of_whole_clusters(data_dir):
    a = load_statements(data_dir, "larger_than", limit=30, seed=1)
    assert a == load_statements(data_dir, "larger_than", limit=30, seed=1)
    assert a != load_statements(data_dir, "larger_than", limit=30, seed=2)
    assert len(a) == 30 and all(sum(s.cluster == c for s in a) == 2 for c in {s.cluster for s in a})
    claims = load_statements(data_dir, "common_claim_true_false", limit=30, seed=1)
    assert len(claims) == 30 and [s.id for s in claims] == sorted(s.id for s in claims)


def _summary(model, data_dir, sets, limit=200):
    statements = [s for name in sets for s in load_statements(data_dir, name, limit=limit)]
    records = score_statements(model, statements)
    return records, summarise_statements(records, sets)


@pytest.mark.parametrize("f", [always_true, shorter], ids=["always-true", "shorter-continuation"])
def test_a_model_blind_to_content_scores_exactly_chance(data_dir, f):
    """Constant True bias and length preference: calibration (cities), swapping (numbers) and the twin
    (translations) cancel them per item; balanced accuracy and AUROC cancel them everywhere."""
    records, summary = _summary(ContinuationModel(f), data_dir, FORCED + JUDGED)
    for name, entry in summary["by_set"].items():
        assert entry["balanced_accuracy"]["mean"] == 0.5, name
        assert entry["auroc"] == 0.5, name
        if name in FORCED:
            assert entry["accuracy"]["mean"] == 0.5, name
            assert all(r["scores"]["accuracy"] == 0.5 for r in records if r["set"] == name)  # exact ties
    assert summary["scores"]["balanced_accuracy"]["mean"] == 0.5
    assert summary["scores"]["auroc"]["mean"] == 0.5


def test_always_true_believes_every_judged_statement(data_dir):
    records, summary = _summary(ContinuationModel(always_true), data_dir, JUDGED, limit=100)
    assert all(r["believed_true"] for r in records)
    for entry in summary["by_set"].values():
        assert entry["accuracy"]["mean"] == entry["share_true"]  # accuracy echoes the label balance
        assert entry["balanced_accuracy"]["mean"] == 0.5


@pytest.mark.parametrize("name", ["cities", "neg_cities", "larger_than", "smaller_than"])
def test_always_the_first_listed_option_scores_exactly_chance(data_dir, name):
    """Each row asked alone, so the model always prefers the row's own (first-listed) country or
    ordering: numbers, it believes every row, one of each pair's two; cities, the same bias in the
    content-free prefix calibrates it away (a tie). Either way each city or pair scores 0.5."""
    statements = load_statements(data_dir, name, limit=200)
    records = [r for s in statements for r in score_statements(FirstAskedModel(), [s])]
    assert all(r["believed_true"] for r in records) or all(r["margin"] == 0 for r in records)
    by_cluster: dict[str, list[float]] = {}
    for r in records:
        by_cluster.setdefault(r["cluster"], []).append(r["scores"]["accuracy"])
    assert all(len(v) == 2 and sum(v) == 1.0 for v in by_cluster.values())
    assert np.mean([r["scores"]["accuracy"] for r in records]) == 0.5
    assert summarise_statements(records, [name])["by_set"][name]["balanced_accuracy"]["mean"] == 0.5


def test_a_model_that_knows_cities_but_ignores_not(data_dir):
    """Prefers each city's true country whatever the frame: right on cities, wrong on neg_cities."""
    truth = {s.cluster[5:]: s.options[0].text for s in load_statements(data_dir, "cities") if s.label}

    class Knows:
        name = "knows"

        def loglikelihood(self, requests):
            out = []
            for r in requests:
                city = r.context.removeprefix("The city of ").removesuffix(" is not in").removesuffix(" is in")
                out.append(Loglikelihood(-1.0 if truth.get(city) == r.continuation else -3.0, False, 1))
            return out

    records, summary = _summary(Knows(), data_dir, ["cities", "neg_cities"], limit=100)
    assert summary["by_set"]["cities"]["accuracy"]["mean"] == 1.0
    assert summary["by_set"]["cities"]["auroc"] == 1.0
    assert summary["by_set"]["neg_cities"]["accuracy"]["mean"] == 0.0
    assert set(summary["by_kind"]) == {"knowledge", "negation"}  # knowledge is not averaged with negation


def test_swap_rule_prefers_the_more_probable_ordering(data_dir):
    statements = load_statements(data_dir, "smaller_than", limit=40)
    true_texts = {s.text for s in statements if s.label}
    oracle = ContinuationModel(lambda c: -1.0 if c in true_texts else -2.0)
    assert all(r["scores"]["accuracy"] == 1.0 for r in score_statements(oracle, statements))
    liar = ContinuationModel(lambda c: -2.0 if c in true_texts else -1.0)
    assert all(r["scores"]["accuracy"] == 0.0 for r in score_statements(liar, statements))


def test_twin_rule_compares_true_false_margins(data_dir):
    statements = load_statements(data_dir, "sp_en_trans", limit=40)
    truths = {s.text if s.label else s.counterpart for s in statements}

    class Judge:  # says True with margin 1 to true statements, 0.5 to false ones: always "True"
        name = "judge"

        def loglikelihood(self, requests):
            out = []
            for r in requests:
                statement = r.context.split("\n")[0].removeprefix("Statement: ")
                gap = 1.0 if statement in truths else 0.5
                out.append(Loglikelihood(0.0 if r.continuation == " True" else -gap, False, 1))
            return out

    records = score_statements(Judge(), statements)
    assert all(r["scores"]["accuracy"] == 1.0 for r in records)
    assert all(r["options"][0]["score"] > 0 and r["options"][1]["score"] > 0 for r in records)


def test_records_and_summary_through_the_runner(data_dir, tmp_path):
    options = {"sets": ["larger_than", "cities", "companies_true_false"]}
    sample = Sample(how="seeded", n=20, seed=0)
    resources = Resources(data=str(data_dir))
    first, run = run_task("statements", MockModel(), tmp_path, options=options, sample=sample, resources=resources)
    again, _ = run_task("statements", MockModel(), tmp_path, options=options, sample=sample, resources=resources)
    assert again["resumed_with"] == 60 and first["by_set"] == again["by_set"]
    entry = first["by_set"]["cities"]
    assert entry["kind"] == "knowledge" and entry["rule"] == "country" and entry["clusters"] == 10
    assert entry["accuracy"]["method"] == "cluster bootstrap" and entry["accuracy"]["clusters"] == 10
    assert set(first["scores"]) == {"accuracy", "balanced_accuracy", "auroc"}
    assert set(first["by_kind"]) == {"verifier", "knowledge"}
    records = [json.loads(line) for line in (tmp_path / "records.jsonl").read_text().splitlines()]
    assert [r["id"] for r in records] == list(range(60))
    r = next(r for r in records if r["set"] == "cities")
    assert {"options", "margin", "cluster", "label", "kind", "scores", "believed_true"} <= set(r)
    own, other = r["options"]
    assert r["margin"] == pytest.approx(own["score"] - other["score"])
    assert own["score"] == pytest.approx(own["logprob"] - own["baseline"])


def test_cluster_bootstrap_resamples_clusters():
    # two clusters of 50 identical rows: resampling rows would give a narrow interval
    records = [
        {"set": "s", "cluster": c, "label": k % 2, "margin": float(k % 2) * (c == "a"), "scores": {"accuracy": acc}}
        for c, acc in (("a", 1.0), ("b", 0.0))
        for k in range(50)
    ]
    stats = cluster_bootstrap(records, seed=0)
    assert stats["accuracy"]["mean"] == 0.5 and stats["accuracy"]["clusters"] == 2
    assert stats["accuracy"]["ci_low"] == 0.0 and stats["accuracy"]["ci_high"] == 1.0


def test_verifier_and_pairing_errors(tmp_path):
    folder = tmp_path / "geometry_of_truth"
    folder.mkdir()
    header = "statement,label,n1,n2,diff,abs_diff\n"
    (folder / "larger_than.csv").write_text(header + "Two is larger than one.,0,2,1,1,1\n")
    with pytest.raises(DataError, match="row 1: the verifier says 2 vs 1"):
        load_statements(tmp_path, "larger_than")
    (folder / "larger_than.csv").write_text(header + "Two is larger than one.,1,2,1,1,1\n")
    with pytest.raises(DataError, match="no row with the numbers 1 and 2 swapped"):
        load_statements(tmp_path, "larger_than")
    (folder / "cities.csv").write_text(
        "statement,label,city,country,correct_country\nThe city of Lodz is in Poland.,1,Lodz,Poland,Poland\n"
    )
    with pytest.raises(DataError, match="exactly two rows"):
        load_statements(tmp_path, "cities")


def test_every_set_has_a_rule():
    assert {s.rule for s in STATEMENT_SETS.values()} == {"country", "swap", "twin", "judgement"}


def test_auroc_hand_cases_and_weights():
    assert auroc([3, 2, 1, 0], [1, 1, 0, 0]) == 1.0
    assert auroc([0, 1, 2, 3], [1, 1, 0, 0]) == 0.0
    assert auroc([1, 1], [1, 0]) == 0.5
    assert auroc([1, 2], [1, 1]) is None
    rng = np.random.default_rng(0)
    margins, labels = rng.integers(0, 5, 60).astype(float), rng.integers(0, 2, 60)
    weights = rng.integers(0, 3, 60)
    expected = auroc(np.repeat(margins, weights), np.repeat(labels, weights))
    assert weighted_auroc(margins, labels, weights[None].astype(float))[0] == pytest.approx(expected)
