"""Cross-modal search: query an index with any input of the embedder that filled it, or a weighted mix of several.

``Searcher`` is what ``tessera search`` runs; the server's ``/v1/search`` embeds its query
parts on its own batchers, then searches the same index. The index records the embedder
that filled it (:func:`tessera.index.build.read_info`), so a search needs only the index
path: the query is embedded by the same model, preprocessing included, as the collection.
Metadata filters are SQL-like text from trusted callers, or structured filters
(:mod:`tessera.index.filters`) from anyone else.
"""

from __future__ import annotations

import os
from typing import Any, Mapping, Sequence

import numpy as np
import pandas as pd

from tessera.align.embedder import Embedder, compose
from tessera.errors import DataError, TesseraError
from tessera.index.build import read_info
from tessera.index.store import VectorIndex


class Searcher:
    """Query an index with any input of its embedder, or a weighted mix of several (a composed query)."""

    def __init__(self, index: VectorIndex, embedder: Embedder, info: dict[str, Any] | None = None) -> None:
        if index.dim != embedder.dim:
            raise TesseraError(f"the index holds {index.dim}-d vectors but the embedder makes {embedder.dim}-d ones")
        self.index, self.embedder, self.info = index, embedder, info or {}

    @classmethod
    def open(cls, index_path: str | os.PathLike, embedder: Embedder | str | os.PathLike | None = None) -> "Searcher":
        """Open an index and the embedder recorded in it (or the one given)."""
        index = VectorIndex.open(index_path)
        info = read_info(index_path)
        if embedder is None:
            embedder = info.get("embedder")
            if not embedder:
                raise TesseraError(f"{index_path} does not record its embedder; pass the embedder folder (--model)")
        if not isinstance(embedder, Embedder):
            embedder = Embedder.load(embedder)
        return cls(index, embedder, info)

    def query_vector(self, parts: Sequence[tuple[str, Any]], weights: Sequence[float] | None = None, base_dir: str | None = None) -> np.ndarray:
        """One unit query vector from ``(input or modality, value)`` parts, weighted (default: equally)."""
        if not parts:
            raise TesseraError("a search needs a query: text, an image, a sound, or several of them")
        vectors = []
        for name, value in parts:
            vec = self.embedder.embed(name, [value], base_dir=base_dir)
            if not len(vec):
                raise DataError(f"the {name} query is empty")
            vectors.append(vec[0])
        return compose(vectors, weights)

    def search(
        self,
        parts: Sequence[tuple[str, Any]] | dict[str, Any],
        *,
        weights: Sequence[float] | None = None,
        k: int = 10,
        where: str | Mapping[str, Any] | None = None,
        columns: Sequence[str] | None = None,
        base_dir: str | None = None,
    ) -> pd.DataFrame:
        """Top ``k`` rows: ``id``, ``score`` (cosine), ``rank`` and metadata.

        ``where`` filters on metadata: SQL-like text, or a structured filter (:mod:`tessera.index.filters`).
        """
        if isinstance(parts, dict):
            parts = list(parts.items())
        default = [c for c in self.index.metadata_columns if c != "thumbnail"]
        return self.index.search(self.query_vector(parts, weights, base_dir), k=k, filter=where, columns=columns or default)
