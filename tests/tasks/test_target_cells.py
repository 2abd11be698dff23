"""Each task turns a user's correction into the target cells of a training row, or says why it cannot."""

from __future__ import annotations

import math

import pandas as pd
import pytest

from tessera.errors import DataError
from tessera.tasks import Multiclass, Multilabel, Regression


def test_multiclass_takes_a_seen_class_as_that_class() -> None:
    numbers = Multiclass(["label"]).fit(pd.DataFrame({"label": [0, 1, 2, 3]}))
    assert numbers.target_cells(2) == {"label": 2}
    assert numbers.target_cells(2.0) == {"label": 2} and type(numbers.target_cells(2.0)["label"]) is int
    words = Multiclass(["label"]).fit(pd.DataFrame({"label": ["ant", "bee"]}))
    assert words.target_cells("bee") == {"label": "bee"}
    for bad, why in [(9, "not seen in training"), ("2", "not seen in training"), ({"a": 1}, "one label"),
                     ([1], "one label"), (None, "one label"), (math.nan, "one label")]:
        with pytest.raises(DataError, match=why):
            numbers.target_cells(bad)
    with pytest.raises(DataError) as e:
        numbers.target_cells(9)
    assert "row" not in str(e.value)  # a correction is not a row of a table


def test_regression_takes_a_finite_number() -> None:
    task = Regression(["price"]).fit(pd.DataFrame({"price": [10.0, 20.0, 30.0]}))
    assert task.target_cells(12) == {"price": 12.0} and task.target_cells("12.5") == {"price": 12.5}
    for bad in ("cheap", True, math.inf, "1e400", {"v": 1}):
        with pytest.raises(DataError):
            task.target_cells(bad)


def test_multilabel_takes_the_labels_that_apply_or_one_value_per_column() -> None:
    task = Multilabel(["dog", "outdoor"]).fit(pd.DataFrame({"dog": [1, 0, 1], "outdoor": [0, 1, 0]}))
    assert task.target_cells(["dog"]) == {"dog": 1, "outdoor": 0}
    assert task.target_cells({"dog": 0, "outdoor": 1}) == {"dog": 0, "outdoor": 1}
    for bad, why in [(["cat"], "unknown label"), ({"dog": 2, "outdoor": 0}, "0/1"), ({"dog": 1}, "0/1"), (1, "0/1")]:
        with pytest.raises(DataError, match=why):
            task.target_cells(bad)
