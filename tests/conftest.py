"""Shared fixtures: the reference data in ../shared/data and a tiny random Llama-style model."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("TRUTHSCOPE_TEST_DATA", REPO.parent / "shared" / "data"))


@pytest.fixture(scope="session")
def reference_dir() -> Path:
    """The reference copy of the data (../shared/data): what the packaged copy is compared with."""
    if not (SHARED_DATA / "truthfulqa" / "TruthfulQA.csv").exists():
        pytest.skip(f"reference data not found at {SHARED_DATA} (set TRUTHSCOPE_TEST_DATA)")
    return SHARED_DATA


@pytest.fixture(scope="session")
def data_dir() -> Path:
    """The data the tests run on: the reference copy where it is, else the packaged one (a clone
    without ../shared still runs them)."""
    if (SHARED_DATA / "truthfulqa" / "TruthfulQA.csv").exists():
        return SHARED_DATA
    from truthscope.data.files import packaged_data_dir

    return packaged_data_dir()


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory) -> Path:
    """A 3-layer random Llama with a small BPE tokenizer trained here, saved as safetensors."""
    from tiny_models import save_tiny_llama

    return save_tiny_llama(tmp_path_factory.mktemp("tiny-llama"))
