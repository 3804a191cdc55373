"""Tasks: what to ask a `LanguageModel`, how to score it; `evaluate` runs any of them into a run log.

The registry `TASKS` maps each name (`mc`, `gen`, `score`, `statements`, ...) to its `Task` class.
"""

from truthscope.tasks.base import TASKS, Resources, Task, TaskOptions, build_task, call_model, evaluate, task_options
from truthscope.tasks.calibration import Calibration
from truthscope.tasks.generation import Generation, Score
from truthscope.tasks.letter_choice import LetterChoice
from truthscope.tasks.multiple_choice import MultipleChoice
from truthscope.tasks.statements import Statements
from truthscope.tasks.sycophancy import Sycophancy

__all__ = [
    "TASKS",
    "Calibration",
    "Generation",
    "LetterChoice",
    "MultipleChoice",
    "Resources",
    "Score",
    "Statements",
    "Sycophancy",
    "Task",
    "TaskOptions",
    "build_task",
    "call_model",
    "evaluate",
    "task_options",
]
