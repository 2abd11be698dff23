"""Resumable index builds: an interrupted ``tessera index build`` picks up where it stopped.

Each batch is one atomic LanceDB commit (see :mod:`tessera.index.store`), so after a crash
the index holds whole batches only; :meth:`IndexBuilder.pending` compares the ids already
stored with the ids wanted, and :meth:`IndexBuilder.build` embeds and writes just those.
"""

from __future__ import annotations

from typing import Callable, Sequence

import numpy as np
import pandas as pd

from tessera.index.store import VectorIndex
from tessera.progress import progress_bar

Embed = Callable[[list[str]], "tuple[np.ndarray, pd.DataFrame | None]"]


class IndexBuilder:
    """Fill ``index`` with ``batch_size`` rows per commit, skipping ids it already holds."""

    def __init__(self, index: VectorIndex, batch_size: int = 1024) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, got {batch_size}")
        self.index = index
        self.batch_size = batch_size

    def pending(self, all_ids: Sequence[str]) -> list[str]:
        """The ids of ``all_ids`` not in the index yet, in their given order."""
        stored = set(self.index.ids())
        return [i for i in map(str, all_ids) if i not in stored]

    def build(self, all_ids: Sequence[str], embed: Embed) -> int:
        """Embed and add every pending id; ``embed(batch_ids) -> (vectors, metadata or None)``.

        Ends with :meth:`VectorIndex.optimize`: one small file per batch, and rows added after
        an ANN index was built, would otherwise slow every search down.
        Returns how many rows this call added (0 when the index was already complete).
        """
        todo = self.pending(all_ids)
        with progress_bar("indexing", total=len(todo)) as advance:
            for start in range(0, len(todo), self.batch_size):
                batch = todo[start : start + self.batch_size]
                vectors, metadata = embed(batch)
                self.index.add(batch, vectors, metadata)
                advance(len(batch))
        if todo:
            self.index.optimize()
        return len(todo)
