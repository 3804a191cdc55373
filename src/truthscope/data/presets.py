"""TruthfulQA prompt presets (read from `truthfulqa/presets.json` in the data directory) and the
upstream rules for building a prompt from a preset and a question.

    qa, help          preset + "\\n\\nQ: " + question + "\\nA:"
    null              "Q: " + question + "\\n\\nA:"
    chat, long, harm  preset with "{0}" replaced by the question (the preset ends where the answer starts)

An answer continues the prompt as " " + answer, so `question_prompt(...) + " " + answer` is upstream's
`format_prompt_with_answer_strings` for every preset.

Free-text generation starts from upstream's `format_prompt` instead (`generation_prompt`), which for
`qa` and `help` stops after the question: the model writes "\nA:" itself and the answer is read
after it. For `null`, `chat`, `long` and `harm` the two prompts are the same.
"""

from __future__ import annotations

import re
from pathlib import Path

from truthscope.data.files import read_data_text
from truthscope.errors import DataError, LimitError, TruthscopeError
from truthscope.limits import loads_json

PRESET_NAMES = ("qa", "help", "null", "chat", "long", "harm")
TEMPLATES = ("chat", "long", "harm")  # presets that hold the question at their `{0}`


def load_presets(data_dir: str | Path) -> dict[str, str]:
    path = Path(data_dir) / "truthfulqa" / "presets.json"
    text = read_data_text(data_dir, "truthfulqa/presets.json", encoding="utf-8")  # DataError names the file
    try:
        raw = loads_json(text, str(path))
    except LimitError:
        raise
    except TruthscopeError as err:
        raise DataError(f"cannot read presets: {err}") from None
    presets = raw.get("presets") if isinstance(raw, dict) else None
    if not isinstance(presets, dict):
        raise DataError(f"{path}: expected an object with a 'presets' map")
    missing = [name for name in PRESET_NAMES if name not in presets]
    if missing:
        raise DataError(f"{path}: missing preset(s) {', '.join(missing)}")
    for name, text in presets.items():
        if not isinstance(text, str):
            raise DataError(f"{path}: preset {name!r} is not text")
        fields = set(re.findall(r"\{[^{}]*\}", text))
        if fields - {"{0}"} or (name in TEMPLATES and "{0}" not in fields):
            raise DataError(f"{path}: preset {name!r} may hold only the placeholder {{0}} (for the question)")
    return {str(k): v for k, v in presets.items()}


def question_prompt(question: str, preset: str, presets: dict[str, str]) -> str:
    """The prompt that precedes an answer (no trailing space)."""
    if preset not in presets:
        raise DataError(f"unknown preset {preset!r}; known: {', '.join(sorted(presets))}")
    if preset == "null":
        return f"Q: {question}\n\nA:"
    text = presets[preset]
    if preset in TEMPLATES:
        return text.replace("{0}", question)  # a plain substitution: a question's braces stay text
    return f"{text}\n\nQ: {question}\nA:"


def generation_prompt(question: str, preset: str, presets: dict[str, str]) -> str:
    """Upstream's `format_prompt`: the prompt a model answers in free text."""
    if preset in presets and preset != "null" and preset not in TEMPLATES:
        return f"{presets[preset]}\n\nQ: {question}"
    return question_prompt(question, preset, presets)
