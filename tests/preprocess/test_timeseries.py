"""Time series cells: parsing, standardising, fixing the length, masks and errors."""

from __future__ import annotations

import json
import re

import numpy as np
import pandas as pd
import pytest

from tessera.errors import DataError, SchemaError
from tessera.preprocess.base import LoadContext, Preprocessor, collate_samples, load_located
from tessera.preprocess.timeseries import TimeseriesPreprocessor

NAN = float("nan")


def load(pre: TimeseriesPreprocessor, value, row: int = 0):
    return load_located(pre, (value,), LoadContext(row=row))


def test_fit_learns_per_channel_mean_and_std_ignoring_nan_and_missing() -> None:
    rows = [None, [[1.0, 10.0], [3.0, NAN]], "[[5, 50], [null, 70]]", NAN, np.array([[7.0, 20.0]])]
    pre = TimeseriesPreprocessor(["s"], length=4).fit(pd.DataFrame({"s": rows}))
    assert pre.channels == 2  # inferred from the first non-missing row
    np.testing.assert_allclose(pre.mean, [np.mean([1, 3, 5, 7]), np.mean([10, 50, 70, 20])])
    np.testing.assert_allclose(pre.std, [np.std([1, 3, 5, 7]), np.std([10, 50, 70, 20])])
    s = load(pre, [[4.0, 37.5]])
    np.testing.assert_allclose(s.data[0], [0.0, 0.0], atol=1e-6)


def test_constant_channel_keeps_unit_scale() -> None:
    pre = TimeseriesPreprocessor(["s"], length=2).fit(pd.DataFrame({"s": [[2.0, 2.0], [2.0]]}))
    assert pre.std.tolist() == [1.0]
    assert load(pre, [3.0]).data[:, 0].tolist() == [1.0, 0.0]


def test_pad_mode_crops_and_pads_with_mask() -> None:
    pre = TimeseriesPreprocessor(["s"], length=5, channels=1)
    short = load(pre, [1, 2, 3])
    assert short.data.shape == (5, 1) and short.data.dtype == np.float32
    assert short.data[:, 0].tolist() == [1, 2, 3, 0, 0]
    assert short.mask.tolist() == [True, True, True, False, False]
    long = load(pre, list(range(10)))
    assert long.data[:, 0].tolist() == [0, 1, 2, 3, 4] and long.mask.all()


def test_interpolate_mode_resamples_the_whole_series() -> None:
    pre = TimeseriesPreprocessor(["s"], length=5, mode="interpolate")
    s = load(pre, [0.0, 10.0])
    assert s.data[:, 0].tolist() == [0.0, 2.5, 5.0, 7.5, 10.0] and s.mask.all()
    down = load(pre, list(range(9)))
    assert down.data.shape == (5, 1) and down.data[:, 0].tolist() == [0, 2, 4, 6, 8]
    assert load(pre, [3.0]).data[:, 0].tolist() == [3.0] * 5


def test_nan_steps_are_masked_and_filled_with_zero() -> None:
    pre = TimeseriesPreprocessor(["s"], length=4, channels=2)
    s = load(pre, [[1.0, NAN], [NAN, NAN], [3.0, 4.0]])
    assert s.mask.tolist() == [True, False, True, False]
    assert not np.isnan(s.data).any()
    assert s.data.tolist() == [[1, 0], [0, 0], [3, 4], [0, 0]]


def test_interpolate_bridges_nan_gaps() -> None:
    pre = TimeseriesPreprocessor(["s"], length=3, mode="interpolate", channels=2)
    s = load(pre, "[[0, null], [null, null], [4, 8]]")
    assert s.data.tolist() == [[0, 8], [2, 8], [4, 8]] and s.mask.all()


def test_json_strings_parquet_arrays_and_missing_cells() -> None:
    pre = TimeseriesPreprocessor(["s"], length=3)
    assert load(pre, "[1, 2.5, null]").data[:, 0].tolist() == [1.0, 2.5, 0.0]
    assert pre.channels == 1
    two = TimeseriesPreprocessor(["s"], length=2)
    nested = np.array([np.array([1.0, 2.0]), np.array([3.0, 4.0])], dtype=object)  # how parquet lists arrive
    assert load(two, nested).data.tolist() == [[1, 2], [3, 4]]
    assert load(two, "[[1, 2], [3, 4]]").data.tolist() == [[1, 2], [3, 4]]
    for value in (None, NAN, "", "  ", pd.NA, "[]", [NAN, NAN], "[null]"):
        assert load(pre, value) is None


