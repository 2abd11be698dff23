"""Does fusion really help? A paired comparison of models scored on the same test rows.

Two models evaluated on the same rows are not independent samples: most rows are easy
for both. Comparing their two confidence intervals wastes that pairing and calls real
gains "overlapping"; the paired view looks only at rows where they disagree. The gain
gets a paired-bootstrap interval (resample rows, keep each row's pair together) and a
McNemar test on the discordant rows (exact binomial when they are few, the continuity-
corrected chi-square otherwise; statsmodels is not a dependency, scipy has both tails).

Training the models to compare is a workflow, not a statistic: it is
:func:`tessera.workflows.compare.compare_models`, which fills a :class:`Comparison`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats

from tessera.errors import SchemaError
from tessera.evaluate.metrics import percentile_interval, resampled_means

EXACT_BELOW = 25  # discordant pairs under which McNemar's chi-square approximation is poor


def mcnemar(correct_a: np.ndarray, correct_b: np.ndarray, exact: bool | None = None) -> dict[str, Any]:
    """McNemar's test that models a and b have the same accuracy, from per-row correctness.

    ``a_only``: rows a gets right and b wrong; ``b_only``: the reverse. Under the null
    each discordant row is a fair coin. ``exact=None`` picks the exact binomial test
    when there are fewer than 25 discordant rows, else chi-square with continuity correction.
    """
    a, b = np.asarray(correct_a, bool), np.asarray(correct_b, bool)
    a_only, b_only = int((a & ~b).sum()), int((~a & b).sum())
    n = a_only + b_only
    exact = n < EXACT_BELOW if exact is None else exact
    counts = {"a_only": a_only, "b_only": b_only}
    if n == 0:
        return {**counts, "statistic": 0.0, "p_value": 1.0, "method": "no discordant rows"}
    if exact:
        p = stats.binomtest(a_only, n, 0.5).pvalue
        return {**counts, "statistic": float(min(a_only, b_only)), "p_value": float(p), "method": "McNemar exact (binomial)"}
    statistic = (abs(a_only - b_only) - 1) ** 2 / n
    p = stats.chi2.sf(statistic, df=1)
    return {**counts, "statistic": float(statistic), "p_value": float(p), "method": "McNemar chi-square (continuity corrected)"}


def paired_gain(
    correct_a: np.ndarray,
    correct_b: np.ndarray,
    *,
    n_boot: int = 1000,
    alpha: float = 0.05,
    seed: int = 0,
) -> dict[str, Any]:
    """Accuracy of a minus accuracy of b, with a paired-bootstrap interval and McNemar's p-value."""
    a, b = np.asarray(correct_a, np.float64), np.asarray(correct_b, np.float64)
    if a.shape != b.shape:
        raise SchemaError(f"paired comparison needs the same rows for both models, got {a.shape} and {b.shape}")
    diff = a - b
    low, high = percentile_interval(resampled_means(diff, n_boot, np.random.default_rng(seed)), alpha)
    return {"gain": float(diff.mean()), "low": low, "high": high, **mcnemar(a.astype(bool), b.astype(bool))}


def paired_error_reduction(
    error_a: np.ndarray,
    error_b: np.ndarray,
    *,
    n_boot: int = 1000,
    alpha: float = 0.05,
    seed: int = 0,
) -> dict[str, Any]:
    """Regression's counterpart: MAE of b minus MAE of a (positive: a is better), Wilcoxon signed-rank p."""
    diff = np.asarray(error_b, np.float64) - np.asarray(error_a, np.float64)
    low, high = percentile_interval(resampled_means(diff, n_boot, np.random.default_rng(seed)), alpha)
    if np.all(diff == 0):
        p = 1.0
    else:
        p = float(stats.wilcoxon(diff).pvalue)
    return {"gain": float(diff.mean()), "low": low, "high": high, "p_value": p, "method": "Wilcoxon signed-rank"}


@dataclass
class Comparison:
    """Results of :func:`tessera.workflows.compare.compare_models`; ``predictors`` holds the trained models by name."""

    table: pd.DataFrame
    gain: dict[str, Any]
    split: str
    predictors: dict[str, Any] = field(default_factory=dict)
    flags: list[str] = field(default_factory=list)  # arms stopped much earlier than others, or still improving

    def to_dict(self) -> dict[str, Any]:
        return {"split": self.split, "table": self.table.to_dict(orient="records"), "gain": self.gain, "flags": self.flags}
