"""All numeric columns of a table as one standardised feature vector.

Grouping the columns into one input gives the model a single tabular token stream
with a per-feature mask, so a missing cell is "unknown", never a fake zero.
Means and standard deviations come from the training rows only, so validation and
test data are scaled the way the model saw data while learning.
"""

from __future__ import annotations

import math
from typing import Any, Sequence

import numpy as np
import pandas as pd

from tessera.errors import DataError, SchemaError, TesseraError
from tessera.media import is_missing
from tessera.preprocess.base import GAUSSIAN, LoadContext, Preprocessor, Sample, register


@register("numeric")
class NumericPreprocessor(Preprocessor):
    """Standardise each column to ``(x - mean) / std``, clipped to ``±clip`` (None: no clipping).

    Output: ``data`` float32 (n_columns,) with 0 where missing, ``mask`` bool (n_columns,).
    NaN and ±inf count as missing. Clipping keeps a single outlier from dominating a batch.
    """

    default_encoder = "numeric_mlp"
    noise = GAUSSIAN  # in standardised units

    multi_column = True

    def __init__(self, columns: Sequence[str], clip: float | None = 5.0) -> None:
        super().__init__(columns)
        if clip is not None and not clip > 0:
            raise SchemaError(f"numeric clip must be a positive number or null, got {clip!r}")
        self.clip = clip
        self._mean: np.ndarray | None = None
        self._std: np.ndarray | None = None

    def fit(self, frame: pd.DataFrame) -> "NumericPreprocessor":
        means, stds = [], []
        for col in self.columns:
            values = _column_as_float(frame[col], col)
            finite = values[np.isfinite(values)]
            mean = float(finite.mean()) if finite.size else 0.0
            std = float(finite.std()) if finite.size else 1.0
            means.append(mean)
            stds.append(std if std > 0 and math.isfinite(std) else 1.0)  # constant column: nothing to scale
        self._mean = np.asarray(means, dtype=np.float64)
        self._std = np.asarray(stds, dtype=np.float64)
        return self

    def load(self, values: Sequence[Any], ctx: LoadContext) -> Sample | None:
        if self._mean is None or self._std is None:
            raise TesseraError(
                f"numeric columns {self.columns} have no statistics yet: "
                "fit the numeric preprocessor on training data first"
            )
        raw = np.zeros(len(self.columns), dtype=np.float64)
        mask = np.zeros(len(self.columns), dtype=bool)
        for i, (col, value) in enumerate(zip(self.columns, values)):
            x = _to_float(value, col)
            if math.isfinite(x):
                raw[i], mask[i] = x, True
        if not mask.any():
            return None
        scaled = (raw - self._mean) / self._std
        if self.clip is not None:
            scaled = np.clip(scaled, -self.clip, self.clip)
        return Sample(data=np.where(mask, scaled, 0.0).astype(np.float32), mask=mask)

    def empty(self) -> Sample:
        n = len(self.columns)
        return Sample(data=np.zeros(n, dtype=np.float32), mask=np.zeros(n, dtype=bool))

    def encoder_facts(self) -> dict[str, Any]:
        return {"n_features": len(self.columns), "n_numeric": len(self.columns)}

    @classmethod
    def check_column(cls, col: pd.Series, column: str) -> None:
        values = col.dropna()
        if len(values) == 0 or pd.api.types.is_numeric_dtype(col) or pd.api.types.is_bool_dtype(col):
            return
        bad = pd.to_numeric(values, errors="coerce").isna()
        if bad.any():
            row = bad.idxmax()
            raise DataError(f"a numeric column holds a non-number: {values[row]!r:.40}", row=int(row), column=column)

    def reference_statistics(self) -> dict[str, tuple[float, float]]:
        if self._mean is None or self._std is None:
            return {}
        return {c: (float(m), float(s)) for c, m, s in zip(self.columns, self._mean, self._std)}

    def fitted_state(self) -> dict[str, Any]:
        if self._mean is None or self._std is None:
            return {}
        return {"mean": self._mean.tolist(), "std": self._std.tolist()}

    def load_fitted_state(self, state: dict[str, Any]) -> None:
        if not state:
            return
        if len(state["mean"]) != len(self.columns) or len(state["std"]) != len(self.columns):
            raise SchemaError(
                f"saved numeric statistics cover {len(state['mean'])} columns, but the input has {self.columns}"
            )
        self._mean = np.asarray(state["mean"], dtype=np.float64)
        self._std = np.asarray(state["std"], dtype=np.float64)


def _column_as_float(series: pd.Series, column: str) -> np.ndarray:
    """The column as float64 with NaN for missing; the first unparsable value is reported with its row."""
    missing = series.map(is_missing).to_numpy(dtype=bool)
    numbers = pd.to_numeric(series.where(~missing), errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan)
    bad = np.flatnonzero(np.isnan(numbers) & ~missing)
    if bad.size:
        label = series.index[bad[0]]
        value = series.iloc[bad[0]]
        raise DataError(
            f"not a number: {value!r:.60} ({bad.size} such value(s) in the training rows); "
            "numeric columns must hold numbers or be empty, or declare the column as categorical/text",
            row=int(label) if isinstance(label, (int, np.integer)) else None,
            column=column,
        )
    return numbers


def _to_float(value: Any, column: str) -> float:
    """One cell as a float (NaN when missing), parsed like ``fit`` parses the column."""
    if is_missing(value):
        return math.nan
    if isinstance(value, (bytes, bytearray, memoryview)):
        raise DataError(f"not a number: {len(value)} bytes", column=column)
    try:
        return float(pd.to_numeric(value))
    except (ValueError, TypeError):
        raise DataError(f"not a number: {value!r:.60}", column=column) from None
