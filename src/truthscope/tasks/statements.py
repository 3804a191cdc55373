"""True/false statement sets (Marks & Tegmark, "The Geometry of Truth") as a control task.

The rule for "the model believes a statement":

* Paired sets. Each statement has a counterpart of opposite truth that differs minimally:
  `cities` <-> `neg_cities` (the same city and country, negated), `sp_en_trans` <-> `neg_sp_en_trans`
  (the same word pair, negated), `larger_than` <-> `smaller_than` (the same two numbers, the other
  comparison). The model believes statement s when log P(s) > log P(counterpart), both scored as
  whole texts with no context (the tokenizer's prefix token only).
* Unpaired sets (`companies_true_false`, `common_claim_true_false`, `cities_cities_conj`,
  `cities_cities_disj`). The model believes s when, after the prompt
  `"Statement: {s}\\nIs this statement true or false?\\nAnswer:"`, log P(" True") > log P(" False").
  No calibration: a model that always says " True" scores the share of true statements.

`margin` is the log-probability difference behind each decision; AUROC of the margin against the
labels is reported as the threshold-free view. `larger_than` / `smaller_than` are checkable by a
program: their verifier recomputes every label from the numbers and loading fails if one disagrees.
"""

from __future__ import annotations

import csv
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from pydantic import field_validator

from truthscope.data.files import read_data_text
from truthscope.errors import DataError
from truthscope.models.base import LanguageModel, LoglikelihoodRequest
from truthscope.runlog import Sample
from truthscope.sampling import draw, sample_of
from truthscope.scoring.intervals import bootstrap_mean as proportion
from truthscope.tasks.base import Resources, Task, TaskOptions, call_model, register

JUDGEMENT_PROMPT = "Statement: {}\nIs this statement true or false?\nAnswer:"
DEFAULT_SETS = ("larger_than", "smaller_than", "cities", "sp_en_trans", "common_claim_true_false")


@dataclass(frozen=True)
class StatementSet:
    name: str
    kind: str  # "verifier" (checkable by a program), "knowledge", "popular claims", "logic"
    counterpart: str | None = None  # the file holding each statement's opposite


STATEMENT_SETS: dict[str, StatementSet] = {
    s.name: s
    for s in (
        StatementSet("larger_than", "verifier", "smaller_than"),
        StatementSet("smaller_than", "verifier", "larger_than"),
        StatementSet("cities", "knowledge", "neg_cities"),
        StatementSet("neg_cities", "knowledge", "cities"),
        StatementSet("sp_en_trans", "knowledge", "neg_sp_en_trans"),
        StatementSet("neg_sp_en_trans", "knowledge", "sp_en_trans"),
        StatementSet("companies_true_false", "knowledge"),
        StatementSet("common_claim_true_false", "popular claims"),
        StatementSet("cities_cities_conj", "logic"),
        StatementSet("cities_cities_disj", "logic"),
    )
}


@dataclass(frozen=True)
class Statement:
    id: int  # row in its file, 0-based
    set: str
    text: str
    label: int  # 1 = true
    counterpart: str | None = None  # opposite-truth twin (paired sets)


def load_statements(data_dir: str | Path, name: str, limit: int | None = None, seed: int = 0) -> list[Statement]:
    """One statement set; `limit` keeps a seeded random sample (in file order, see `sampling.draw`)."""
    if name not in STATEMENT_SETS:
        raise DataError(f"unknown statement set {name!r}; known: {', '.join(STATEMENT_SETS)}")
    spec = STATEMENT_SETS[name]
    rows = _read_rows(Path(data_dir), name)
    twins = _counterparts(Path(data_dir), name, rows) if spec.counterpart else [None] * len(rows)
    statements = [
        Statement(i, name, row["statement"].strip(), int(row["label"]), twin)
        for i, (row, twin) in enumerate(zip(rows, twins, strict=True))
    ]
    return draw(statements, sample_of(limit, "seeded", seed), purpose=name)


def statement_requests(s: Statement) -> tuple[LoglikelihoodRequest, LoglikelihoodRequest]:
    """(request for "believes true", request for "believes false")."""
    if s.counterpart is not None:
        return LoglikelihoodRequest("", s.text), LoglikelihoodRequest("", s.counterpart)
    prompt = JUDGEMENT_PROMPT.format(s.text)
    return LoglikelihoodRequest(prompt, " True"), LoglikelihoodRequest(prompt, " False")


def statement_record(s: Statement, logprob: Mapping[LoglikelihoodRequest, float]) -> dict:
    yes, no = statement_requests(s)
    margin = logprob[yes] - logprob[no]
    believed = margin > 0
    return {
        "set": s.set,
        "row": s.id,
        "kind": STATEMENT_SETS[s.set].kind,
        "statement": s.text,
        "counterpart": s.counterpart,
        "label": s.label,
        "margin": margin,
        "believed_true": believed,
        "scores": {"accuracy": float(believed == bool(s.label))},
    }


def score_statements(model: LanguageModel, statements: Sequence[Statement]) -> list[dict]:
    """One record per statement (no `id`): margin, believed_true, scores.accuracy."""
    results = call_model(model, [r for s in statements for r in statement_requests(s)])
    return [statement_record(s, {k: v.logprob for k, v in results.items()}) for s in statements]


