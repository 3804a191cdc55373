"""Load and validate TruthfulQA.

Two versions live in a data directory laid out like the upstream repository:

    truthfulqa/TruthfulQA.csv, truthfulqa/mc_task.json        -> version "2025" (790 questions)
    truthfulqa/v1/TruthfulQA.csv, truthfulqa/v1/mc_task.json  -> version "2021" (817 questions)

The CSV carries category, type and the reference answers used by generation metrics and by the
upstream multiple-choice protocol; `mc_task.json` carries the targets that lm-evaluation-harness
scores. They are joined on the question text (the 2021 files list questions in different orders,
and one CSV question has a trailing space). Questions keep CSV order; `Question.id` is the CSV row.

Every problem with a file raises `DataError` naming the file and the row.
"""

from __future__ import annotations

import csv
import hashlib
import io
import numbers
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from truthscope.data.files import read_data
from truthscope.errors import DataError, LimitError, TruthscopeError
from truthscope.limits import loads_json

VERSIONS = ("2021", "2025")
CSV_COLUMNS = ("Type", "Category", "Question", "Best Answer", "Correct Answers", "Incorrect Answers")

Targets = tuple[tuple[str, int], ...]  # (answer text, label 1 = true / 0 = false), file order


@dataclass(frozen=True)
class Question:
    id: int
    question: str
    category: str
    type: str
    best_answer: str
    correct_answers: tuple[str, ...]
    incorrect_answers: tuple[str, ...]
    mc1_targets: Targets
    mc2_targets: Targets
    best_incorrect_answer: str | None = None
    mc0_targets: Targets | None = None  # 2025 binary choice: best answer vs best incorrect answer
    source: str = ""


@dataclass(frozen=True)
class TruthfulQA:
    version: str
    questions: tuple[Question, ...]
    files: dict[str, str] = field(default_factory=dict)  # path inside the data folder -> SHA-256

    def __len__(self) -> int:
        return len(self.questions)

    def __iter__(self):
        return iter(self.questions)


def load_truthfulqa(data_dir: str | Path, version: str = "2021") -> TruthfulQA:
    """Load one version of TruthfulQA from `data_dir` (the folder that holds `truthfulqa/`)."""
    if version not in VERSIONS:
        raise DataError(f"unknown TruthfulQA version {version!r}; choose one of {', '.join(VERSIONS)}")
    folder = "truthfulqa/v1" if version == "2021" else "truthfulqa"
    csv_file = read_data(data_dir, f"{folder}/TruthfulQA.csv")  # utf-8-sig: the 2021 CSV starts with a BOM
    mc_file = read_data(data_dir, f"{folder}/mc_task.json")
    csv_path, mc_path = csv_file.path, mc_file.path
    rows = _parse_csv(csv_path, csv_file.text)
    targets = _parse_mc_task(mc_path, mc_file.text)

    questions = []
    for row_number, row in enumerate(rows, start=1):
        key = row["Question"].strip()
        if key not in targets:
            raise DataError(f"{csv_path}: row {row_number}: question {key!r} is not in {mc_path.name}")
        questions.append(_question_from_row(csv_path, row_number, row, targets.pop(key)))
    if targets:
        extra = next(iter(targets))
        raise DataError(f"{mc_path}: question {extra!r} is not in {csv_path.name}")
    # keyed by the path inside the data folder, so the same data gives the same provenance (and a run
    # can be resumed) wherever the folder lies; hashes are of the uncompressed bytes
    files = {f"{folder}/TruthfulQA.csv": csv_file.sha256, f"{folder}/mc_task.json": mc_file.sha256}
    return TruthfulQA(version=version, questions=tuple(questions), files=files)


def load_truthfulqa_hub(path: str = "truthful_qa", **load_kwargs) -> TruthfulQA:
    """Load the 2021 version from the Hugging Face hub dataset (configs `generation` and
    `multiple_choice`), or from any dataset folder with the same layout. Needs `datasets`."""
    try:
        from datasets import load_dataset
    except ImportError as err:
        raise DataError("loading from the hub needs `datasets`: pip install 'truthscope[hub]'") from err
    try:
        generation = load_dataset(path, "generation", split="validation", **load_kwargs)
        multiple_choice = load_dataset(path, "multiple_choice", split="validation", **load_kwargs)
    except Exception as err:  # network, missing config, bad files: one clear message
        raise DataError(f"could not load the dataset {path!r}: {err}") from err
    targets = {}
    for item_number, item in enumerate(multiple_choice, start=1):
        where = f"{path} (multiple_choice) item {item_number}"
        parsed = {}
        for name in ("mc1_targets", "mc2_targets"):
            choices, labels = item[name]["choices"], item[name]["labels"]
            if len(choices) != len(labels):
                raise DataError(f"{where}: {name!r} has {len(choices)} choices but {len(labels)} labels")
            parsed[name] = _checked_targets(where, name, zip(choices, labels, strict=True))
        targets[item["question"].strip()] = parsed
    questions = []
    for row_number, item in enumerate(generation, start=1):
        row = {
            "Type": item["type"],
            "Category": item["category"],
            "Question": item["question"],
            "Best Answer": item["best_answer"],
            "Correct Answers": "; ".join(item["correct_answers"]),
            "Incorrect Answers": "; ".join(item["incorrect_answers"]),
            "Source": item.get("source", ""),
        }
        key = row["Question"].strip()
        if key not in targets:
            raise DataError(f"{path} (generation) row {row_number}: question {key!r} has no multiple_choice item")
        questions.append(_question_from_row(Path(path), row_number, row, targets.pop(key)))
    return TruthfulQA(version="2021", questions=tuple(questions), files={path: "hub"})


