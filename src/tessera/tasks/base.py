"""The contract every task follows, and the registry that creates tasks by name.

A task is what the model predicts (AutoGluon's problem types, as registered objects). It
owns every decision that depends on that: how target cells become training targets and
predictions become labels again, the loss, what ``predict``/``predict_proba`` and the
server return, the quick score training watches, the metrics an evaluation reports, what
"this row was right" means for comparisons, reports and fairness, and whether a target
column looks like it. The rest of the library asks the task and never compares its name,
so a new task (ordinal, text generation ...) is one new file in this package.

A task instance is fitted on the training rows (classes, mean and spread) and saved with
the model; :meth:`Task.from_state` reads what :meth:`Task.state_dict` wrote, including the
target encoders saved before tasks were objects (``{"columns", "task", "classes", "mean", "std"}``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable, ClassVar, Sequence

import numpy as np
import pandas as pd
import torch

from tessera.errors import DataError, SchemaError, TesseraError
from tessera.registry import Registry

if TYPE_CHECKING:
    from tessera.evaluate.metrics import Metric

TASKS: Registry[Task] = Registry("task", "tessera.tasks", attribute="name")
register_task = TASKS.register


@dataclass(frozen=True)
class Goal:
    """A metric to optimise: its name and which way is better."""

    metric: str
    higher_is_better: bool = True

    def better(self, a: float, b: float) -> bool:
        return a > b if self.higher_is_better else a < b


class Task:
    """Base class. Subclasses register with ``@register_task(name)`` and fill in the methods.

    Class attributes say what callers may rely on: ``main_metric`` is what evaluation,
    contribution, robustness and model comparison track; ``monitor`` is the key of
    :meth:`quick_score` that early stopping watches; ``exclusive_classes`` means the target
    is one class index per row and the outputs are logits over those classes (what OGM-GE
    and a contrastive model's classifier need); ``group_analysis`` is False when per-group
    fairness tables are not defined for the task.
    """

    name: ClassVar[str]  # set by @register_task
    main_metric: ClassVar[Goal]
    monitor: ClassVar[Goal] = Goal("loss", higher_is_better=False)
    exclusive_classes: ClassVar[bool] = False
    group_analysis: ClassVar[bool] = True
    # Schema inference asks the tasks in this order whether a target looks like theirs;
    # None: never inferred, the schema must name the task.
    inference_order: ClassVar[int | None] = None
    # Which single-output scikit-learn model fits this task's encoded target (``preset: best``'s
    # gradient boosting, leak detection): "classifier" (class indices, predict_proba gives
    # scores), "regressor" (values in target units), or None (none does: multilabel).
    tabular_learner: ClassVar[str | None] = None

    def __init__(self, columns: Sequence[str]) -> None:
        self.columns = list(columns)
        self.classes: list[Any] = []  # class labels, for tasks that have them

    @property
    def task(self) -> str:
        """The registered name, as saved models and the server's model listing call it."""
        return self.name

    # -- schema --------------------------------------------------------------------------------
    @classmethod
    def check_columns(cls, columns: Sequence[str], source: str) -> None:
        """Raise SchemaError when the schema's target columns cannot be this task's."""

    @classmethod
    def looks_like(cls, frame: pd.DataFrame, columns: Sequence[str]) -> bool:
        """Whether schema inference should pick this task for these target columns."""
        return False

    # -- target encoding ----------------------------------------------------------------------
    def fit(self, frame: pd.DataFrame) -> "Task":
        """Learn the label space from the training rows."""
        return self

    @property
    def num_outputs(self) -> int:
        raise NotImplementedError

    def encode(self, frame: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
        """Encoded targets of any split, and a bool array of the rows whose target is known."""
        raise NotImplementedError

    def decode(self, encoded: np.ndarray) -> np.ndarray:
        """Encoded targets (or predictions in that encoding) back in the user's terms."""
        return encoded

    def target_cells(self, label: Any) -> dict[str, Any]:
        """An answer given from outside (a user's correction of a prediction) as the target cells of a training row.

        Raises :class:`~tessera.errors.DataError` when it cannot be one, so a bad correction is
        refused when it is sent rather than when a fine-tune reads it. Default (one target
        column): one finite number, string or boolean that :meth:`encode` accepts.
        """
        if len(self.columns) != 1:
            raise DataError(f"a {self.name} correction gives one value per target column {self.columns}")
        if not (isinstance(label, (str, int, bool)) or (isinstance(label, float) and np.isfinite(label))):
            raise DataError(f"a {self.name} correction is one label (a string or a finite number), "
                            f"got {type(label).__name__} {str(label)[:60]}")
        try:
            _, known = self.encode(pd.DataFrame({self.columns[0]: pd.Series([label], dtype=object)}))
        except DataError as e:
            raise DataError(e.reason) from None
        if not known[0]:
            raise DataError(f"{label!r} is not a value of the {self.name} target {self.columns[0]!r}")
        return {self.columns[0]: label}

    def fitted_state(self) -> dict[str, Any]:
        """What ``fit`` learned, JSON-serialisable."""
        return {}

    def load_fitted_state(self, state: dict[str, Any]) -> None:
        return None

    def state_dict(self) -> dict[str, Any]:
        return {"task": self.name, "columns": self.columns, **self.fitted_state()}

    @staticmethod
    def from_state(state: dict[str, Any]) -> "Task":
        task = TASKS.create(state["task"], state["columns"])
        task.load_fitted_state(state)
        return task

    # -- training ------------------------------------------------------------------------------
    def loss(self, outputs: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def quick_score(self, outputs: torch.Tensor, target: torch.Tensor) -> dict[str, float]:
        """Cheap numbers for training-time monitoring; holds ``monitor.metric``."""
        return {"loss": float(self.loss(outputs, target))}

    # -- predictions ---------------------------------------------------------------------------
    def predictions(self, outputs: torch.Tensor, rows: np.ndarray) -> pd.Series | pd.DataFrame:
        """What ``Predictor.predict`` returns, indexed by table row."""
        raise NotImplementedError

    def probabilities(self, outputs: torch.Tensor, rows: np.ndarray) -> pd.DataFrame:
        """What ``Predictor.predict_proba`` returns, indexed by table row."""
        raise TesseraError(
            f"predict_proba is for classification; a {self.name} model has no probabilities: use predict"
        )

    def served(self, outputs: torch.Tensor) -> list[dict[str, Any]]:
        """One JSON-ready answer per row for the server's predict route."""
        raise NotImplementedError

    # -- evaluation ----------------------------------------------------------------------------
    def scores(self, outputs: torch.Tensor) -> np.ndarray:
        """Model outputs as the evaluation metrics take them (probabilities, or values in target units)."""
        raise NotImplementedError

    def true_values(self, target: torch.Tensor) -> np.ndarray:
        """Encoded targets as the evaluation metrics take them."""
        raise NotImplementedError

    def outputs_from_scores(self, scores: np.ndarray) -> torch.Tensor:
        """The inverse of :meth:`scores`: model outputs that give back these scores.

        An ensemble averages its members' scores (probabilities, values); turned back into
        outputs, they predict, serve and score through the task's own methods like one model's.
        """
        raise NotImplementedError

    def summary_metrics(self, outputs: torch.Tensor, target: torch.Tensor) -> dict[str, float]:
        """Point metrics without intervals: ``Predictor.evaluate`` and the test metrics saved by fit."""
        raise NotImplementedError

    def metrics(self) -> dict[str, Metric]:
        """Every metric of a full evaluation, ``(y_true, scores) -> float``, bootstrapped there."""
        raise NotImplementedError

    def main_score(self, y_true: np.ndarray, scores: np.ndarray) -> float:
        return self.metrics()[self.main_metric.metric](y_true, scores)

    def per_row_outcome(self, y_true: np.ndarray, scores: np.ndarray) -> np.ndarray:
        """Per row: correct (bool) for classification, absolute error for values; what paired comparisons pair."""
        raise NotImplementedError

    def paired_gain(self, fused: np.ndarray, baseline: np.ndarray, **options: Any) -> dict[str, Any]:
        """How much better ``fused`` does than ``baseline`` from their per-row outcomes (correctness here).

        ``options``: n_boot, alpha, seed of the paired bootstrap.
        """
        from tessera.evaluate.compare import paired_gain

        gain = paired_gain(fused, baseline, **options)
        gain["measure"] = self.main_metric.metric.replace("_", " ") + " gain"
        return gain

    def per_row_loss(self, y_true: np.ndarray, scores: np.ndarray) -> np.ndarray:
        """How wrong each row is, to pick the worst examples for the report."""
        raise NotImplementedError

    def describe_row(self, y_true: Any, scores: np.ndarray) -> dict[str, Any]:
        """One row's truth and prediction for a person (``true``, ``predicted``, maybe ``confidence``)."""
        raise NotImplementedError

    def point_predictions(self, scores: np.ndarray) -> np.ndarray:
        """Scores as one decision per row (class index or value), what per-group metrics compare."""
        return scores

    def group_metrics(self, y_true: np.ndarray, y_pred: np.ndarray) -> dict[str, float]:
        """The metrics of one group of rows in the fairness tables (see ``group_analysis``)."""
        raise NotImplementedError

    def parity_gaps(
        self, y_true: np.ndarray, y_pred: np.ndarray, groups: np.ndarray, n_classes: int | None
    ) -> dict[str, float]:
        """Parity gaps between groups, for tasks whose decisions are classes; none by default."""
        return {}

    def report_sections(self, y_true: np.ndarray, scores: np.ndarray, seed: int) -> dict[str, Any]:
        """Extra sections of the evaluation results (confusion matrix, calibration, scatter ...)."""
        return {}


def create_task(name: str, columns: Sequence[str], **options: Any) -> Task:
    """A task by registered name (or alias) over the target ``columns``."""
    return TASKS.create(name, list(columns), **options)


def infer_task(frame: pd.DataFrame, columns: Sequence[str]) -> str:
    """The name of the first task, in ``inference_order``, whose ``looks_like`` accepts the target."""
    candidates = sorted(
        (TASKS[n] for n in TASKS if TASKS[n].inference_order is not None), key=lambda cls: cls.inference_order
    )
    for cls in candidates:
        if cls.looks_like(frame, columns):
            return cls.name
    raise SchemaError(f"no task recognises the target column(s) {list(columns)}; name one in the schema ('task:')")


def tasks_where(condition: Callable[[type[Task]], bool]) -> list[str]:
    """Registered task names whose class satisfies ``condition``, for error messages."""
    return [n for n in TASKS if condition(TASKS[n])]


def plain(v: Any) -> Any:
    """A NumPy scalar as the Python value JSON takes."""
    return v.item() if isinstance(v, np.generic) else v
