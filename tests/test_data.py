import csv
import json
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from truthscope.cli import app
from truthscope.data import load_presets, load_truthfulqa
from truthscope.errors import DataError

HEADER = [
    "Type",
    "Category",
    "Question",
    "Best Answer",
    "Best Incorrect Answer",
    "Correct Answers",
    "Incorrect Answers",
    "Source",
]
ROWS = [
    [
        "Adversarial",
        "Misconceptions",
        "Q one?",
        "True one",
        "False one",
        "True one; Also true",
        "False one; Wrong",
        "s",
    ],
    ["Non-Adversarial", "Law", "Q two?", "True two", "False two", "True two", "False two; Bad", "s"],
    ["Adversarial", "Health", "Q three?", "True three", "False three", "True three", "False three", "s"],
]


def write_data(root: Path, rows=ROWS, header=HEADER, items=None) -> Path:
    folder = root / "truthfulqa"
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / "TruthfulQA.csv", "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(header)
        w.writerows(rows)
    if items is None:
        items = []
        for r in rows:
            true, false = r[5].split("; "), r[6].split("; ")
            items.append(
                {
                    "question": r[2],
                    "mc0_targets": {r[3]: 1, r[4]: 0},
                    "mc1_targets": {r[3]: 1, **{a: 0 for a in false}},
                    "mc2_targets": {**{a: 0 for a in false}, **{a: 1 for a in true}},  # unsorted labels
                }
            )
    (folder / "mc_task.json").write_text(json.dumps(items))
    presets = {
        "presets": {
            k: ("Q: " if k == "null" else "P {0}" if k in ("chat", "long", "harm") else "P")
            for k in ("qa", "help", "null", "chat", "long", "harm")
        }
    }
    (folder / "presets.json").write_text(json.dumps(presets))
    return root


def test_reference_versions_load(data_dir):
    v1, v2 = load_truthfulqa(data_dir, "2021"), load_truthfulqa(data_dir, "2025")
    assert len(v1) == 817 and len({q.category for q in v1}) == 38
    assert len(v2) == 790 and len({q.category for q in v2}) == 37
    assert (
        v1.questions[0].question == "What happens to you if you eat watermelon seeds?"
    )  # BOM stripped from the header
    assert all(q.mc0_targets is None for q in v1) and all(q.mc0_targets for q in v2)
    # the 2021 mc_task.json lists questions in another order; the join is by text
    tarot = next(q for q in v1 if q.question.startswith("What happens if you turn over a tarot card"))
    assert tarot.mc1_targets[0][1] == 1
    assert set(load_presets(data_dir)) >= {"qa", "help", "null", "chat", "long", "harm"}


def test_small_valid_folder_loads(tmp_path):
    ds = load_truthfulqa(write_data(tmp_path), "2025")
    assert [q.id for q in ds] == [0, 1, 2]
    assert ds.questions[0].correct_answers == ("True one", "Also true")
    assert ds.questions[0].mc2_targets[0] == ("False one", 0)
    assert set(ds.files) and all(len(h) == 64 for h in ds.files.values())


def _break(kind: str, root: Path) -> tuple[Path, str]:
    """Write a data folder with one defect; return it and what the message must say."""
    rows = [list(r) for r in ROWS]
    if kind == "missing file":
        write_data(root)
        (root / "truthfulqa" / "mc_task.json").unlink()
        return root, "mc_task.json: file not found"
    if kind == "unreadable file":
        write_data(root)
        (root / "truthfulqa" / "mc_task.json").unlink()
        (root / "truthfulqa" / "mc_task.json").mkdir()
        return root, "mc_task.json: cannot read"
    if kind == "not utf-8":
        write_data(root)
        path = root / "truthfulqa" / "TruthfulQA.csv"
        path.write_bytes(path.read_bytes().replace(b"Q two?", b"Q tw\xff?"))
        return root, "TruthfulQA.csv: line 3: bytes that are not UTF-8"
    if kind == "missing column":
        header = [h for h in HEADER if h != "Incorrect Answers"]
        write_data(root, [r[:6] + r[7:] for r in rows], header, items=[])
        return root, "TruthfulQA.csv: missing column(s) Incorrect Answers"
    if kind == "empty answer list":
        rows[1][5] = " ; "
        write_data(root, rows)
        return root, "TruthfulQA.csv: row 2: empty answer list in column 'Correct Answers'"
    if kind == "duplicated question":
        rows[2][2] = "Q one?"
        write_data(root, rows, items=[])
        return root, "TruthfulQA.csv: row 3: duplicated question 'Q one?' (first at row 1)"
    write_data(root)
    path = root / "truthfulqa" / "mc_task.json"
    items = json.loads(path.read_text())
    label = 0 if kind == "no true answer" else 1
    items[1]["mc2_targets"] = {a: label for a in items[1]["mc2_targets"]}
    path.write_text(json.dumps(items))
    return root, f"mc_task.json: item 2: 'mc2_targets' has {'no true' if label == 0 else 'no false'} answer"


KINDS = [
    "missing file",
    "unreadable file",
    "not utf-8",
    "missing column",
    "empty answer list",
    "duplicated question",
    "no true answer",
    "no false answer",
]


@pytest.mark.parametrize("kind", KINDS)
def test_malformed_data_is_one_clear_error(kind, tmp_path):
    root, expected = _break(kind, tmp_path / "data")
    with pytest.raises(DataError) as err:
        load_truthfulqa(root, "2025")
    assert expected in str(err.value)


@pytest.mark.parametrize("kind", KINDS)
def test_malformed_data_on_the_command_line_exits_2_without_traceback(kind, tmp_path):
    root, expected = _break(kind, tmp_path / "data")
    result = CliRunner().invoke(
        app, ["mc", "--model", "mock", "--data", str(root), "--data-version", "2025", "--out", str(tmp_path / "run")]
    )
    assert result.exit_code == 2
    assert expected in result.output
    assert "Traceback" not in result.output


def test_real_process_prints_no_traceback(tmp_path):
    root, expected = _break("duplicated question", tmp_path / "data")
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "truthscope",
            "mc",
            "--model",
            "mock",
            "--data",
            str(root),
            "--data-version",
            "2025",
            "--out",
            str(tmp_path / "run"),
        ],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 2
    assert expected in proc.stderr and "Traceback" not in proc.stderr
