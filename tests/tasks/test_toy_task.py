"""A new task is one file: an ordinal task defined and registered here only, trained end to end.

Ordered grades (low < mid < high) learned the CORAL way: K-1 logits, each "is the grade above
k?", trained with binary cross-entropy. Nothing outside this module knows the task exists;
fit, predict, evaluation with every analysis, save/load and the server's answers all go
through the methods below.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import pytest
import torch
from torch.nn import functional as F

from tessera.errors import DataError
from tessera.evaluate.run import evaluate_predictor
from tessera.predictor import Predictor
from tessera.tasks import TASKS, Goal, Task, register_task


@register_task("toy_ordinal")
class ToyOrdinal(Task):
    main_metric = Goal("accuracy")
    monitor = Goal("accuracy")
    order = ["low", "mid", "high"]

    def fit(self, frame: pd.DataFrame) -> "ToyOrdinal":
        unknown = set(frame[self.columns[0]].dropna()) - set(self.order)
        if unknown:
            raise DataError(f"grades must be one of {self.order}, found {sorted(unknown)}", column=self.columns[0])
        self.classes = list(self.order)
        return self

    @property
    def num_outputs(self) -> int:
        return len(self.order) - 1

    def encode(self, frame: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
        col = frame[self.columns[0]]
        known = col.notna().to_numpy()
        return np.array([self.order.index(v) if k else 0 for v, k in zip(col, known)], dtype=np.int64), known

    def decode(self, encoded: np.ndarray) -> np.ndarray:
        return np.asarray(self.order, dtype=object)[encoded]

    def fitted_state(self) -> dict[str, Any]:
        return {"classes": self.classes}

    def load_fitted_state(self, state: dict[str, Any]) -> None:
        self.classes = list(state["classes"])

    def loss(self, outputs: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        above = (target.long().unsqueeze(1) > torch.arange(self.num_outputs, device=target.device)).float()
        return F.binary_cross_entropy_with_logits(outputs, above)

    def _proba(self, outputs: torch.Tensor) -> np.ndarray:
        """P(grade = k) from the cumulative P(grade > k), clipped so that it stays a distribution."""
        above = torch.sigmoid(outputs.double()).numpy()
        edges = np.concatenate([np.ones((len(above), 1)), above, np.zeros((len(above), 1))], axis=1)
        p = np.clip(edges[:, :-1] - edges[:, 1:], 1e-9, None)
        return p / p.sum(1, keepdims=True)

    def quick_score(self, outputs: torch.Tensor, target: torch.Tensor) -> dict[str, float]:
        correct = self._proba(outputs).argmax(1) == target.numpy()
        return {**super().quick_score(outputs, target), "accuracy": float(correct.mean())}

    def predictions(self, outputs: torch.Tensor, rows: np.ndarray) -> pd.Series:
        return pd.Series(self.decode(self._proba(outputs).argmax(1)), index=rows, name=self.columns[0])

    def probabilities(self, outputs: torch.Tensor, rows: np.ndarray) -> pd.DataFrame:
        return pd.DataFrame(self._proba(outputs), index=rows, columns=self.order)

    def served(self, outputs: torch.Tensor) -> list[dict[str, Any]]:
        return [{"grade": g} for g in self.decode(self._proba(outputs).argmax(1))]

    def scores(self, outputs: torch.Tensor) -> np.ndarray:
        return self._proba(outputs)

    def true_values(self, target: torch.Tensor) -> np.ndarray:
        return target.numpy().astype(np.int64)

    def summary_metrics(self, outputs: torch.Tensor, target: torch.Tensor) -> dict[str, float]:
        y, scores = self.true_values(target), self.scores(outputs)
        return {name: fn(y, scores) for name, fn in self.metrics().items()} | {"n": len(y)}

    def metrics(self) -> dict[str, Any]:
        from tessera.evaluate.metrics import accuracy

        return {"accuracy": accuracy, "grade_mae": lambda y, p: float(np.abs(p.argmax(1) - y).mean())}

    def per_row_outcome(self, y_true: np.ndarray, scores: np.ndarray) -> np.ndarray:
        return scores.argmax(1) == y_true

    def per_row_loss(self, y_true: np.ndarray, scores: np.ndarray) -> np.ndarray:
        return np.abs(scores.argmax(1) - y_true) - np.log(scores[np.arange(len(y_true)), y_true])

    def describe_row(self, y_true: Any, scores: np.ndarray) -> dict[str, Any]:
        return {"true": self.order[int(y_true)], "predicted": self.order[int(scores.argmax())]}

    def point_predictions(self, scores: np.ndarray) -> np.ndarray:
        return scores.argmax(1)

    def group_metrics(self, y_true: np.ndarray, y_pred: np.ndarray) -> dict[str, float]:
        return {"accuracy": float((y_true == y_pred).mean())}


def graded_table(n: int = 150, seed: int = 0) -> pd.DataFrame:
    """The grade is x cut at the thirds; ``colour`` is noise."""
    rng = np.random.default_rng(seed)
    x = rng.uniform(-1, 1, n)
    grade = np.where(x < -1 / 3, "low", np.where(x < 1 / 3, "mid", "high"))
    return pd.DataFrame({"x": x, "colour": rng.choice(["red", "blue"], n), "grade": grade})


SCHEMA = {
    "target": "grade",
    "task": ToyOrdinal.name,
    "inputs": {"x": {"modality": "numeric", "columns": ["x"]}, "colour": {"modality": "categorical", "columns": ["colour"]}},
}


def test_a_task_registered_in_a_test_fits_predicts_and_evaluates(tmp_path):
    assert "toy_ordinal" in TASKS and "toy_ordinal" not in ("multiclass", "multilabel", "regression")
    table = graded_table()
    p = Predictor(model={"dim": 16}, train={"epochs": 25, "batch_size": 16, "lr": 1e-2, "patience": 0}).fit(table, SCHEMA)
    assert isinstance(p.pipeline.target, ToyOrdinal) and p.pipeline.target.num_outputs == 2
    assert p.result.metric_name == "accuracy" and "val_accuracy" in p.result.history[-1]

    predicted = p.predict(table)
    assert set(predicted) <= {"low", "mid", "high"} and (predicted == table["grade"]).mean() > 0.8
    proba = p.predict_proba(table)
    assert list(proba.columns) == ["low", "mid", "high"] and np.allclose(proba.sum(axis=1), 1.0)
    scores = p.evaluate(table)
    assert scores["accuracy"] > 0.8 and scores["grade_mae"] < 0.3 and scores["n"] == len(table)
    assert p.predict_records(table.head(2)) == [{"grade": g} for g in predicted.head(2)]

    loaded = Predictor.load(p.save(tmp_path / "model"))
    assert isinstance(loaded.pipeline.target, ToyOrdinal)
    pd.testing.assert_series_equal(loaded.predict(table), predicted)

    results = evaluate_predictor(p, table, n_boot=20, n_examples=3, group_columns=["colour"])
    assert results["meta"]["task"] == "toy_ordinal" and results["meta"]["main_metric"] == "accuracy"
    assert set(results["summary"]) == {"accuracy", "grade_mae", "n"}
    assert results["summary"]["accuracy"]["low"] <= results["summary"]["accuracy"]["value"] <= results["summary"]["accuracy"]["high"]
    assert results["contribution"]["metric"] == "accuracy"
    x_alone = next(r for r in results["contribution"]["inputs"] if r["input"] == "x")["alone"]
    assert x_alone > 0.8  # the grade is in x
    assert {r["metric"] for r in results["robustness"]["missing"]} == {"accuracy"}
    assert results["fairness"][0]["column"] == "colour" and "accuracy" in results["fairness"][0]["groups"][0]
    assert results["confusion"] is None  # report sections are the task's to add; this one adds none
    assert {"true", "predicted", "loss"} <= set(results["examples"][0])


def test_its_errors_come_from_the_task():
    bad = graded_table(20).assign(grade="excellent")
    with pytest.raises(DataError, match="grades must be one of"):
        Predictor(train={"epochs": 1}).fit(bad, SCHEMA)
