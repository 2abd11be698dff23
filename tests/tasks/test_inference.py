"""Schema inference asks the tasks; schemas name tasks by registered name or alias; old saved targets load."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from tessera.errors import SchemaError
from tessera.schema import Schema, infer_schema
from tessera.tasks import Multiclass, Regression, Task, infer_task


def test_each_task_recognises_its_targets():
    rng = np.random.default_rng(0)
    frame = pd.DataFrame({
        "word": ["a", "b"] * 50, "digit": np.arange(100) % 10, "price": rng.normal(size=100),
        "count": np.arange(100), "x": 1, "y": 0,
    })
    assert infer_task(frame, ["word"]) == "multiclass"
    assert infer_task(frame, ["digit"]) == "multiclass"  # few whole numbers: classes
    assert infer_task(frame, ["price"]) == "regression"
    assert infer_task(frame, ["count"]) == "regression"  # many whole numbers: a count
    assert infer_task(frame, ["x", "y"]) == "multilabel"
    schema, _ = infer_schema(frame[["word", "price"]], target="price")
    assert schema.task == "regression"


def test_schema_names_tasks_by_registry():
    inputs = {"a": "text"}
    assert Schema.from_dict({"inputs": inputs, "target": "t", "task": "binary"}).task == Multiclass.name
    with pytest.raises(SchemaError, match=r"task must be one of \['multiclass', 'multilabel', 'regression'"):
        Schema.from_dict({"inputs": inputs, "task": "ranking"})
    with pytest.raises(SchemaError, match="multilabel task needs a list"):
        Schema.from_dict({"inputs": inputs, "target": "t", "task": "multilabel"})


def test_target_encoders_saved_before_tasks_were_objects_still_load():
    # The form TargetEncoder.state_dict wrote: every field, whatever the task.
    old = {"columns": ["label"], "task": "multiclass", "classes": ["no", "yes"], "mean": 0.0, "std": 1.0}
    task = Task.from_state(old)
    assert isinstance(task, Multiclass) and task.classes == ["no", "yes"]
    old = {"columns": ["price"], "task": "regression", "classes": [], "mean": 3.5, "std": 2.0}
    task = Task.from_state(old)
    assert isinstance(task, Regression) and task.decode(np.array([1.0])).tolist() == [5.5]
