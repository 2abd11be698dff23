"""The embedded vector store behind cross-modal search: one LanceDB table on local disk.

Why LanceDB: it is embedded (no server), keeps vectors and metadata (labels, splits,
thumbnails) in one columnar table, filters with SQL-like ``where`` clauses, and builds
IVF-PQ / HNSW indexes when a table grows past what exact search serves quickly.

Layout: ``path`` is a LanceDB database folder holding one table, ``vectors``, with columns

* ``id`` (string, unique: Tessera enforces it, LanceDB does not),
* ``vector`` (fixed-size list of float32, ``dim`` long),
* ``content_hash`` (string, may be null: the hash of the source media the vector was
  computed from, so :meth:`VectorIndex.add_or_update_if_changed` re-embeds only what changed),
* the metadata columns given at :meth:`VectorIndex.create`.

The metric and a format marker live in the Arrow schema metadata, so ``open`` needs only the path.

Crash safety: every LanceDB write (``add``, ``merge_insert``, ``delete``, index build) first
writes new data files and then commits a new table version by writing its manifest in one
atomic step. A process killed mid-write leaves at most unreferenced data files behind;
readers see the previous version, never half a batch. :meth:`VectorIndex.add` commits one
version per ``write_batch`` rows, so an interrupted large add keeps its whole batches, and a
build (:mod:`tessera.index.build`, one commit per batch) that is run again skips the rows
already stored with an unchanged content hash. Orphaned files are removed by
:meth:`VectorIndex.optimize` once they are old enough to be sure no writer still uses them.

Latency: every call goes through LanceDB's async API on LanceDB's own background event loop
(the loop its sync API uses too), one hand-off per operation. The sync ``Table`` makes about
six hand-offs per query (schema look-ups, plan, stream), which on 2 busy cores cost as much
as the ANN search itself. Being a background thread, it also works inside Jupyter or an
async web server, where a second event loop in the caller's thread would not.

Concurrency: one writer at a time. The duplicate-id check in :meth:`VectorIndex.add` reads,
then writes; two processes adding the same new id at once could both succeed.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping, Sequence

import lancedb
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
from lancedb.background_loop import LOOP
from lancedb.index import BTree, HnswSq, IvfFlat, IvfPq

from tessera.errors import DataError, SchemaError, TesseraError
from tessera.index.filters import where

TABLE = "vectors"
FORMAT_KEY = b"tessera.index"
FORMAT_VERSION = b"1"
METRIC_KEY = b"tessera.metric"
METRICS = ("cosine", "dot")  # both give a similarity score: 1 - LanceDB's distance
ANN_KINDS = ("ivf_flat", "ivf_pq", "hnsw")
ANN_INDEX_NAME = "vector_idx"
BASE_COLUMNS = ("id", "vector", "content_hash")
RESERVED = {*BASE_COLUMNS, "score", "rank", "query", "_distance", "_rowid"}
IN_CHUNK = 10_000  # ids per ``id IN (...)`` clause: keeps the SQL text and its plan small

# Search-time knobs for an ANN index; exact search ignores them. Chosen with
# benchmarks/index.py for Recall@10 >= 0.95 on clustered 384-d data (1M rows: IVF-flat
# reached 0.99 at 2 probes and 0.9995 from 3; for IVF-PQ, 10 probes already reach the
# recall that re-ranking 10 x k candidates allows).
DEFAULT_NPROBES = 10
DEFAULT_REFINE_FACTOR = 10
DEFAULT_EF = 64
# IVF-PQ k-means iterations: LanceDB's 50 spend minutes on PQ codebooks at 100k rows; 10 cost
# no recall once results are re-ranked with the full vectors (refine_factor).
IVF_PQ_ITERATIONS = 10


_ABSENT = object()  # not in the index: unlike any stored hash, null included
Fill = Callable[[np.ndarray], "tuple[Sequence[int], np.ndarray, pd.DataFrame | None]"]
"""``fill(positions) -> (positions to write, their vectors, their metadata rows)``: what a write needs, made on demand.

Metadata ``None``: the rows of the ``metadata`` given to the write."""


def _run(coroutine):
    """Run one LanceDB async call on LanceDB's background event loop and wait for its result."""
    return LOOP.run(coroutine)


