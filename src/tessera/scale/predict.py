"""Batch prediction on Ray Data: a pool of actors, each holding one loaded :class:`Predictor`.

Each actor runs :meth:`Predictor.predict` (or ``predict_proba``) on its blocks, so decoding and
the model are the local runner's. Bad rows come back as values and the driver applies
``on_error`` (see :mod:`tessera.scale.embed`). The driver streams finished blocks into one
Parquet file (row-group per block, in completion order; the ``row`` column names the table
row), written to a temporary name and renamed at the end, so a failed job leaves no partial
output.
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np
import pandas as pd

from tessera.errors import DataError, SkipReport, check_on_error
from tessera.progress import progress_bar
from tessera.scale.embed import ERROR_FIELDS, ROW, apply_on_error, read_for_ray
from tessera.table import Table


class PredictBatches:
    """A Ray Data actor: one predictor, many blocks; predictions plus per-row error fields."""

    def __init__(self, predictor: Any, proba: bool, base_dir: str | None, source: str) -> None:
        import ray

        self.predictor = ray.get(predictor) if isinstance(predictor, ray.ObjectRef) else predictor
        self.predictor.inference.on_error = "skip"  # errors return as values; the driver applies the policy
        self.predictor.inference.num_workers = 0  # the actor is the unit of parallelism
        self.proba, self.base_dir, self.source = proba, base_dir, source

    def __call__(self, batch: pd.DataFrame) -> pd.DataFrame:
        rows = batch[ROW].to_numpy()
        table = Table(batch.drop(columns=[ROW]).set_index(pd.Index(rows)), self.base_dir, self.source)
        report = SkipReport()
        try:
            result = (self.predictor.predict_proba if self.proba else self.predictor.predict)(table, report=report)
            out = result.to_frame() if isinstance(result, pd.Series) else result
        except DataError:
            if not len(report):
                raise
            out = pd.DataFrame()  # every row of the block failed; the report says why
        out = out.rename(columns=str)
        out[ROW] = out.index.to_numpy()
        out["ok"] = True
        errors = pd.DataFrame(
            {ROW: [e.row for e in report.rows], "ok": False, **{f: [getattr(e, f.split("_")[1]) for e in report.rows] for f in ERROR_FIELDS}}
        )
        for f in ERROR_FIELDS:
            out[f] = None
        return pd.concat([out.reset_index(drop=True), errors], ignore_index=True) if len(errors) else out.reset_index(drop=True)


def predict_ray(
    predictor: Any,
    table: Any,
    output: str | os.PathLike,
    *,
    proba: bool = False,
    on_error: str | None = None,
    batch_size: int = 1024,
    num_actors: int = 2,
    address: str | None = None,
    skip_report: str | os.PathLike | None = None,
) -> int:
    """Predict every row of ``table`` on Ray and write a Parquet file; returns the rows written.

    ``on_error`` defaults to the predictor's ``inference.on_error``.
    """
    import pyarrow as pa
    import pyarrow.parquet as pq

    from tessera.files import atomic_path
    from tessera.scale.runner import ray_session, tessera_errors

    predictor.require_network("predicting on Ray")
    on_error = check_on_error(on_error or predictor.inference.on_error)
    report = SkipReport()
    written = 0
    with ray_session(address) as ray, tessera_errors(), atomic_path(output) as tmp:
        t = read_for_ray(table)
        columns = [c for spec in predictor.pipeline.schema.inputs.values() for c in spec.columns]
        frame = t.frame[list(dict.fromkeys(columns))].copy()
        frame[ROW] = t.frame.index.to_numpy()
        blocks = [frame.iloc[s : s + batch_size] for s in range(0, len(frame), batch_size)]
        ds = ray.data.from_pandas(blocks)
        ds = ds.map_batches(
            PredictBatches,
            fn_constructor_args=(ray.put(predictor), proba, t.base_dir, t.source),
            batch_size=None,
            batch_format="pandas",
            compute=ray.data.ActorPoolStrategy(size=max(1, min(num_actors, len(blocks)))),
            num_cpus=1,
        )
        writer = None
        try:
            with progress_bar("predicting (ray)", total=len(frame)) as advance:
                for batch in ds.iter_batches(batch_size=None, batch_format="pandas"):
                    advance(len(batch))
                    good = apply_on_error(batch, on_error, report)
                    if not len(good):
                        continue
                    part = good.drop(columns=["ok", *ERROR_FIELDS]).rename(columns={ROW: "row"}).set_index("row")
                    part.index = part.index.astype(np.int64)
                    # Ray Data hands out Arrow-backed columns; store the dtypes the local runner writes.
                    part = part.astype({c: d.numpy_dtype for c, d in part.dtypes.items() if isinstance(d, pd.ArrowDtype)})
                    arrow = pa.Table.from_pandas(part)
                    if writer is None:
                        writer = pq.ParquetWriter(tmp, arrow.schema)
                    writer.write_table(arrow.cast(writer.schema))
                    written += len(part)
        finally:
            if writer is not None:
                writer.close()
        if writer is None:
            raise DataError("no row could be predicted", file=t.source)
    if len(report):
        report.warn(report.write(skip_report) if skip_report else None)
    return written
