"""True/false statement sets (Marks & Tegmark, "The Geometry of Truth") as a control task.

Every statement (a row of its file) is scored as a forced choice between two options, option 0
standing for "the statement is true" and option 1 for its alternative. Each option's score is a
difference of two log-probabilities (`logprob` - `baseline`), `margin` = score 0 - score 1, and
the model believes the statement when the margin is positive; an exact tie counts half
(`scores.accuracy` 0.5). The rule depends on the set (`STATEMENT_SETS`):

* `country` (cities, neg_cities). Every city appears twice, with its true country and a false one.
  The wording is held fixed: after "The city of X is in" (neg_cities: "is not in") the options are
  the row's country " C." and the city's other country " C'.", each calibrated by the same
  continuation's log-probability after the content-free prefix "The city of N/A is in" ("... is not
  in"). Cancels exactly: any preference that depends on the country text alone (its frequency, its
  length in tokens or characters). On neg_cities the correct option is the false country, so a model
  that ignores "not" scores below 0.5 there: that set measures negation, not the price of a token,
  and is its own kind ("negation"), so a knowledge average never mixes the two.
* `swap` (larger_than, smaller_than). Every number pair appears in both orders. The options are
  "a is larger than b." and "b is larger than a." as whole texts (same words, same characters).
  Cancels exactly: a preference for "True", for either listing position, for character length.
* `twin` (sp_en_trans, neg_sp_en_trans). No second translation of a word exists, but every
  statement has a negated twin of opposite truth (the same word pair). With
  m(s) = log P(" True") - log P(" False") after `JUDGEMENT_PROMPT`, option 0 is m(statement) and
  option 1 is m(twin). Cancels exactly: a constant "True" bias. Not cancelled per item: a bias that
  moves m for every negated statement alike (it makes the model believe every affirmative one);
  balanced accuracy and AUROC are 0.5 for such a model.
* `judgement` (companies_true_false, common_claim_true_false, cities_cities_conj/disj). No twin
  exists, so options are " True" and " False" after `JUDGEMENT_PROMPT` (the model's own answer).
  Nothing cancels a "True" bias per item: `accuracy` then echoes the label balance (about 0.5 in
  these files). The primary numbers are threshold-free or balanced: AUROC of the margin (any
  constant shift of every margin leaves it unchanged) and balanced accuracy (a model that always
  says True scores exactly 0.5). A bias that varies with the statement (say, with its length) is not
  cancelled by any of the three.

Intervals resample clusters, not rows (`cluster`: the city, the unordered number pair, the word
pair; a row of a set without twins): the two rows of a city are one forced choice seen from both
sides and are right or wrong together. Samples are drawn by cluster too (`draw_clusters`), so a
sample of cities holds both rows of each city: then accuracy = balanced accuracy = the forced-choice
accuracy, and a model that always picks option 0 (believes every row) scores exactly 0.5.
`larger_than` / `smaller_than` are checkable by a program: their verifier recomputes every label from
the numbers and loading fails if one disagrees.
"""

from __future__ import annotations

import csv
import re
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from pydantic import field_validator

from truthscope.data.files import read_data_text
from truthscope.errors import DataError
from truthscope.models.base import LanguageModel, LoglikelihoodRequest
from truthscope.runlog import Sample
from truthscope.sampling import draw_groups, sample_of
from truthscope.scoring.intervals import N_RESAMPLES
from truthscope.tasks.base import Resources, Task, TaskOptions, call_model, register

JUDGEMENT_PROMPT = "Statement: {}\nIs this statement true or false?\nAnswer:"
CITY_PREFIX = {"cities": "The city of {} is in", "neg_cities": "The city of {} is not in"}
CONTENT_FREE_CITY = "N/A"  # the city in the calibration prefix (Zhao et al. 2021, "Calibrate before use")
DEFAULT_SETS = ("larger_than", "smaller_than", "cities", "sp_en_trans", "common_claim_true_false")
RULE_TEXT = (
    "forced choices with the wording held fixed: cities/neg_cities: the row's country vs the city's other "
    "country after 'The city of X is (not) in', each minus its log-prob after 'The city of N/A is (not) in'; "
    "larger/smaller_than: 'a ... b' vs 'b ... a'; sp_en_trans pairs: P(True)-P(False) margin above the "
    "negated twin's; other sets: P(' True') > P(' False'). Primary: AUROC and balanced accuracy; "
    "intervals resample clusters (city, number pair, word pair)"
)


