"""Filling an index from a table: embed one input of every row, store it beside the row's metadata.

:func:`index_table` is what ``tessera index build`` runs; the Ray runner
(:func:`tessera.scale.embed.build_index_ray`) embeds elsewhere but plans and finishes a build
with the same :func:`plan_build` and :func:`finish_build` and writes the same way. An index
folder remembers the embedder that filled it (``tessera-index.json``, :func:`read_info`), so a
search needs only the index path.

Updating: every write goes through :meth:`VectorIndex.add_or_update_if_changed`, which
compares each row's content hash (file bytes, text) with the stored one, so only rows that
are new or whose source changed are embedded again; ``prune`` deletes ids no longer in the
table. Each batch is one atomic commit, so a build killed mid-way, run again, resumes where
it stopped, and the index between batches holds whole rows only.
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

from tessera.align.embedder import Embedder
from tessera.errors import DataError, SchemaError, SkipReport, check_on_error
from tessera.files import atomic_write_text
from tessera.index.store import RESERVED, VectorIndex, WriteCounts
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
    duplicates: int = 0  # rows whose media content an earlier row holds, stored once (index_table's dedupe)


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

    @property
    def thumbnails(self) -> bool:
        """Whether rows get a thumbnail (image inputs, in an index made with a thumbnail column)."""
        return self.modality == "image" and "thumbnail" in self.index.metadata_columns


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
    dedupe: bool = True,
) -> BuildResult:
    """Embed ``input_name`` of every row of ``table`` into the index at ``out`` (created if absent).

    ``dedupe``: a media file whose content an earlier row already holds (a photo with five
    captions is five rows) is stored once, under the first such row's id and metadata; the
    result's ``duplicates`` counts the rows left out.

    Ids come from ``id_column`` (default: a unique ``id`` column if the table has one, else
    the row number). ``metadata`` names the table columns stored beside each vector
    (default: every column that is not media); a media input also stores its ``path`` and,
    for images, a ``thumbnail`` (JPEG bytes). ``embedder_path`` is recorded in the index so
    :meth:`~tessera.index.search.Searcher.open` finds the model.
    """
    check_on_error(on_error)
    t = read_table(table)
    name = embedder.resolve_input(input_name)
    columns = embedder.pipeline.preprocessors[name].columns
    hashes = [content_hash(source_cell(t.frame, columns, i), t.base_dir) for i in range(len(t.frame))]
    duplicates = 0
    if dedupe and embedder.inputs[name] in media_modalities():
        missing = t.frame[columns[0]].map(is_missing).to_numpy()
        keep = ~pd.Series(hashes).duplicated().to_numpy() | missing
        duplicates = int((~keep).sum())
        if duplicates:  # the row numbers stay the ids: the frame keeps its index
            t = Table(t.frame[keep], t.base_dir, t.source)
            hashes = [h for h, k in zip(hashes, keep) if k]
    plan = plan_build(embedder, t, out, input_name, id_column, metadata, thumbnails)
    frame = t.frame
    report = SkipReport()
    total = WriteCounts(added=0, updated=0, unchanged=0)
    with progress_bar("indexing", total=len(frame)) as advance:
        for start in range(0, len(frame), batch_size):
            part = frame.iloc[start : start + batch_size]
            fill = _embedding(embedder, plan, Table(part, t.base_dir, t.source), start, on_error, report)
            total += plan.index.add_or_update_if_changed(plan.ids[start : start + batch_size], fill, None, hashes[start : start + batch_size])
            advance(len(part))
    result = finish_build(plan, t, total, report, prune=prune, embedder_path=embedder_path)
    result.duplicates = duplicates
    return result


def _embedding(embedder: Embedder, plan: BuildPlan, part: Table, start: int, on_error: str, report: SkipReport):
    """The write's fill function for one batch: embed the rows asked for, with their metadata and thumbnails.

    Rows that could not be embedded (skipped, or missing this input) are left out, so they
    never enter the index.
    """

    def fill(positions: np.ndarray) -> tuple[list[int], np.ndarray, pd.DataFrame]:
        frame = part.frame
        vectors: dict[Any, np.ndarray] = {}
        todo = Table(frame.iloc[positions], part.base_dir, part.source)
        for rows, vecs in embedder.embed_table(todo, plan.input_name, on_error=on_error, report=report):
            vectors.update(zip(rows.tolist(), vecs))
        ok = [int(p) for p in positions if frame.index[p] in vectors]
        meta = plan.metadata.iloc[[start + p for p in ok]].reset_index(drop=True)
        if plan.thumbnails:
            meta["thumbnail"] = [thumbnail(source_cell(frame, plan.source_columns, p), part.base_dir) for p in ok]
        stacked = np.stack([vectors[frame.index[p]] for p in ok]) if ok else np.zeros((0, plan.index.dim), np.float32)
        return ok, stacked, meta

    return fill


def plan_build(
    embedder: Embedder, t: Table, out: str | os.PathLike, input_name: str,
    id_column: str | None, metadata: Sequence[str] | None, thumbnails: bool,
) -> BuildPlan:
    """Resolve the input, the ids and the metadata of every row, and open (or create) the index."""
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
    plan: BuildPlan, t: Table, total: WriteCounts, report: SkipReport, *,
    prune: bool, embedder_path: str | os.PathLike | None,
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


def read_info(index_path: str | os.PathLike) -> dict[str, Any]:
    """What a build recorded in the index folder (embedder, input, modality, table, media folder); {} if none."""
    path = Path(index_path) / INDEX_META
    return json.loads(path.read_text()) if path.is_file() else {}


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


def source_cell(frame: pd.DataFrame, columns: list[str], i: int) -> Any:
    """Row ``i``'s value of the indexed input: its one column's cell, or a tuple for a multi-column input."""
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
