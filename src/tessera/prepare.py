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
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, Sequence

import pandas as pd

from tessera.errors import DataError, OnError, SchemaError, SkipReport, TesseraWarning, check_on_error
from tessera.pipeline import Pipeline, StreamSplit, cache_split, default_workers, split_frame
from tessera.schema import Schema, resolve_schema
from tessera.settings import PathLike, Settings
from tessera.table import Table, read_table

if TYPE_CHECKING:
    from tessera.features import FrozenFeatures

SKIP_REPORT = "tessera-skipped-rows.csv"
# Without a split column a supervised run holds out these shares (seeded by ``seed``), so a
# fit always reports test metrics on rows that chose nothing.
VAL_FRACTION, TEST_FRACTION = 0.1, 0.1
SMALL = 256  # rows under which decoding stays in this process: starting workers costs more than it saves


class DataSettings(Settings):
    """How a training run splits and reads its rows (fields of the ``train`` section of fit and align configs)."""

    seed: int = 0  # the random split and the row cap
    max_train_rows: int | None = None  # a quick run on a subset
    on_error: OnError = "raise"  # or "skip": drop unusable rows, warn, write a report
    num_workers: int | None = None  # decoding processes; None = up to 4
    cache: bool = True  # decode every row once and keep tensors in memory
    feature_cache: bool = True  # frozen towers run once per row, on the data side, their output kept in cache_dir
    cache_dir: PathLike | None = None  # where frozen features are kept; None = the data home's cache (tessera.features)


class ReadSettings(Protocol):
    """What decoding needs to know: the training settings above, or a predictor's inference settings."""

    on_error: str
    num_workers: int | None
    cache: bool
    feature_cache: bool
    cache_dir: Path | None


def feature_folder(config: ReadSettings) -> Path | None:
    """Where frozen features and derived texts are kept under these settings (None: not kept)."""
    from tessera.features import cache_folder

    return cache_folder(config.cache_dir) if config.feature_cache else None


@dataclass
class SplitTables:
    """The rows of each split (``train``, ``val``, ``test``) and the pipeline fitted on ``train``; nothing decoded."""

    pipeline: Pipeline
    tables: dict[str, Table]
    split_note: str = ""  # how the rows were split, for the fit log


EncoderSpecs = dict[str, Any]  # input -> encoder name, or the model config's {name, options}


@dataclass
class Prepared:
    """Every split decoded (``CachedSplit``) or ready to stream (``StreamSplit``), and the rows that were skipped."""

    pipeline: Pipeline
    splits: dict[str, Any]
    skip_report: SkipReport
    split_note: str = ""


def prepare(
    table: Any,
    schema: Schema | dict | str | os.PathLike | None = None,
    target: str | list[str] | None = None,
    config: DataSettings | None = None,
    *,
    supervised: bool = True,
    encoders: EncoderSpecs | None = None,
    only: Sequence[str] | None = None,
    skip_report: str | os.PathLike | None = SKIP_REPORT,
    keep: Sequence[str] = (),
) -> Prepared:
    """Split, fit the preprocessors on train, and decode (or stream) every split (or the ``only`` ones).

    Separate from training so several models (a fusion model and its unimodal baselines) can
    share one decoded copy of the data. ``supervised=False`` (alignment) ignores any target;
    ``encoders`` (the model config's, input -> ``{name, options}`` or a name) lets a pretrained
    tower set its input's preprocessing, and a frozen one (``config.feature_cache``) run here,
    once per row, its features kept in ``config.cache_dir`` (:mod:`tessera.features`).
    Skipped rows (``on_error: skip``) are written to ``skip_report`` (None: not written) with a warning.
    ``keep`` names columns an inferred schema would otherwise leave out as likely leaks.
    """
    config = config or DataSettings()
    parts = split_and_fit(table, schema, target, config, supervised=supervised, encoders=encoders, keep=keep)
    tables = {k: v for k, v in parts.tables.items() if only is None or k in only}
    report = SkipReport()
    features = None
    if config.feature_cache:
        from tessera.features import feature_stage

        specs = {n: e if isinstance(e, dict) else {"name": e} for n, e in (encoders or {}).items()}
        features = feature_stage(parts.pipeline, specs, feature_folder(config), getattr(config, "device", "cpu"))
    splits = decode(parts.pipeline, tables, config, report, with_target=supervised, validated=True, features=features)
    if len(report) and skip_report is not None:
        report.warn(report.write(skip_report))
    return Prepared(parts.pipeline, splits, report, parts.split_note)


