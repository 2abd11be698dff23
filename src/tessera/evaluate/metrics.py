"""Task metrics with bootstrap confidence intervals.

A test set of a few hundred rows gives an accuracy that can move by several points with
another draw of the same size; a number without an interval invites reading noise as
progress. Point values come from scikit-learn, so they equal what anyone else would
compute; intervals are the percentile bootstrap over test rows.

Every classification metric takes ``(y_true, proba)`` with ``y_true`` class indices
``(n,)`` and ``proba`` ``(n, K)``, so one resample serves label and probability metrics
alike. Regression metrics take ``(y_true, y_pred)`` in the target's own units. Which
metrics a task reports, and its main one, is the task's to say (:mod:`tessera.tasks`).

Calling scikit-learn once per resample costs 1000 x (5 to 50 ms) on 10 000 rows, a minute
for AUROC alone. So the bootstrap works on resample *counts* (how often each row was
drawn, a (resamples, rows) matrix) and most metrics carry a ``weighted`` form that scores
all resamples at once from those counts: a weighted mean, weighted confusion matrices,
or a weighted Mann-Whitney AUROC. Each equals scikit-learn on the resampled rows (the
tests check this against the per-resample loop, which remains for the other metrics).
"""

from __future__ import annotations

import warnings
from typing import TYPE_CHECKING, Any, Callable, Iterator

import numpy as np
import torch
from sklearn import metrics as skm
from sklearn.calibration import calibration_curve

from tessera.errors import SchemaError

if TYPE_CHECKING:
    from tessera.tasks import Task

Metric = Callable[[np.ndarray, np.ndarray], float]
Weighted = Callable[[np.ndarray, np.ndarray, np.ndarray], np.ndarray]  # (y, scores, counts (B, n)) -> (B,)
ECE_BINS = 15
CHUNK_ELEMENTS = 4_000_000  # resample counts held at once (B x n float64: 32 MB)


# -- model outputs to what metrics take -----------------------------------------------------
def predict_split(model: torch.nn.Module, split: Any, target: Task, batch_size: int = 256) -> tuple[np.ndarray, np.ndarray]:
    """``(y_true, scores)`` of a model on a whole split, as the task's metrics take them."""
    from tessera.train import run_inference

    device = next(model.parameters()).device
    outputs, y, _ = run_inference(model, split, batch_size, device)
    if y is None:
        raise SchemaError("the split has no target values to evaluate against")
    return target.true_values(y), target.scores(outputs)


def _with_weighted(weighted: Weighted) -> Callable[[Metric], Metric]:
    """Attach the all-resamples-at-once form of a metric (see the module docstring)."""

    def deco(fn: Metric) -> Metric:
        fn.weighted = weighted  # type: ignore[attr-defined]
        return fn

    return deco


def _weighted_mean(
    per_row: Callable[[np.ndarray, np.ndarray], np.ndarray], finish: Callable[[np.ndarray], np.ndarray] = lambda x: x
) -> Weighted:
    return lambda y, p, counts: finish(counts @ per_row(y, p) / len(y))


def group_sums(counts: np.ndarray, groups: np.ndarray, n_groups: int) -> np.ndarray:
    """``(B, n_groups)``: per resample, the summed ``counts`` of the rows in each group."""
    order = np.argsort(groups, kind="stable")
    sorted_groups = groups[order]
    starts = np.flatnonzero(np.r_[True, sorted_groups[1:] != sorted_groups[:-1]])
    out = np.zeros((counts.shape[0], n_groups))
    out[:, sorted_groups[starts]] = np.add.reduceat(counts[:, order], starts, axis=1)
    return out


