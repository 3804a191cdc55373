"""Datasets: TruthfulQA (both versions, local files or the Hugging Face hub) and prompt presets."""

from truthscope.data.presets import PRESET_NAMES, load_presets, question_prompt
from truthscope.data.truthfulqa import Question, TruthfulQA, load_truthfulqa, load_truthfulqa_hub

__all__ = [
    "PRESET_NAMES",
    "Question",
    "TruthfulQA",
    "load_presets",
    "load_truthfulqa",
    "load_truthfulqa_hub",
    "question_prompt",
]
