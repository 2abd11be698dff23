"""Text generation: a caption, an answer or a transcript per row, scored against one or more reference texts.

The evaluation half of the task contract fits text as it is: targets are each row's
references (several columns, or a list in one cell: Flickr's five captions), "scores" are
the generated texts, the metrics are CIDEr-D and BLEU-4 from the COCO caption code
(:mod:`tessera.generate.metrics`) with bootstrap intervals, a row's outcome is its CIDEr,
and the worst rows are those with the lowest. So ``task_metrics``, paired comparisons and
the HTML report take a generator's output like any other model's
(:func:`tessera.generate.evaluate.evaluate_generator`).

The training half does not fit, and says so: a fusion model ends in a fixed number of
outputs (``num_outputs``) scored by ``loss(outputs, target)``, while text comes out of a
language model one token at a time, its loss the cross-entropy of the reply's tokens under
that LM's own tokenizer. Those models are :class:`tessera.generate.Generator`, trained by
``tessera generate fit``; a fit config that names this task gets an error that says so.
"""

from __future__ import annotations

from typing import Any, ClassVar, Sequence

import numpy as np
import pandas as pd
import torch

from tessera.errors import DataError, TesseraError
from tessera.tasks.base import Goal, Task, register_task


def _references(cell_values: Sequence[Any]) -> tuple[str, ...]:
    """The non-empty texts among a row's reference cells (a cell may hold a list of texts)."""
    out: list[str] = []
    for v in cell_values:
        items = list(v) if isinstance(v, (list, tuple, np.ndarray)) else [v]
        out += [s.strip() for s in items if isinstance(s, str) and s.strip()]
    return tuple(out)


def _texts(scores: Any) -> list[str]:
    return ["" if s is None else str(s) for s in scores]


def _trained_elsewhere() -> TesseraError:
    return TesseraError(
        "a text_generation target is produced by a language model, not by a fixed-size output layer: "
        "train it with `tessera generate fit CONFIG` (tessera.generate.Generator)"
    )


def cider(y_true: np.ndarray, scores: np.ndarray) -> float:
    from tessera.generate.metrics import caption_scores

    return caption_scores(list(y_true), _texts(scores)).cider


def _cider_weighted(y_true: np.ndarray, scores: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """Resampled means of per-row CIDEr-D, the IDF fixed by all rows (see :mod:`tessera.generate.metrics`)."""
    from tessera.generate.metrics import caption_scores

    per_row = caption_scores(list(y_true), _texts(scores)).cider_per_row
    return counts @ per_row / len(per_row)


def bleu4(y_true: np.ndarray, scores: np.ndarray) -> float:
    from tessera.generate.metrics import caption_scores

    return caption_scores(list(y_true), _texts(scores)).bleu4


def _bleu4_weighted(y_true: np.ndarray, scores: np.ndarray, counts: np.ndarray) -> np.ndarray:
    from tessera.generate.metrics import bleu_statistics, corpus_bleu4, tokenize

    refs = [[tokenize(r) for r in row] for row in y_true]
    return corpus_bleu4(bleu_statistics(refs, [tokenize(s) for s in _texts(scores)]), counts)


cider.weighted = _cider_weighted  # type: ignore[attr-defined]
bleu4.weighted = _bleu4_weighted  # type: ignore[attr-defined]


@register_task("text_generation", aliases=("captioning",))
class TextGeneration(Task):
    main_metric = Goal("cider")
    monitor = Goal("loss", higher_is_better=False)
    group_analysis = False  # CIDEr's IDF is a property of the whole test set; per-group tables would mix IDFs
    inference_order: ClassVar[int | None] = None  # a text column is an input unless the config says otherwise

    # -- target encoding ----------------------------------------------------------------------
    def fit(self, frame: pd.DataFrame) -> "TextGeneration":
        known = self.encode(frame)[1]
        if not known.any():
            raise DataError("no row has a reference text to learn from", column=self.columns[0])
        return self

    @property
    def num_outputs(self) -> int:
        raise _trained_elsewhere()

    def encode(self, frame: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
        """One tuple of reference texts per row (object array); known where it has at least one."""
        missing = [c for c in self.columns if c not in frame.columns]
        if missing:
            raise DataError(f"reference column(s) {missing} are not in the table")
        refs = np.empty(len(frame), dtype=object)
        refs[:] = [_references(row) for row in frame[self.columns].itertuples(index=False)]
        return refs, np.fromiter((len(r) > 0 for r in refs), bool, len(refs))

    # -- training ------------------------------------------------------------------------------
    def loss(self, outputs: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        raise _trained_elsewhere()

    # -- predictions ---------------------------------------------------------------------------
    def predictions(self, outputs: Sequence[str], rows: np.ndarray) -> pd.Series:
        return pd.Series(_texts(outputs), index=rows, name=self.columns[0], dtype=object)

    def served(self, outputs: Sequence[str]) -> list[dict[str, Any]]:
        return [{"text": t} for t in _texts(outputs)]

    # -- evaluation ----------------------------------------------------------------------------
    def scores(self, outputs: Sequence[str]) -> np.ndarray:
        out = np.empty(len(outputs), dtype=object)
        out[:] = _texts(outputs)
        return out

    def true_values(self, target: Sequence[Sequence[str]]) -> np.ndarray:
        out = np.empty(len(target), dtype=object)
        out[:] = [tuple(t) for t in target]
        return out

    def summary_metrics(self, outputs: Sequence[str], target: Sequence[Sequence[str]]) -> dict[str, float]:
        from tessera.generate.metrics import caption_scores

        s = caption_scores([list(t) for t in target], _texts(outputs))
        return {"cider": s.cider, "bleu4": s.bleu4, "n": len(s.cider_per_row)}

    def metrics(self) -> dict[str, Any]:
        return {"cider": cider, "bleu4": bleu4}

    def per_row_outcome(self, y_true: np.ndarray, scores: np.ndarray) -> np.ndarray:
        """Each row's CIDEr-D (the IDF of all rows given)."""
        from tessera.generate.metrics import caption_scores

        return caption_scores(list(y_true), _texts(scores)).cider_per_row

    def paired_gain(self, fused: np.ndarray, baseline: np.ndarray, **options: Any) -> dict[str, Any]:
        """Mean per-row CIDEr of ``fused`` minus ``baseline``: paired-bootstrap interval, Wilcoxon p-value."""
        from tessera.evaluate.compare import paired_error_reduction

        gain = paired_error_reduction(-np.asarray(fused, float), -np.asarray(baseline, float), **options)
        gain["measure"] = "CIDEr gain"
        return gain

    def per_row_loss(self, y_true: np.ndarray, scores: np.ndarray) -> np.ndarray:
        return -self.per_row_outcome(y_true, scores)

    def describe_row(self, y_true: Any, scores: Any) -> dict[str, Any]:
        return {"true": " | ".join(y_true), "predicted": str(scores)}
