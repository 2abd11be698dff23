"""One way from a table to data a model trains on, in stages that read top to bottom.

    read -> resolve the schema -> validate it against the table (once) -> split ->
    drop rows without a target -> cap the training rows -> fit the preprocessors on the
    training rows -> decode (or stream) every split, recording the rows that cannot be read

Every path that trains on a table goes through here: ``Predictor.fit`` and the fusion
comparison (:func:`prepare`), alignment (:func:`prepare` without a target), the Ray runner
(:func:`split_and_fit`, which stops before decoding because each worker decodes its own share of the
rows), and, with a pipeline fitted earlier, fine-tuning and evaluation (:func:`decode`).
"""

from __future__ import annotations

import os
import warnings
from dataclasses import dataclass
from typing import Any, Protocol, Sequence

import pandas as pd

from tessera.errors import DataError, OnError, SchemaError, SkipReport, TesseraWarning, check_on_error
from tessera.pipeline import Pipeline, StreamSplit, cache_split, default_workers, split_frame
from tessera.schema import Schema, resolve_schema
from tessera.settings import Settings
from tessera.table import Table, read_table

SKIP_REPORT = "tessera-skipped-rows.csv"
SMALL = 256  # rows under which decoding stays in this process: starting workers costs more than it saves


class DataSettings(Settings):
    """How a training run splits and reads its rows (fields of the ``train`` section of fit and align configs)."""

    seed: int = 0  # the random split and the row cap
    max_train_rows: int | None = None  # a quick run on a subset
    on_error: OnError = "raise"  # or "skip": drop unusable rows, warn, write a report
    num_workers: int | None = None  # decoding processes; None = up to 4
    cache: bool = True  # decode every row once and keep tensors in memory


class ReadSettings(Protocol):
    """What decoding needs to know: the training settings above, or a predictor's inference settings."""

    on_error: str
    num_workers: int | None
    cache: bool


@dataclass
class SplitTables:
    """The rows of each split (``train``, ``val``, ``test``) and the pipeline fitted on ``train``; nothing decoded."""

    pipeline: Pipeline
    tables: dict[str, Table]


@dataclass
class Prepared:
    """Every split decoded (``CachedSplit``) or ready to stream (``StreamSplit``), and the rows that were skipped."""

    pipeline: Pipeline
    splits: dict[str, Any]
    skip_report: SkipReport


def prepare(
    table: Any,
    schema: Schema | dict | str | os.PathLike | None = None,
    target: str | list[str] | None = None,
    config: DataSettings | None = None,
    *,
    supervised: bool = True,
    encoders: dict[str, str] | None = None,
    only: Sequence[str] | None = None,
    skip_report: str | os.PathLike | None = SKIP_REPORT,
) -> Prepared:
    """Split, fit the preprocessors on train, and decode (or stream) every split (or the ``only`` ones).

    Separate from training so several models (a fusion model and its unimodal baselines) can
    share one decoded copy of the data. ``supervised=False`` (alignment) ignores any target;
    ``encoders`` (input -> encoder name, from the model config) lets a pretrained tower set
    its input's preprocessing. Skipped rows (``on_error: skip``) are written to ``skip_report`` (None: not written) with a warning.
    """
    config = config or DataSettings()
    parts = split_and_fit(table, schema, target, config, supervised=supervised, encoders=encoders)
    tables = {k: v for k, v in parts.tables.items() if only is None or k in only}
    report = SkipReport()
    splits = decode(parts.pipeline, tables, config, report, with_target=supervised, validated=True)
    if len(report) and skip_report is not None:
        report.warn(report.write(skip_report))
    return Prepared(parts.pipeline, splits, report)


def split_and_fit(
    table: Any,
    schema: Schema | dict | str | os.PathLike | None = None,
    target: str | list[str] | None = None,
    config: DataSettings | None = None,
    *,
    supervised: bool = True,
    encoders: dict[str, str] | None = None,
    val_fraction: float = 0.1,
) -> SplitTables:
    """Every stage before decoding: the rows of each split and the pipeline fitted on the training rows.

    ``val_fraction`` is the share of validation rows when the schema has no split column.
    """
    config = config or DataSettings()
    check_on_error(config.on_error)
    t = read_table(table)
    schema = resolve_schema(t.frame, schema, target if supervised else None, t.base_dir)
    if supervised and not schema.target:
        raise SchemaError("fit needs a target: pass target=COLUMN or put 'target:' in the schema")
    if not supervised:
        schema.target = None  # self-supervised: labels stay metadata
    schema.validate(t.frame, require_target=supervised, source=t.source)
    parts = split_frame(t.frame, schema, val_fraction=val_fraction, seed=config.seed)
    if supervised:
        for name in ("train", "val"):
            if name in parts:
                parts[name] = drop_unknown_targets(parts[name], schema.target, name)
    if config.max_train_rows and len(parts["train"]) > config.max_train_rows:
        parts["train"] = parts["train"].sample(n=config.max_train_rows, random_state=config.seed).sort_index()
    pipeline = Pipeline.fit(parts["train"], schema, encoders=encoders)
    return SplitTables(pipeline, {name: Table(frame, t.base_dir, t.source) for name, frame in parts.items()})


def decode(
    pipeline: Pipeline,
    tables: dict[str, Table],
    config: ReadSettings,
    report: SkipReport | None,
    *,
    with_target: bool = True,
    validated: bool = False,
) -> dict[str, Any]:
    """Each table decoded once (``config.cache``) or wrapped to stream, by name; skips go to ``report``.

    ``validated`` says the tables were already checked against the schema (by :func:`split_and_fit`).
    """
    return {
        name: decode_table(pipeline, table, config, report, name=name, with_target=with_target, validated=validated)
        for name, table in tables.items()
    }


def decode_table(
    pipeline: Pipeline,
    table: Table,
    config: ReadSettings,
    report: SkipReport | None,
    *,
    name: str = "rows",
    with_target: bool = True,
    validated: bool = False,
) -> Any:
    """One table as a ``CachedSplit`` (decoded now, in worker processes when large) or a ``StreamSplit``."""
    dataset = pipeline.dataset(table, with_target=with_target, on_error=config.on_error, validate=not validated)
    workers = default_workers() if config.num_workers is None else config.num_workers
    workers = workers if len(dataset) >= SMALL else 0
    if config.cache:
        return cache_split(pipeline, dataset, num_workers=workers, report=report, description=f"decoding {name}")
    return StreamSplit(pipeline, dataset, workers, report)


def drop_unknown_targets(frame: pd.DataFrame, target: list[str], split: str) -> pd.DataFrame:
    """The rows that have every target value; the others are left out with a warning (none left: DataError)."""
    known = frame[target].notna().all(axis=1)
    if not known.all():
        warnings.warn(f"{int((~known).sum())} {split} row(s) have no target value and are left out", TesseraWarning, stacklevel=3)
    if not known.any():
        raise DataError(f"no {split} rows have a target value", column=", ".join(target))
    return frame[known]
