"""Cross-modal search over a table: embed one input of every row into an index, then query it with any input.

``index_table`` is what ``tessera index build`` runs, ``Searcher`` what ``tessera search``
and the server's ``/v1/search`` run. An index folder remembers the embedder that filled it
(``tessera-index.json``), so a search needs only the index path: the query is embedded by
the same model, preprocessing included, as the collection.

Updating: building into an existing index hashes each row's source (file bytes, text) and
re-embeds only rows that are new or whose hash changed
(:meth:`VectorIndex.add_or_update_if_changed`); ``prune`` deletes ids no longer in the
table. Each batch is one atomic commit, so a build killed mid-way resumes where it stopped
and the index between batches holds whole rows only.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import pandas as pd
import pyarrow as pa

from tessera.align.embedder import Embedder, compose
from tessera.errors import DataError, SchemaError, SkipReport, TesseraError, check_on_error
from tessera.index.store import RESERVED, VectorIndex, WriteCounts
from tessera.files import atomic_write_text
from tessera.media import is_missing, resolve_media
from tessera.preprocess import media_modalities
from tessera.progress import progress_bar
from tessera.table import Table, read_table

INDEX_META = "tessera-index.json"
THUMBNAIL_PX = 128


@dataclass
class BuildResult:
    index: VectorIndex
    counts: WriteCounts
    deleted: int = 0
    skipped: SkipReport = field(default_factory=SkipReport)


def content_hash(value: Any, base_dir: str | None) -> str:
    """A stable hash of what a cell refers to (the file's bytes, not its path), so edits in place are seen."""
    if isinstance(value, str) and not _looks_like_path(value):
        data = value.encode()
    elif isinstance(value, (str, bytes, dict)):
        try:
            data = resolve_media(value, base_dir).read_bytes()
        except (DataError, OSError):
            data = repr(value).encode()  # unreadable: the decode step reports it
    else:
        data = repr(value).encode()
    return hashlib.sha1(data).hexdigest()


def _looks_like_path(value: str) -> bool:
    return bool(Path(value).suffix) and "\n" not in value and len(value) < 4096


def thumbnail(value: Any, base_dir: str | None, px: int = THUMBNAIL_PX) -> bytes | None:
    """A small JPEG of an image cell for result pages (None when it cannot be read: the decode step reports it)."""
    from PIL import Image

    try:
        with resolve_media(value, base_dir).open() as f, Image.open(f) as im:
            im = im.convert("RGB")
            im.thumbnail((px, px))
            out = io.BytesIO()
            im.save(out, format="JPEG", quality=80)
            return out.getvalue()
    except Exception:  # noqa: BLE001 - a thumbnail is a nicety; the embedding step names bad files
        return None


def index_table(
    embedder: Embedder,
    table: Any,
    out: str | os.PathLike,
    input_name: str,
    *,
    embedder_path: str | os.PathLike | None = None,
    id_column: str | None = None,
    metadata: Sequence[str] | None = None,
    batch_size: int = 512,
    on_error: str = "raise",
    prune: bool = False,
    thumbnails: bool = True,
) -> BuildResult:
    """Embed ``input_name`` of every row of ``table`` into the index at ``out`` (created if absent).

    Ids come from ``id_column`` (default: a unique ``id`` column if the table has one, else the row number). ``metadata`` names the table
    columns stored beside each vector (default: every column that is not media); a media
    input also stores its ``path`` and, for images, a ``thumbnail`` (JPEG bytes).
    ``embedder_path`` is recorded in the index so :meth:`Searcher.open` finds the model.
    """
    check_on_error(on_error)
    t = read_table(table)
    plan = plan_build(embedder, t, out, input_name, id_column, metadata, thumbnails)
    frame, ids, meta_frame, source_columns = t.frame, plan.ids, plan.metadata, plan.source_columns
    report = SkipReport()
    total = WriteCounts(added=0, updated=0, unchanged=0)
    with progress_bar("indexing", total=len(frame)) as advance:
        for start in range(0, len(frame), batch_size):
            part = frame.iloc[start : start + batch_size]
            part_ids = ids[start : start + batch_size]
            hashes = [content_hash(_cell(part, source_columns, i), t.base_dir) for i in range(len(part))]
            meta = meta_frame.iloc[start : start + batch_size].reset_index(drop=True)
            counts = _write_batch(embedder, plan, t, part, part_ids, hashes, meta, on_error, report)
            total = WriteCounts(total.added + counts.added, total.updated + counts.updated, total.unchanged + counts.unchanged)
            advance(len(part))
    return finish_build(plan, t, total, report, prune=prune, embedder_path=embedder_path)


@dataclass
class BuildPlan:
    """What both runners (local, Ray) settle before embedding: ids, metadata and the open index."""

    input_name: str
    modality: str
    source_columns: list[str]
    ids: list[str]
    metadata: pd.DataFrame
    index: VectorIndex
    out: Path


def plan_build(
    embedder: Embedder, t: Table, out: str | os.PathLike, input_name: str,
    id_column: str | None, metadata: Sequence[str] | None, thumbnails: bool,
) -> BuildPlan:
    input_name = embedder.resolve_input(input_name)
    modality = embedder.inputs[input_name]
    frame = t.frame
    source_columns = embedder.pipeline.preprocessors[input_name].columns
    if id_column is None and "id" in frame.columns and frame["id"].is_unique:
        id_column = "id"  # a table's own unique `id` column beats row numbers, which shift when rows go
    ids = _ids(frame, id_column, t.source)
    meta_frame = _metadata(frame, metadata, source_columns, id_column, modality, t.source)
    if modality in media_modalities() and len(source_columns) == 1:
        meta_frame["path"] = [None if is_missing(v) or not isinstance(v, str) else v for v in frame[source_columns[0]]]
    out = Path(out)
    index = _open_or_create(out, embedder.dim, meta_frame, modality == "image" and thumbnails)
    return BuildPlan(input_name, modality, source_columns, ids, meta_frame, index, out)


def finish_build(
    plan: BuildPlan, t: Table, total: WriteCounts, report: SkipReport, *, prune: bool, embedder_path: str | os.PathLike | None
) -> BuildResult:
    """Prune, compact, and record the embedder in the index folder, so a search needs only the index path."""
    deleted = 0
    if prune:
        wanted = set(plan.ids)
        deleted = plan.index.delete([i for i in plan.index.ids() if i not in wanted])
    if total.added or total.updated or deleted:
        plan.index.optimize()
    info = {
        "embedder": None if embedder_path is None else str(Path(embedder_path).resolve()),
        "input": plan.input_name,
        "modality": plan.modality,
        "table": t.source,
        "base_dir": t.base_dir,
    }
    atomic_write_text(plan.out / INDEX_META, json.dumps(info, indent=2))
    if len(report):
        report.warn()
    return BuildResult(plan.index, total, deleted, report)


def _write_batch(embedder, plan, t, part, part_ids, hashes, meta, on_error, report) -> WriteCounts:
    """Embed the new/changed rows of one batch and write, in one commit, those that produced a vector.

    Rows that could not be embedded (skipped, or missing this input) must not enter the index.
    """
    stored = plan.index.get(part_ids, columns=["content_hash"])
    known = dict(zip(stored["id"], stored["content_hash"]))
    todo = [i for i, (rid, h) in enumerate(zip(part_ids, hashes)) if known.get(rid) != h]
    unchanged = len(part_ids) - len(todo)
    vectors: dict[int, np.ndarray] = {}
    if todo:
        sub = Table(part.iloc[todo], t.base_dir, t.source)
        for rows, vecs in embedder.embed_table(sub, plan.input_name, on_error=on_error, report=report):
            vectors.update(zip(rows.tolist(), vecs))
    ok = [p for p in todo if part.index[p] in vectors]
    if not ok:
        return WriteCounts(added=0, updated=0, unchanged=unchanged)
    m = meta.iloc[ok].reset_index(drop=True)
    if "thumbnail" in plan.index.metadata_columns and plan.modality == "image":
        m["thumbnail"] = [thumbnail(_cell(part, plan.source_columns, p), t.base_dir) for p in ok]
    counts = plan.index.upsert(
        [part_ids[p] for p in ok], np.stack([vectors[part.index[p]] for p in ok]), m, [hashes[p] for p in ok]
    )
    return WriteCounts(counts.added, counts.updated, unchanged)


def _cell(frame: pd.DataFrame, columns: list[str], i: int) -> Any:
    return frame[columns[0]].iat[i] if len(columns) == 1 else tuple(frame[c].iat[i] for c in columns)


def _ids(frame: pd.DataFrame, id_column: str | None, source: str | None) -> list[str]:
    if id_column is None:
        return [str(i) for i in frame.index]
    if id_column not in frame.columns:
        raise SchemaError(f"id column {id_column!r} is not in {source or 'the table'}; columns: {list(frame.columns)}")
    ids = frame[id_column].astype(str).tolist()
    dup = frame[id_column][frame[id_column].duplicated()]
    if len(dup):
        raise DataError(f"ids must be unique; {dup.iloc[0]!r} appears more than once", row=int(dup.index[0]), column=id_column)
    return ids


def _metadata(frame, metadata, source_columns, id_column, modality, source) -> pd.DataFrame:
    if metadata is None:
        metadata = [
            c for c in frame.columns
            if c not in source_columns and c != id_column and c not in RESERVED and c not in ("path", "thumbnail")
            and not _is_media(frame[c])
        ]
    missing = [c for c in metadata if c not in frame.columns]
    if missing:
        raise SchemaError(f"metadata column(s) {missing} are not in {source or 'the table'}; columns: {list(frame.columns)}")
    reserved = [c for c in metadata if c in RESERVED or c in ("path", "thumbnail")]
    if reserved:
        raise SchemaError(f"metadata column(s) {reserved} clash with names the index uses; rename them")
    out = pd.DataFrame(index=range(len(frame)))
    for c in metadata:
        col = frame[c].reset_index(drop=True)
        out[c] = col if pd.api.types.is_numeric_dtype(col) or pd.api.types.is_bool_dtype(col) else col.map(
            lambda v: None if is_missing(v) else str(v)
        )
    return out


def _is_media(col: pd.Series) -> bool:
    sample = col.dropna().head(20)
    return any(isinstance(v, (bytes, dict)) for v in sample)


def _open_or_create(path: Path, dim: int, meta: pd.DataFrame, with_thumbnail: bool) -> VectorIndex:
    if (path / "vectors.lance").exists():
        return VectorIndex.open(path, dim)
    fields = {c: pa.Schema.from_pandas(meta[[c]], preserve_index=False).field(c).type for c in meta.columns}
    fields = {c: (pa.string() if t == pa.null() else t) for c, t in fields.items()}
    if with_thumbnail:
        fields["thumbnail"] = pa.binary()
    return VectorIndex.create(path, dim, metadata_schema=fields)


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
        meta_path = Path(index_path) / INDEX_META
        info = json.loads(meta_path.read_text()) if meta_path.is_file() else {}
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
        where: str | None = None,
        columns: Sequence[str] | None = None,
        base_dir: str | None = None,
    ) -> pd.DataFrame:
        """Top ``k`` rows: ``id``, ``score`` (cosine), ``rank`` and metadata; ``where`` filters on metadata."""
        if isinstance(parts, dict):
            parts = list(parts.items())
        default = [c for c in self.index.metadata_columns if c != "thumbnail"]
        return self.index.search(self.query_vector(parts, weights, base_dir), k=k, filter=where, columns=columns or default)
