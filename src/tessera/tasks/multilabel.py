"""Multilabel: several 0/1 target columns per row, each its own yes/no (a photo can be 'dog' and 'outdoor').

One logit per label column; a sigmoid gives each label's probability, independently of the
others, and a label is predicted when its probability is above one half (logit above 0).
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np
import pandas as pd
import torch
from torch.nn import functional as F

from tessera.errors import DataError, SchemaError
from tessera.tasks.base import Goal, Task, register_task


@register_task("multilabel")
class Multilabel(Task):
    main_metric = Goal("subset_accuracy")
    monitor = Goal("accuracy")  # per label, over all labels: moves before whole rows come right
    group_analysis = False  # per label it is the binary case; not implemented yet
    inference_order = 0

    @classmethod
    def check_columns(cls, columns: Sequence[str], source: str) -> None:
        if len(columns) < 2:
            raise SchemaError(f"{source}: a multilabel task needs a list of 0/1 target columns")

    @classmethod
    def looks_like(cls, frame: pd.DataFrame, columns: Sequence[str]) -> bool:
        return len(columns) > 1

    # -- target encoding ----------------------------------------------------------------------
    def fit(self, frame: pd.DataFrame) -> "Multilabel":
        for c in self.columns:
            vals = set(pd.unique(frame[c].dropna()))
            if not vals <= {0, 1, True, False}:
                raise DataError(f"multilabel targets must be 0/1, found {sorted(map(repr, vals))[:5]}", column=c)
        return self

    @property
    def num_outputs(self) -> int:
        return len(self.columns)

    def encode(self, frame: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
        block = frame[self.columns].apply(pd.to_numeric, errors="coerce")
        known = block.notna().all(axis=1).to_numpy()
        return block.fillna(0).to_numpy(np.float32), known

    def target_cells(self, label: Any) -> dict[str, Any]:
        """The labels that apply, as a list of target columns (what the server answers), or 0/1 for every column."""
        if isinstance(label, list) and all(isinstance(v, str) for v in label):
            unknown = sorted(set(label) - set(self.columns))
            if unknown:
                raise DataError(f"unknown label(s) {unknown}; the labels are {self.columns}")
            return {c: int(c in label) for c in self.columns}
        if isinstance(label, dict) and set(label) == set(self.columns) and all(v in (0, 1) and not isinstance(v, float) for v in label.values()):
            return {c: int(label[c]) for c in self.columns}
        raise DataError(f"a multilabel correction is the list of labels that apply (of {self.columns}) "
                        f"or 0/1 for each of them, got {str(label)[:80]}")

    # -- training ------------------------------------------------------------------------------
    def loss(self, outputs: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return F.binary_cross_entropy_with_logits(outputs, target.float())

    def quick_score(self, outputs: torch.Tensor, target: torch.Tensor) -> dict[str, float]:
        accuracy = float(((outputs > 0) == (target > 0.5)).float().mean())
        return {**super().quick_score(outputs, target), "accuracy": accuracy}

    # -- predictions ---------------------------------------------------------------------------
    def predictions(self, outputs: torch.Tensor, rows: np.ndarray) -> pd.DataFrame:
        return pd.DataFrame((outputs > 0).int().numpy(), index=rows, columns=self.columns)

    def probabilities(self, outputs: torch.Tensor, rows: np.ndarray) -> pd.DataFrame:
        return pd.DataFrame(torch.sigmoid(outputs).numpy(), index=rows, columns=self.columns)

    def served(self, outputs: torch.Tensor) -> list[dict[str, Any]]:
        proba = torch.sigmoid(outputs).numpy()
        return [
            {
                "labels": [c for c, v in zip(self.columns, p) if v > 0.5],
                "probabilities": {c: float(v) for c, v in zip(self.columns, p)},
            }
            for p in proba
        ]

    # -- evaluation ----------------------------------------------------------------------------
    def scores(self, outputs: torch.Tensor) -> np.ndarray:
        return torch.sigmoid(outputs.double()).numpy()

    def outputs_from_scores(self, scores: np.ndarray) -> torch.Tensor:
        """Logits: the sigmoid gives each label's probability back."""
        p = np.clip(np.asarray(scores, np.float64), 1e-12, 1 - 1e-12)
        return torch.from_numpy(np.log(p) - np.log1p(-p)).float()

    def true_values(self, target: torch.Tensor) -> np.ndarray:
        return target.numpy().astype(np.int64)

    def summary_metrics(self, outputs: torch.Tensor, target: torch.Tensor) -> dict[str, float]:
        from sklearn import metrics as skm

        pred, true = (outputs > 0).int().numpy(), target.numpy().astype(int)
        return {
            "subset_accuracy": float(skm.accuracy_score(true, pred)),
            "macro_f1": float(skm.f1_score(true, pred, average="macro", zero_division=0)),
            "n": int(len(true)),
        }

    def metrics(self) -> dict[str, Any]:
        from tessera.evaluate import metrics as m

        return {"subset_accuracy": m.subset_accuracy, "macro_f1": m.multilabel_macro_f1, "auroc": m.multilabel_auroc}

    def per_row_outcome(self, y_true: np.ndarray, scores: np.ndarray) -> np.ndarray:
        """A row is right when every label is."""
        return ((scores > 0.5) == (y_true > 0)).all(1)

    def per_row_loss(self, y_true: np.ndarray, scores: np.ndarray) -> np.ndarray:
        """Binary cross-entropy summed over the labels."""
        eps = np.finfo(np.float64).eps
        p = np.clip(scores, eps, 1 - eps)
        return -(y_true * np.log(p) + (1 - y_true) * np.log(1 - p)).sum(1)

    def describe_row(self, y_true: Any, scores: np.ndarray) -> dict[str, Any]:
        return {
            "true": ", ".join(c for c, v in zip(self.columns, y_true) if v) or "(none)",
            "predicted": ", ".join(c for c, v in zip(self.columns, scores) if v > 0.5) or "(none)",
        }