@dataclass(frozen=True)
class StatementSet:
    name: str
    kind: str  # "verifier" (checkable by a program), "knowledge", "negation", "popular claims", "logic"
    rule: str  # "country", "swap", "twin", "judgement" (see the module docstring)
    counterpart: str | None = None  # the file holding each statement's negated twin (rule "twin")


STATEMENT_SETS: dict[str, StatementSet] = {
    s.name: s
    for s in (
        StatementSet("larger_than", "verifier", "swap"),
        StatementSet("smaller_than", "verifier", "swap"),
        StatementSet("cities", "knowledge", "country"),
        StatementSet("neg_cities", "negation", "country"),
        StatementSet("sp_en_trans", "knowledge", "twin", "neg_sp_en_trans"),
        StatementSet("neg_sp_en_trans", "knowledge", "twin", "sp_en_trans"),
        StatementSet("companies_true_false", "knowledge", "judgement"),
        StatementSet("common_claim_true_false", "popular claims", "judgement"),
        StatementSet("cities_cities_conj", "logic", "judgement"),
        StatementSet("cities_cities_disj", "logic", "judgement"),
    )
}


@dataclass(frozen=True)
class Option:
    """One side of a forced choice: score = log P(`logprob`) - log P(`baseline`) (no baseline: 0)."""

    text: str
    logprob: LoglikelihoodRequest
    baseline: LoglikelihoodRequest | None = None

    def requests(self) -> list[LoglikelihoodRequest]:
        return [self.logprob] if self.baseline is None else [self.logprob, self.baseline]


@dataclass(frozen=True)
class Statement:
    id: int  # row in its file, 0-based
    set: str
    text: str
    label: int  # 1 = true
    cluster: str  # what intervals and samples resample: "city:X", "numbers:51-52", "words:uno|one", "set:row"
    options: tuple[Option, Option]  # (the statement is true, its alternative)

    @property
    def counterpart(self) -> str | None:
        """The alternative's text when it is a whole statement (swap, twin), else None."""
        return self.options[1].text if STATEMENT_SETS[self.set].rule in ("swap", "twin") else None


def load_statements(data_dir: str | Path, name: str, limit: int | None = None, seed: int = 0) -> list[Statement]:
    """One statement set; `limit` keeps a seeded random sample of whole clusters (`draw_clusters`)."""
    if name not in STATEMENT_SETS:
        raise DataError(f"unknown statement set {name!r}; known: {', '.join(STATEMENT_SETS)}")
    statements = _statements(Path(data_dir), name)
    return draw_clusters(statements, sample_of(limit, "seeded", seed), purpose=name)


def draw_clusters(statements: Sequence[Statement], sample: Sample, purpose: str) -> list[Statement]:
    """Whole clusters (a city's two rows, a number pair both ways), at least `sample.n` rows."""
    return draw_groups(statements, sample, lambda s: s.cluster, purpose)


def statement_requests(s: Statement) -> list[LoglikelihoodRequest]:
    return [r for option in s.options for r in option.requests()]


def statement_record(s: Statement, logprob: Mapping) -> dict:
    options, scores = [], []
    for option in s.options:
        lp = logprob[option.logprob]
        base = None if option.baseline is None else logprob[option.baseline]
        scores.append(lp - (base or 0.0))
        options.append({"text": option.text, "score": scores[-1], "logprob": lp, "baseline": base})
    margin = scores[0] - scores[1]
    believed = 1.0 if margin > 0 else 0.0 if margin < 0 else 0.5
    correct = believed if s.label else 1.0 - believed
    return {
        "set": s.set,
        "row": s.id,
        "kind": STATEMENT_SETS[s.set].kind,
        "rule": STATEMENT_SETS[s.set].rule,
        "cluster": s.cluster,
        "statement": s.text,
        "label": s.label,
        "options": options,
        "margin": margin,
        "believed_true": margin > 0,
        "correct": correct,
        "scores": {"accuracy": correct},
    }


