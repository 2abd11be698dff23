"""All categorical columns of a table as one vector of category ids.

Ids per column: 0 = missing, 1 = unknown (not seen, or too rare, in the training
rows), 2.. = known categories, most frequent first. Reserving "unknown" lets a model
trained on one split take new values at predict time instead of failing.

Values are compared as strings after stripping surrounding whitespace, so ``1`` and
``"1"`` are one category. Whole floats read as integers (``3.0`` is ``"3"``) because
pandas turns an integer column with gaps into floats, and the same category must not
get two ids depending on whether the column had a missing value.
"""

from __future__ import annotations

from collections import Counter
from typing import Any, Sequence

import numpy as np
import pandas as pd
import torch

from tessera.errors import SchemaError, TesseraError
from tessera.media import is_missing
from tessera.preprocess.base import (
    FRACTIONS,
    LoadContext,
    ModalityBatch,
    Noise,
    Preprocessor,
    Sample,
    present_rows,
    register,
)

MISSING_ID = 0
UNKNOWN_ID = 1


@register("categorical")
class CategoricalPreprocessor(Preprocessor):
    """Map each column's value to an id. Output: ``data`` int64 (n_columns,), ``mask`` bool (n_columns,).

    ``max_categories`` keeps the most frequent values per column (ties: alphabetical);
    values seen fewer than ``min_count`` times are folded into "unknown".
    """

    default_encoder = "categorical_embedding"
    noise = Noise("category_dropout", FRACTIONS)

    multi_column = True

    def __init__(self, columns: Sequence[str], max_categories: int = 1000, min_count: int = 1) -> None:
        super().__init__(columns)
        if max_categories < 1:
            raise SchemaError(f"categorical max_categories must be at least 1, got {max_categories}")
        if min_count < 1:
            raise SchemaError(f"categorical min_count must be at least 1, got {min_count}")
        self.max_categories = max_categories
        self.min_count = min_count
        self._vocabs: list[dict[str, int]] | None = None

    def fit(self, frame: pd.DataFrame) -> "CategoricalPreprocessor":
        self._vocabs = []
        for col in self.columns:
            counts = Counter(category_key(v) for v in frame[col] if not is_missing(v))
            kept = sorted((key for key, n in counts.items() if n >= self.min_count), key=lambda k: (-counts[k], k))
            self._vocabs.append({key: i + 2 for i, key in enumerate(kept[: self.max_categories])})
        return self

    @property
    def cardinalities(self) -> list[int]:
        """Embedding rows per column, including the missing and unknown ids."""
        return [len(vocab) + 2 for vocab in self._fitted_vocabs()]

    def _fitted_vocabs(self) -> list[dict[str, int]]:
        if self._vocabs is None:
            raise TesseraError(
                f"categorical columns {self.columns} have no vocabulary yet: "
                "fit the categorical preprocessor on training data first"
            )
        return self._vocabs

    def load(self, values: Sequence[Any], ctx: LoadContext) -> Sample | None:
        vocabs = self._fitted_vocabs()
        ids = np.zeros(len(self.columns), dtype=np.int64)
        mask = np.zeros(len(self.columns), dtype=bool)
        for i, (vocab, value) in enumerate(zip(vocabs, values)):
            if not is_missing(value):
                ids[i], mask[i] = vocab.get(category_key(value), UNKNOWN_ID), True
        if not mask.any():
            return None
        return Sample(data=ids, mask=mask)

    def empty(self) -> Sample:
        n = len(self.columns)
        return Sample(data=np.full(n, MISSING_ID, dtype=np.int64), mask=np.zeros(n, dtype=bool))

    def encoder_facts(self) -> dict[str, Any]:
        return {"cardinalities": list(self.cardinalities)}

    def corrupt(self, batch: ModalityBatch, level: float, generator: torch.Generator) -> ModalityBatch:
        """Each known category id becomes "unknown" with probability ``level``; missing ids stay missing."""
        hit = (torch.rand(batch.data.shape, generator=generator) < level) & present_rows(batch.present, batch.data)
        hit = hit & (batch.data != MISSING_ID)
        return ModalityBatch(torch.where(hit, torch.full_like(batch.data, UNKNOWN_ID), batch.data), batch.present, batch.mask)

    def fitted_state(self) -> dict[str, Any]:
        if self._vocabs is None:
            return {}
        # Lists in id order: JSON keeps them exactly, and id = position + 2.
        return {"vocabularies": [sorted(vocab, key=vocab.__getitem__) for vocab in self._vocabs]}

    def load_fitted_state(self, state: dict[str, Any]) -> None:
        if not state:
            return
        if len(state["vocabularies"]) != len(self.columns):
            raise SchemaError(
                f"saved categorical vocabularies cover {len(state['vocabularies'])} columns, "
                f"but the input has {self.columns}"
            )
        self._vocabs = [{key: i + 2 for i, key in enumerate(keys)} for keys in state["vocabularies"]]

    def describe(self) -> str:
        if self._vocabs is None:
            return super().describe()
        sizes = ", ".join(f"{c}: {n}" for c, n in zip(self.columns, self.cardinalities))
        return f"categorical({sizes})"


def category_key(value: Any) -> str:
    """The string a value is compared as (see the module docstring for why floats are special)."""
    if isinstance(value, (float, np.floating)) and float(value).is_integer():
        return str(int(value))
    if isinstance(value, (bytes, bytearray)):
        return bytes(value).decode("utf-8", errors="replace").strip()
    return str(value).strip()
