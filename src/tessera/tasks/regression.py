"""Regression: one number per row, learned standardised (mean 0, spread 1 on the training rows).

Standardising keeps the loss on the same scale whatever the target's units, so one learning
rate suits prices and probabilities alike; predictions and metrics are in the target's units.
"""

from __future__ import annotations

import math
from typing import Any, Sequence

import numpy as np
import pandas as pd
import torch
from torch.nn import functional as F

from tessera.errors import DataError
from tessera.tasks.base import Goal, Task, plain, register_task

SCATTER_POINTS = 2000  # evaluation results: predicted vs true, subsampled


@register_task("regression")
class Regression(Task):
    main_metric = Goal("r2")
    monitor = Goal("loss", higher_is_better=False)
    tabular_learner = "regressor"
    inference_order = 1

    def __init__(self, columns: Sequence[str]) -> None:
        super().__init__(columns)
        self.mean, self.std = 0.0, 1.0

    @classmethod
    def looks_like(cls, frame: pd.DataFrame, columns: Sequence[str]) -> bool:
        """Fractional numbers, or whole numbers with too many distinct values to be classes."""
        y = frame[columns[0]].dropna()
        if pd.api.types.is_float_dtype(y) and not (y % 1 == 0).all():
            return True
        numeric = pd.api.types.is_numeric_dtype(y) and not pd.api.types.is_bool_dtype(y)
        return bool(numeric and y.nunique() > max(20, 0.2 * len(y)))

    # -- target encoding ----------------------------------------------------------------------
    def fit(self, frame: pd.DataFrame) -> "Regression":
        col = self.columns[0]
        y = pd.to_numeric(frame[col], errors="coerce")
        bad = y.isna() & frame[col].notna()
        if bad.any():
            row = bad.idxmax()
            raise DataError(
                f"a regression target must be a number, found {frame[col][row]!r:.40}", row=int(row), column=col
            )
        if y.notna().sum() < 2:
            raise DataError("a regression target needs at least two known values", column=col)
        self.mean, self.std = float(y.mean()), float(y.std()) or 1.0
        return self

    @property
    def num_outputs(self) -> int:
        return 1

    def encode(self, frame: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
        col = frame[self.columns[0]]
        y = pd.to_numeric(col, errors="coerce").to_numpy(np.float64)
        known = col.notna().to_numpy() & ~np.isnan(y)
        return np.nan_to_num((y - self.mean) / self.std).astype(np.float32), known

    def decode(self, encoded: np.ndarray) -> np.ndarray:
        return encoded * self.std + self.mean

    def target_cells(self, label: Any) -> dict[str, Any]:
        """A finite number (text that reads as one is taken as it)."""
        value = math.nan
        if isinstance(label, (str, int, float)) and not isinstance(label, bool):
            try:
                value = float(label)
            except (ValueError, OverflowError):
                pass
        if not math.isfinite(value):
            raise DataError(f"a regression correction is one finite number, got {type(label).__name__} {str(label)[:60]}")
        return {self.columns[0]: value}

    def fitted_state(self) -> dict[str, Any]:
        return {"mean": self.mean, "std": self.std}

    def load_fitted_state(self, state: dict[str, Any]) -> None:
        self.mean, self.std = state["mean"], state["std"]

    # -- training ------------------------------------------------------------------------------
    def loss(self, outputs: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return F.mse_loss(outputs.squeeze(-1), target.float())

    # -- predictions ---------------------------------------------------------------------------
    def predictions(self, outputs: torch.Tensor, rows: np.ndarray) -> pd.Series:
        return pd.Series(self.decode(outputs.squeeze(-1).numpy()), index=rows, name=self.columns[0])

    def served(self, outputs: torch.Tensor) -> list[dict[str, Any]]:
        return [{"value": plain(v)} for v in self.decode(outputs.squeeze(-1).numpy())]

    # -- evaluation ----------------------------------------------------------------------------
    def scores(self, outputs: torch.Tensor) -> np.ndarray:
        return np.asarray(self.decode(outputs.squeeze(-1).numpy()), dtype=np.float64)

    def true_values(self, target: torch.Tensor) -> np.ndarray:
        return np.asarray(self.decode(target.numpy()), dtype=np.float64)

    def outputs_from_scores(self, scores: np.ndarray) -> torch.Tensor:
        """Values back in the standardised units the model outputs."""
        standard = (np.asarray(scores, np.float64) - self.mean) / self.std
        return torch.from_numpy(standard).float().unsqueeze(-1)

    def summary_metrics(self, outputs: torch.Tensor, target: torch.Tensor) -> dict[str, float]:
        from sklearn import metrics as skm

        pred, true = self.decode(outputs.squeeze(-1).numpy()), self.decode(target.numpy())
        return {
            "mae": float(skm.mean_absolute_error(true, pred)),
            "rmse": float(np.sqrt(skm.mean_squared_error(true, pred))),
            "r2": float(skm.r2_score(true, pred)),
            "n": int(len(true)),
        }

    def metrics(self) -> dict[str, Any]:
        from tessera.evaluate import metrics as m

        return {"mae": m.mae, "rmse": m.rmse, "r2": m.r2}

    def per_row_outcome(self, y_true: np.ndarray, scores: np.ndarray) -> np.ndarray:
        """Absolute error: what a paired comparison of two regressors pairs."""
        return np.abs(y_true - scores)

    def paired_gain(self, fused: np.ndarray, baseline: np.ndarray, **options: Any) -> dict[str, Any]:
        from tessera.evaluate.compare import paired_error_reduction

        return {**paired_error_reduction(fused, baseline, **options), "measure": "MAE reduction"}

    def per_row_loss(self, y_true: np.ndarray, scores: np.ndarray) -> np.ndarray:
        return np.abs(y_true - scores)

    def describe_row(self, y_true: Any, scores: Any) -> dict[str, Any]:
        return {"true": float(y_true), "predicted": float(scores)}

    def group_metrics(self, y_true: np.ndarray, y_pred: np.ndarray) -> dict[str, float]:
        from sklearn import metrics as skm

        return {
            "mae": float(skm.mean_absolute_error(y_true, y_pred)),
            "rmse": float(skm.root_mean_squared_error(y_true, y_pred)),
        }

    def report_sections(self, y_true: np.ndarray, scores: np.ndarray, seed: int) -> dict[str, Any]:
        keep = np.random.default_rng(seed).permutation(len(y_true))[:SCATTER_POINTS]
        return {"scatter": {"true": y_true[keep].tolist(), "predicted": scores[keep].tolist()}}
