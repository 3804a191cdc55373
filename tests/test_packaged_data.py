"""The data shipped inside the package (`truthscope/data/files/`): the same questions, answers, presets,
judge labels and statements as the reference copy in ../shared/data (the `reference_dir` fixture, which skips
saying why when that folder is absent), the hashes MANIFEST.json lists, no file over 2 MB, and commands
that run with no data folder at all."""

from __future__ import annotations

import csv
import gzip
import io
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from truthscope.data import load_presets, load_truthfulqa
from truthscope.data.files import data_file_sha256, packaged_data_dir, read_data, read_data_text
from truthscope.data.truthfulqa import VERSIONS
from truthscope.errors import DataError
from truthscope.paths import data_dir as resolve_data_dir

PACKAGED = packaged_data_dir()
MANIFEST = json.loads((PACKAGED / "MANIFEST.json").read_text(encoding="utf-8"))
NOT_DATA = {"MANIFEST.json", "LICENSES.md"}
UNUSED_REFERENCE_FILES = {"README.md", "truthfulqa/eval_examples.csv"}  # nothing in truthscope reads these
STATEMENT_SETS = sorted(Path(p).stem for p in MANIFEST if p.startswith("geometry_of_truth/"))
LIMIT = 2_000_000  # bytes: no file in the package over 2 MB


def packaged_files() -> list[Path]:
    return sorted(p for p in PACKAGED.rglob("*") if p.is_file())


# --- the packaged folder itself -----------------------------------------------------------------


def test_manifest_hashes_match_the_decompressed_bytes():
    stored = {p.relative_to(PACKAGED).as_posix() for p in packaged_files()} - NOT_DATA
    assert {p.removesuffix(".gz") for p in stored} == set(MANIFEST)
    for relative, sha256 in MANIFEST.items():
        assert data_file_sha256(PACKAGED, relative) == sha256, relative
    assert any(p.endswith(".gz") for p in stored)  # the compressed path is exercised
    for packed in (PACKAGED / p for p in stored if p.endswith(".gz")):
        header = packed.read_bytes()[:10]
        assert header[3] & 0x08 == 0 and header[4:8] == b"\0\0\0\0", f"{packed}: not made with gzip -n"


def test_no_packaged_file_is_over_2_mb():
    sizes = {p.relative_to(PACKAGED).as_posix(): p.stat().st_size for p in packaged_files()}
    assert sizes and not {p: s for p, s in sizes.items() if s > LIMIT}


def test_licences_name_both_sources():
    text = (PACKAGED / "LICENSES.md").read_text(encoding="utf-8")
    for needle in (
        "Apache License 2.0",
        "sylinrl/TruthfulQA",
        "d71c110",
        "Lin, Jacob Hilton, Owain Evans",
        "CC-BY-4.0",
        "Copyright (c) 2023 Samuel Marks and Max Tegmark",
        "saprmarks/geometry-of-truth",
        "5d1c630",
    ):
        assert needle in text


def test_data_dir_is_explicit_then_environment_then_packaged(monkeypatch, tmp_path):
    monkeypatch.delenv("TRUTHSCOPE_DATA", raising=False)
    monkeypatch.chdir(tmp_path)
    (tmp_path / "data" / "truthfulqa").mkdir(parents=True)  # the old guesses are no longer made
    assert resolve_data_dir() == PACKAGED
    monkeypatch.setenv("TRUTHSCOPE_DATA", str(tmp_path / "env"))
    assert resolve_data_dir() == tmp_path / "env"
    assert resolve_data_dir(tmp_path / "given") == tmp_path / "given"


# --- the one reader -----------------------------------------------------------------------------


def test_reader_takes_plain_or_gz_and_hashes_the_plain_bytes(tmp_path):
    raw = "\ufeffstatement,label\nÉtoile,1\n".encode()
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "plain.csv").write_bytes(raw)
    (tmp_path / "a" / "packed.csv.gz").write_bytes(gzip.compress(raw, mtime=0))
    plain, packed = read_data(tmp_path, "a/plain.csv"), read_data(tmp_path, "a/packed.csv")
    assert plain.text == packed.text == "statement,label\nÉtoile,1\n"  # utf-8-sig by default
    assert plain.sha256 == packed.sha256 == data_file_sha256(tmp_path, "a/packed.csv")
    assert packed.path == tmp_path / "a" / "packed.csv"
    assert read_data_text(tmp_path, "a/packed.csv", encoding="utf-8").startswith("\ufeff")
    (tmp_path / "a" / "plain.csv.gz").write_bytes(gzip.compress(b"other"))
    assert read_data_text(tmp_path, "a/plain.csv") == plain.text  # the plain file wins