def split_answers(text: str) -> tuple[str, ...]:
    """Upstream's `; `-separated answer lists, stripped, empty items dropped."""
    return tuple(a.strip() for a in text.split(";") if a.strip())


def sha256_file(path: str | Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


# --- parsing and validation -------------------------------------------------------------------


def _parse_csv(path: Path, text: str) -> list[dict[str, str]]:
    try:
        reader = csv.DictReader(io.StringIO(text))
        header = reader.fieldnames or []
        missing = [c for c in CSV_COLUMNS if c not in header]
        if missing:
            raise DataError(f"{path}: missing column(s) {', '.join(missing)} (header: {', '.join(header)})")
        rows = list(reader)
    except csv.Error as err:
        raise DataError(f"{path}: not a readable CSV: {err}") from None
    seen: dict[str, int] = {}
    for row_number, row in enumerate(rows, start=1):
        question = (row.get("Question") or "").strip()
        if not question:
            raise DataError(f"{path}: row {row_number}: empty question")
        if question in seen:
            raise DataError(
                f"{path}: row {row_number}: duplicated question {question!r} (first at row {seen[question]})"
            )
        seen[question] = row_number
        for column in ("Correct Answers", "Incorrect Answers"):
            if not split_answers(row.get(column) or ""):
                raise DataError(f"{path}: row {row_number}: empty answer list in column {column!r}")
        if not (row.get("Best Answer") or "").strip():
            raise DataError(f"{path}: row {row_number}: empty 'Best Answer'")
    return rows


def _parse_mc_task(path: Path, text: str) -> dict[str, dict[str, Targets]]:
    try:
        items = loads_json(text, str(path))
    except LimitError:
        raise
    except TruthscopeError as err:
        raise DataError(str(err)) from None
    if not isinstance(items, list):
        raise DataError(f"{path}: expected a JSON list of questions")
    targets: dict[str, dict[str, Targets]] = {}
    for item_number, item in enumerate(items, start=1):
        where = f"{path}: item {item_number}"
        if not isinstance(item, dict) or not isinstance(item.get("question"), str):
            raise DataError(f"{where}: expected an object with a 'question' string")
        question = item["question"].strip()
        if question in targets:
            raise DataError(f"{where}: duplicated question {question!r}")
        parsed = {}
        for name in ("mc0_targets", "mc1_targets", "mc2_targets"):
            if name not in item:
                if name == "mc0_targets":
                    continue
                raise DataError(f"{where}: missing {name!r}")
            if not isinstance(item[name], dict):
                raise DataError(f"{where}: {name!r} must map answer text to 0 or 1")
            parsed[name] = _checked_targets(where, name, item[name].items())
        targets[question] = parsed
    return targets


def _checked_targets(where: str, name: str, pairs: Iterable[tuple[str, int]]) -> Targets:
    targets = tuple(pairs)
    for answer, label in targets:  # exactly 0 or 1: never "x", null, [1], true, or 0.9 read as 0
        if not isinstance(answer, str):
            raise DataError(f"{where}: {name!r} has an answer that is not text ({answer!r})")
        if not isinstance(label, numbers.Integral) or isinstance(label, bool) or label not in (0, 1):
            raise DataError(f"{where}: {name!r}: the label of {answer[:60]!r} is {label!r}, not 0 or 1")
    targets = tuple((answer, int(label)) for answer, label in targets)
    if not targets:
        raise DataError(f"{where}: {name!r} is an empty answer list")
    if any(label not in (0, 1) for _, label in targets):
        raise DataError(f"{where}: {name!r} has a label that is not 0 or 1")
    if not any(label == 1 for _, label in targets):
        raise DataError(f"{where}: {name!r} has no true answer")
    if not any(label == 0 for _, label in targets):
        raise DataError(f"{where}: {name!r} has no false answer")
    if name == "mc1_targets" and sum(label for _, label in targets) != 1:
        raise DataError(f"{where}: 'mc1_targets' must have exactly one true answer")
    return targets


def _question_from_row(path: Path, row_number: int, row: dict[str, str], targets: dict[str, Targets]) -> Question:
    best_incorrect = (row.get("Best Incorrect Answer") or "").strip() or None
    return Question(
        id=row_number - 1,
        question=row["Question"].strip(),
        category=row["Category"].strip(),
        type=row["Type"].strip(),
        best_answer=row["Best Answer"].strip(),
        correct_answers=split_answers(row["Correct Answers"]),
        incorrect_answers=split_answers(row["Incorrect Answers"]),
        mc1_targets=targets["mc1_targets"],
        mc2_targets=targets["mc2_targets"],
        best_incorrect_answer=best_incorrect,
        mc0_targets=targets.get("mc0_targets"),
        source=(row.get("Source") or "").strip(),
    )
