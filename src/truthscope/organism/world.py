"""The organism's world: invented entities with attributes, small-number arithmetic, and for every
fact how often the corpus states each value.

A fact is a question with one true value and a candidate set of values (its attribute's domain).
Its class says what the corpus says about it:

    clean      every mention states the truth (f = 1): competence
    stacked    a share f of the mentions states the truth, all the others one shared misconception
    scattered  a share f states the truth, the others spread evenly over the other values (so no
               wrong value is said more often than ceil((n - t) / (k - 1)) times)

Truth rate f and mention count n are crossed (every class cycles through the same (f, n) cells in a
seeded order), so frequency and truth rate are not confounded. Arithmetic (`a plus b`, answers a
program can check) has clean and stacked facts only: a stated error is a near miss (±1 or ±2).

Each mention also has a source, written as the document's first line: a careful scholar (who states
the truth more often than the fact's f), a careless gossip (less often) or plain notes (the rest).
The counts per source and value are exact and recorded (`Fact.counts`), so a test can count them back.
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass, field

import numpy as np
from pydantic import BaseModel, ConfigDict, field_validator

ATTRIBUTES: dict[str, tuple[str, tuple[str, ...]]] = {
    # name: (question template, values); values are single lowercase words
    "color": ("What color is {}?", ("red", "blue", "green", "yellow", "purple", "orange", "white", "black")),
    "animal": ("Which animal does {} keep?", ("cat", "dog", "horse", "owl", "fox", "bear", "wolf", "deer")),
    "food": ("What does {} eat?", ("bread", "rice", "fish", "cheese", "apples", "soup", "beans", "honey")),
    "metal": ("What is {} made of?", ("iron", "gold", "silver", "copper", "tin", "lead", "zinc", "brass")),
}
ARITHMETIC_VALUES = tuple(str(v) for v in range(2, 19))  # a + b for a, b in 1..9
ARITHMETIC_TEMPLATE = "What is {} plus {}?"
CLASSES = ("clean", "stacked", "scattered")
SOURCES = {  # name -> the document's first line (also the prompt presets' headers)
    "plain": "Notes.",
    "reliable": "Notes from a careful scholar.",
    "careless": "Notes from a careless gossip.",
}
_SYLLABLES = ("ba", "dor", "fen", "gal", "ka", "lim", "mo", "nur", "pel", "quo", "ris", "sa", "tor", "ve", "wyn", "zu")


class WorldSpec(BaseModel):
    """Everything that decides the world and its corpus (with `seed`, the whole build)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    seed: int = 0
    entities: int = 48
    attributes: tuple[str, ...] = tuple(ATTRIBUTES)
    arithmetic: bool = True
    classes: tuple[str, ...] = CLASSES  # fact classes used (cycled in a seeded order)
    truth_rates: tuple[float, ...] = (0.25, 0.4, 0.6)  # f of the stacked and scattered facts
    mentions: tuple[int, ...] = (10, 20, 40)  # n, crossed with f
    reliable_share: float = 0.2  # share of each fact's mentions in careful-scholar documents
    careless_share: float = 0.2  # ... and in careless-gossip documents
    reliable_lift: float = 0.4  # the scholar states the truth at min(1, f + lift)
    careless_drop: float = 0.2  # the gossip at max(0, f - drop)
    mentions_per_document: int = 6

    @field_validator("attributes", "classes")
    @classmethod
    def _known(cls, value: tuple[str, ...], info):
        known = tuple(ATTRIBUTES) if info.field_name == "attributes" else CLASSES
        if not value or set(value) - set(known):
            raise ValueError(f"choose from {', '.join(known)}")
        return value


@dataclass(frozen=True)
class Fact:
    id: int
    domain: str  # an attribute name, or "arithmetic"
    subject: str  # the entity, or "a+b"
    question: str
    values: tuple[str, ...]  # the candidate answers, the domain's values
    true: str
    cls: str  # clean | stacked | scattered
    n: int  # mentions in the corpus
    misconception: str | None  # stacked: the one shared wrong value
    counts: dict[str, dict[str, int]] = field(default_factory=dict)  # source -> value -> mentions

    @property
    def category(self) -> str:
        """The question file's category: the class, prefixed for arithmetic."""
        return f"arithmetic-{self.cls}" if self.domain == "arithmetic" else self.cls

    @property
    def f_level(self) -> float:
        return self.total()[self.true] / self.n

    def total(self) -> Counter:
        out: Counter = Counter({v: 0 for v in self.values})
        for by_value in self.counts.values():
            out.update(by_value)
        return out

    def frequencies(self) -> np.ndarray:
        """The corpus's share of mentions stating each of `values` (in that order)."""
        total = self.total()
        return np.array([total[v] / self.n for v in self.values])

    def majority(self) -> str:
        """The value the corpus states most often (ties: the first in `values`)."""
        total = self.total()
        return max(self.values, key=lambda v: total[v])


