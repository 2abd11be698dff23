"""Regression: standardised targets, predictions and metrics in the target's units."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from tessera.errors import DataError, TesseraError
from tessera.tasks import Regression, Task


def fitted() -> Regression:
    return Regression(["price"]).fit(pd.DataFrame({"price": [10.0, 20.0, None, 30.0]}))


def test_standardised_round_trip_and_bad_values():
    task = fitted()
    assert (task.mean, task.std) == (20.0, 10.0) and task.num_outputs == 1
    encoded, known = task.encode(pd.DataFrame({"price": [30.0, None, 5.0]}))
    assert encoded.tolist() == [1.0, 0.0, -1.5] and known.tolist() == [True, False, True]
    np.testing.assert_allclose(task.decode(encoded[known]), [30.0, 5.0])
    again = Task.from_state(task.state_dict())
    assert isinstance(again, Regression) and (again.mean, again.std) == (20.0, 10.0)
    with pytest.raises(DataError, match=r"row 1, column 'price': a regression target must be a number, found 'lots'"):
        Regression(["price"]).fit(pd.DataFrame({"price": [1.0, "lots", 2.0]}))


def test_loss_outputs_and_metrics():
    task = fitted()
    out, y = torch.tensor([[1.0], [0.0], [-1.0]]), torch.tensor([1.0, 0.5, -1.0])
    assert task.loss(out, y) == pytest.approx(0.25 / 3)
    assert set(task.quick_score(out, y)) == {"loss"} and not task.monitor.higher_is_better
    assert task.predictions(out, np.array([4, 5, 6])).tolist() == [30.0, 20.0, 10.0]
    assert task.served(out[:1]) == [{"value": 30.0}]
    with pytest.raises(TesseraError, match="use predict"):
        task.probabilities(out, np.arange(3))
    summary = task.summary_metrics(out, y)
    assert summary["mae"] == pytest.approx(5.0 / 3) and summary["n"] == 3  # in the target's units
    true, scores = task.true_values(y), task.scores(out)
    assert true.tolist() == [30.0, 25.0, 10.0] and task.main_metric.metric == "r2"
    assert task.main_score(true, scores) == pytest.approx(1 - 25 / ((30 - 65 / 3) ** 2 + (25 - 65 / 3) ** 2 + (10 - 65 / 3) ** 2))
    assert task.per_row_outcome(true, scores).tolist() == [0.0, 5.0, 0.0]
    assert task.describe_row(true[1], scores[1]) == {"true": 25.0, "predicted": 20.0}
    gain = task.paired_gain(np.array([0.0, 1.0, 0.0]), np.array([1.0, 1.0, 1.0]), n_boot=20)
    assert gain["gain"] == pytest.approx(2 / 3) and gain["measure"] == "MAE reduction"
    assert task.group_metrics(true, scores)["mae"] == pytest.approx(5 / 3)
    assert task.report_sections(true, scores, seed=0)["scatter"]["true"].__len__() == 3