def split_and_fit(
    table: Any,
    schema: Schema | dict | str | os.PathLike | None = None,
    target: str | list[str] | None = None,
    config: DataSettings | None = None,
    *,
    supervised: bool = True,
    encoders: EncoderSpecs | None = None,
    val_fraction: float = VAL_FRACTION,
    test_fraction: float | None = None,
    keep: Sequence[str] = (),
) -> SplitTables:
    """Every stage before decoding: the rows of each split and the pipeline fitted on the training rows.

    ``val_fraction`` and ``test_fraction`` are the shares of validation and test rows when
    the schema has no split column; the test share defaults to ``TEST_FRACTION`` when
    supervised and to none otherwise (alignment scores on its validation rows).
    """
    config = config or DataSettings()
    check_on_error(config.on_error)
    t = read_table(table)
    schema = resolve_schema(t.frame, schema, target if supervised else None, t.base_dir, keep=keep)
    if supervised and not schema.target:
        raise SchemaError("fit needs a target: pass target=COLUMN or put 'target:' in the schema")
    if not supervised:
        schema.target = None  # self-supervised: labels stay metadata
    schema.validate(t.frame, require_target=supervised, source=t.source)
    if test_fraction is None:
        test_fraction = TEST_FRACTION if supervised else 0.0
    parts = split_frame(t.frame, schema, val_fraction=val_fraction, test_fraction=test_fraction, seed=config.seed)
    if supervised:
        for name in ("train", "val"):
            if name in parts:
                parts[name] = drop_unknown_targets(parts[name], schema.target, name)
    if config.max_train_rows and len(parts["train"]) > config.max_train_rows:
        parts["train"] = parts["train"].sample(n=config.max_train_rows, random_state=config.seed).sort_index()
    names = {n: e.get("name") if isinstance(e, dict) else e for n, e in (encoders or {}).items()}
    pipeline = Pipeline.fit(
        parts["train"], schema, encoders={n: str(v) for n, v in names.items() if v},
        base_dir=t.base_dir, cache_dir=feature_folder(config),
    )
    tables = {name: Table(frame, t.base_dir, t.source) for name, frame in parts.items()}
    return SplitTables(pipeline, tables, describe_split(schema, parts, val_fraction, test_fraction, config.seed))


def describe_split(
    schema: Schema, parts: dict[str, pd.DataFrame], val_fraction: float, test_fraction: float, seed: int
) -> str:
    """One line for the fit log: where the split came from and the rows in each part."""
    counts = ", ".join(f"{name} {len(parts[name])}" for name in ("train", "val", "test") if name in parts)
    if schema.split:
        return f"split column '{schema.split}': {counts}"
    shares = [1 - val_fraction - test_fraction, val_fraction, test_fraction]
    return (
        f"no split column: a seeded random split, {'/'.join(f'{round(100 * x)}' for x in shares)} % "
        f"train/val/test (seed {seed}): {counts}"
    )


def decode(
    pipeline: Pipeline,
    tables: dict[str, Table],
    config: ReadSettings,
    report: SkipReport | None,
    *,
    with_target: bool = True,
    validated: bool = False,
    features: FrozenFeatures | None = None,
) -> dict[str, Any]:
    """Each table decoded once (``config.cache``) or wrapped to stream, by name; skips go to ``report``.

    ``validated`` says the tables were already checked against the schema (by :func:`split_and_fit`);
    ``features`` runs frozen encoders on the decoded batches (:mod:`tessera.features`).
    """
    return {
        name: decode_table(
            pipeline, table, config, report, name=name, with_target=with_target, validated=validated, features=features
        )
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
    features: FrozenFeatures | None = None,
) -> Any:
    """One table as a ``CachedSplit`` (decoded now, in worker processes when large) or a ``StreamSplit``."""
    dataset = pipeline.dataset(
        table, with_target=with_target, on_error=config.on_error, validate=not validated, cache_dir=feature_folder(config)
    )
    workers = default_workers() if config.num_workers is None else config.num_workers
    workers = workers if len(dataset) >= SMALL else 0
    if config.cache:
        return cache_split(
            pipeline, dataset, num_workers=workers, report=report, description=f"decoding {name}", features=features
        )
    return StreamSplit(pipeline, dataset, workers, report, features)


def drop_unknown_targets(frame: pd.DataFrame, target: list[str], split: str) -> pd.DataFrame:
    """The rows that have every target value; the others are left out with a warning (none left: DataError)."""
    known = frame[target].notna().all(axis=1)
    if not known.all():
        warnings.warn(f"{int((~known).sum())} {split} row(s) have no target value and are left out", TesseraWarning, stacklevel=3)
    if not known.any():
        raise DataError(f"no {split} rows have a target value", column=", ".join(target))
    return frame[known]
