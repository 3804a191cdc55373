"""Loading what commands share: the dataset (local folder or hub) and presets."""

from __future__ import annotations

from dataclasses import replace

from truthscope.data import TruthfulQA, load_presets, load_truthfulqa, load_truthfulqa_hub
from truthscope.paths import data_dir


def load_dataset(data: str | None, version: str, limit: int | None) -> TruthfulQA:
    if data and data.startswith("hf:"):
        dataset = load_truthfulqa_hub(data[3:] or "truthful_qa")
    else:
        dataset = load_truthfulqa(data_dir(data), version)
    if limit is not None:
        dataset = replace(dataset, questions=dataset.questions[:limit])
    return dataset


def load_presets_for(data: str | None) -> dict[str, str]:
    # Presets always come from a local data folder, also when questions come from the hub.
    return load_presets(data_dir(None if data and data.startswith("hf:") else data))
