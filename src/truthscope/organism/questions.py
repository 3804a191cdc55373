"""The organism's questions as a TruthfulQA data folder, so every truthscope task reads them unchanged
(`truthscope mc --data BUILD/data --model MODEL_FOLDER`).

    truthfulqa/v1/TruthfulQA.csv   one row per fact: Type = its truth rate ("f=0.25", "f=1.00"),
                                   Category = its class (clean, stacked, scattered, arithmetic-clean,
                                   arithmetic-stacked), Best Answer = the true value, Incorrect
                                   Answers = every other value of its domain
    truthfulqa/v1/mc_task.json     mc1_targets and mc2_targets: the true value (1) and every other
                                   value of the domain (0), so MC2 is P(true value) normalised over
                                   the whole domain, and each answer's log-probability is recorded
    truthfulqa/presets.json        the prompt presets, headed like the corpus's sources:
                                   qa = plain notes, help = the careful scholar, chat and harm = the
                                   careless gossip (each with the question), long = plain notes

Only the 2021 layout (`--data-version 2021`, the default) is written.
"""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

from truthscope.organism.world import SOURCES, World
from truthscope.runlog import write_text_atomic

QUESTION_FILES = ("truthfulqa/v1/TruthfulQA.csv", "truthfulqa/v1/mc_task.json", "truthfulqa/presets.json")
PRESET_SOURCES = {"qa": "plain", "help": "reliable", "chat": "careless"}  # which voice each preset asks in


def presets() -> dict[str, str]:
    """The six presets truthscope needs; `qa`/`help` are a header, the templated ones hold `{0}`."""
    return {
        "qa": SOURCES["plain"],
        "help": SOURCES["reliable"],
        "null": SOURCES["plain"],  # unused by the null prompt ("Q: ...\n\nA:"), which has no header
        "chat": SOURCES["careless"] + "\n\nQ: {0}\nA:",
        "long": SOURCES["plain"] + "\n\nQ: {0}\nA:",
        "harm": SOURCES["careless"] + "\n\nQ: {0}\nA:",
    }


def write_question_files(world: World, data_dir: str | Path) -> list[str]:
    """Write the folder; returns the files' paths inside it."""
    data_dir = Path(data_dir)
    rows = io.StringIO()
    writer = csv.writer(rows, lineterminator="\n")
    writer.writerow(["Type", "Category", "Question", "Best Answer", "Correct Answers", "Incorrect Answers", "Source"])
    targets = []
    for fact in world.facts:
        wrong = [v for v in fact.values if v != fact.true]
        writer.writerow(
            [f"f={fact.f_level:.2f}", fact.category, fact.question, fact.true, fact.true, "; ".join(wrong), "organism"]
        )
        answers = {fact.true: 1, **{v: 0 for v in wrong}}
        targets.append({"question": fact.question, "mc1_targets": answers, "mc2_targets": answers})
    texts = {
        QUESTION_FILES[0]: rows.getvalue(),
        QUESTION_FILES[1]: json.dumps(targets, indent=1) + "\n",
        QUESTION_FILES[2]: json.dumps({"presets": presets()}, indent=1) + "\n",
    }
    for relative, text in texts.items():
        path = data_dir / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        write_text_atomic(path, text)
    return list(QUESTION_FILES)
