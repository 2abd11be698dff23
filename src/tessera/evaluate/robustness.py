"""How does a trained model degrade when inputs go missing or get noisy?

Both are simulated on the cached (already preprocessed) test split, so a curve costs one
inference pass per point and needs no media decoding:

* missing: for each input, a random fraction of rows have it removed exactly as a
  missing cell would be (see :func:`tessera.evaluate.contribution.hide`);
* noise: each input's preprocessor says how its modality is corrupted and at which levels
  (``noise`` and :meth:`~tessera.preprocess.Preprocessor.corrupt`: Gaussian noise in
  normalised units for pixels, numbers and series, a signal-to-noise ratio for audio,
  token dropout for text, "unknown" categories); only the rows where the input is present
  change. Inputs whose modality declares no noise are left out.

Results are tidy DataFrames: one row per (input, level) with the main metric's value.
"""

from __future__ import annotations

import warnings
from typing import Any, Sequence

import pandas as pd
import torch

from tessera.errors import TesseraWarning
from tessera.evaluate.contribution import hide
from tessera.evaluate.metrics import predict_split
from tessera.pipeline import CachedSplit
from tessera.preprocess import ModalityBatch
from tessera.preprocess.base import FRACTIONS


def _score(model: torch.nn.Module, split: CachedSplit, target: Any, batch_size: int) -> float:
    y, scores = predict_split(model, split, target, batch_size)
    return target.main_score(y, scores)


def _replace(split: CachedSplit, name: str, batch: ModalityBatch) -> CachedSplit:
    return CachedSplit({**split.inputs, name: batch}, split.target, split.rows)


def missing_curve(
    model: torch.nn.Module,
    split: CachedSplit,
    target: Any,
    fractions: Sequence[float] = FRACTIONS,
    *,
    seed: int = 0,
    batch_size: int = 256,
) -> pd.DataFrame:
    """The main metric when each input is missing from a random fraction of the rows.

    The rows are nested: those missing at 25% are also missing at 50%, so the curve
    moves only because more rows lose the input, not because of a new draw.
    """
    order = torch.randperm(len(split), generator=torch.Generator().manual_seed(seed))
    records = []
    for name in model.encoders:
        for fraction in fractions:
            rows = torch.zeros(len(split), dtype=torch.bool)
            rows[order[: int(round(fraction * len(split)))]] = True
            value = _score(model, _replace(split, name, hide(split.inputs[name], rows)), target, batch_size)
            records.append({"input": name, "fraction_missing": float(fraction), "metric": target.main_metric.metric, "value": value})
    return pd.DataFrame(records)


def noise_curve(
    model: torch.nn.Module,
    pipeline: Any,
    split: CachedSplit,
    target: Any,
    levels: dict[str, Sequence[float]] | None = None,
    *,
    seed: int = 0,
    batch_size: int = 256,
) -> pd.DataFrame:
    """The main metric under increasing noise on one input at a time (the others clean).

    ``levels`` maps an input name to its levels (default: its preprocessor's ``noise.levels``).
    ``severity`` numbers the levels from clean (0) to worst, whatever their unit.
    """
    records = []
    for name in model.encoders:
        pre = pipeline.preprocessors[name]
        if pre.noise is None:
            continue
        if split.inputs[name].is_features:  # the frozen tower's cached output: the noise is defined on decoded values
            warnings.warn(
                f"no noise curve for input '{name}': it holds cached frozen-tower features, not decoded values "
                "(prepare with feature_cache: false to measure it)",
                TesseraWarning,
                stacklevel=2,
            )
            continue
        for severity, level in enumerate((levels or {}).get(name, pre.noise.levels)):
            generator = torch.Generator().manual_seed(seed)
            noisy = pre.corrupt(split.inputs[name], float(level), generator)
            value = _score(model, _replace(split, name, noisy), target, batch_size)
            records.append(
                {
                    "input": name,
                    "modality": pre.modality,
                    "noise": pre.noise.name,
                    "level": float(level),
                    "severity": severity,
                    "metric": target.main_metric.metric,
                    "value": value,
                }
            )
    return pd.DataFrame(records)
