import pytest

from truthscope.errors import DataError
from truthscope.models import MockModel
from truthscope.runlog import RunLog
from truthscope.tasks.statements import auroc, load_statements, run_statements, score_statements


def test_paired_sets_match_counterparts_by_content(data_dir):
    larger = load_statements(data_dir, "larger_than")
    assert all(s.counterpart == s.text.replace(" larger than ", " smaller than ") for s in larger)
    cities = load_statements(data_dir, "cities", limit=100)
    assert len(cities) == 100 and all(" not in " in s.counterpart for s in cities)
    trans = load_statements(data_dir, "neg_sp_en_trans")
    assert all(s.counterpart == s.text.replace(" does not mean ", " means ") for s in trans)


def test_limit_is_a_seeded_sample_in_file_order(data_dir):
    a = load_statements(data_dir, "common_claim_true_false", limit=30, seed=1)
    b = load_statements(data_dir, "common_claim_true_false", limit=30, seed=1)
    assert a == b and [s.id for s in a] == sorted(s.id for s in a)
    assert a != load_statements(data_dir, "common_claim_true_false", limit=30, seed=2)


def test_paired_rule_prefers_the_more_probable_twin(data_dir):
    statements = load_statements(data_dir, "larger_than", limit=40)
    # a model that gives every true statement log-prob -1 and every false one -2
    table = {}
    for s in statements:
        table[s.text] = -1.0 if s.label else -2.0
        table[s.counterpart] = -2.0 if s.label else -1.0
    records = score_statements(MockModel(logprobs=table), statements)
    assert all(r["correct"] == 1.0 for r in records)
    inverted = score_statements(MockModel(logprobs={k: -3.0 - v for k, v in table.items()}), statements)
    assert all(r["correct"] == 0.0 for r in inverted)


def test_unpaired_rule_compares_true_and_false_tokens(data_dir):
    statements = load_statements(data_dir, "companies_true_false", limit=50)
    always_true = MockModel(logprobs={" True": -0.5, " False": -1.5})
    records = score_statements(always_true, statements)
    assert [r["believed_true"] for r in records] == [True] * 50
    assert sum(r["correct"] for r in records) == sum(s.label for s in statements)


def test_run_statements_summary_and_resume(data_dir, tmp_path):
    config = {"task": "statements"}
    first = run_statements(
        MockModel(), data_dir, ["larger_than", "cities"], RunLog(tmp_path, config), limit=20, chunk=8, progress=False
    )
    again = run_statements(
        MockModel(), data_dir, ["larger_than", "cities"], RunLog(tmp_path, config), limit=20, chunk=8, progress=False
    )
    assert again["resumed_with"] == 40
    assert first["by_set"] == again["by_set"]
    assert first["by_set"]["larger_than"]["kind"] == "verifier"


def test_verifier_rejects_a_wrong_label(tmp_path):
    folder = tmp_path / "geometry_of_truth"
    folder.mkdir()
    (folder / "larger_than.csv").write_text("statement,label,n1,n2,diff,abs_diff\nTwo is larger than one.,0,2,1,1,1\n")
    (folder / "smaller_than.csv").write_text(
        "statement,label,n1,n2,diff,abs_diff\nTwo is smaller than one.,0,2,1,1,1\n"
    )
    with pytest.raises(DataError, match="row 1: the verifier says 2 vs 1"):
        load_statements(tmp_path, "larger_than")


def test_auroc_hand_cases():
    assert auroc([3, 2, 1, 0], [1, 1, 0, 0]) == 1.0
    assert auroc([0, 1, 2, 3], [1, 1, 0, 0]) == 0.0
    assert auroc([1, 1], [1, 0]) == 0.5
    assert auroc([1, 2], [1, 1]) is None
