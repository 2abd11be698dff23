"""A weighted ensemble of trained models, chosen on validation rows, and saved and loaded as one model.

The weights come from Caruana et al.'s ensemble selection ("Ensemble Selection from
Libraries of Models", ICML 2004), as AutoGluon uses it: start from the best single
model, then repeatedly add (with replacement) whichever model most improves the averaged
validation scores, and keep the best ensemble seen. A model's weight is how often it was
added. Averaging probabilities (or values) and selecting greedily is robust with a few
hundred validation rows where fitting stacking weights would overfit, and the ensemble is
never worse on validation than its best member, which is in it from the start.

Members are Tessera networks (a :class:`~tessera.predictor.Predictor`, on the table's
own inputs or on the frozen features of :mod:`tessera.feature_matrix`) or scikit-learn models
on those features. Every member gives scores as the task's metrics take them
(probabilities, values); the averaged scores go back through the task
(:meth:`~tessera.tasks.Task.outputs_from_scores`), so an ensemble predicts, serves and
scores like one model.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import torch

import tessera
from tessera.errors import TesseraError
from tessera.feature_matrix import Featurizer, load_estimator, save_estimator
from tessera.files import atomic_dir
from tessera.table import Table, read_table
from tessera.tasks import Task

if TYPE_CHECKING:
    from tessera.predictor import InferenceConfig, Predictor

ENSEMBLE_FILE = "ensemble.json"
ROUNDS = 50  # greedy additions: enough for weights in steps of 2 %
KINDS = ("network", "features network", "sklearn")


def selection_score(task: Task, y: np.ndarray, scores: np.ndarray) -> tuple[float, float]:
    """What the greedy selection maximises: the task's main metric, ties broken by the mean per-row loss
    (accuracy moves in steps of one row; the loss says which of two equally accurate ensembles is surer)."""
    main = task.main_score(y, scores)
    loss = float(np.mean(task.per_row_loss(y, scores)))
    return (main if task.main_metric.higher_is_better else -main), -loss


def greedy_weights(val_scores: dict[str, np.ndarray], y: np.ndarray, task: Task, rounds: int = ROUNDS) -> dict[str, float]:
    """Caruana's ensemble selection with replacement; returns each model's weight (summing to 1)."""
    if not val_scores:
        raise TesseraError("no trained model to ensemble")
    names = list(val_scores)
    counts = dict.fromkeys(names, 0)
    total, size = np.zeros_like(val_scores[names[0]], dtype=np.float64), 0
    best, best_counts = None, None
    for _ in range(rounds):
        trial = {n: selection_score(task, y, (total + val_scores[n]) / (size + 1)) for n in names}
        pick = max(names, key=lambda n: trial[n])  # the first listed wins a tie
        counts[pick] += 1
        total, size = total + val_scores[pick], size + 1
        if best is None or trial[pick] > best:
            best, best_counts = trial[pick], dict(counts)
    assert best_counts is not None
    return {n: c / sum(best_counts.values()) for n, c in best_counts.items() if c}


@dataclass
class Member:
    """One trained model of the ensemble and what it reads."""

    name: str
    kind: str  # one of KINDS
    inputs: list[str]  # the schema inputs it uses
    weight: float
    predictor: Predictor | None = None  # networks
    estimator: Any = None  # sklearn: a fitted estimator over ``columns``
    columns: list[str] = field(default_factory=list)  # feature columns it reads (sklearn)

    def scores(self, task: Task, table: Table, features: pd.DataFrame | None, inference: InferenceConfig) -> pd.DataFrame:
        """Scores per row (rows as index): ``(n, K)`` probabilities or ``(n, 1)`` values."""
        if self.kind == "sklearn":
            x = features[self.columns]
            values = self.estimator.predict_proba(x) if task.tabular_learner == "classifier" else self.estimator.predict(x)
            return pd.DataFrame(np.asarray(values, np.float64).reshape(len(x), -1), index=x.index)
        if self.kind == "features network":  # the table's own columns plus the components it reads
            extra = features[[c for c in features.columns if c not in table.frame.columns]]
            table = Table(pd.concat([table.frame, extra], axis=1), table.base_dir, table.source)
        self.predictor.inference = inference
        outputs, _, rows = self.predictor.outputs(table, with_target=False)
        return pd.DataFrame(task.scores(outputs).reshape(len(rows), -1), index=rows.numpy())


class Ensemble:
    """Members with weights, the featurizer some of them read, and the leaderboard that chose them."""

    def __init__(
        self,
        task: Task,
        members: list[Member],
        featurizer: Featurizer | None,
        leaderboard: pd.DataFrame,
        info: dict[str, Any] | None = None,
    ) -> None:
        self.task = task
        self.members = [m for m in members if m.weight > 0]
        self.featurizer = featurizer
        self.leaderboard = leaderboard
        self.info = info or {}  # schema, notes, settings: recorded with the model

    def outputs(self, table: Any, inference: InferenceConfig) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor]:
        """Model outputs of the averaged scores, targets when the table has them, and row numbers."""
        t = read_table(table)
        needs_features = any(m.kind != "network" for m in self.members)
        features = self.featurizer.frame(t, inference) if needs_features and self.featurizer is not None else None
        parts = [m.scores(self.task, t, features, inference) for m in self.members]
        rows = parts[0].index
        for p in parts[1:]:
            rows = rows.intersection(p.index, sort=False)  # rows a member skipped (on_error: skip) are left out
        total = sum(m.weight * p.loc[rows].to_numpy() for m, p in zip(self.members, parts))
        scores = total / sum(m.weight for m in self.members)
        scores = scores if self.task.tabular_learner != "regressor" else scores[:, 0]
        y = None
        if all(c in t.frame.columns for c in self.task.columns):
            frame = t.frame.loc[rows]
            encoded, known = self.task.encode(frame)
            keep = np.asarray(known, bool)
            if keep.all():
                y = torch.from_numpy(encoded)
        return self.task.outputs_from_scores(scores), y, torch.as_tensor(np.asarray(rows), dtype=torch.long)

    # -- persistence -------------------------------------------------------------------------
    def save(self, path: str | Path) -> Path:
        """The whole ensemble in one folder, swapped in atomically: networks as Tessera model folders,
        scikit-learn models as skops files (loading runs no code from them), the featurizer beside them."""
        path = Path(path)
        with atomic_dir(path) as tmp:
            members = []
            for m in self.members:
                folder = _folder_name(m.name)
                if m.kind == "sklearn":
                    (tmp / "members").mkdir(exist_ok=True)
                    save_estimator(m.estimator, tmp / "members" / f"{folder}.skops")
                else:
                    m.predictor.save(tmp / "members" / folder)
                members.append({"name": m.name, "kind": m.kind, "inputs": m.inputs, "weight": m.weight,
                                "columns": m.columns, "folder": folder})
            if self.featurizer is not None:
                self.featurizer.save(tmp / "features")
            self.leaderboard.to_csv(tmp / "leaderboard.csv", index=False)
            meta = {
                "tessera_version": tessera.__version__,
                "preset": "best",
                "task": self.task.state_dict(),
                "members": members,
                "leaderboard": json.loads(self.leaderboard.to_json(orient="records")),
                "info": self.info,
            }
            (tmp / ENSEMBLE_FILE).write_text(json.dumps(meta, indent=2, default=str))
        return path

    @classmethod
    def load(cls, path: str | Path, device: str = "cpu") -> "Ensemble":
        from tessera.predictor import Predictor

        path = Path(path)
        meta = json.loads((path / ENSEMBLE_FILE).read_text())
        members = []
        for m in meta["members"]:
            member = Member(m["name"], m["kind"], list(m["inputs"]), float(m["weight"]), columns=list(m["columns"]))
            if m["kind"] == "sklearn":
                member.estimator = load_estimator(path / "members" / f"{m['folder']}.skops")
            else:
                member.predictor = Predictor.load(path / "members" / m["folder"], device=device)
            members.append(member)
        featurizer = Featurizer.load(path / "features") if (path / "features").is_dir() else None
        leaderboard = pd.DataFrame(meta.get("leaderboard", []))
        return cls(Task.from_state(meta["task"]), members, featurizer, leaderboard, meta.get("info", {}))


def is_ensemble(path: str | Path) -> bool:
    return (Path(path) / ENSEMBLE_FILE).is_file()


def _folder_name(name: str) -> str:
    return re.sub(r"[^0-9A-Za-z_.-]+", "_", name).strip("_") or "member"
