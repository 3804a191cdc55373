"""The hub loader is real code for online users; here it reads a local folder laid out like the hub
dataset `truthful_qa` (configs `generation` and `multiple_choice`, parquet files)."""

import pandas as pd
import pytest

from truthscope.data import load_truthfulqa, load_truthfulqa_hub

pytest.importorskip("datasets")

README = """---
configs:
- config_name: generation
  data_files:
  - split: validation
    path: generation/validation-00000-of-00001.parquet
- config_name: multiple_choice
  data_files:
  - split: validation
    path: multiple_choice/validation-00000-of-00001.parquet
---
"""


def test_hub_layout_matches_local_files(data_dir, tmp_path, monkeypatch):
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    local = load_truthfulqa(data_dir, "2021")
    sample = local.questions[:25]
    (tmp_path / "generation").mkdir()
    (tmp_path / "multiple_choice").mkdir()
    pd.DataFrame(
        [
            {
                "type": q.type,
                "category": q.category,
                "question": q.question,
                "best_answer": q.best_answer,
                "correct_answers": list(q.correct_answers),
                "incorrect_answers": list(q.incorrect_answers),
                "source": q.source,
            }
            for q in sample
        ]
    ).to_parquet(tmp_path / "generation" / "validation-00000-of-00001.parquet")
    pd.DataFrame(
        [
            {
                "question": q.question,
                **{
                    name: {"choices": [a for a, _ in t], "labels": [lab for _, lab in t]}
                    for name, t in (("mc1_targets", q.mc1_targets), ("mc2_targets", q.mc2_targets))
                },
            }
            for q in reversed(sample)  # a different order, as in the real files
        ]
    ).to_parquet(tmp_path / "multiple_choice" / "validation-00000-of-00001.parquet")
    (tmp_path / "README.md").write_text(README)

    hub = load_truthfulqa_hub(str(tmp_path), cache_dir=str(tmp_path / "cache"))
    assert hub.version == "2021"
    assert hub.questions == tuple(sample)