def _confusions(y: np.ndarray, proba: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """``(B, K, K)`` confusion matrices (rows true, columns predicted) of every resample."""
    k = proba.shape[1]
    return group_sums(counts, y * k + proba.argmax(1), k * k).reshape(-1, k, k)


def _nanmean(x: np.ndarray, axis: int) -> np.ndarray:
    with warnings.catch_warnings():  # all-NaN rows are resamples where the metric is undefined
        warnings.simplefilter("ignore", RuntimeWarning)
        return np.nanmean(x, axis=axis)


# -- multiclass -------------------------------------------------------------------------------
@_with_weighted(_weighted_mean(lambda y, p: (p.argmax(1) == y).astype(np.float64)))
def accuracy(y_true: np.ndarray, proba: np.ndarray) -> float:
    return float(skm.accuracy_score(y_true, proba.argmax(1)))


def _weighted_balanced_accuracy(y: np.ndarray, p: np.ndarray, counts: np.ndarray) -> np.ndarray:
    c = _confusions(y, p, counts)
    support = c.sum(2)
    recall = np.where(support > 0, np.diagonal(c, axis1=1, axis2=2) / np.maximum(support, 1), np.nan)
    return _nanmean(recall, axis=1)  # sklearn leaves out classes absent from y_true


@_with_weighted(_weighted_balanced_accuracy)
def balanced_accuracy(y_true: np.ndarray, proba: np.ndarray) -> float:
    with warnings.catch_warnings():  # a resample may predict a class absent from its y_true
        warnings.simplefilter("ignore")
        return float(skm.balanced_accuracy_score(y_true, proba.argmax(1)))


def _weighted_macro_f1(y: np.ndarray, p: np.ndarray, counts: np.ndarray) -> np.ndarray:
    c = _confusions(y, p, counts)
    tp, true, pred = np.diagonal(c, axis1=1, axis2=2), c.sum(2), c.sum(1)
    seen = (true + pred) > 0  # sklearn averages over the labels in y_true or y_pred
    f1 = np.where(seen, 2 * tp / np.maximum(true + pred, 1), np.nan)
    return _nanmean(f1, axis=1)


@_with_weighted(_weighted_macro_f1)
def macro_f1(y_true: np.ndarray, proba: np.ndarray) -> float:
    return float(skm.f1_score(y_true, proba.argmax(1), average="macro", zero_division=0))


def weighted_auc(scores: np.ndarray, positive: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """Binary AUROC of every resample: the Mann-Whitney statistic with ties counting one half.

    This is the area under the trapezoidal ROC curve, i.e. scikit-learn's roc_auc_score;
    NaN where a resample has no positive or no negative row.
    """
    order = np.argsort(scores, kind="stable")
    s = scores[order]
    starts = np.flatnonzero(np.r_[True, s[1:] != s[:-1]])  # runs of tied scores
    w, pos = counts[:, order], positive[order]
    w_pos = np.add.reduceat(w * pos, starts, axis=1)
    w_neg = np.add.reduceat(w * ~pos, starts, axis=1)
    below = np.cumsum(w_neg, axis=1) - w_neg
    pairs = w_pos.sum(1) * w_neg.sum(1)
    wins = (w_pos * (below + 0.5 * w_neg)).sum(1)
    return np.where(pairs > 0, wins / np.maximum(pairs, 1), np.nan)


def _weighted_auroc(y: np.ndarray, p: np.ndarray, counts: np.ndarray) -> np.ndarray:
    per_class = np.stack([weighted_auc(p[:, c], y == c, counts) for c in range(p.shape[1])], axis=1)
    present = (group_sums(counts, y, p.shape[1]) > 0).sum(1)
    return np.where(present >= 2, _nanmean(per_class, axis=1), np.nan)


@_with_weighted(_weighted_auroc)
def auroc(y_true: np.ndarray, proba: np.ndarray) -> float:
    """One-vs-rest macro AUROC (scikit-learn's), over the classes that occur in ``y_true``.

    scikit-learn refuses the multiclass AUROC when a class is absent from ``y_true``;
    a small test set (or a bootstrap resample) often lacks a rare class, so then the
    mean is taken over the classes present, each scored one-vs-rest as scikit-learn does.
    """
    k = proba.shape[1]
    present = np.unique(y_true)
    if len(present) < 2:
        return float("nan")
    if k == 2:
        return float(skm.roc_auc_score(y_true, proba[:, 1]))
    if len(present) == k:
        return float(skm.roc_auc_score(y_true, proba, multi_class="ovr", average="macro", labels=np.arange(k)))
    return float(np.mean([skm.roc_auc_score(y_true == c, proba[:, c]) for c in present]))


@_with_weighted(_weighted_mean(lambda y, p: -np.log(np.clip(p[np.arange(len(y)), y], np.finfo(p.dtype).eps, 1.0))))
def log_loss(y_true: np.ndarray, proba: np.ndarray) -> float:
    return float(skm.log_loss(y_true, proba, labels=np.arange(proba.shape[1])))


def _bin_ids(confidence: np.ndarray, n_bins: int) -> np.ndarray:
    """Equal-width bin of each confidence, assigned exactly as ``calibration_curve`` does."""
    return np.searchsorted(np.linspace(0.0, 1.0, n_bins + 1)[1:-1], confidence)


def reliability(y_true: np.ndarray, proba: np.ndarray, n_bins: int = ECE_BINS) -> dict[str, list[float]]:
    """Reliability-diagram data for the top-label confidence, from scikit-learn's equal-width bins.

    ``calibration_curve`` gives each non-empty bin's accuracy and mean confidence but not
    its size; the sizes are counted with the very same bin assignment it uses.
    """
    confidence = np.clip(proba.max(1), 0.0, 1.0)  # float rounding can put a softmax a hair above 1
    correct = (proba.argmax(1) == y_true).astype(np.int64)
    frac_correct, mean_conf = calibration_curve(correct, confidence, n_bins=n_bins, strategy="uniform", pos_label=1)
    counts = np.bincount(_bin_ids(confidence, n_bins), minlength=n_bins)
    return {"accuracy": frac_correct.tolist(), "confidence": mean_conf.tolist(), "count": counts[counts > 0].tolist()}


def _weighted_ece(y: np.ndarray, p: np.ndarray, counts: np.ndarray) -> np.ndarray:
    # Per bin, count * |accuracy - confidence| = |sum of correct - sum of confidence|.
    confidence = np.clip(p.max(1), 0.0, 1.0)
    correct = (p.argmax(1) == y).astype(np.float64)
    bins = _bin_ids(confidence, ECE_BINS)
    gap = group_sums(counts * correct, bins, ECE_BINS) - group_sums(counts * confidence, bins, ECE_BINS)
    return np.abs(gap).sum(1) / len(y)


@_with_weighted(_weighted_ece)
def ece(y_true: np.ndarray, proba: np.ndarray, n_bins: int = ECE_BINS) -> float:
    """Expected calibration error: bin-size weighted mean |accuracy - confidence| over equal-width bins.

    Its bootstrap interval is biased upwards (resampling adds noise, and |.| turns noise
    into error), so a lower bound above the point value is possible and not a bug.
    """
    bins = reliability(y_true, proba, n_bins)
    counts = np.asarray(bins["count"], dtype=np.float64)
    gaps = np.abs(np.asarray(bins["accuracy"]) - np.asarray(bins["confidence"]))
    return float((counts * gaps).sum() / counts.sum())


# -- multilabel (bootstrapped by the per-resample loop, except subset accuracy) ------------------
@_with_weighted(_weighted_mean(lambda y, p: ((p > 0.5) == (y > 0)).all(1).astype(np.float64)))
def subset_accuracy(y_true: np.ndarray, proba: np.ndarray) -> float:
    return float(skm.accuracy_score(y_true, (proba > 0.5).astype(np.int64)))


def multilabel_macro_f1(y_true: np.ndarray, proba: np.ndarray) -> float:
    return float(skm.f1_score(y_true, (proba > 0.5).astype(np.int64), average="macro", zero_division=0))


def multilabel_auroc(y_true: np.ndarray, proba: np.ndarray) -> float:
    """Macro AUROC over the labels that have both values in ``y_true`` (others have none)."""
    both = (y_true.min(0) == 0) & (y_true.max(0) == 1)
    if not both.any():
        return float("nan")
    return float(skm.roc_auc_score(y_true[:, both], proba[:, both], average="macro"))


# -- regression -------------------------------------------------------------------------------
@_with_weighted(_weighted_mean(lambda y, p: np.abs(y - p)))
def mae(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    return float(skm.mean_absolute_error(y_true, y_pred))


@_with_weighted(_weighted_mean(lambda y, p: (y - p) ** 2, finish=np.sqrt))
def rmse(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    return float(skm.root_mean_squared_error(y_true, y_pred))


def _weighted_r2(y: np.ndarray, p: np.ndarray, counts: np.ndarray) -> np.ndarray:
    mean = counts @ y / len(y)
    total = (counts * (y[None, :] - mean[:, None]) ** 2).sum(1)
    residual = counts @ ((y - p) ** 2)
    constant = np.where(residual == 0, 1.0, 0.0)  # sklearn's force_finite answer when y does not vary
    return np.where(total > 0, 1 - residual / np.where(total > 0, total, 1.0), constant)


@_with_weighted(_weighted_r2)
def r2(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    return float(skm.r2_score(y_true, y_pred))


# -- bootstrap -----------------------------------------------------------------------------------
def bootstrap_ci(
    metric_fn: Metric,
    y_true: np.ndarray,
    y_pred_or_proba: np.ndarray,
    n_boot: int = 1000,
    alpha: float = 0.05,
    seed: int = 0,
) -> tuple[float, float, float]:
    """``(value, low, high)``: the metric and its percentile-bootstrap ``1 - alpha`` interval.

    Rows are resampled with replacement ``n_boot`` times (the same resamples for any
    metric, given the seed). Resamples where the metric is undefined (AUROC without two
    classes) are dropped; with fewer than half left the interval is NaN.
    """
    y_true, y_pred_or_proba = np.asarray(y_true), np.asarray(y_pred_or_proba)
    value = metric_fn(y_true, y_pred_or_proba)
    n = len(y_true)
    if n == 0 or n_boot < 1:
        return value, float("nan"), float("nan")
    rng = np.random.default_rng(seed)
    weighted = getattr(metric_fn, "weighted", None)
    if weighted is not None:
        stats = np.concatenate([weighted(y_true, y_pred_or_proba, counts) for counts in resample_counts(n, n_boot, rng)])
    else:
        stats = np.empty(n_boot)
        for b in range(n_boot):
            idx = rng.integers(0, n, n)
            try:
                stats[b] = metric_fn(y_true[idx], y_pred_or_proba[idx])
            except ValueError:
                stats[b] = np.nan
    return (value, *percentile_interval(stats, alpha))


def resample_counts(n: int, n_boot: int, rng: np.random.Generator) -> Iterator[np.ndarray]:
    """Chunks of ``(B, n)`` draw counts, one row per resample of ``n`` rows with replacement.

    The draws are ``rng.integers(0, n, n)`` per resample, in order, so the counts match
    the indices a plain loop with the same seed would use.
    """
    chunk = max(1, CHUNK_ELEMENTS // max(n, 1))
    for start in range(0, n_boot, chunk):
        b = min(chunk, n_boot - start)
        idx = rng.integers(0, n, (b, n)) + n * np.arange(b)[:, None]
        yield np.bincount(idx.ravel(), minlength=b * n).reshape(b, n).astype(np.float64)


def resampled_means(values: np.ndarray, n_boot: int, rng: np.random.Generator) -> np.ndarray:
    """Means of ``values`` over ``n_boot`` resamples with replacement."""
    return np.concatenate([counts @ values / len(values) for counts in resample_counts(len(values), n_boot, rng)])


def percentile_interval(stats: np.ndarray, alpha: float) -> tuple[float, float]:
    finite = stats[np.isfinite(stats)]
    if len(finite) == 0 or len(finite) < len(stats) / 2:
        return float("nan"), float("nan")
    low, high = np.percentile(finite, [100 * alpha / 2, 100 * (1 - alpha / 2)])
    return float(low), float(high)


def task_metrics(
    task: Task,
    y_true: np.ndarray,
    scores: np.ndarray,
    *,
    n_boot: int = 1000,
    alpha: float = 0.05,
    seed: int = 0,
) -> dict[str, Any]:
    """Every metric of the task as ``{name: {value, low, high}}``, plus ``n``."""
    out: dict[str, Any] = {}
    for name, fn in task.metrics().items():
        value, low, high = bootstrap_ci(fn, y_true, scores, n_boot=n_boot, alpha=alpha, seed=seed)
        out[name] = {"value": value, "low": low, "high": high}
    out["n"] = int(len(y_true))
    return out


def per_class_metrics(y_true: np.ndarray, proba: np.ndarray, class_names: list[str]) -> list[dict[str, Any]]:
    """Precision, recall, F1 and support per class (scikit-learn's), for the report table."""
    k = proba.shape[1]
    p, r, f, s = skm.precision_recall_fscore_support(y_true, proba.argmax(1), labels=np.arange(k), zero_division=0)
    return [
        {"class": class_names[i], "precision": float(p[i]), "recall": float(r[i]), "f1": float(f[i]), "support": int(s[i])}
        for i in range(k)
    ]


def confusion(y_true: np.ndarray, proba: np.ndarray) -> list[list[int]]:
    """Rows: true class, columns: predicted class, every class included even when unseen."""
    k = proba.shape[1]
    return skm.confusion_matrix(y_true, proba.argmax(1), labels=np.arange(k)).tolist()
