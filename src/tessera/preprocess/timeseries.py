"""Numeric sequences in a cell become fixed-length, standardised ``(length, channels)`` arrays.

A cell holds one series: ``[1, 2, 3]`` (one channel), ``[[x, y, z], ...]`` (T steps of C
channels), a NumPy array, or the same list written as a JSON string, which is how CSV
files store it. Per-channel mean and std come from the training split only, so
validation and predict-time rows are scaled exactly like the rows the model learned on.
"""

from __future__ import annotations

import json
import numbers
from typing import Any, Sequence

import numpy as np
import pandas as pd

from tessera.errors import DataError, SchemaError
from tessera.media import is_missing
from tessera.preprocess.base import GAUSSIAN, LoadContext, Preprocessor, Sample, register

MODE_CHOICES = ("pad", "interpolate")


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def parse_series(value: Any) -> np.ndarray | None:
    """Turn one cell into float64 ``(T, C)``; ``None`` when it holds no finite number at all.

    Missing entries inside a series (``null`` in JSON, ``None``, NaN) become NaN; anything
    else that is not a number is a :class:`DataError` quoting the offending value.
    """
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except json.JSONDecodeError as e:
            raise DataError(f"time series text is not a JSON list ({e.msg}): {_short(value)}") from None
    if isinstance(value, np.ndarray) and value.ndim == 0:
        value = value.item()
    if isinstance(value, np.ndarray) and value.dtype == object:
        value = list(value)  # parquet list<list<float>> cells arrive as object arrays of arrays
    if isinstance(value, numbers.Number) or not isinstance(value, (list, tuple, np.ndarray)):
        raise DataError(f"expected a list of numbers or a list of lists, got {type(value).__name__} {_short(value)}")
    if not isinstance(value, np.ndarray) or value.dtype.kind not in "biuf":
        _check_entries(value)  # float() would quietly accept "1.5"; say what is wrong instead
    try:
        arr = np.asarray(value, dtype=np.float64)
    except (ValueError, TypeError):
        raise DataError(f"cannot read time series {_short(value)}") from None
    if arr.ndim == 1:
        arr = arr[:, None]
    if arr.ndim != 2:
        raise DataError(f"expected a list of numbers or a list of lists, got {arr.ndim} levels of nesting")
    if np.isinf(arr).any():
        raise DataError(f"time series contains an infinite value: {_short(value)}")
    if arr.shape[0] == 0 or arr.shape[1] == 0 or np.isnan(arr).all():
        return None
    return arr


def _missing(value: Any) -> bool:
    """``is_missing`` reads any dict without bytes/path as a missing media record; here a dict is a mistake."""
    return not isinstance(value, dict) and is_missing(value)


def _check_entries(value: Sequence[Any]) -> None:
    """NumPy's 'inhomogeneous shape' says nothing about the user's data; name the bad entry."""
    nested = [isinstance(v, (list, tuple, np.ndarray)) for v in value]
    if any(nested) and not all(nested):
        raise DataError(f"time series mixes numbers and lists: {_short(value)}")
    items = [x for v in value for x in v] if len(value) and all(nested) else value
    for x in items:
        if isinstance(x, (list, tuple, np.ndarray)):
            raise DataError(f"time series is nested more than two levels deep: {_short(value)}")
        if x is not None and not isinstance(x, (numbers.Real, np.bool_)):
            raise DataError(f"time series has a non-numeric entry {_short(x)} in {_short(value)}")
    if len(value) and all(nested):
        lengths = sorted({len(v) for v in value})
        if len(lengths) > 1:
            raise DataError(f"time series rows have different lengths {lengths} (ragged): {_short(value)}")


