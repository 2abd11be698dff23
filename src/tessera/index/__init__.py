"""Embedded vector store for cross-modal search (LanceDB on local disk)."""

from tessera.index.builder import IndexBuilder
from tessera.index.store import VectorIndex, WriteCounts

__all__ = ["IndexBuilder", "VectorIndex", "WriteCounts"]
