"""Caruana's greedy ensemble selection on validation scores."""

import numpy as np
import pytest

from tessera.ensemble import greedy_weights, selection_score
from tessera.errors import TesseraError
from tessera.tasks import create_task


def one_hot(labels: np.ndarray, k: int, sure: float = 0.9) -> np.ndarray:
    out = np.full((len(labels), k), (1 - sure) / (k - 1))
    out[np.arange(len(labels)), labels] = sure
    return out


def test_complementary_models_are_mixed_and_the_ensemble_is_never_worse_than_its_best_member():
    rng = np.random.default_rng(0)
    task = create_task("multiclass", ["y"])
    y = rng.integers(0, 3, 300)
    # a is sure and right on the first 200 rows, unsure and wrong after; b the same on the last 200; c is noise
    first, last = np.arange(300) < 200, np.arange(300) >= 100
    a = np.where(first[:, None], one_hot(y, 3, 0.9), one_hot((y + 1) % 3, 3, 0.4))
    b = np.where(last[:, None], one_hot(y, 3, 0.9), one_hot((y + 2) % 3, 3, 0.4))
    scores = {"a": a, "b": b, "c": rng.dirichlet(np.ones(3), 300)}
    weights = greedy_weights(scores, y, task)
    assert set(weights) == {"a", "b"} and abs(sum(weights.values()) - 1) < 1e-9
    mixed = sum(w * scores[n] for n, w in weights.items())
    best_single = max(task.main_score(y, s) for s in scores.values())
    assert task.main_score(y, mixed) > best_single  # right wherever either is sure and right


def test_one_dominant_model_takes_all_the_weight_and_values_work_too():
    task = create_task("multiclass", ["y"])
    y = np.array([0, 1, 2, 0, 1, 2] * 20)
    weights = greedy_weights({"good": one_hot(y, 3), "bad": one_hot((y + 1) % 3, 3)}, y, task)
    assert weights == {"good": 1.0}
    regression = create_task("regression", ["v"])
    truth = np.linspace(0, 10, 50)
    weights = greedy_weights({"high": truth + 1.0, "low": truth - 1.0}, truth, regression)
    assert weights == pytest.approx({"high": 0.5, "low": 0.5})  # their mean is exact
    assert selection_score(regression, truth, truth) == (1.0, 0.0)
    with pytest.raises(TesseraError, match="no trained model"):
        greedy_weights({}, truth, regression)
