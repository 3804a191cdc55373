"""truthscope: measure how language models mimic human falsehoods, and look inside them to see why."""

from typing import TYPE_CHECKING

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
from truthscope.runlog import ModelFacts, RunConfig, RunLog, Sample, read_run
from truthscope.tasks import TASKS, Resources, Task, build_task, evaluate
from truthscope.tasks.base import run_task

__version__ = "0.2.0"

if TYPE_CHECKING:  # the lazy exports below, visible to type checkers
    from truthscope.interp.activations import load_activations  # noqa: F401
    from truthscope.interp.attribution import integrated_gradients  # noqa: F401
    from truthscope.interp.hooks import Add, Replace, Scale, Zero, capture, edit, hook_names  # noqa: F401
    from truthscope.interp.latent import latent_table  # noqa: F401
    from truthscope.interp.neurons import find_truth_neurons  # noqa: F401
    from truthscope.interp.probes import grouped_split  # noqa: F401
    from truthscope.interp.steering import SteeringDirection, steering  # noqa: F401
    from truthscope.judges import load_judges, load_scorers, train_judge  # noqa: F401
    from truthscope.models.facts import model_facts  # noqa: F401
    from truthscope.report import analyse, write_report  # noqa: F401
    from truthscope.sweep import SweepSpec, load_spec, run_sweep  # noqa: F401
    from truthscope.tasks.generation import read_answers, score_answers  # noqa: F401
    from truthscope.tasks.statements import load_statements  # noqa: F401

# Heavier entry points (torch, matplotlib, scikit-learn) load on first use: `import truthscope` stays fast.
_LAZY = {
    "score_answers": "truthscope.tasks.generation",
    "read_answers": "truthscope.tasks.generation",
    "load_statements": "truthscope.tasks.statements",
    "model_facts": "truthscope.models.facts",
    "load_judges": "truthscope.judges",
    "load_scorers": "truthscope.judges",
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
    "TASKS",
    "DataError",
    "GenerationRequest",
    "LanguageModel",
    "Loglikelihood",
    "LoglikelihoodRequest",
    "MockModel",
    "ModelFacts",
    "Question",
    "Resources",
    "RunConfig",
    "RunLog",
    "Sample",
    "Task",
    "TruthfulQA",
    "TruthscopeError",
    "build_task",
    "evaluate",
    "load_model",
    "load_presets",
    "load_truthfulqa",
    "load_truthfulqa_hub",
    "question_prompt",
    "read_run",
    "run_task",
    "score_answers",
    "read_answers",
    "load_statements",
    "model_facts",
    "load_judges",
    "load_scorers",
    "train_judge",
    "SweepSpec",
    "load_spec",
    "run_sweep",
    "analyse",
    "write_report",
    "capture",
    "edit",
    "hook_names",
    "Zero",
    "Scale",
    "Replace",
    "Add",
    "integrated_gradients",
    "find_truth_neurons",
    "load_activations",
    "grouped_split",
    "latent_table",
    "steering",
    "SteeringDirection",
]
