"""Does fusion really help? A paired comparison of models scored on the same test rows.

Two models evaluated on the same rows are not independent samples: most rows are easy
for both. Comparing their two confidence intervals wastes that pairing and calls real
gains "overlapping"; the paired view looks only at rows where they disagree. The gain
gets a paired-bootstrap interval (resample rows, keep each row's pair together) and a
McNemar test on the discordant rows (exact binomial when they are few, the continuity-
corrected chi-square otherwise; statsmodels is not a dependency, scipy has both tails).

:func:`compare_models` trains the unimodal baselines and the fusion model on one decoded
copy of the data, under one config and seed, so the only difference is the inputs.
"""

from __future__ import annotations

import time
import warnings
from dataclasses import dataclass, field, replace
from typing import Any, Callable

import numpy as np
import pandas as pd
from scipy import stats

from tessera.errors import SchemaError
from tessera.evaluate.metrics import bootstrap_ci, percentile_interval, predict_split, resampled_means

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
    """Results of :func:`compare_models`; ``predictors`` holds the trained models by name."""

    table: pd.DataFrame
    gain: dict[str, Any]
    split: str
    predictors: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"split": self.split, "table": self.table.to_dict(orient="records"), "gain": self.gain}


def model_for_inputs(model: dict | Any | None, keep: list[str]) -> Any:
    """The model config with per-input settings (encoders) cut to ``keep``: a baseline has no audio encoder to set."""
    from tessera.model import ModelConfig

    cfg = model if isinstance(model, ModelConfig) else ModelConfig.from_dict(model)
    return replace(cfg, encoders={k: v for k, v in cfg.encoders.items() if k in keep})


def compare_models(
    pipeline: Any,
    sources: dict[str, Any],
    model: dict | Any | None = None,
    train: dict | Any | None = None,
    *,
    n_boot: int = 1000,
    alpha: float = 0.05,
    seed: int = 0,
    on_model: Callable[[str, list[str]], None] | None = None,
) -> Comparison:
    """Train one model per input and the fusion of all inputs, then compare them on the test rows.

    ``pipeline`` and ``sources`` come from ``Predictor.prepare_data``. The test split is
    used when there is one; otherwise the validation split, with a warning, because it
    also chose each model's best epoch and so flatters every model a little. The gain is
    measured against the best unimodal model on the same rows, chosen on those rows,
    which flatters the baseline: a gain that survives that is not a selection effect.
    """
    from tessera.predictor import Predictor

    inputs = list(pipeline.preprocessors)
    if len(inputs) < 2:
        raise SchemaError(f"a fusion comparison needs at least two inputs; this pipeline has {inputs}")
    split = "test" if "test" in sources else "val"
    if split not in sources:
        raise SchemaError("no test or validation rows to compare on: give the table a split column with test rows")
    if split == "val":
        warnings.warn(
            "no test split: comparing on the validation rows, which also chose each model's best epoch", stacklevel=2
        )
    task = pipeline.target
    metrics = task.metrics()
    main = task.main_metric.metric
    runs = [(f"{name} only", [name]) for name in inputs] + [("fusion", inputs)]
    rows, outcomes, predictors = [], {}, {}
    for label, keep in runs:
        if on_model is not None:
            on_model(label, keep)
        t0 = time.perf_counter()
        predictor = Predictor(model=model_for_inputs(model, keep), train=train).fit_prepared(pipeline.restrict(keep), sources)
        seconds = time.perf_counter() - t0
        y_true, scores = predict_split(predictor.model, sources[split], pipeline.target)
        outcomes[label] = task.per_row_outcome(y_true, scores)
        predictors[label] = predictor
        row: dict[str, Any] = {"model": label, "inputs": ", ".join(keep)}
        row[main], row[f"{main}_low"], row[f"{main}_high"] = bootstrap_ci(
            metrics[main], y_true, scores, n_boot=n_boot, alpha=alpha, seed=seed
        )
        for name in ("macro_f1", "mae", "rmse"):
            if name in metrics:
                row[name] = metrics[name](y_true, scores)
        row["n"] = int(len(y_true))
        row["epochs"] = len(predictor.result.history)
        row["seconds"] = seconds
        rows.append(row)
    table = pd.DataFrame(rows)
    unimodal = table[table["model"] != "fusion"]
    best_row = unimodal[main].idxmax() if task.main_metric.higher_is_better else unimodal[main].idxmin()
    best = unimodal.loc[best_row, "model"]
    gain = task.paired_gain(outcomes["fusion"], outcomes[best], n_boot=n_boot, alpha=alpha, seed=seed)
    gain.update({"fusion": "fusion", "baseline": str(best), "alpha": alpha})
    return Comparison(table=table, gain=gain, split=split, predictors=predictors)