def score_statements(model: LanguageModel, statements: Sequence[Statement]) -> list[dict]:
    """One record per statement (no `id`): options, margin, believed_true, scores.accuracy."""
    results = call_model(model, [r for s in statements for r in statement_requests(s)])
    logprobs = {k: v.logprob for k, v in results.items()}
    return [statement_record(s, logprobs) for s in statements]


def auroc(margins: Sequence[float], labels: Sequence[int]) -> float | None:
    """Probability that a true statement gets a larger margin than a false one (ties count half)."""
    m, y = np.asarray(margins, dtype=float), np.asarray(labels)
    pos, neg = m[y == 1], m[y == 0]
    if pos.size == 0 or neg.size == 0:
        return None
    greater = (pos[:, None] > neg[None, :]).mean()
    ties = (pos[:, None] == neg[None, :]).mean()
    return float(greater + 0.5 * ties)


# --- summaries: weighted statistics, one row of weights per bootstrap resample --------------------


def weighted_auroc(margins: np.ndarray, labels: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """`auroc` under each row of `weights` (resamples x statements): one sort for all rows."""
    order = np.argsort(margins, kind="stable")
    m, y, w = margins[order], labels[order], weights[:, order]
    starts = np.flatnonzero(np.r_[True, m[1:] != m[:-1]])
    pos = np.add.reduceat(w * (y == 1), starts, axis=1)
    neg = np.add.reduceat(w * (y == 0), starts, axis=1)
    below = np.cumsum(pos, axis=1) - pos
    total_pos, total_neg = pos.sum(axis=1), neg.sum(axis=1)
    above = total_pos[:, None] - below - pos  # positive weight strictly above each value
    with np.errstate(invalid="ignore", divide="ignore"):
        return (neg * (above + 0.5 * pos)).sum(axis=1) / (total_pos * total_neg)


def _weighted_mean(values: np.ndarray, weights: np.ndarray) -> np.ndarray:
    with np.errstate(invalid="ignore", divide="ignore"):
        return (weights * values).sum(axis=1) / weights.sum(axis=1)


def _statistics(records: Sequence[dict]) -> dict[str, Callable[[np.ndarray], np.ndarray]]:
    """accuracy (the mean over rows); balanced accuracy and AUROC (each the mean over sets of the set's
    value, so a set's label balance never leaks into another's)."""
    acc = np.array([r["scores"]["accuracy"] for r in records], dtype=float)
    y = np.array([r["label"] for r in records])
    margin = np.array([r["margin"] for r in records], dtype=float)
    sets = [np.flatnonzero([r["set"] == name for r in records]) for name in dict.fromkeys(r["set"] for r in records)]

    def per_set_mean(statistic):
        def mean(w):
            values = np.stack([statistic(i, w[:, i]) for i in sets])
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", RuntimeWarning)  # a resample without true or false rows
                return np.nanmean(values, axis=0)

        return mean

    def balanced(i, w):
        return 0.5 * (_weighted_mean(acc[i], w * (y[i] == 1)) + _weighted_mean(acc[i], w * (y[i] == 0)))

    return {
        "accuracy": lambda w: _weighted_mean(acc, w),
        "balanced_accuracy": per_set_mean(balanced),
        "auroc": per_set_mean(lambda i, w: weighted_auroc(margin[i], y[i], w)),
    }


def cluster_bootstrap(records: Sequence[dict], seed: int = 0, n_resamples: int = N_RESAMPLES) -> dict[str, dict]:
    """accuracy, balanced_accuracy and auroc of `records`, each {"mean", "ci_low", "ci_high", "n",
    "clusters", "method"}: a percentile interval from resampling the records' clusters with
    replacement (a resampled cluster brings all its rows, in every set it appears in)."""
    clusters = list(dict.fromkeys(r["cluster"] for r in records))
    index = {c: k for k, c in enumerate(clusters)}
    of = np.array([index[r["cluster"]] for r in records])
    rng = np.random.default_rng(seed)
    drawn = rng.integers(0, len(clusters), size=(n_resamples, len(clusters)))
    offsets = (np.arange(n_resamples) * len(clusters))[:, None]
    counts = np.bincount((drawn + offsets).ravel(), minlength=drawn.size).reshape(drawn.shape)
    weights = counts[:, of].astype(float)
    out = {}
    for metric, statistic in _statistics(records).items():
        point = float(statistic(np.ones((1, len(records))))[0])
        if np.isnan(point):
            out[metric] = None
            continue
        resampled = statistic(weights)
        resampled = resampled[~np.isnan(resampled)]
        low, high = np.quantile(resampled, [0.025, 0.975]) if resampled.size else (point, point)
        out[metric] = {
            "mean": point,
            "ci_low": float(low),
            "ci_high": float(high),
            "n": len(records),
            "clusters": len(clusters),
            "method": "cluster bootstrap",
        }
    return out


def summarise_statements(records: Sequence[dict], sets: Sequence[str], seed: int = 0) -> dict:
    """Per set, per kind and overall: AUROC and balanced accuracy (primary) and accuracy, with
    cluster-bootstrap 95% intervals. `scores.accuracy` is the mean of the records' accuracy: the
    forced-choice accuracy on country/swap/twin sets, the model's own True/False answer elsewhere."""
    by_set = {}
    for name in sets:
        rows = [r for r in records if r["set"] == name]
        if not rows:
            continue
        stats = cluster_bootstrap(rows, seed=seed)
        by_set[name] = {
            "kind": STATEMENT_SETS[name].kind,
            "rule": STATEMENT_SETS[name].rule,
            "n": len(rows),
            "clusters": len({r["cluster"] for r in rows}),
            "share_true": float(np.mean([r["label"] for r in rows])),
            "share_believed_true": float(np.mean([r["believed_true"] for r in rows])),
            "accuracy": stats["accuracy"],
            "balanced_accuracy": stats["balanced_accuracy"],
            "auroc": None if stats["auroc"] is None else stats["auroc"]["mean"],  # a float, as before
            "auroc_interval": stats["auroc"],
        }
    kinds = sorted({r["kind"] for r in records})
    return {
        "rule": RULE_TEXT,
        "scores": cluster_bootstrap(records, seed=seed) if records else {},
        "by_set": by_set,
        "by_kind": {k: cluster_bootstrap([r for r in records if r["kind"] == k], seed=seed) for k in kinds},
    }


# --- the task ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class StatementItem:
    id: int  # position in the run (sets in the given order, rows grouped by cluster)
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
    """The true/false statement sets (see the module docstring); a run's sample applies per set, in
    whole clusters."""

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
        statements = [s for name in options.sets for s in draw_clusters(_statements(root, name), sample, name)]
        return cls(statements, options, seed=seed)

    def items(self):
        return self.statement_items

    def requests(self, item, model):
        return statement_requests(item.statement)

    def score(self, items, results):
        return [
            {"id": item.id, **statement_record(item.statement, {k: v.logprob for k, v in r.items()})}
            for item, r in zip(items, results, strict=True)
        ]

    def summarise(self, records):
        return summarise_statements(records, self.options.sets, seed=self.seed)


# --- files ---------------------------------------------------------------------------------------

TRANSLATION = re.compile(r"The Spanish word '(.+)' (means|does not mean) '(.+)'\.")


def _statements(data_dir: Path, name: str) -> list[Statement]:
    """Every row of set `name` with its cluster and forced choice (see the module docstring)."""
    spec = STATEMENT_SETS[name]
    rows = _read_rows(data_dir, name)
    where = lambda i: f"{data_dir / 'geometry_of_truth' / name}.csv: row {i + 1}"  # noqa: E731
    out = []
    if spec.rule == "country":
        countries: dict[str, list[str]] = {}
        for row in rows:
            countries.setdefault(row["city"], []).append(row["country"])
        prefix = CITY_PREFIX[name]
        for i, row in enumerate(rows):
            others = [c for c in countries[row["city"]] if c != row["country"]]
            if len(others) != 1 or len(countries[row["city"]]) != 2:
                raise DataError(f"{where(i)}: the city {row['city']!r} needs exactly two rows with two countries")
            if "correct_country" in row and (row["country"] == row["correct_country"]) != (
                int(row["label"]) == int(name == "cities")
            ):
                raise DataError(f"{where(i)}: the label disagrees with correct_country")
            options = tuple(
                Option(
                    f" {country}.",
                    LoglikelihoodRequest(prefix.format(row["city"]), f" {country}."),
                    LoglikelihoodRequest(prefix.format(CONTENT_FREE_CITY), f" {country}."),
                )
                for country in (row["country"], others[0])
            )
            out.append(Statement(i, name, row["statement"].strip(), int(row["label"]), f"city:{row['city']}", options))  # type: ignore[arg-type]
    elif spec.rule == "swap":
        text = {(row["n1"], row["n2"]): row["statement"].strip() for row in rows}
        for i, row in enumerate(rows):
            a, b = row["n1"], row["n2"]
            if (b, a) not in text:
                raise DataError(f"{where(i)}: no row with the numbers {b} and {a} swapped")
            low, high = sorted((int(a), int(b)))
            options = (
                Option(text[a, b], LoglikelihoodRequest("", text[a, b])),
                Option(text[b, a], LoglikelihoodRequest("", text[b, a])),
            )
            out.append(Statement(i, name, text[a, b], int(row["label"]), f"numbers:{low}-{high}", options))
    elif spec.rule == "twin":
        assert spec.counterpart is not None
        twins = {
            _word_pair(r["statement"].strip()): r["statement"].strip() for r in _read_rows(data_dir, spec.counterpart)
        }
        for i, row in enumerate(rows):
            statement = row["statement"].strip()
            pair = _word_pair(statement)
            if pair is None:
                raise DataError(f"{where(i)}: not of the form \"The Spanish word '...' means '...'.\"")
            if pair not in twins:
                raise DataError(f"{where(i)}: no counterpart in {spec.counterpart}.csv")
            options = tuple(_judged(s) for s in (statement, twins[pair]))
            out.append(Statement(i, name, statement, int(row["label"]), f"words:{pair[0]}|{pair[1]}", options))  # type: ignore[arg-type]
    else:
        for i, row in enumerate(rows):
            statement = row["statement"].strip()
            prompt = JUDGEMENT_PROMPT.format(statement)
            options = (
                Option(" True", LoglikelihoodRequest(prompt, " True")),
                Option(" False", LoglikelihoodRequest(prompt, " False")),
            )
            out.append(Statement(i, name, statement, int(row["label"]), f"{name}:{i}", options))
    return out


def _judged(statement: str) -> Option:
    """m(statement) = log P(" True") - log P(" False") after `JUDGEMENT_PROMPT`."""
    prompt = JUDGEMENT_PROMPT.format(statement)
    return Option(statement, LoglikelihoodRequest(prompt, " True"), LoglikelihoodRequest(prompt, " False"))


def _word_pair(statement: str) -> tuple[str, str] | None:
    match = TRANSLATION.fullmatch(statement)
    return None if match is None else (match.group(1), match.group(3))


def _read_rows(data_dir: Path, name: str) -> list[dict[str, str]]:
    path = data_dir / "geometry_of_truth" / f"{name}.csv"
    text = read_data_text(data_dir, f"geometry_of_truth/{name}.csv")
    reader = csv.DictReader(text.splitlines())
    needed = {"statement", "label"} | {
        "country": {"city", "country"},
        "swap": {"n1", "n2"},
    }.get(STATEMENT_SETS[name].rule, set())
    if not reader.fieldnames or not needed <= set(reader.fieldnames):
        raise DataError(f"{path}: needs columns {', '.join(sorted(needed))}")
    rows = list(reader)
    for i, row in enumerate(rows, start=1):
        if row["label"] not in ("0", "1") or not row["statement"].strip():
            raise DataError(f"{path}: row {i}: needs a statement and a label 0 or 1")
        if name in ("larger_than", "smaller_than"):
            truth = (int(row["n1"]) > int(row["n2"])) == (name == "larger_than")
            if int(truth) != int(row["label"]):
                raise DataError(f"{path}: row {i}: the verifier says {row['n1']} vs {row['n2']} is labelled wrongly")
    return rows