def test_empty_and_collate() -> None:
    pre = TimeseriesPreprocessor(["s"], length=3, channels=2)
    assert pre.empty().data.shape == (3, 2) and not pre.empty().mask.any()
    batch = collate_samples(pre, [load(pre, [[1, 2]]), None])
    assert tuple(batch.data.shape) == (2, 3, 2) and batch.mask.tolist() == [[True, False, False], [False] * 3]
    with pytest.raises(SchemaError, match="unknown channel count"):
        TimeseriesPreprocessor(["s"]).empty()


def test_state_round_trip_gives_identical_output() -> None:
    frame = pd.DataFrame({"s": ["[[1, 2], [3, 5]]", [[10, -2], [0, 1], [4, 4]]]})
    pre = TimeseriesPreprocessor(["s"], length=6, mode="interpolate").fit(frame)
    state = json.loads(json.dumps(pre.state_dict()))
    again = Preprocessor.from_state(state)
    assert isinstance(again, TimeseriesPreprocessor) and again.channels == 2
    for value in frame["s"]:
        a, b = load(pre, value), load(again, value)
        assert np.array_equal(a.data, b.data) and np.array_equal(a.mask, b.mask)


@pytest.mark.parametrize("options", [{"length": 0}, {"mode": "stretch"}, {"channels": 0}])
def test_bad_options_are_schema_errors(options: dict) -> None:
    with pytest.raises(SchemaError):
        TimeseriesPreprocessor(["s"], **options)


@pytest.mark.parametrize(
    "value, reason",
    [
        ([[1, 2, 3]], "expected 2 channel(s) per time step, got 3: [[1, 2, 3]]"),
        ([1, 2], "expected 2 channel(s) per time step, got 1: [1, 2]"),
        ([1, "a", 3], "time series has a non-numeric entry 'a' in [1, 'a', 3]"),
        ('[[1, 2], [3, "x"]]', "time series has a non-numeric entry 'x' in [[1, 2], [3, 'x']]"),
        ([[1, 2], [3]], "time series rows have different lengths [1, 2] (ragged): [[1, 2], [3]]"),
        ([[1, 2], 3], "time series mixes numbers and lists: [[1, 2], 3]"),
        ([[[1, 2]]], "time series is nested more than two levels deep"),
        ("[1, 2", "time series text is not a JSON list"),
        (5, "expected a list of numbers or a list of lists, got int 5"),
        ({"a": 1}, "expected a list of numbers or a list of lists, got dict {'a': 1}"),
        ([1.0, float("inf")], "time series contains an infinite value"),
    ],
)
def test_bad_cells_name_row_column_and_value(value, reason: str) -> None:
    pre = TimeseriesPreprocessor(["sensor"], length=4, channels=2)
    with pytest.raises(DataError, match=re.escape(f"row 9, column 'sensor': {reason}")):
        load(pre, value, row=9)


def test_long_bad_values_are_shortened_in_messages() -> None:
    pre = TimeseriesPreprocessor(["s"], channels=1)
    with pytest.raises(DataError) as err:
        load(pre, [1] * 500 + ["oops"])
    assert "'oops'" in str(err.value) and len(str(err.value)) < 200


def test_fit_errors_name_the_row() -> None:
    frame = pd.DataFrame({"s": [[1.0, 2.0], None, "[1, 2, true, \"bad\"]"]})
    with pytest.raises(DataError, match=re.escape("row 2, column 's': time series has a non-numeric entry 'bad'")):
        TimeseriesPreprocessor(["s"]).fit(frame)
    with pytest.raises(DataError, match="column 's': .*set the 'channels' option"):
        TimeseriesPreprocessor(["s"]).fit(pd.DataFrame({"s": [None, "[]"]}))
    assert TimeseriesPreprocessor(["s"], channels=3).fit(pd.DataFrame({"s": [None]})).mean.tolist() == [0, 0, 0]
