"""Encoding what the model predicts: class indices, standardised values, or 0/1 label vectors."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from tessera.errors import DataError, SchemaError


class TargetEncoder:
    """Learns the label space from the training rows; encodes any split, decodes predictions."""

    def __init__(self, columns: list[str], task: str) -> None:
        self.columns = list(columns)
        self.task = task
        self.classes: list[Any] = []
        self.mean = 0.0
        self.std = 1.0

    @property
    def num_outputs(self) -> int:
        if self.task == "multiclass":
            return len(self.classes)
        if self.task == "multilabel":
            return len(self.columns)
        return 1

    def fit(self, df: pd.DataFrame) -> "TargetEncoder":
        col = self.columns[0]
        if self.task == "multiclass":
            y = df[col].dropna()
            classes = sorted(pd.unique(y), key=lambda v: (str(type(v)), v) if isinstance(v, (int, float, np.number)) else (str(type(v)), str(v)))
            classes = [v.item() if isinstance(v, np.generic) else v for v in classes]
            if len(classes) < 2:
                only = f" ({classes[0]!r})" if classes else ""
                raise DataError(
                    f"the target has {len(classes)} class{only} in the training rows; a classifier needs at least two",
                    column=col,
                )
            self.classes = classes
        elif self.task == "regression":
            y = pd.to_numeric(df[col], errors="coerce")
            bad = y.isna() & df[col].notna()
            if bad.any():
                row = bad.idxmax()
                raise DataError(f"a regression target must be a number, found {df[col][row]!r:.40}", row=int(row), column=col)
            if y.notna().sum() < 2:
                raise DataError("a regression target needs at least two known values", column=col)
            self.mean, self.std = float(y.mean()), float(y.std()) or 1.0
        elif self.task == "multilabel":
            for c in self.columns:
                vals = set(pd.unique(df[c].dropna()))
                if not vals <= {0, 1, True, False}:
                    raise DataError(f"multilabel targets must be 0/1, found {sorted(map(repr, vals))[:5]}", column=c)
        else:
            raise SchemaError(f"unknown task {self.task!r}")
        return self

    def encode(self, df: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
        """Encoded targets and a bool array of rows whose target is known."""
        if self.task == "multilabel":
            block = df[self.columns].apply(pd.to_numeric, errors="coerce")
            known = block.notna().all(axis=1).to_numpy()
            return block.fillna(0).to_numpy(np.float32), known
        col = df[self.columns[0]]
        known = col.notna().to_numpy()
        if self.task == "regression":
            y = pd.to_numeric(col, errors="coerce").to_numpy(np.float64)
            known = known & ~np.isnan(y)
            return np.nan_to_num((y - self.mean) / self.std).astype(np.float32), known
        index = {self._key(c): i for i, c in enumerate(self.classes)}
        out = np.zeros(len(col), dtype=np.int64)
        for pos, (row, v) in enumerate(col.items()):
            if not known[pos]:
                continue
            i = index.get(self._key(v))
            if i is None:
                raise DataError(
                    f"label {v!r} was not seen in training (known: {self.classes[:10]}{'...' if len(self.classes) > 10 else ''})",
                    row=int(row), column=self.columns[0],
                )
            out[pos] = i
        return out, known

    @staticmethod
    def _key(v: Any) -> Any:
        if isinstance(v, (np.generic,)):
            v = v.item()
        if isinstance(v, float) and v.is_integer():
            return int(v)
        return v

    def decode(self, encoded: np.ndarray) -> np.ndarray:
        if self.task == "multiclass":
            return np.asarray(self.classes, dtype=object)[encoded]
        if self.task == "regression":
            return encoded * self.std + self.mean
        return encoded

    def state_dict(self) -> dict[str, Any]:
        return {"columns": self.columns, "task": self.task, "classes": self.classes, "mean": self.mean, "std": self.std}

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> "TargetEncoder":
        enc = cls(state["columns"], state["task"])
        enc.classes, enc.mean, enc.std = list(state["classes"]), state["mean"], state["std"]
        return enc