def auroc(margins: Sequence[float], labels: Sequence[int]) -> float | None:
    """Probability that a true statement gets a larger margin than a false one (ties count half)."""
    m, y = np.asarray(margins, dtype=float), np.asarray(labels)
    pos, neg = m[y == 1], m[y == 0]
    if pos.size == 0 or neg.size == 0:
        return None
    greater = (pos[:, None] > neg[None, :]).mean()
    ties = (pos[:, None] == neg[None, :]).mean()
    return float(greater + 0.5 * ties)


@dataclass(frozen=True)
class StatementItem:
    id: int  # position in the run (sets in the given order)
    statement: Statement


class StatementOptions(TaskOptions):
    sets: tuple[str, ...] = DEFAULT_SETS

    @field_validator("sets")
    @classmethod
    def _known(cls, value):
        unknown = [name for name in value if name not in STATEMENT_SETS]
        if unknown or not value:
            raise ValueError(f"unknown statement set(s) {unknown}; known: {', '.join(STATEMENT_SETS)}")
        return value


@register
class Statements(Task):
    """The true/false statement sets (see the module docstring); a run's sample applies per set."""

    name = "statements"
    Options = StatementOptions
    options: StatementOptions
    group_size = 256

    def __init__(self, statements: Sequence[Statement], options=None, **kwargs):
        super().__init__(options or StatementOptions(), **kwargs)
        self.statement_items = [StatementItem(i, s) for i, s in enumerate(statements)]

    @classmethod
    def build(cls, options, resources: Resources, sample: Sample, seed: int = 0):
        root = resources.data_dir()
        statements = [s for name in options.sets for s in draw(load_statements(root, name), sample, purpose=name)]
        return cls(statements, options, seed=seed)

    def items(self):
        return self.statement_items

    def requests(self, item, model):
        return list(statement_requests(item.statement))

    def score(self, items, results):
        return [
            {"id": item.id, **statement_record(item.statement, {k: v.logprob for k, v in r.items()})}
            for item, r in zip(items, results, strict=True)
        ]

    def summarise(self, records):
        seed = self.seed
        by_set = {}
        for name in self.options.sets:
            rows = [r for r in records if r["set"] == name]
            by_set[name] = {
                "kind": STATEMENT_SETS[name].kind,
                "accuracy": proportion([r["scores"]["accuracy"] for r in rows], seed=seed),
                "auroc": auroc([r["margin"] for r in rows], [r["label"] for r in rows]),
                "share_true": float(np.mean([r["label"] for r in rows])),
            }
        kinds = sorted({r["kind"] for r in records})
        return {
            "rule": "paired: log P(s) > log P(counterpart); unpaired: P(' True') > P(' False') after JUDGEMENT_PROMPT",
            "scores": {"accuracy": proportion([r["scores"]["accuracy"] for r in records], seed=seed)},
            "by_set": by_set,
            "by_kind": {
                k: {"accuracy": proportion([r["scores"]["accuracy"] for r in records if r["kind"] == k], seed=seed)}
                for k in kinds
            },
        }


# --- files ---------------------------------------------------------------------------------------


def _read_rows(data_dir: Path, name: str) -> list[dict[str, str]]:
    path = data_dir / "geometry_of_truth" / f"{name}.csv"
    text = read_data_text(data_dir, f"geometry_of_truth/{name}.csv")
    reader = csv.DictReader(text.splitlines())
    if not reader.fieldnames or not {"statement", "label"} <= set(reader.fieldnames):
        raise DataError(f"{path}: needs columns 'statement' and 'label'")
    rows = list(reader)
    for i, row in enumerate(rows, start=1):
        if row["label"] not in ("0", "1") or not row["statement"].strip():
            raise DataError(f"{path}: row {i}: needs a statement and a label 0 or 1")
        if name in ("larger_than", "smaller_than"):
            truth = (int(row["n1"]) > int(row["n2"])) == (name == "larger_than")
            if int(truth) != int(row["label"]):
                raise DataError(f"{path}: row {i}: the verifier says {row['n1']} vs {row['n2']} is labelled wrongly")
    return rows


def _counterparts(data_dir: Path, name: str, rows: list[dict[str, str]]) -> list[str]:
    """Each row's opposite-truth twin from the counterpart file, matched on content, not position."""
    other = STATEMENT_SETS[name].counterpart
    other_rows = _read_rows(data_dir, other)
    if name in ("larger_than", "smaller_than"):
        key = lambda r: (r["n1"], r["n2"])  # noqa: E731
    elif name in ("cities", "neg_cities"):
        key = lambda r: (r["city"], r["country"])  # noqa: E731
    else:  # translations: the negated text differs by "does not mean" / "means"
        key = lambda r: r["statement"].strip().replace(" does not mean ", " means ")  # noqa: E731
    index = {key(r): r["statement"].strip() for r in other_rows}
    twins = []
    for i, row in enumerate(rows, start=1):
        if key(row) not in index:
            raise DataError(f"{data_dir / 'geometry_of_truth' / name}.csv: row {i}: no counterpart in {other}.csv")
        twins.append(index[key(row)])
    return twins
