"""The rows a model gets most wrong, with their inputs as a person would see them.

Numbers say how often a model fails; looking at the failures says why (a mislabelled
row, a silent clip, a caption that contradicts its image). The media are taken from the
original cells, not the preprocessed tensors, rendered by each input's preprocessor (media
as data URIs: PNG thumbnails, 16-bit WAV clips cut to a few seconds) so the report and its
JSON stand alone.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from tessera.errors import DataError


def worst_examples(
    pipeline: Any,
    y_true: np.ndarray,
    scores: np.ndarray,
    rows: np.ndarray,
    frame: pd.DataFrame,
    base_dir: str | None,
    k: int = 8,
) -> list[dict[str, Any]]:
    """The ``k`` highest-loss rows (by the task's per-row loss): row number, truth, prediction, loss and every input's cell."""
    target = pipeline.target
    loss = target.per_row_loss(y_true, scores)
    out = []
    for i in np.argsort(-loss, kind="stable")[:k]:
        row = int(rows[i])
        example: dict[str, Any] = {"row": row, "loss": float(loss[i]), **target.describe_row(y_true[i], scores[i])}
        example["inputs"] = [
            cell_media(name, pre, [frame.at[row, c] for c in pre.columns], base_dir)
            for name, pre in pipeline.preprocessors.items()
        ]
        out.append(example)
    return out


def cell_media(name: str, pre: Any, values: list[Any], base_dir: str | None) -> dict[str, Any]:
    """One input of one row for display, as its preprocessor renders it; a cell that cannot be read shows its error."""
    item: dict[str, Any] = {"input": name, "modality": pre.modality}
    try:
        return {**item, **pre.render(values, base_dir)}
    except DataError as e:
        return {**item, "kind": "error", "value": str(e)}
