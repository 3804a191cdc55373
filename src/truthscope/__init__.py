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

# Heavier entry points (torch, matplotlib, scikit-learn) load on first use: `import truthscope` stays fast.
_LAZY = {
    "run_generation": "truthscope.tasks.generation",
    "score_answers": "truthscope.tasks.generation",
    "read_answers": "truthscope.tasks.generation",
    "run_statements": "truthscope.tasks.statements",
    "load_statements": "truthscope.tasks.statements",
    "load_judges": "truthscope.judges",
    "train_judge": "truthscope.judges",
    "SweepSpec": "truthscope.sweep",
    "load_spec": "truthscope.sweep",
    "run_sweep": "truthscope.sweep",
    "analyse": "truthscope.report",
    "write_report": "truthscope.report",
    "capture": "truthscope.interp.hooks",
    "edit": "truthscope.interp.hooks",
    "hook_names": "truthscope.interp.hooks",
    "Zero": "truthscope.interp.hooks",
    "Scale": "truthscope.interp.hooks",
    "Replace": "truthscope.interp.hooks",
    "Add": "truthscope.interp.hooks",
    "integrated_gradients": "truthscope.interp.attribution",
    "find_truth_neurons": "truthscope.interp.neurons",
    "run_suppression": "truthscope.interp.suppression",
    "load_activations": "truthscope.interp.activations",
    "grouped_split": "truthscope.interp.probes",
    "latent_table": "truthscope.interp.latent",
    "steering": "truthscope.interp.steering",
    "SteeringDirection": "truthscope.interp.steering",
}


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'truthscope' has no attribute {name!r}")


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
    *_LAZY,
]