@register("timeseries")
class TimeseriesPreprocessor(Preprocessor):
    """Series -> ``(length, channels)`` float32 plus a mask of real time steps.

    ``mode="pad"`` keeps the first ``length`` steps and pads the rest with 0 (masked out);
    ``mode="interpolate"`` stretches or squeezes the whole series to ``length`` steps by
    linear interpolation, so every position is valid. Steps where every channel is NaN
    are masked out; remaining NaNs become 0, the training mean after standardising.
    A cell with no finite value at all (``[]``, all NaN) counts as missing.
    """

    default_encoder = "timeseries_gru"
    noise = GAUSSIAN  # in standardised units, on valid time steps

    def __init__(
        self,
        columns: Sequence[str],
        length: int = 128,
        mode: str = "pad",
        channels: int | None = None,
    ) -> None:
        super().__init__(columns)
        if not isinstance(length, int) or isinstance(length, bool) or length <= 0:
            raise SchemaError(f"timeseries option length must be a positive integer, got {length!r}")
        if mode not in MODE_CHOICES:
            raise SchemaError(f"timeseries option mode must be one of {MODE_CHOICES}, got {mode!r}")
        if channels is not None and (not isinstance(channels, int) or isinstance(channels, bool) or channels <= 0):
            raise SchemaError(f"timeseries option channels must be a positive integer, got {channels!r}")
        self.length = length
        self.mode = mode
        self.channels = channels
        self.mean: np.ndarray | None = None
        self.std: np.ndarray | None = None

    # -- learning ---------------------------------------------------------------------------
    def fit(self, frame: pd.DataFrame) -> "TimeseriesPreprocessor":
        """Per-channel mean/std over every finite value of every training row.

        Rows are merged with Chan's parallel update so long or many series never need
        to be concatenated in memory and large offsets do not cancel.
        """
        column = self.columns[0]
        count = mean = m2 = None
        for row, value in enumerate(frame[column]):
            if _missing(value):
                continue
            try:
                arr = self._parse(value)
            except DataError as e:
                raise e.located(row=row, column=column) from None
            if arr is None:
                continue
            n = np.sum(~np.isnan(arr), axis=0).astype(np.float64)
            row_mean = np.nansum(arr, axis=0) / np.maximum(n, 1)  # 0 for a channel that is all NaN here
            row_m2 = np.nansum((arr - row_mean) ** 2, axis=0)
            if count is None:
                count, mean, m2 = n, row_mean, row_m2
                continue
            total = count + n
            delta = row_mean - mean
            safe = np.maximum(total, 1)
            mean = mean + delta * n / safe
            m2 = m2 + row_m2 + delta**2 * count * n / safe
            count = total
        if count is None:
            if self.channels is None:
                raise DataError(
                    "no non-missing time series in the training rows to learn the channel count from; "
                    "set the 'channels' option",
                    column=column,
                )
            count = np.zeros(self.channels)
            mean = np.zeros(self.channels)
            m2 = np.zeros(self.channels)
        std = np.sqrt(m2 / np.maximum(count, 1))
        # A constant (or never observed) channel would divide by ~0; leave its scale alone.
        self.std = np.where(std > 1e-8, std, 1.0)
        self.mean = np.where(count > 0, mean, 0.0)
        return self

    def fitted_state(self) -> dict[str, Any]:
        if self.mean is None or self.std is None:
            return {}
        return {"channels": self.channels, "mean": self.mean.tolist(), "std": self.std.tolist()}

    def load_fitted_state(self, state: dict[str, Any]) -> None:
        if not state:
            return
        self.channels = int(state["channels"])
        self.mean = np.asarray(state["mean"], dtype=np.float64)
        self.std = np.asarray(state["std"], dtype=np.float64)

    # -- per row --------------------------------------------------------------------------------
    def _parse(self, value: Any) -> np.ndarray | None:
        arr = parse_series(value)
        if arr is None:
            return None
        if self.channels is None:
            self.channels = int(arr.shape[1])  # first series seen decides, as documented
        elif arr.shape[1] != self.channels:
            raise DataError(
                f"expected {self.channels} channel(s) per time step, got {arr.shape[1]}: {_short(value)}"
            )
        return arr

    def load(self, values: Sequence[Any], ctx: LoadContext) -> Sample | None:
        value = values[0]
        if _missing(value):
            return None
        arr = self._parse(value)
        if arr is None:
            return None
        if self.mean is not None and self.std is not None:
            arr = (arr - self.mean) / self.std
        if self.mode == "interpolate":
            data = _interpolate(arr, self.length)
            mask = np.ones(self.length, dtype=bool)
        else:
            kept = arr[: self.length]
            data = np.zeros((self.length, arr.shape[1]), dtype=np.float64)
            data[: len(kept)] = kept
            mask = np.zeros(self.length, dtype=bool)
            mask[: len(kept)] = ~np.isnan(kept).all(axis=1)
        return Sample(data=np.nan_to_num(data, nan=0.0).astype(np.float32), mask=mask)

    def empty(self) -> Sample:
        if self.channels is None:
            raise SchemaError(
                f"timeseries column '{self.columns[0]}' has an unknown channel count; call fit() or set 'channels'"
            )
        return Sample(
            data=np.zeros((self.length, self.channels), dtype=np.float32),
            mask=np.zeros(self.length, dtype=bool),
        )

    def encoder_facts(self) -> dict[str, Any]:
        length, channels = self.empty().data.shape  # an unknown channel count fails here, naming the column
        return {"length": length, "channels": channels}

    def describe(self) -> str:
        channels = "?" if self.channels is None else self.channels
        return f"timeseries({self.columns[0]}: {self.length} steps x {channels} channels, {self.mode})"


def _interpolate(arr: np.ndarray, length: int) -> np.ndarray:
    """Linear resampling per channel, skipping NaN steps so gaps are bridged, not spread."""
    steps = arr.shape[0]
    x_new = np.linspace(0.0, steps - 1, length) if steps > 1 else np.zeros(length)
    out = np.zeros((length, arr.shape[1]), dtype=np.float64)
    x = np.arange(steps, dtype=np.float64)
    for c in range(arr.shape[1]):
        ok = ~np.isnan(arr[:, c])
        if ok.any():
            out[:, c] = np.interp(x_new, x[ok], arr[ok, c])
    return out
