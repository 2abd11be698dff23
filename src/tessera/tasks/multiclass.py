"""Multiclass: one label per row out of a fixed set learned from the training rows (binary included).

The model outputs one logit per class; softmax gives the probabilities and the argmax the
label. Classes are sorted (numbers as numbers, the rest as text) so the output order does
not depend on the order rows arrive in.
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np
import pandas as pd
import torch
from torch.nn import functional as F

from tessera.errors import DataError
from tessera.tasks.base import Goal, Task, plain, register_task


@register_task("multiclass", aliases=("binary",))
class Multiclass(Task):
    main_metric = Goal("accuracy")
    monitor = Goal("accuracy")
    exclusive_classes = True
    tabular_learner = "classifier"
    inference_order = 2  # the fallback: anything that is not several columns or a measured value

    @classmethod
    def looks_like(cls, frame: pd.DataFrame, columns: Sequence[str]) -> bool:
        return True

    # -- target encoding ----------------------------------------------------------------------
    def fit(self, frame: pd.DataFrame) -> "Multiclass":
        col = self.columns[0]
        y = frame[col].dropna()
        classes = sorted(pd.unique(y), key=_sort_key)
        classes = [v.item() if isinstance(v, np.generic) else v for v in classes]
        if len(classes) < 2:
            only = f" ({classes[0]!r})" if classes else ""
            raise DataError(
                f"the target has {len(classes)} class{only} in the training rows; a classifier needs at least two",
                column=col,
            )
        self.classes = classes
        return self

    @property
    def num_outputs(self) -> int:
        return len(self.classes)

    def encode(self, frame: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
        col = frame[self.columns[0]]
        known = col.notna().to_numpy()
        index = {_key(c): i for i, c in enumerate(self.classes)}
        out = np.zeros(len(col), dtype=np.int64)
        for pos, (row, v) in enumerate(col.items()):
            if not known[pos]:
                continue
            i = index.get(_key(v))
            if i is None:
                more = "..." if len(self.classes) > 10 else ""
                raise DataError(
                    f"label {v!r} was not seen in training (known: {self.classes[:10]}{more})",
                    row=int(row), column=self.columns[0],
                )
            out[pos] = i
        return out, known

    def decode(self, encoded: np.ndarray) -> np.ndarray:
        return np.asarray(self.classes, dtype=object)[encoded]

    def target_cells(self, label: Any) -> dict[str, Any]:
        """One of the classes seen in training, as the class itself (``3.0`` for class ``3`` is ``3``)."""
        checked = super().target_cells(label)
        encoded, _ = self.encode(pd.DataFrame({self.columns[0]: pd.Series([label], dtype=object)}))
        found = plain(self.classes[int(encoded[0])])
        if isinstance(label, bool) != isinstance(found, bool):  # True == 1 to a lookup, not to a user
            raise DataError(f"label {label!r} was not seen in training (known: {self.classes[:10]})")
        return {**checked, self.columns[0]: found}

    def fitted_state(self) -> dict[str, Any]:
        return {"classes": self.classes}

    def load_fitted_state(self, state: dict[str, Any]) -> None:
        self.classes = list(state["classes"])

    # -- training ------------------------------------------------------------------------------
    def loss(self, outputs: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(outputs, target.long())

    def quick_score(self, outputs: torch.Tensor, target: torch.Tensor) -> dict[str, float]:
        accuracy = float((outputs.argmax(-1) == target).float().mean())
        return {**super().quick_score(outputs, target), "accuracy": accuracy}

    # -- predictions ---------------------------------------------------------------------------
    def predictions(self, outputs: torch.Tensor, rows: np.ndarray) -> pd.Series:
        return pd.Series(self.decode(outputs.argmax(-1).numpy()), index=rows, name=self.columns[0])

    def probabilities(self, outputs: torch.Tensor, rows: np.ndarray) -> pd.DataFrame:
        return pd.DataFrame(torch.softmax(outputs, -1).numpy(), index=rows, columns=[str(c) for c in self.classes])

    def served(self, outputs: torch.Tensor) -> list[dict[str, Any]]:
        proba = torch.softmax(outputs, -1).numpy()
        return [
            {
                "label": plain(self.classes[int(p.argmax())]),
                "probabilities": {str(c): float(v) for c, v in zip(self.classes, p)},
            }
            for p in proba
        ]

    # -- evaluation ----------------------------------------------------------------------------
    def scores(self, outputs: torch.Tensor) -> np.ndarray:
        return torch.softmax(outputs.double(), -1).numpy()  # float64, so rows sum to 1 as sklearn checks

    def true_values(self, target: torch.Tensor) -> np.ndarray:
        return target.numpy().astype(np.int64)

    def outputs_from_scores(self, scores: np.ndarray) -> torch.Tensor:
        """Log-probabilities: softmax gives the probabilities back."""
        return torch.from_numpy(np.log(np.clip(np.asarray(scores, np.float64), 1e-12, 1.0))).float()

    def summary_metrics(self, outputs: torch.Tensor, target: torch.Tensor) -> dict[str, float]:
        from sklearn import metrics as skm

        pred, true = outputs.argmax(-1).numpy(), target.numpy()
        out = {
            "accuracy": float(skm.accuracy_score(true, pred)),
            "balanced_accuracy": float(skm.balanced_accuracy_score(true, pred)),
            "macro_f1": float(skm.f1_score(true, pred, average="macro")),
        }
        if outputs.shape[-1] == 2:  # a binary target: its usual headline score, threshold-free
            from tessera.evaluate.metrics import auroc

            out["auroc"] = auroc(true, outputs.softmax(-1).numpy())
        return {**out, "n": int(len(true))}

    def metrics(self) -> dict[str, Any]:
        from tessera.evaluate import metrics as m

        return {
            "accuracy": m.accuracy,
            "balanced_accuracy": m.balanced_accuracy,
            "macro_f1": m.macro_f1,
            "auroc": m.auroc,
            "log_loss": m.log_loss,
            "ece": m.ece,
        }

    def per_row_outcome(self, y_true: np.ndarray, scores: np.ndarray) -> np.ndarray:
        return scores.argmax(1) == y_true

    def per_row_loss(self, y_true: np.ndarray, scores: np.ndarray) -> np.ndarray:
        """Cross-entropy of the true class."""
        eps = np.finfo(np.float64).eps
        return -np.log(np.clip(scores[np.arange(len(y_true)), y_true], eps, 1.0))

    def describe_row(self, y_true: Any, scores: np.ndarray) -> dict[str, Any]:
        return {
            "true": str(self.classes[int(y_true)]),
            "predicted": str(self.classes[int(scores.argmax())]),
            "confidence": float(scores.max()),
        }

    def point_predictions(self, scores: np.ndarray) -> np.ndarray:
        return scores.argmax(1)

    def group_metrics(self, y_true: np.ndarray, y_pred: np.ndarray) -> dict[str, float]:
        from sklearn import metrics as skm

        return {
            "accuracy": float(skm.accuracy_score(y_true, y_pred)),
            "macro_f1": float(skm.f1_score(y_true, y_pred, average="macro", zero_division=0)),
        }

    def parity_gaps(
        self, y_true: np.ndarray, y_pred: np.ndarray, groups: np.ndarray, n_classes: int | None
    ) -> dict[str, float]:
        from tessera.evaluate.fairness import demographic_parity_difference, equalized_odds_difference

        k = n_classes if n_classes is not None else int(max(y_true.max(), y_pred.max())) + 1
        return {
            "demographic_parity_difference": demographic_parity_difference(y_pred, groups, k),
            "equalized_odds_difference": equalized_odds_difference(y_true, y_pred, groups, k),
        }

    def report_sections(self, y_true: np.ndarray, scores: np.ndarray, seed: int) -> dict[str, Any]:
        from tessera.evaluate.metrics import confusion, ece, per_class_metrics, reliability

        labels = [str(c) for c in self.classes]
        return {
            "confusion": {"labels": labels, "matrix": confusion(y_true, scores)},
            "per_class": per_class_metrics(y_true, scores, labels),
            "calibration": {**reliability(y_true, scores), "ece": ece(y_true, scores)},
        }


def _sort_key(v: Any) -> tuple[str, Any]:
    """Numbers sort as numbers, everything else as text; mixed types group by type."""
    return (str(type(v)), v) if isinstance(v, (int, float, np.number)) else (str(type(v)), str(v))


def _key(v: Any) -> Any:
    """A label as a lookup key: 3, 3.0 and np.int64(3) are the same class."""
    if isinstance(v, (np.generic,)):
        v = v.item()
    if isinstance(v, float) and v.is_integer():
        return int(v)
    return v
