"""Batch embedding and index building on Ray Data, with the local runner's embedder and index code.

The table is read once by :func:`tessera.table.read_table` (same row numbers, same error
messages and the same folder for relative media paths as the local runner), cut into blocks,
and handed to a pool of Ray actors. Each actor holds one :class:`~tessera.align.Embedder`
(loaded once, not per batch) and runs :meth:`Embedder.embed_table` on its blocks: decoding
and preprocessing are the pipeline's own code, so vectors match the local runner's.

Writing: the driver receives each block only once its task has finished, and writes it to
the LanceDB index in one commit with :meth:`VectorIndex.add_or_update_if_changed` (a merge on
``id``). A task whose worker dies is retried by Ray Data (actors restart, tasks are
re-submitted) and its block is written only from the attempt that completed, so a killed
worker can leave neither half a block nor a duplicated id.

Errors: actors never raise on bad data; they return each unusable row's DataError as values
(as :class:`~tessera.pipeline.TableDataset` does for DataLoader workers), and the driver
applies ``on_error``: ``skip`` records them in the SkipReport, ``raise`` stops with the row
named, as a plain :class:`~tessera.errors.DataError`.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Iterator, Sequence

import numpy as np
import pandas as pd

from tessera.align.embedder import Embedder
from tessera.errors import DataError, SkipReport, check_on_error
from tessera.progress import progress_bar
from tessera.table import Table, read_table

ROW = "__row__"
ERROR_FIELDS = ("error_reason", "error_column", "error_file")


class EmbedBatches:
    """A Ray Data actor: one embedder, many blocks. Returns vectors plus per-row error fields."""

    def __init__(self, embedder: Any, input_name: str, base_dir: str | None, source: str, extras: dict[str, bool]) -> None:
        import ray

        embedder = ray.get(embedder) if isinstance(embedder, ray.ObjectRef) else embedder  # put once, shared by actors
        self.embedder, self.input_name, self.base_dir, self.source = embedder, input_name, base_dir, source
        self.extras = extras
        self.columns = embedder.pipeline.preprocessors[input_name].columns

    def __call__(self, batch: pd.DataFrame) -> dict[str, np.ndarray]:
        rows = batch[ROW].to_numpy()
        frame = batch.drop(columns=[ROW]).set_index(pd.Index(rows))  # index labels = table rows, so errors name them
        report = SkipReport()
        found: dict[int, np.ndarray] = {}
        table = Table(frame, self.base_dir, self.source)
        for r, v in self.embedder.embed_table(table, self.input_name, batch_size=max(1, len(frame)), on_error="skip", report=report):
            found.update(zip(r.tolist(), v))
        errors = {int(e.row): e for e in report.rows if e.row is not None}
        out: dict[str, Any] = {
            ROW: rows,
            "ok": np.array([int(r) in found for r in rows]),
            "vector": np.stack([found.get(int(r), np.zeros(self.embedder.dim, np.float32)) for r in rows]),
            "error_reason": np.array([errors[int(r)].reason if int(r) in errors else None for r in rows], dtype=object),
            "error_column": np.array([errors[int(r)].column if int(r) in errors else None for r in rows], dtype=object),
            "error_file": np.array([errors[int(r)].file if int(r) in errors else None for r in rows], dtype=object),
        }
        if self.extras.get("hash") or self.extras.get("thumbnail"):
            from tessera.index.build import content_hash, source_cell, thumbnail

            cells = [source_cell(frame, self.columns, i) for i in range(len(frame))]
            if self.extras.get("hash"):
                out["content_hash"] = np.array([content_hash(c, self.base_dir) for c in cells], dtype=object)
            if self.extras.get("thumbnail"):
                out["thumbnail"] = np.array([thumbnail(c, self.base_dir) if ok else None for c, ok in zip(cells, out["ok"])], dtype=object)
        return out


def read_for_ray(table: Any) -> Table:
    """A local table via :func:`read_table`; an object-store URI (``s3://``, ``gs://``) via Ray Data's readers."""
    if isinstance(table, str) and "://" in table:
        from tessera.scale.runner import require_ray

        ray = require_ray()
        reader = ray.data.read_csv if table.lower().endswith((".csv", ".csv.gz")) else ray.data.read_parquet
        frame = reader(table).to_pandas()
        return Table(frame.reset_index(drop=True), None, table)
    return read_table(table)


def embedded_blocks(
    embedder: Embedder,
    t: Table,
    input_name: str,
    *,
    batch_size: int = 256,
    num_actors: int = 2,
    extras: dict[str, bool] | None = None,
) -> Iterator[pd.DataFrame]:
    """Yield finished blocks (one frame per Ray Data block) of embedder output, in completion order.

    Needs a connected Ray session (:func:`tessera.scale.runner.ray_session`).
    """
    import ray

    columns = embedder.pipeline.preprocessors[input_name].columns
    frame = t.frame[columns].copy()
    frame[ROW] = t.frame.index.to_numpy()
    blocks = [frame.iloc[s : s + batch_size] for s in range(0, len(frame), batch_size)]
    ds = ray.data.from_pandas(blocks)
    ds = ds.map_batches(
        EmbedBatches,
        fn_constructor_args=(ray.put(embedder), input_name, t.base_dir, t.source, extras or {}),
        batch_size=None,  # one call per block: a block is the unit that is retried and written whole
        batch_format="pandas",
        compute=ray.data.ActorPoolStrategy(size=max(1, min(num_actors, len(blocks)))),  # no idle model copies
        num_cpus=1,
    )
    for batch in ds.iter_batches(batch_size=None, batch_format="pandas"):
        yield batch


def apply_on_error(batch: pd.DataFrame, on_error: str, report: SkipReport | None) -> pd.DataFrame:
    """The rows of a finished block that produced a vector; errors raised or recorded as ``on_error`` says."""
    bad = batch[batch["error_reason"].notna()]
    for _, r in bad.sort_values(ROW).iterrows():
        err = DataError(r["error_reason"], row=int(r[ROW]), column=r["error_column"], file=r["error_file"])
        if on_error == "raise":
            raise err
        if report is not None:
            report.add(err)
    return batch[batch["ok"].astype(bool)]


def embed_table_ray(
    embedder: Embedder,
    table: Any,
    input_name: str,
    *,
    batch_size: int = 256,
    on_error: str = "raise",
    report: SkipReport | None = None,
    num_actors: int = 2,
    address: str | None = None,
) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """:meth:`Embedder.embed_table` on Ray: ``(rows, vectors)`` per block, in completion order."""
    from tessera.scale.runner import ray_session, tessera_errors

    check_on_error(on_error)
    input_name = embedder.resolve_input(input_name)
    with ray_session(address), tessera_errors():
        t = read_for_ray(table)
        for batch in embedded_blocks(embedder, t, input_name, batch_size=batch_size, num_actors=num_actors):
            good = apply_on_error(batch, on_error, report)
            if len(good):
                yield good[ROW].to_numpy(), np.stack(good["vector"].to_numpy()).astype(np.float32)


def build_index_ray(
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
    num_actors: int = 2,
    address: str | None = None,
):
    """:func:`tessera.index.build.index_table` with decoding and embedding in a Ray actor pool.

    Same arguments, same index layout (ids, metadata, ``path``, thumbnails, content hashes,
    ``tessera-index.json``), same result. Each finished block is one commit; rows whose
    content hash is already stored are left unchanged (they are still embedded: the hash
    is computed on the workers, beside the embedding). Unlike the local runner it does not yet
    store a file held by several rows once (that needs every hash before embedding).
    """
    from tessera.scale.runner import ray_session, tessera_errors

    with ray_session(address), tessera_errors():
        return _build_index(
            embedder, table, Path(out), input_name, embedder_path=embedder_path, id_column=id_column, metadata=metadata,
            batch_size=batch_size, on_error=on_error, prune=prune, thumbnails=thumbnails, num_actors=num_actors,
        )


def _build_index(embedder, table, out, input_name, *, embedder_path, id_column, metadata, batch_size, on_error, prune, thumbnails, num_actors):
    from tessera.index.build import finish_build, plan_build
    from tessera.index.store import WriteCounts

    check_on_error(on_error)
    t = read_for_ray(table)
    frame = t.frame
    plan = plan_build(embedder, t, out, input_name, id_column, metadata, thumbnails)
    position = pd.Series(np.arange(len(frame)), index=frame.index)
    report = SkipReport()
    total = WriteCounts(added=0, updated=0, unchanged=0)
    with progress_bar("indexing (ray)", total=len(frame)) as advance:
        blocks = embedded_blocks(
            embedder, t, plan.input_name, batch_size=batch_size, num_actors=num_actors, extras={"hash": True, "thumbnail": plan.thumbnails}
        )
        for batch in blocks:
            good = apply_on_error(batch, on_error, report)
            advance(len(batch))
            if not len(good):
                continue
            pos = position[good[ROW].to_numpy()].to_numpy()
            meta = plan.metadata.iloc[pos].reset_index(drop=True)
            if plan.thumbnails:
                meta["thumbnail"] = good["thumbnail"].to_list()
            total += plan.index.add_or_update_if_changed(
                [plan.ids[p] for p in pos], np.stack(good["vector"].to_numpy()).astype(np.float32), meta, good["content_hash"].to_list()
            )
    return finish_build(plan, t, total, report, prune=prune, embedder_path=embedder_path)
