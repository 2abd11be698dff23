"""Multilabel: 0/1 columns, independent sigmoids, a row right only when every label is."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch
from torch.nn import functional as F

from tessera.errors import DataError, SchemaError
from tessera.tasks import Multilabel, Task

LOGITS = torch.tensor([[2.0, -1.0], [-3.0, -2.0], [1.0, 1.0]])
Y = torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])  # row 1 misses its second label


def fitted() -> Multilabel:
    return Multilabel(["dog", "outdoor"]).fit(pd.DataFrame({"dog": [1, 0, 1], "outdoor": [0, 1, None]}))


def test_encoding_and_checks():
    task = fitted()
    encoded, known = task.encode(pd.DataFrame({"dog": [1, 0], "outdoor": [None, 1]}))
    assert encoded.tolist() == [[1.0, 0.0], [0.0, 1.0]] and known.tolist() == [False, True]
    assert task.num_outputs == 2 and Task.from_state(task.state_dict()).columns == ["dog", "outdoor"]
    with pytest.raises(DataError, match="column 'dog': multilabel targets must be 0/1"):
        Multilabel(["dog", "outdoor"]).fit(pd.DataFrame({"dog": [2, 0], "outdoor": [0, 1]}))
    with pytest.raises(SchemaError, match="list of 0/1 target columns"):
        Multilabel.check_columns(["dog"], "schema")


def test_loss_outputs_and_metrics():
    task = fitted()
    assert task.loss(LOGITS, Y) == pytest.approx(float(F.binary_cross_entropy_with_logits(LOGITS, Y)))
    assert task.quick_score(LOGITS, Y)["accuracy"] == pytest.approx(5 / 6)  # per label
    rows = np.arange(3)
    assert task.predictions(LOGITS, rows).to_numpy().tolist() == [[1, 0], [0, 0], [1, 1]]
    assert list(task.probabilities(LOGITS, rows).columns) == ["dog", "outdoor"]
    assert task.served(LOGITS)[1]["labels"] == [] and task.served(LOGITS)[2]["labels"] == ["dog", "outdoor"]
    y, scores = task.true_values(Y), task.scores(LOGITS)
    assert task.summary_metrics(LOGITS, Y)["subset_accuracy"] == pytest.approx(2 / 3)
    assert task.main_score(y, scores) == pytest.approx(2 / 3)
    assert task.per_row_outcome(y, scores).tolist() == [True, False, True]
    assert task.per_row_loss(y, scores).argmax() == 1
    assert task.describe_row(y[1], scores[1]) == {"true": "outdoor", "predicted": "(none)"}
    assert task.paired_gain(np.array([1, 1, 1]), np.array([1, 0, 1]), n_boot=20)["measure"] == "subset accuracy gain"
    assert not task.group_analysis and task.report_sections(y, scores, 0) == {}
