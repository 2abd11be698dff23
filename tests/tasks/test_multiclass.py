"""Multiclass: class encoding, loss, outputs, metrics and per-row outcome."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch
from torch.nn import functional as F

from tessera.errors import DataError
from tessera.tasks import TASKS, Multiclass, Task

LOGITS = torch.tensor([[2.0, 0.0, 0.0], [0.0, 3.0, 0.0], [0.0, 0.0, 1.0], [4.0, 0.0, 0.0]])
Y = torch.tensor([0, 1, 0, 0])  # row 2 is wrong


def fitted() -> Multiclass:
    return Multiclass(["label"]).fit(pd.DataFrame({"label": ["cat", "ant", None, "bee", "ant"]}))


def test_classes_are_sorted_and_round_trip():
    task = fitted()
    assert task.classes == ["ant", "bee", "cat"] and task.num_outputs == 3
    encoded, known = task.encode(pd.DataFrame({"label": ["bee", None, "cat"]}))
    assert encoded.tolist() == [1, 0, 2] and known.tolist() == [True, False, True]
    assert task.decode(encoded[known]).tolist() == ["bee", "cat"]
    numbers = Multiclass(["y"]).fit(pd.DataFrame({"y": [10, 2, 3, 2]}))
    assert numbers.classes == [2, 3, 10]  # numbers as numbers, not as text
    assert numbers.encode(pd.DataFrame({"y": [3.0, np.int64(10)]}))[0].tolist() == [1, 2]  # 3.0 is class 3


def test_bad_targets_say_which_row_and_why():
    with pytest.raises(DataError, match=r"row 7, column 'label': label 'dog' was not seen in training"):
        fitted().encode(pd.DataFrame({"label": ["dog"]}, index=[7]))
    with pytest.raises(DataError, match="1 class"):
        Multiclass(["label"]).fit(pd.DataFrame({"label": ["a", "a"]}))


def test_state_round_trip_and_binary_alias():
    task = fitted()
    again = Task.from_state(task.state_dict())
    assert isinstance(again, Multiclass) and again.classes == task.classes and again.columns == ["label"]
    assert TASKS.get("binary") is Multiclass


def test_loss_and_quick_score():
    task = fitted()
    assert task.loss(LOGITS, Y) == pytest.approx(float(F.cross_entropy(LOGITS, Y)))
    score = task.quick_score(LOGITS, Y)
    assert score["accuracy"] == 0.75 and score["loss"] == pytest.approx(float(F.cross_entropy(LOGITS, Y)))
    assert task.monitor.metric in score and task.monitor.higher_is_better


def test_predictions_probabilities_and_served_answers():
    task = fitted()
    rows = np.array([10, 11, 12, 13])
    assert task.predictions(LOGITS, rows).tolist() == ["ant", "bee", "cat", "ant"]
    proba = task.probabilities(LOGITS, rows)
    assert list(proba.columns) == ["ant", "bee", "cat"] and list(proba.index) == [10, 11, 12, 13]
    np.testing.assert_allclose(proba.sum(axis=1), 1.0, rtol=1e-6)
    served = task.served(LOGITS[:1])
    assert served[0]["label"] == "ant" and set(served[0]["probabilities"]) == {"ant", "bee", "cat"}


@pytest.mark.filterwarnings("ignore:y_pred contains classes not in y_true")  # class 2 is predicted, never true
def test_metrics_outcomes_and_report_rows():
    task = fitted()
    scores, y = task.scores(LOGITS), task.true_values(Y)
    assert scores.dtype == np.float64 and np.allclose(scores.sum(1), 1.0)
    summary = task.summary_metrics(LOGITS, Y)
    assert summary["accuracy"] == 0.75 and summary["n"] == 4
    assert set(task.metrics()) >= {"accuracy", "macro_f1", "auroc", "ece"}
    assert task.main_score(y, scores) == 0.75 and task.main_metric.metric == "accuracy"
    assert task.per_row_outcome(y, scores).tolist() == [True, True, False, True]
    loss = task.per_row_loss(y, scores)
    assert loss.argmax() == 2 and loss[2] == pytest.approx(-np.log(scores[2, 0]))  # the wrong row is the worst
    assert task.describe_row(y[2], scores[2]) == {"true": "ant", "predicted": "cat", "confidence": pytest.approx(scores[2].max())}
    gain = task.paired_gain(np.array([1, 1, 0, 1]), np.array([1, 0, 0, 1]), n_boot=50)
    assert gain["gain"] == 0.25 and gain["measure"] == "accuracy gain"
    sections = task.report_sections(y, scores, seed=0)
    assert sum(map(sum, sections["confusion"]["matrix"])) == 4 and "ece" in sections["calibration"]


def test_group_metrics_and_parity_gaps():
    task = fitted()
    y_pred = task.point_predictions(task.scores(LOGITS))
    assert y_pred.tolist() == [0, 1, 2, 0]
    assert task.group_metrics(np.array([0, 1]), np.array([0, 0]))["accuracy"] == 0.5
    gaps = task.parity_gaps(np.array([0, 1, 0, 1]), np.array([0, 1, 1, 1]), np.array(list("aabb"), dtype=object), 2)
    assert gaps["demographic_parity_difference"] == 0.5