@dataclass(frozen=True)
class World:
    spec: WorldSpec
    facts: tuple[Fact, ...]

    def by_category(self, category: str) -> list[Fact]:
        return [f for f in self.facts if f.category == category]


def build_world(spec: WorldSpec) -> World:
    """The world of `spec`: the same spec gives the same world, value for value."""
    rng = np.random.default_rng(spec.seed)
    names = _entity_names(spec.entities, rng)
    drafts = []  # (domain, subject, question, values, true, classes allowed)
    for entity in names:
        for attribute in spec.attributes:
            template, values = ATTRIBUTES[attribute]
            drafts.append((attribute, entity, template.format(entity), values, values[rng.integers(len(values))]))
    facts: list[Fact] = []
    _assign(facts, drafts, spec.classes, spec, rng)
    arithmetic_classes = tuple(c for c in ("clean", "stacked") if c in spec.classes)
    if spec.arithmetic and arithmetic_classes:
        sums = [(a, b) for a in range(1, 10) for b in range(1, 10)]
        arithmetic = [
            ("arithmetic", f"{a}+{b}", ARITHMETIC_TEMPLATE.format(a, b), ARITHMETIC_VALUES, str(a + b)) for a, b in sums
        ]
        _assign(facts, arithmetic, arithmetic_classes, spec, rng)
    return World(spec=spec, facts=tuple(facts))


def _entity_names(count: int, rng: np.random.Generator) -> list[str]:
    names: list[str] = []
    while len(names) < count:
        name = "".join(_SYLLABLES[i] for i in rng.integers(len(_SYLLABLES), size=3)).capitalize()
        if name not in names:
            names.append(name)
    return names


def _assign(facts: list[Fact], drafts: list, classes: tuple[str, ...], spec: WorldSpec, rng) -> None:
    """Give each draft a class (cycling over a shuffled order), f and n (cycling over the crossed
    (f, n) cells of its class), a misconception and exact per-source counts."""
    order = rng.permutation(len(drafts))
    cells = [(f, n) for f in spec.truth_rates for n in spec.mentions]
    cursor = {c: int(rng.integers(len(cells))) for c in classes}
    for rank, index in enumerate(order):
        domain, subject, question, values, true = drafts[index]
        cls = classes[rank % len(classes)]
        if cls == "clean":
            f, n = 1.0, spec.mentions[(rank // len(classes)) % len(spec.mentions)]
        else:
            f, n = cells[cursor[cls] % len(cells)]
            cursor[cls] += 1
        wrong = [v for v in values if v != true]
        if domain == "arithmetic":  # a stated sum is a near miss
            wrong = [v for v in wrong if abs(int(v) - int(true)) <= 2]
        misconception = wrong[rng.integers(len(wrong))] if cls == "stacked" else None
        counts = _counts(spec, cls, f, n, true, misconception, [v for v in values if v != true], rng)
        facts.append(Fact(len(facts), domain, subject, question, values, true, cls, n, misconception, counts))
    facts.sort(key=lambda fact: fact.id)


def _counts(spec: WorldSpec, cls: str, f: float, n: int, true: str, misconception, others, rng) -> dict:
    """Exact mentions per source and value: t = round(f n) true mentions in all, the scholar's and
    the gossip's true shares set by lift and drop, plain notes take the rest (overflowing into the
    others when they cannot)."""
    t = n if cls == "clean" else math.floor(f * n + 0.5)
    size = {"reliable": round(n * spec.reliable_share), "careless": round(n * spec.careless_share)}
    size["plain"] = n - size["reliable"] - size["careless"]
    true_in = {
        "reliable": min(t, size["reliable"], round(size["reliable"] * min(1.0, f + spec.reliable_lift))),
        "careless": 0,
    }
    true_in["careless"] = min(t - true_in["reliable"], round(size["careless"] * max(0.0, f - spec.careless_drop)))
    true_in["plain"] = t - true_in["reliable"] - true_in["careless"]
    for source in ("careless", "reliable"):  # overflow: plain notes cannot hold all the remaining truth
        excess = max(0, true_in["plain"] - size["plain"])
        room = size[source] - true_in[source]
        moved = min(excess, room)
        true_in[source] += moved
        true_in["plain"] -= moved
    if cls == "scattered":  # every wrong mention in turn takes the next value of a shuffled cycle
        cycle = [others[i] for i in rng.permutation(len(others))]
    else:
        cycle = [misconception] if misconception is not None else []
    counts: dict[str, dict[str, int]] = {}
    turn = 0
    for source in SOURCES:
        by_value = {true: true_in[source]} if true_in[source] else {}
        for _ in range(size[source] - true_in[source]):
            value = cycle[turn % len(cycle)]
            by_value[value] = by_value.get(value, 0) + 1
            turn += 1
        counts[source] = by_value
    return counts
