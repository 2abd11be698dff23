"""Tasks: what a model predicts, as registered objects created by name (see :mod:`tessera.tasks.base`)."""

from tessera.tasks.base import TASKS, Goal, Task, create_task, infer_task, register_task, tasks_where

# Importing the modules registers them.
from tessera.tasks.multiclass import Multiclass  # noqa: E402
from tessera.tasks.multilabel import Multilabel  # noqa: E402
from tessera.tasks.regression import Regression  # noqa: E402
from tessera.tasks.text_generation import TextGeneration  # noqa: E402

__all__ = [
    "TASKS",
    "Goal",
    "Multiclass",
    "Multilabel",
    "Regression",
    "Task",
    "TextGeneration",
    "create_task",
    "infer_task",
    "register_task",
    "tasks_where",
]