@dataclass(frozen=True)
class WriteCounts:
    """What a write did, row by row: new ids added, existing ids rewritten, rows left alone."""

    added: int
    updated: int
    unchanged: int = 0

    def __add__(self, other: WriteCounts) -> WriteCounts:
        return WriteCounts(self.added + other.added, self.updated + other.updated, self.unchanged + other.unchanged)


class VectorIndex:
    """Vectors + metadata keyed by a unique string id, searched by cosine similarity.

    Build with :meth:`create` or :meth:`open`. Search is exact until the table holds more
    than ``ann_threshold`` rows; the next write then builds an IVF-PQ index
    (:meth:`build_ann` builds one on demand).
    """

    def __init__(self, path: Path, table: lancedb.AsyncTable, *, ann_threshold: int, write_batch: int) -> None:
        self.path = path
        self._table = table
        self.ann_threshold = ann_threshold
        self.write_batch = write_batch
        schema = self._schema = _run(table.schema())
        self.dim: int = schema.field("vector").type.list_size
        self.metric: str = schema.metadata[METRIC_KEY].decode()
        self.metadata_columns: list[str] = [f.name for f in schema if f.name not in BASE_COLUMNS]
        self.ann_kind: str | None = _vector_index_kind(_run(table.list_indices()))

    # -- opening -----------------------------------------------------------------------

    @classmethod
    def create(
        cls,
        path: str | os.PathLike,
        dim: int,
        metric: str = "cosine",
        metadata_schema: pa.Schema | Mapping[str, pa.DataType] | None = None,
        *,
        ann_threshold: int = 100_000,
        write_batch: int = 50_000,
    ) -> "VectorIndex":
        """Create an empty index in folder ``path`` (an existing index there is an error).

        ``metadata_schema`` names the metadata columns and their Arrow types, e.g.
        ``{"label": pa.string(), "split": pa.string(), "thumbnail": pa.binary()}``.
        """
        path = Path(path)
        if metric not in METRICS:
            raise TesseraError(f"metric must be one of {METRICS}, got {metric!r}")
        if not isinstance(dim, (int, np.integer)) or dim < 1:
            raise TesseraError(f"dim must be a positive integer, got {dim!r}")
        if (path / f"{TABLE}.lance").exists():
            raise TesseraError(f"an index already exists at {path}; open it with VectorIndex.open")
        fields = [
            pa.field("id", pa.string(), nullable=False),
            pa.field("vector", pa.list_(pa.float32(), int(dim))),
            pa.field("content_hash", pa.string()),
        ]
        for field in _metadata_fields(metadata_schema):
            if field.name in RESERVED:
                raise SchemaError(f"metadata column {field.name!r} is reserved; reserved names: {sorted(RESERVED)}")
            fields.append(field.with_nullable(True))
        schema = pa.schema(fields, metadata={FORMAT_KEY: FORMAT_VERSION, METRIC_KEY: metric.encode()})
        table = _run(_create_table(path, schema))
        return cls(path, table, ann_threshold=ann_threshold, write_batch=write_batch)

    @classmethod
    def open(
        cls,
        path: str | os.PathLike,
        dim: int | None = None,
        *,
        ann_threshold: int = 100_000,
        write_batch: int = 50_000,
    ) -> "VectorIndex":
        """Open the index in ``path``; ``dim``, when given, must match the stored dimension."""
        path = Path(path)
        # lancedb.connect creates missing folders: check first so a typo is an error, not a new empty folder
        if not path.is_dir():
            raise TesseraError(f"no vector index at {path}: the folder does not exist")
        if not (path / f"{TABLE}.lance").is_dir():
            raise TesseraError(f"{path} is not a Tessera vector index (no '{TABLE}' table in it)")
        try:
            table = _run(_open_table(path))
        except Exception as e:  # a damaged or foreign folder: say which, keep the cause
            raise TesseraError(f"cannot open the vector index at {path}: {e}") from e
        metadata = _run(table.schema()).metadata or {}
        if metadata.get(FORMAT_KEY) != FORMAT_VERSION:
            raise TesseraError(f"{path} holds a LanceDB table that Tessera did not create (no format marker)")
        index = cls(path, table, ann_threshold=ann_threshold, write_batch=write_batch)
        if dim is not None and dim != index.dim:
            raise TesseraError(f"the index at {path} holds {index.dim}-d vectors, but {dim}-d was expected")
        return index

    def __len__(self) -> int:
        return _run(self._table.count_rows())

    def __repr__(self) -> str:
        return (
            f"VectorIndex({str(self.path)!r}, dim={self.dim}, metric={self.metric!r}, "
            f"rows={len(self)}, ann={self.ann_kind})"
        )

    # -- writing -----------------------------------------------------------------------

    def add(
        self,
        ids: Sequence[str],
        vectors: np.ndarray,
        metadata: pd.DataFrame | None = None,
        *,
        upsert: bool = False,
    ) -> WriteCounts:
        """Add new rows; an id already in the index is an error (``upsert=True`` replaces it).

        Nothing is written when any id is a duplicate. Rows are committed ``write_batch`` at a
        time, each batch atomically.
        """
        if upsert:
            return self.upsert(ids, vectors, metadata)
        ids = _as_ids(ids)
        if not ids:
            return WriteCounts(added=0, updated=0)
        existing = self._existing_ids(ids)
        if existing:
            shown = ", ".join(repr(i) for i in sorted(existing)[:5])
            raise DataError(
                f"{len(existing)} id(s) already in the index at {self.path} (e.g. {shown}); "
                "use upsert to replace them"
            )
        rows = self._rows(ids, vectors, metadata)
        for start in range(0, rows.num_rows, self.write_batch):
            _run(self._table.add(rows.slice(start, self.write_batch)))
        self._maybe_build_ann()
        return WriteCounts(added=len(ids), updated=0)

    def upsert(
        self,
        ids: Sequence[str],
        vectors: np.ndarray,
        metadata: pd.DataFrame | None = None,
        content_hash: Sequence[str] | None = None,
    ) -> WriteCounts:
        """Insert new ids and replace the vector (and the metadata columns given) of existing ones.

        Columns not in ``metadata`` keep their stored values (null for new rows).
        ``content_hash`` records the source hashes that later builds compare against.
        """
        ids = _as_ids(ids)
        if not ids:
            return WriteCounts(added=0, updated=0)
        hashes = None if content_hash is None else [str(h) for h in content_hash]
        counts = self._merge(self._rows(ids, vectors, metadata, hashes))
        self._maybe_build_ann()
        return counts

    def add_or_update_if_changed(
        self,
        ids: Sequence[str],
        vectors: np.ndarray | Fill,
        metadata: pd.DataFrame | None,
        content_hash: Sequence[str],
    ) -> WriteCounts:
        """Write only rows that are new or whose ``content_hash`` differs from the stored one, in one merge.

        This is how every index build writes (:mod:`tessera.index.build`, local and Ray).
        ``content_hash`` is the caller's hash of each row's source media. ``vectors`` is an
        array aligned with ``ids`` (and ``metadata`` a frame aligned with them), or a :data:`Fill`
        function, called once with the positions (into ``ids``) that need writing, so unchanged
        media is never re-embedded; rows it leaves out (they could not be embedded) are not written.
        """
        ids = _as_ids(ids)
        hashes = [str(h) for h in content_hash]
        if len(hashes) != len(ids):
            raise DataError(f"got {len(ids)} ids but {len(hashes)} content hashes")
        stored = self._lookup(ids, ["id", "content_hash"])
        stored_hash = dict(zip(stored["id"], stored["content_hash"]))
        changed = [p for p, (i, h) in enumerate(zip(ids, hashes)) if stored_hash.get(i, _ABSENT) != h]
        positions = np.array(changed, dtype=np.int64)
        unchanged = len(ids) - len(positions)
        if len(positions) and callable(vectors):
            written, vecs, meta = vectors(positions)
            positions = np.asarray(written, dtype=np.int64)
        elif len(positions):
            vecs, meta = np.asarray(vectors)[positions], None
        if len(positions) == 0:
            return WriteCounts(added=0, updated=0, unchanged=unchanged)
        if meta is None and metadata is not None:
            meta = metadata.iloc[positions]
        counts = self._merge(self._rows([ids[p] for p in positions], vecs, meta, [hashes[p] for p in positions]))
        self._maybe_build_ann()
        return WriteCounts(added=counts.added, updated=counts.updated, unchanged=unchanged)

    def delete(self, ids: Sequence[str]) -> int:
        """Remove the rows with these ids (unknown ids are ignored); returns how many went."""
        deleted = 0
        for clause in _id_clauses(_as_ids(ids)):
            deleted += _run(self._table.delete(clause)).num_deleted_rows
        return deleted

    # -- reading -----------------------------------------------------------------------

    def get(self, ids: Sequence[str], columns: Sequence[str] | None = None) -> pd.DataFrame:
        """Rows for ``ids`` in the order asked (ids not in the index are left out), vector included."""
        ids = _as_ids(ids, unique=False)
        columns = ["id", *self._check_columns(columns, default=["vector", "content_hash", *self.metadata_columns])]
        found = self._lookup(ids, list(dict.fromkeys(columns)))
        order = {i: n for n, i in enumerate(dict.fromkeys(ids))}
        return found.iloc[np.argsort([order[i] for i in found["id"]], kind="stable")].reset_index(drop=True)

    def ids(self) -> list[str]:
        """Every id in the index (one scan of the id column)."""
        return _run(self._table.query().select(["id"]).to_arrow()).column("id").to_pylist()

    def search(
        self,
        vectors: np.ndarray,
        k: int = 10,
        filter: str | Mapping[str, Any] | None = None,
        columns: Sequence[str] | None = None,
        *,
        nprobes: int = DEFAULT_NPROBES,
        refine_factor: int = DEFAULT_REFINE_FACTOR,
        ef: int = DEFAULT_EF,
    ) -> pd.DataFrame:
        """The ``k`` most similar rows per query: ``id``, ``score`` (cosine, higher is better), ``rank``.

        ``vectors`` is one query (1-d) or several (2-d; the result then has a ``query``
        column, the 0-based row of the query). ``filter`` is a SQL-like condition on metadata
        (``"split = 'test' AND label != 'cat'"``), or, from an untrusted caller, a structured
        filter (``{"split": "test", "label": {"ne": "cat"}}``, see :mod:`tessera.index.filters`);
        it is applied before the search so ``k`` rows come back when ``k`` rows match.
        ``columns`` picks metadata columns to return
        (default: all metadata; ``"vector"`` and ``"content_hash"`` on request).
        ``nprobes``/``refine_factor`` (IVF-PQ) and ``ef`` (HNSW) trade speed for recall and
        only matter once an ANN index exists.
        """
        if k < 1:
            raise TesseraError(f"k must be at least 1, got {k}")
        if filter is not None and not isinstance(filter, str):
            # a structured filter: checked against the columns' kinds, and quoted
            filter = where(filter, self.metadata_columns, _value_kinds(self._schema))
        queries = np.asarray(vectors, dtype=np.float32)
        single = queries.ndim == 1
        queries = self._check_vectors(queries.reshape(1, -1) if single else queries)
        selected = ["id", *self._check_columns(columns, default=self.metadata_columns)]
        query = (
            self._table.vector_search(queries[0] if single else list(queries))
            .distance_type(self.metric)
            .limit(k)
            .select([*dict.fromkeys(selected), "_distance"])
        )
        if filter:
            query = query.where(filter)  # LanceDB filters before the vector search (prefilter) by default
        if self.ann_kind == "ivf_flat":
            query = query.nprobes(nprobes)  # distances are exact within the probed partitions: nothing to re-rank
        elif self.ann_kind == "ivf_pq":
            query = query.nprobes(nprobes).refine_factor(refine_factor)
        elif self.ann_kind == "hnsw":
            query = query.ef(max(ef, k * refine_factor)).refine_factor(refine_factor)  # LanceDB needs ef >= candidates
        try:
            hits = _run(query.to_arrow())
        except Exception as e:  # most often a bad filter: pass LanceDB's message on, without its source paths
            where_ = f" (filter {filter!r})" if filter else ""
            raise TesseraError(f"search failed{where_}: {_without_paths(str(e))}") from e
        return _hits_frame(hits, selected, single)

    # -- maintenance -------------------------------------------------------------------

    def build_ann(
        self,
        kind: str = "ivf_flat",
        *,
        num_partitions: int | None = None,
        num_sub_vectors: int | None = None,
        m: int = 20,
        ef_construction: int = 300,
    ) -> None:
        """Build (or rebuild) an approximate index on ``vector``: ``ivf_flat``, ``ivf_pq`` or ``hnsw`` (IVF-HNSW-SQ).

        IVF-flat, the default: sqrt(rows) partitions holding the full vectors, so the probed
        ones are scored exactly and nothing needs re-ranking. On 1M x 384-d (benchmarks/index.py)
        it reached Recall@10 0.999 at p50 6.0 / p99 10.0 ms, against 0.99 at 14.1 / 28.9 ms for
        IVF-PQ in an earlier run, whose re-ranking step costs a random read per candidate; the
        price is an index as large as the vectors themselves.
        IVF-PQ stores 16x smaller codes: the choice when the index must fit in less memory.
        IVF-PQ defaults (measured in benchmarks/index.py on 1M x 384-d): sqrt(rows) partitions;
        dim/4 PQ sub-vectors, 4 dims each. Coarser codes rank neighbours too roughly: with dim/8,
        Recall@10 was 0.83 at ``refine_factor=10`` against 0.99 with dim/4, and re-ranking more
        candidates costs one random read per candidate. HNSW (IVF-HNSW-SQ, one graph per ~1M
        rows, LanceDB's default) searches fast but took 4 min to build 100k rows on 2 cores.
        """
        if kind not in ANN_KINDS:
            raise TesseraError(f"ANN kind must be one of {ANN_KINDS}, got {kind!r}")
        partitions = num_partitions or max(1, round(len(self) ** 0.5))
        if kind == "ivf_flat":
            config = IvfFlat(distance_type=self.metric, num_partitions=partitions)
        elif kind == "ivf_pq":
            config = IvfPq(
                distance_type=self.metric,
                num_partitions=partitions,
                num_sub_vectors=num_sub_vectors or (self.dim // 4 if self.dim % 4 == 0 else None),
                max_iterations=IVF_PQ_ITERATIONS,
            )
        else:
            config = HnswSq(
                distance_type=self.metric, num_partitions=num_partitions, m=m, ef_construction=ef_construction
            )
        try:
            _run(self._table.create_index("vector", config=config, replace=True, name=ANN_INDEX_NAME))
        except Exception as e:  # e.g. too few rows to train PQ codebooks
            raise TesseraError(f"cannot build a {kind} index on {len(self)} rows at {self.path}: {e}") from e
        self.ann_kind = kind

    def prewarm(self) -> None:
        """Ask LanceDB to load the ANN index into memory, so the first queries do not read it from disk."""
        if self.ann_kind is not None:
            _run(self._table.prewarm_index(ANN_INDEX_NAME))

    def optimize(self) -> None:
        """Compact small files, fold new rows into the ANN and id indexes, drop old versions (> 7 days)."""
        _run(self._table.optimize())

    # -- internals ---------------------------------------------------------------------

    def _maybe_build_ann(self) -> None:
        if self.ann_kind is None and len(self) > self.ann_threshold:
            self.build_ann()

    def _merge(self, rows: pa.Table) -> WriteCounts:
        added = updated = 0
        for start in range(0, rows.num_rows, self.write_batch):
            result = _run(
                self._table.merge_insert("id")
                .when_matched_update_all()
                .when_not_matched_insert_all()
                .execute(rows.slice(start, self.write_batch))
            )
            added += result.num_inserted_rows
            updated += result.num_updated_rows
        return WriteCounts(added=added, updated=updated)

    def _rows(
        self,
        ids: list[str],
        vectors: np.ndarray,
        metadata: pd.DataFrame | None,
        content_hash: list[str] | None = None,
    ) -> pa.Table:
        """An Arrow table of the columns given; LanceDB fills the others with null (or keeps them, on merge)."""
        vectors = self._check_vectors(np.asarray(vectors, dtype=np.float32))
        if len(vectors) != len(ids):
            raise DataError(f"got {len(ids)} ids but {len(vectors)} vectors")
        schema = self._schema
        columns = {
            "id": pa.array(ids, pa.string()),
            "vector": pa.FixedSizeListArray.from_arrays(pa.array(np.ascontiguousarray(vectors).ravel()), self.dim),
        }
        if content_hash is not None:
            columns["content_hash"] = pa.array(content_hash, pa.string())
        if metadata is not None:
            if len(metadata) != len(ids):
                raise DataError(f"got {len(ids)} ids but {len(metadata)} metadata rows")
            unknown = [c for c in metadata.columns if c not in self.metadata_columns]
            if unknown:
                raise SchemaError(
                    f"metadata column(s) {unknown} are not in the index at {self.path}; "
                    f"its metadata columns are {self.metadata_columns}"
                )
            for name in metadata.columns:
                try:
                    columns[name] = pa.array(metadata[name], type=schema.field(name).type, from_pandas=True)
                except (pa.ArrowInvalid, pa.ArrowTypeError) as e:
                    raise DataError(f"cannot store as {schema.field(name).type}: {e}", column=name) from e
        return pa.table(columns, schema=pa.schema([schema.field(name) for name in columns]))

    def _check_vectors(self, vectors: np.ndarray) -> np.ndarray:
        if vectors.ndim != 2 or vectors.shape[1] != self.dim:
            raise DataError(
                f"vectors have shape {vectors.shape}, but the index at {self.path} holds {self.dim}-d vectors"
            )
        squares = np.einsum("ij,ij->i", vectors, vectors)  # per row, without an n x dim temporary
        bad = ~np.isfinite(squares)  # NaN or inf anywhere in the row (or values too large to square)
        if self.metric == "cosine":
            bad |= squares == 0  # a zero vector has no direction
        if bad.any():
            row = int(np.flatnonzero(bad)[0])
            raise DataError(f"{int(bad.sum())} vector(s) are all-zero or hold NaN/inf", row=row, column="vector")
        return vectors

    def _check_columns(self, columns: Sequence[str] | None, default: list[str]) -> list[str]:
        if columns is None:
            return default
        known = {"vector", "content_hash", *self.metadata_columns}
        unknown = [c for c in columns if c not in known and c != "id"]
        if unknown:
            raise SchemaError(f"unknown column(s) {unknown}; the index has {sorted(known)}")
        return [c for c in columns if c != "id"]

    def _existing_ids(self, ids: list[str]) -> set[str]:
        return set(self._lookup(ids, ["id"])["id"])

    def _lookup(self, ids: list[str], columns: list[str]) -> pd.DataFrame:
        """Stored rows for ``ids``: an ``id IN (...)`` query for a few ids, one streamed scan for many.

        Each ``IN`` query reads the id index plus every row written since it was last
        optimized, so thousands of such queries would read the table thousands of times.
        """
        wanted = list(dict.fromkeys(ids))
        if len(wanted) <= IN_CHUNK:
            parts = [
                _run(self._table.query().where(clause).select(columns).to_arrow()) for clause in _id_clauses(wanted)
            ]
        else:
            parts = [_run(_scan_matching(self._table, columns, pa.array(wanted, pa.string())))]
        if not parts:
            return pd.DataFrame({c: pd.Series(dtype=object) for c in columns})
        return pa.concat_tables(parts).to_pandas()


def _value_kinds(schema: pa.Schema) -> dict[str, str]:
    """Metadata column -> the kind of value a filter on it must give: number, text or bool (others: unchecked)."""
    kinds = {}
    for f in schema:
        if pa.types.is_integer(f.type) or pa.types.is_floating(f.type):
            kinds[f.name] = "number"
        elif pa.types.is_string(f.type) or pa.types.is_large_string(f.type):
            kinds[f.name] = "text"
        elif pa.types.is_boolean(f.type):
            kinds[f.name] = "bool"
    return kinds


def _without_paths(message: str) -> str:
    """LanceDB's error text without the source locations it appends (``, /root/.cargo/.../logical_expr.rs:23:88``)."""
    return re.sub(r",?\s*(/[^\s,:]+)+(:\d+)*", "", message)


async def _create_table(path: Path, schema: pa.Schema) -> lancedb.AsyncTable:
    table = await (await lancedb.connect_async(path)).create_table(TABLE, schema=schema)
    await table.create_index("id", config=BTree())  # id lookups (duplicate checks, get, delete) stay fast
    return table


async def _open_table(path: Path) -> lancedb.AsyncTable:
    return await (await lancedb.connect_async(path)).open_table(TABLE)


async def _scan_matching(table: lancedb.AsyncTable, columns: list[str], ids: pa.Array) -> pa.Table:
    """Stream the table once, keeping rows whose id is in ``ids`` (memory: the matches, not the table)."""
    reader = await table.query().select(columns).to_batches()
    kept = [batch.filter(pc.is_in(batch.column("id"), value_set=ids)) async for batch in reader]
    return pa.Table.from_batches(kept) if kept else pa.table({c: [] for c in columns})


def _hits_frame(hits: pa.Table, selected: list[str], single: bool) -> pd.DataFrame:
    """LanceDB's rows + ``_distance`` -> ``[query,] id, score, rank, metadata...`` sorted by query then rank.

    Built from finished column arrays: a query's whole budget is a few ms, and pandas'
    dict constructor (dtype inference per column, then block consolidation) cost ~0.25 ms
    of it at k=10; ``Table.to_pandas`` ~0.4 ms. String columns get pandas' ``str`` dtype, as
    the dict constructor would give them.
    """
    score = 1.0 - hits.column("_distance").to_numpy()
    query = np.zeros(len(score), np.int64) if single else hits.column("query_index").to_numpy().astype(np.int64)
    order = np.lexsort((-score, query))
    if not np.array_equal(order, np.arange(len(order))):  # LanceDB usually returns them sorted already
        hits, query, score = hits.take(pa.array(order)), query[order], score[order]
    columns: dict[str, Any] = {} if single else {"query": query}
    columns["id"] = _column_values(hits.column("id"))
    columns["score"] = score
    columns["rank"] = np.arange(len(score)) - np.searchsorted(query, query) + 1
    for name in selected[1:]:
        columns[name] = _column_values(hits.column(name))
    index = pd.RangeIndex(len(score))
    if hasattr(pd.DataFrame, "_from_arrays"):  # pandas' own fast path for ready arrays (private, so guarded)
        names = pd.Index(list(columns), dtype=object)  # a str-dtype Index costs ~45 us more to build
        return pd.DataFrame._from_arrays(list(columns.values()), columns=names, index=index)
    return pd.DataFrame(columns, index=index, copy=False)


_TEXT_DTYPE = pd.Series(["text"]).dtype  # what pandas makes of strings: str (Arrow-backed) from pandas 3, object before


def _column_values(column: pa.ChunkedArray) -> Any:
    """One result column as the array pandas' own constructor would hold for it."""
    if _TEXT_DTYPE != object and (pa.types.is_string(column.type) or pa.types.is_large_string(column.type)):
        return _TEXT_DTYPE.construct_array_type()._from_sequence(column.combine_chunks(), dtype=_TEXT_DTYPE)
    return column.to_numpy(zero_copy_only=False)


def _as_ids(ids: Iterable[object], unique: bool = True) -> list[str]:
    """Ids as strings; duplicates in one call are an error (which row should win?)."""
    if isinstance(ids, (str, bytes)):
        raise DataError("ids must be a sequence of ids, got a single string")
    out = [str(i) for i in ids]
    if unique and len(set(out)) != len(out):
        seen: set[str] = set()
        dupes = [i for i in out if i in seen or seen.add(i)]
        raise DataError(f"duplicate id(s) in one call: {sorted(set(dupes))[:5]}")
    return out


def _id_clauses(ids: list[str]) -> Iterable[str]:
    for start in range(0, len(ids), IN_CHUNK):
        quoted = ",".join("'" + i.replace("'", "''") + "'" for i in ids[start : start + IN_CHUNK])
        yield f"id IN ({quoted})"


def _metadata_fields(metadata_schema: pa.Schema | Mapping[str, pa.DataType] | None) -> list[pa.Field]:
    if metadata_schema is None:
        return []
    if isinstance(metadata_schema, pa.Schema):
        return list(metadata_schema)
    return [pa.field(name, dtype) for name, dtype in metadata_schema.items()]


def _vector_index_kind(indices: list) -> str | None:
    for config in indices:
        if "vector" in config.columns:
            kind = str(config.index_type).upper()
            return "hnsw" if "HNSW" in kind else "ivf_flat" if "FLAT" in kind else "ivf_pq"
    return None