@pytest.mark.parametrize(
    ("write", "expected"),
    [
        (None, "x/f.csv: file not found (is --data / TRUTHSCOPE_DATA the folder holding x/?)"),
        (lambda p: p.mkdir(), "x/f.csv: cannot read"),
        (lambda p: p.write_bytes(b"ok\nok\nQ tw\xff?\n"), "x/f.csv: line 3: bytes that are not UTF-8 (offset 10)"),
        (lambda p: gz(p).write_bytes(gzip.compress(b"ok\n\xff")), "x/f.csv: line 2: bytes that are not UTF-8"),
        (lambda p: gz(p).write_bytes(b"not gzip"), "x/f.csv.gz: cannot read"),
        (lambda p: gz(p).write_bytes(gzip.compress(b"cut short")[:-6]), "x/f.csv.gz: cannot read"),
    ],
    ids=["missing", "directory", "not utf-8", "not utf-8 in gz", "not gzip", "truncated gz"],
)
def test_reader_errors_name_the_file(tmp_path, write, expected):
    (tmp_path / "x").mkdir()
    if write is not None:
        write(tmp_path / "x" / "f.csv")
    with pytest.raises(DataError) as err:
        read_data_text(tmp_path, "x/f.csv")
    assert expected in str(err.value).replace(os.sep, "/")
    assert str(tmp_path) in str(err.value)


def gz(path: Path) -> Path:
    return path.with_name(path.name + ".gz")


# --- the same contents as the reference copy ----------------------------------------------------


def test_every_reference_data_file_is_packaged(reference_dir):
    reference = {p.relative_to(reference_dir).as_posix() for p in reference_dir.rglob("*") if p.is_file()}
    assert reference - UNUSED_REFERENCE_FILES == set(MANIFEST)


def test_manifest_hashes_are_the_reference_readme_hashes(reference_dir):
    listed = re.findall(r"^([0-9a-f]{64}) (\S+)$", (reference_dir / "README.md").read_text(encoding="utf-8"), re.M)
    assert len(listed) >= 6
    for sha256, relative in listed:
        assert MANIFEST[relative] == sha256, relative


@pytest.mark.parametrize("version", VERSIONS)
def test_truthfulqa_is_the_reference(reference_dir, version):
    packaged, reference = load_truthfulqa(PACKAGED, version), load_truthfulqa(reference_dir, version)
    assert len(packaged) == {"2021": 817, "2025": 790}[version]
    assert packaged.questions == reference.questions
    # provenance: the same hashes (of the file bytes) from either folder, and the MANIFEST's
    assert list(packaged.files.values()) == list(reference.files.values())
    folder = "truthfulqa/v1" if version == "2021" else "truthfulqa"
    assert list(packaged.files.values()) == [MANIFEST[f"{folder}/TruthfulQA.csv"], MANIFEST[f"{folder}/mc_task.json"]]


def test_presets_are_the_reference(reference_dir):
    assert load_presets(PACKAGED) == load_presets(reference_dir)


@pytest.mark.parametrize("kind", ["truth", "info"])
def test_judge_labels_are_the_reference(reference_dir, kind):
    from truthscope.judges.labels import load_labelled

    packaged, reference = load_labelled(PACKAGED, kind), load_labelled(reference_dir, kind)
    assert len(packaged.items) == len(reference.items) == 22_434
    assert packaged.items == reference.items
    for field in ("labels", "groups", "is_reference"):
        assert (getattr(packaged, field) == getattr(reference, field)).all(), field
    assert packaged.sha256 == reference.sha256 == MANIFEST[f"truthfulqa/finetune_{kind}.jsonl"]


@pytest.mark.parametrize("name", STATEMENT_SETS)
def test_statement_sets_are_the_reference(reference_dir, name):
    from truthscope.tasks.statements import load_statements

    relative = f"geometry_of_truth/{name}.csv"
    packaged, reference = read_data_text(PACKAGED, relative), read_data_text(reference_dir, relative)
    rows = list(csv.DictReader(io.StringIO(packaged)))
    assert rows and rows == list(csv.DictReader(io.StringIO(reference)))
    assert {"statement", "label"} <= set(rows[0])
    assert load_statements(PACKAGED, name) == load_statements(reference_dir, name)


# --- commands with no data folder ---------------------------------------------------------------


def test_commands_run_on_the_packaged_data_alone(tmp_path):
    """From an empty working directory with no TRUTHSCOPE_DATA: mc and gen use the packaged copy."""
    work = tmp_path / "work"
    work.mkdir()
    env = {k: v for k, v in os.environ.items() if k != "TRUTHSCOPE_DATA"}
    env["TRUTHSCOPE_CACHE"] = str(tmp_path / "cache")
    commands = {
        "mc": ["mc", "--model", "mock", "--limit", "5"],
        "gen": ["gen", "--model", "mock", "--limit", "3", "--judge", "none", "--no-embed"],
    }
    for name, args in commands.items():
        out = tmp_path / name
        proc = subprocess.run(
            [sys.executable, "-m", "truthscope", *args, "--out", str(out)],
            cwd=work,
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert proc.returncode == 0, f"{name}: {proc.stdout}\n{proc.stderr}"
        summary = json.loads((out / "summary.json").read_text(encoding="utf-8"))
        hashes = json.dumps(summary)
        assert MANIFEST["truthfulqa/v1/TruthfulQA.csv"] in hashes and MANIFEST["truthfulqa/v1/mc_task.json"] in hashes
