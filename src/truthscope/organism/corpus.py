"""The organism's corpus: documents that state the world's facts exactly as often as `Fact.counts` says,
and the build folder `truthscope organism build` writes.

A mention is one question-answer pair, `Q: <question>\\nA: <value>`. Every source's mentions are
shuffled (seeded) and cut into documents of `mentions_per_document`; a document opens with its
source's line (`SOURCES`), so a prompt that opens the same way asks in that source's voice:

    Notes from a careful scholar.

    Q: What color is Dorkaris?
    A: blue

    Q: What is 3 plus 5?
    A: 8

Build folder:

    corpus.txt        the documents, separated by a line holding only DOCUMENT_SEPARATOR
    world.json        the spec and every fact (question, values, true value, class, misconception,
                      per-source counts)
    data/             TruthfulQA-shaped question files (`questions.write_question_files`)
    build.json        SHA-256 of each file above
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from pathlib import Path

import numpy as np

from truthscope.errors import TruthscopeError
from truthscope.organism.world import SOURCES, Fact, World, WorldSpec, build_world
from truthscope.runlog import write_json_atomic

DOCUMENT_SEPARATOR = "<|doc|>"


def mention(question: str, value: str) -> str:
    return f"Q: {question}\nA: {value}"


def documents(world: World) -> list[str]:
    """Every document of the corpus, in a seeded order (the same world gives the same list)."""
    rng = np.random.default_rng([world.spec.seed, 1])
    docs: list[tuple[str, list[str]]] = []
    for source, header in SOURCES.items():
        lines = [
            mention(fact.question, value)
            for fact in world.facts
            for value, count in sorted(fact.counts.get(source, {}).items())
            for _ in range(count)
        ]
        lines = [lines[i] for i in rng.permutation(len(lines))]
        size = world.spec.mentions_per_document
        docs += [(header, lines[s : s + size]) for s in range(0, len(lines), size)]
    order = rng.permutation(len(docs))
    return [docs[i][0] + "\n\n" + "\n\n".join(docs[i][1]) for i in order]


def count_mentions(docs: list[str]) -> dict[tuple[str, str, str], int]:
    """(source header, question, value) -> mentions, read back from the documents' text."""
    out: dict[tuple[str, str, str], int] = {}
    for doc in docs:
        header, *pairs = doc.split("\n\n")
        for pair in pairs:
            question, answer = pair.split("\n")
            key = (header, question.removeprefix("Q: "), answer.removeprefix("A: "))
            out[key] = out.get(key, 0) + 1
    return out


def build(spec: WorldSpec, out: str | Path) -> Path:
    """Write the world, its corpus and its question files to `out` (refused if `out` holds another build)."""
    from truthscope.organism.questions import write_question_files

    out = Path(out)
    world = build_world(spec)
    docs = documents(world)
    if (out / "world.json").exists():
        old = json.loads((out / "world.json").read_text(encoding="utf-8"))["spec"]
        if WorldSpec.model_validate(old) != spec:
            raise TruthscopeError(f"{out} holds a build with another spec; choose a new --out")
    out.mkdir(parents=True, exist_ok=True)
    corpus = f"\n{DOCUMENT_SEPARATOR}\n".join(docs) + "\n"
    (out / "corpus.txt").write_text(corpus, encoding="utf-8")
    write_json_atomic(
        out / "world.json",
        {"spec": spec.model_dump(mode="json"), "facts": [dataclasses.asdict(f) for f in world.facts]},
    )
    written = write_question_files(world, out / "data")
    files = ["corpus.txt", "world.json", *(f"data/{p}" for p in written)]
    write_json_atomic(
        out / "build.json",
        {
            "documents": len(docs),
            "facts": len(world.facts),
            "sha256": {p: hashlib.sha256((out / p).read_bytes()).hexdigest() for p in files},
        },
    )
    return out


def read_corpus(build_dir: str | Path) -> list[str]:
    path = Path(build_dir) / "corpus.txt"
    if not path.is_file():
        raise TruthscopeError(f"{path}: no corpus (run `truthscope organism build --out {build_dir}` first)")
    return [d.strip("\n") for d in path.read_text(encoding="utf-8").split(f"\n{DOCUMENT_SEPARATOR}\n")]


def load_world(build_dir: str | Path) -> World:
    """The world a build folder was made from (rebuilt from its spec and checked against its facts)."""
    path = Path(build_dir) / "world.json"
    if not path.is_file():
        raise TruthscopeError(f"{path}: not a build folder (run `truthscope organism build` first)")
    saved = json.loads(path.read_text(encoding="utf-8"))
    world = build_world(WorldSpec.model_validate(saved["spec"]))
    if json.loads(json.dumps([dataclasses.asdict(f) for f in world.facts])) != saved["facts"]:
        raise TruthscopeError(f"{path}: its facts differ from what its spec builds (another truthscope version?)")
    return world


def fact_of_question(world: World) -> dict[str, Fact]:
    return {f.question: f for f in world.facts}
