"""The whole evaluation of one trained model on one labelled table, as one JSON-ready dict.

:func:`evaluate_predictor` is what ``tessera evaluate`` and ``tessera report`` run: it
decodes the table once, then every analysis (metrics with intervals, calibration,
contribution, robustness, fairness, worst examples) reads the same cached tensors.
The result holds plain numbers, lists and strings only, so :mod:`tessera.evaluate.report`
can render the HTML from the saved JSON alone.
"""

from __future__ import annotations

import datetime as dt
from typing import Any, Sequence

import pandas as pd

import tessera
from tessera.errors import SchemaError, SkipReport
from tessera.evaluate.compare import Comparison
from tessera.evaluate.contribution import contribution_analysis
from tessera.evaluate.examples import worst_examples
from tessera.evaluate.fairness import fairness_analysis
from tessera.evaluate.metrics import predict_split, task_metrics
from tessera.evaluate.robustness import missing_curve, noise_curve
from tessera.pipeline import CachedSplit
from tessera.prepare import SKIP_REPORT, decode_table, drop_unknown_targets
from tessera.schema import SPLIT_VALUES
from tessera.table import Table, read_table


def evaluate_predictor(
    predictor: Any,
    table: Any,
    *,
    split: str | None = None,
    group_columns: Sequence[str] = (),
    comparison: Comparison | None = None,
    model_name: str = "model",
    **options: Any,
) -> dict[str, Any]:
    """Evaluate a trained :class:`~tessera.predictor.Predictor` on a labelled table.

    ``split`` keeps only the rows whose schema split column says so (e.g. "test").
    ``options`` go to :func:`evaluate_split` (n_boot, alpha, seed, contribution, robustness, n_examples).
    """
    pipeline = predictor.pipeline
    ensemble = getattr(predictor, "ensemble", None)
    if ensemble is None and (predictor.model is None or pipeline is None):
        raise SchemaError("this predictor is not trained: call fit() or Predictor.load()")
    target = predictor.task
    t = read_table(table)
    frame = t.frame
    missing = [c for c in target.columns if c not in frame.columns]
    if missing:
        raise SchemaError(f"evaluation needs the target column(s) {missing} in the table")
    if split is not None:
        column = pipeline.schema.split if ensemble is None else ensemble.info.get("schema", {}).get("split")
        if not column or column not in frame.columns:
            raise SchemaError(f"--split {split!r} needs the schema's split column in the table (schema split: {column!r})")
        names = frame[column].map(lambda v: SPLIT_VALUES.get(str(v).lower(), str(v)))
        frame = frame[names == split]
        if frame.empty:
            raise SchemaError(f"no rows have split {split!r} in column {column!r}")
    frame = drop_unknown_targets(frame, target.columns, "evaluation")
    meta = {"model": model_name, "table": t.source, "split": split or "all rows"}
    if ensemble is not None:  # scores only: the analyses that take a model apart need a single network
        outputs, y, _ = predictor.outputs(Table(frame, t.base_dir, t.source), with_target=True)
        inputs = {n: spec["modality"] for n, spec in ensemble.info.get("schema", {}).get("inputs", {}).items()}
        return score_results(target, target.true_values(y), target.scores(outputs), inputs, meta, comparison=comparison,
                             **{k: v for k, v in options.items() if k in ("n_boot", "alpha", "seed")})
    report = SkipReport()
    settings = predictor.inference.replace(cache=True)  # every analysis reads the decoded tensors
    cached = decode_table(pipeline, Table(frame, t.base_dir, t.source), settings, report, name="evaluation rows")
    if len(report):
        report.warn(report.write(SKIP_REPORT))
    return evaluate_split(
        predictor.model, pipeline, cached, frame, t.base_dir, group_columns=group_columns, comparison=comparison, meta=meta, **options
    )


def score_results(
    target: Any,
    y: Any,
    scores: Any,
    inputs: Any,
    meta: dict[str, Any] | None,
    *,
    comparison: Comparison | None = None,
    n_boot: int = 1000,
    alpha: float = 0.05,
    seed: int = 0,
) -> dict[str, Any]:
    """The results every evaluation has: metadata, metrics with intervals, and the task's own sections
    (confusion and calibration, or a scatter); the model-level analyses start empty."""
    results: dict[str, Any] = {
        "meta": {
            **(meta or {}),
            "created": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
            "tessera_version": tessera.__version__,
            "task": target.name,
            "target": target.columns,
            "classes": [str(c) for c in target.classes],
            "inputs": inputs,
            "n": int(len(y)),
            "main_metric": target.main_metric.metric,
            "n_boot": n_boot,
            "alpha": alpha,
            "seed": seed,
        },
        "summary": task_metrics(target, y, scores, n_boot=n_boot, alpha=alpha, seed=seed),
        "confusion": None,
        "per_class": None,
        "calibration": None,
        "scatter": None,
        "comparison": None if comparison is None else comparison.to_dict(),
        "contribution": None,
        "robustness": None,
        "fairness": None,
        "examples": [],
    }
    results.update(target.report_sections(y, scores, seed))
    return results


def evaluate_split(
    model: Any,
    pipeline: Any,
    split: CachedSplit,
    frame: pd.DataFrame,
    base_dir: str | None,
    *,
    group_columns: Sequence[str] = (),
    comparison: Comparison | None = None,
    n_boot: int = 1000,
    alpha: float = 0.05,
    seed: int = 0,
    contribution: bool = True,
    robustness: bool = True,
    n_examples: int = 8,
    meta: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Every analysis of ``model`` on a cached split whose ``rows`` index ``frame``."""
    unknown = [c for c in group_columns if c not in frame.columns]
    if unknown:
        raise SchemaError(f"group column(s) {unknown} are not in the table; columns: {list(frame.columns)}")
    target = pipeline.target
    y, scores = predict_split(model, split, target)
    rows = split.rows.numpy()
    inputs = list(model.encoders)
    modalities = {n: pipeline.preprocessors[n].modality for n in inputs}
    results = score_results(target, y, scores, modalities, meta, comparison=comparison, n_boot=n_boot, alpha=alpha, seed=seed)
    if contribution and len(inputs) > 1:
        unimodal = None
        if comparison is not None:
            main = target.main_metric.metric
            unimodal = {r["inputs"]: r[main] for r in comparison.table.to_dict(orient="records") if r["model"] != "fusion"}
        results["contribution"] = contribution_analysis(model, split, target, unimodal=unimodal)
    if robustness:
        results["robustness"] = {
            "missing": missing_curve(model, split, target, seed=seed).to_dict(orient="records"),
            "noise": noise_curve(model, pipeline, split, target, seed=seed).to_dict(orient="records"),
        }
    present = {n: split.inputs[n].present.numpy() for n in inputs}
    results["fairness"] = fairness_analysis(
        target, y, target.point_predictions(scores), frame.loc[rows], group_columns, present if len(inputs) > 1 else None,
        n_classes=len(target.classes) or None,
    )
    if n_examples:
        results["examples"] = worst_examples(pipeline, y, scores, rows, frame, base_dir, k=n_examples)
    return results
