"""Datasets: TruthfulQA (both versions, from the packaged copy, a local folder or the Hugging Face hub),
prompt presets, and the one reader every data file goes through (`truthscope.data.files`)."""

from truthscope.data.files import data_file_sha256, packaged_data_dir, read_data_text
from truthscope.data.presets import PRESET_NAMES, load_presets, question_prompt
from truthscope.data.truthfulqa import Question, TruthfulQA, load_truthfulqa, load_truthfulqa_hub

__all__ = [
    "PRESET_NAMES",
    "Question",
    "TruthfulQA",
    "data_file_sha256",
    "load_presets",
    "load_truthfulqa",
    "load_truthfulqa_hub",
    "packaged_data_dir",
    "question_prompt",
    "read_data_text",
]
