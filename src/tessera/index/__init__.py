"""Embedded vector store for cross-modal search (LanceDB on local disk)."""

from tessera.lazy import lazy_exports

# Exported lazily (see tessera.lazy): importing LanceDB takes seconds, `tessera --help` should not.
_EXPORTS = {"VectorIndex": "store", "WriteCounts": "store", "Searcher": "search", "index_table": "build"}
__getattr__ = lazy_exports(__name__, _EXPORTS)

__all__ = sorted(_EXPORTS)
