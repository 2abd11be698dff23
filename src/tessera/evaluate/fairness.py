"""Is the model equally good for every group of rows? Per-group metrics and two parity gaps.

Groups come from columns of the original table (``CachedSplit.rows`` are row numbers in
it), and from which inputs a row actually had: a model that is fine with all inputs can
fail the rows that arrive without an image, and the overall score hides them.

* per group: n, accuracy and macro-F1 (classification), MAE and RMSE (regression), and
  the largest gap between groups for each;
* demographic-parity difference: the largest gap between groups in how often a class is
  predicted; equalised-odds difference: the largest gap in true-positive or false-positive
  rate. Both are defined for a binary decision, so a multiclass target is binarised one
  class against the rest and the largest gap over classes is reported. For two classes
  this equals fairlearn's binary definition (pos_label either class gives the same gaps).
  Computed directly (a few lines of pandas), so fairlearn is not a dependency. Rates a
  group cannot have (no rows of the class) are left out of the gap rather than read as 0.

Continuous group columns (numbers with more than ``max_groups`` distinct values) are cut
into quartiles; missing values form their own group.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Sequence

import numpy as np
import pandas as pd

if TYPE_CHECKING:
    from tessera.tasks import Task

MISSING_GROUP = "(missing)"


def modality_combination(present: dict[str, np.ndarray]) -> np.ndarray:
    """Per row, the inputs it had, joined with '+' ('(none)' when it had none)."""
    names = list(present)
    flags = np.stack([np.asarray(present[n], bool) for n in names], axis=1)
    return np.array(["+".join(n for n, f in zip(names, row) if f) or "(none)" for row in flags], dtype=object)


def group_labels(values: pd.Series, max_groups: int = 20) -> pd.Series:
    """Values as group labels: quartiles for continuous numbers, '(missing)' for missing cells."""
    values = values.reset_index(drop=True)
    numeric = pd.api.types.is_numeric_dtype(values) and not pd.api.types.is_bool_dtype(values)
    if numeric and values.nunique(dropna=True) > max_groups:
        codes, edges = pd.qcut(values, 4, labels=False, retbins=True, duplicates="drop")
        names = [f"q{i + 1}: {lo:.3g} to {hi:.3g}" for i, (lo, hi) in enumerate(zip(edges[:-1], edges[1:]))]
        return codes.map(lambda c: MISSING_GROUP if pd.isna(c) else names[int(c)]).astype(object)
    return values.astype(object).map(lambda v: MISSING_GROUP if pd.isna(v) else str(v))


def group_table(task: Task, y_true: np.ndarray, y_pred: np.ndarray, groups: Sequence[Any]) -> pd.DataFrame:
    """One row per group: n and the task's metrics on that group's rows."""
    groups = np.asarray(groups, dtype=object)
    records = []
    for g in sorted(set(groups.tolist()), key=str):
        sel = groups == g
        records.append({"group": str(g), "n": int(sel.sum()), **task.group_metrics(y_true[sel], y_pred[sel])})
    return pd.DataFrame(records)


def demographic_parity_difference(y_pred: np.ndarray, groups: Sequence[Any], n_classes: int) -> float:
    """Max over classes of (highest - lowest) rate of predicting that class across groups."""
    frame = pd.DataFrame({"pred": y_pred, "group": np.asarray(groups, dtype=object)})
    rates = pd.crosstab(frame["group"], frame["pred"], normalize="index").reindex(columns=range(n_classes), fill_value=0.0)
    return float((rates.max() - rates.min()).max())


def equalized_odds_difference(y_true: np.ndarray, y_pred: np.ndarray, groups: Sequence[Any], n_classes: int) -> float:
    """Max over classes of the larger of the true-positive-rate and false-positive-rate gaps."""
    groups = np.asarray(groups, dtype=object)
    worst = 0.0
    for c in range(n_classes):
        positive, predicted = y_true == c, y_pred == c
        tpr, fpr = [], []
        for g in set(groups.tolist()):
            sel = groups == g
            if (sel & positive).any():
                tpr.append(predicted[sel & positive].mean())
            if (sel & ~positive).any():
                fpr.append(predicted[sel & ~positive].mean())
        gaps = [max(r) - min(r) for r in (tpr, fpr) if len(r) > 1]
        worst = max([worst, *gaps])
    return float(worst)


def fairness_analysis(
    task: Task,
    y_true: np.ndarray,
    y_pred: np.ndarray,
    frame: pd.DataFrame,
    columns: Sequence[str] = (),
    present: dict[str, np.ndarray] | None = None,
    n_classes: int | None = None,
    max_groups: int = 20,
) -> list[dict[str, Any]]:
    """Per-group tables and gaps for each group column (rows of ``frame`` aligned with y).

    ``y_pred`` holds the task's point predictions (class indices, values). ``present``
    (input -> bool per row) adds the 'inputs present' grouping. Tasks without
    ``group_analysis`` (multilabel) get none; parity gaps are for tasks that define them.
    """
    if not task.group_analysis:
        return []
    groupings = [(c, group_labels(frame[c], max_groups).to_numpy()) for c in columns]
    if present:
        groupings.append(("inputs present", modality_combination(present)))
    out = []
    for name, groups in groupings:
        table = group_table(task, y_true, y_pred, groups)
        metric_names = [c for c in table.columns if c not in ("group", "n")]
        result: dict[str, Any] = {
            "column": name,
            "groups": table.to_dict(orient="records"),
            "largest_gap": {m: float(table[m].max() - table[m].min()) for m in metric_names},
            "demographic_parity_difference": None,
            "equalized_odds_difference": None,
            **task.parity_gaps(y_true, y_pred, groups, n_classes),
        }
        out.append(result)
    return out
