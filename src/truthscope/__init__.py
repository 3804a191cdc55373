"""truthscope: measure how language models mimic human falsehoods, and look inside them to see why."""

from truthscope.data import Question, TruthfulQA, load_presets, load_truthfulqa, load_truthfulqa_hub, question_prompt
from truthscope.errors import DataError, TruthscopeError
from truthscope.models import (
    GenerationRequest,
    LanguageModel,
    Loglikelihood,
    LoglikelihoodRequest,
    MockModel,
    load_model,
)
from truthscope.runlog import RunLog, read_run
from truthscope.tasks.multiple_choice import run_multiple_choice

__version__ = "0.1.0"

__all__ = [
    "DataError",
    "GenerationRequest",
    "LanguageModel",
    "Loglikelihood",
    "LoglikelihoodRequest",
    "MockModel",
    "Question",
    "RunLog",
    "TruthfulQA",
    "TruthscopeError",
    "load_model",
    "load_presets",
    "load_truthfulqa",
    "load_truthfulqa_hub",
    "question_prompt",
    "read_run",
    "run_multiple_choice",
]
