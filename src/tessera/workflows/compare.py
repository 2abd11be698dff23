"""Does fusion really help? Train the unimodal baselines and the fusion model, then compare them paired.

Every model is trained on one decoded copy of the data (:func:`tessera.prepare.prepare`),
under one config and seed (the same budget, schedule and stopping rule), so the only
difference between them is the inputs; the statistics of the comparison (paired
bootstrap, McNemar) are :mod:`tessera.evaluate.compare`'s. Same rules are not yet a fair
race: an arm that stopped long before another, or one still improving when its budget ran
out, was compared at a different point of its learning, so :func:`training_flags` says so.
"""

from __future__ import annotations

import time
import warnings
from typing import Any, Callable

import pandas as pd

from tessera.errors import SchemaError, TesseraWarning
from tessera.evaluate.compare import Comparison
from tessera.evaluate.metrics import bootstrap_ci, predict_split
from tessera.model import ModelConfig
from tessera.predictor import Predictor
from tessera.tasks.base import Goal
from tessera.train import TrainResult

EARLIER = 0.5  # an arm that ran at most this fraction of another's epochs "stopped much earlier"


def model_for_inputs(model: dict | ModelConfig | None, keep: list[str]) -> ModelConfig:
    """The model config with per-input settings (encoders) cut to ``keep``: a baseline has no audio encoder to set."""
    cfg = model if isinstance(model, ModelConfig) else ModelConfig.from_dict(model)
    return cfg.replace(encoders={k: v for k, v in cfg.encoders.items() if k in keep})


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

    ``pipeline`` and ``sources`` come from :func:`tessera.prepare.prepare`. The test split is
    used when there is one; otherwise the validation split, with a warning, because it
    also chose each model's best epoch and so flatters every model a little. The gain is
    measured against the best unimodal model on the same rows, chosen on those rows,
    which flatters the baseline: a gain that survives that is not a selection effect.
    """
    inputs = list(pipeline.preprocessors)
    if len(inputs) < 2:
        raise SchemaError(f"a fusion comparison needs at least two inputs; this pipeline has {inputs}")
    split = "test" if "test" in sources else "val"
    if split not in sources:
        raise SchemaError("no test or validation rows to compare on: give the table a split column with test rows")
    if split == "val":
        warnings.warn(
            "no test split: comparing on the validation rows, which also chose each model's best epoch", TesseraWarning,
            stacklevel=2,
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
        row.update(training_columns(predictor.result, task.monitor))
        row["seconds"] = seconds
        rows.append(row)
    table = pd.DataFrame(rows)
    unimodal = table[table["model"] != "fusion"]
    best_row = unimodal[main].idxmax() if task.main_metric.higher_is_better else unimodal[main].idxmin()
    best = unimodal.loc[best_row, "model"]
    gain = task.paired_gain(outcomes["fusion"], outcomes[best], n_boot=n_boot, alpha=alpha, seed=seed)
    gain.update({"fusion": "fusion", "baseline": str(best), "alpha": alpha})
    flags = training_flags(rows, predictors["fusion"].train_config.epochs)
    return Comparison(table=table, gain=gain, split=split, predictors=predictors, flags=flags)


def training_columns(result: TrainResult, goal: Goal) -> dict[str, Any]:
    """How an arm's training went: epochs run, its best epoch, whether it stopped early or was still improving.

    "Still improving": it ran to its last epoch and that epoch's monitored score (validation,
    else the training loss) was its best and better than the epoch before.
    """
    history = result.history
    key = f"val_{goal.metric}" if history and f"val_{goal.metric}" in history[-1] else "train_loss"
    goal = goal if key != "train_loss" else Goal("train_loss", higher_is_better=False)
    scores = [h[key] for h in history]
    improving = (
        not result.stopped_early
        and len(scores) > 1
        and all(goal.better(scores[-1], s) for s in scores[:-1])
    )
    output = result.output["chosen"] if result.output else None
    return {
        "epochs": len(history),
        "best_epoch": result.best_epoch,
        "stopped_early": bool(result.stopped_early),
        "still_improving": improving,
        "watched": key,
        "first_score": scores[0] if scores else None,
        "last_score": scores[-1] if scores else None,
        "output": output or "-",
    }


def training_flags(rows: list[dict[str, Any]], budget: int) -> list[str]:
    """Warnings about arms that were not compared at the same point of their learning."""
    flags = []
    longest = max(rows, key=lambda r: r["epochs"])
    for r in rows:
        if r["stopped_early"] and r["epochs"] <= EARLIER * longest["epochs"]:
            flags.append(
                f"{r['model']} stopped early at epoch {r['epochs']} of {budget}, much earlier than {longest['model']} "
                f"({longest['epochs']} epochs): it may be under-trained rather than worse"
            )
        if r["still_improving"]:
            flags.append(
                f"{r['model']} was still improving at its last epoch ({r['watched']} {r['first_score']:.4f} at epoch 1, "
                f"{r['last_score']:.4f} at epoch {r['epochs']}): a longer budget may change the comparison"
            )
        if r["output"] not in ("-", "fused"):
            flags.append(f"{r['model']} answers with {r['output']}: on validation its fused output alone did worse")
    return flags
