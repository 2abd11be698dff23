"""Target leakage: an input column that gives the answer away.

A column that predicts the target almost perfectly on rows it was not fitted on is, in
a real table, nearly always the label in another form (its readable name, a parent
category, a field filled in after the fact), and a model trained with it learns nothing
it can use when the column is not there. A column named like a label is suspect for the
same reason. Schema inference leaves such columns out with the reason, and the user
keeps one by naming it (``keep: [column]``, or a schema that lists it).

"Almost perfectly" is measured honestly: each column's rule is learned on one half of
the (training) rows and scored on the other half, so a column that is merely unique per
row (an id, a title) predicts nothing out of sample and is not flagged. Categorical-like
columns use their per-value majority label; numbers a shallow decision tree, and for a
numeric target also their rank correlation with it (a price in another currency).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Sequence

import numpy as np
import pandas as pd

from tessera.tasks import TASKS

MAX_ROWS = 20_000  # a seeded sample of this many rows is enough to see a near-perfect predictor
MIN_ROWS = 20  # fewer rows cannot show anything "almost perfect"
ACCURACY = 0.98  # held-out accuracy (classification) or R^2 (values) that counts as almost perfect
RANK_CORRELATION = 0.995  # values: a column that is (nearly) a monotone function of the target
ERROR_SHARE = 0.2  # ... and at most this share of the errors of always predicting the majority class
LABEL_NAMES = ("label", "labels", "target", "y", "class", "category", "outcome", "ground_truth", "answer")


@dataclass(frozen=True)
class Leak:
    column: str
    reason: str


def name_tokens(name: str) -> list[str]:
    """Lower-case words of a column name: ``dx_name`` -> [dx, name], ``subCategory`` -> [sub, category]."""
    spaced = re.sub(r"([a-z0-9])([A-Z])", r"\1 \2", str(name))
    return [t for t in re.split(r"[^0-9A-Za-z]+", spaced.lower()) if t]


def named_like_a_label(column: str, target: Sequence[str]) -> str | None:
    """Why a column's name suggests it is a label too, or None."""
    tokens = name_tokens(column)
    if "_".join(tokens) in LABEL_NAMES:
        return f"named like a label ('{column}')"
    for t in target:
        wanted = name_tokens(t)
        if wanted and len(tokens) > len(wanted) and tokens[: len(wanted)] == wanted:
            return f"named after the target '{t}'"
    return None


def find_leaks(
    frame: pd.DataFrame,
    target: Sequence[str],
    task: str,
    candidates: dict[str, str],
    seed: int = 0,
) -> list[Leak]:
    """Columns among ``candidates`` (column -> modality) that look like the target in another form.

    ``frame`` should hold the training rows only. Only numeric and categorical columns are
    scored (free text and media are not tabular rules); any column is checked by name.
    """
    leaks = []
    scored = _scorer(frame, target, task, seed)
    for column, modality in candidates.items():
        by_name = named_like_a_label(column, target)
        score = scored(frame[column], modality) if scored is not None and modality in ("numeric", "categorical") else None
        if score is not None and score[0]:
            leaks.append(Leak(column, f"likely target leak: {score[1]}"))
        elif by_name:
            leaks.append(Leak(column, f"looks like another label: {by_name}"))
    return leaks


def _scorer(frame: pd.DataFrame, target: Sequence[str], task: str, seed: int):
    """A function scoring one column on held-out rows, or None when the target cannot be scored so."""
    if len(target) != 1 or target[0] not in frame.columns:
        return None
    known = frame[frame[target[0]].notna()]
    if len(known) < MIN_ROWS:
        return None
    if len(known) > MAX_ROWS:
        known = known.sample(n=MAX_ROWS, random_state=seed)
    rng = np.random.default_rng(seed)
    half = rng.permutation(len(known)) < len(known) // 2
    y = known[target[0]]
    values_task = TASKS.get(task).tabular_learner == "regressor"
    if values_task:
        y = pd.to_numeric(y, errors="coerce")
        if y.isna().any() or y.std() == 0:
            return None
    else:
        y = y.astype(str)

    def score(col: pd.Series, modality: str) -> tuple[bool, str]:
        x = col.loc[known.index]
        fit_x, fit_y, test_x, test_y = x[half], y[half], x[~half], y[~half]
        if values_task:
            rank = pd.to_numeric(x, errors="coerce").corr(y, method="spearman")
            if abs(rank) >= RANK_CORRELATION:
                return True, f"it rises and falls with the target (rank correlation {rank:.3f})"
            pred = _tree_predictions(fit_x, fit_y, test_x, regression=True)
            if pred is None:
                return False, ""
            r2 = 1 - float(((test_y - pred) ** 2).sum()) / max(float(((test_y - test_y.mean()) ** 2).sum()), 1e-12)
            return r2 >= ACCURACY, f"it predicts the target with R² {r2:.3f} on held-out rows"
        if modality == "categorical":
            pred = _majority_by_value(fit_x, fit_y, test_x)
        else:
            pred = _tree_predictions(fit_x, fit_y, test_x, regression=False)
            if pred is None:
                return False, ""
        accuracy = float((pred == test_y.to_numpy()).mean())
        baseline = float((test_y == fit_y.mode().iloc[0]).mean())
        leak = accuracy >= ACCURACY and (1 - accuracy) <= ERROR_SHARE * (1 - baseline)
        return leak, f"its values alone give the target on {accuracy:.1%} of held-out rows (majority class: {baseline:.1%})"

    return score


def _majority_by_value(fit_x: pd.Series, fit_y: pd.Series, test_x: pd.Series) -> np.ndarray:
    """Each held-out row gets the most common label of its value in the fitting half (unseen: the overall one)."""
    keys = fit_x.astype(str).where(fit_x.notna(), "<missing>")
    majority = pd.DataFrame({"x": keys, "y": fit_y}).groupby("x")["y"].agg(lambda s: s.mode().iloc[0])
    test_keys = test_x.astype(str).where(test_x.notna(), "<missing>")
    return test_keys.map(majority).fillna(fit_y.mode().iloc[0]).to_numpy()


def _tree_predictions(fit_x: pd.Series, fit_y: pd.Series, test_x: pd.Series, *, regression: bool) -> np.ndarray | None:
    from sklearn.tree import DecisionTreeClassifier, DecisionTreeRegressor

    a = pd.to_numeric(fit_x, errors="coerce").to_numpy(np.float64)
    b = pd.to_numeric(test_x, errors="coerce").to_numpy(np.float64)
    if np.isnan(a).all():
        return None
    fill = float(np.nanmedian(a))
    a, b = np.nan_to_num(a, nan=fill)[:, None], np.nan_to_num(b, nan=fill)[:, None]
    tree = DecisionTreeRegressor(max_depth=6, random_state=0) if regression else DecisionTreeClassifier(max_depth=4, random_state=0)
    return tree.fit(a, fit_y.to_numpy()).predict(b)
