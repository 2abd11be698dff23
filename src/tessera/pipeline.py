"""From a table to batches: the fitted preprocessors of every input plus the task, which encodes the target.

The pipeline is the part of a trained model that knows about data. It is fitted on the
training rows only, saved with the model, and re-applied unchanged at predict time.

Two ways to feed a model:
* ``stream``: a torch DataLoader that decodes every epoch (large media collections);
* ``cache``: decode each row once (in worker processes) and keep the stacked tensors,
  which is what makes many epochs over small media (AV-MNIST) fast on a CPU.

Unusable rows follow ``on_error``: ``raise`` stops with the row, column and file;
``skip`` drops the row, warns, and lists it in a report file.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Iterator, Sequence

import numpy as np
import pandas as pd
import torch
from torch.utils.data import DataLoader, Dataset

from tessera.errors import DataError, OnError, SchemaError, SkipReport, check_on_error
from tessera.preprocess import LoadContext, ModalityBatch, Preprocessor, collate_samples, create_preprocessor, load_located
from tessera.progress import progress_bar
from tessera.schema import SPLIT_VALUES, Schema
from tessera.table import Table
from tessera.tasks import Task, create_task, infer_task
from tessera.threads import available_cores

if TYPE_CHECKING:
    from tessera.features import FrozenFeatures


@dataclass
class Batch:
    inputs: dict[str, ModalityBatch]
    target: torch.Tensor | None
    rows: torch.Tensor  # row numbers in the user's table
    skipped: list[DataError] = field(default_factory=list)

    def to(self, device: torch.device | str) -> "Batch":
        return Batch(
            {k: v.to(device) for k, v in self.inputs.items()},
            None if self.target is None else self.target.to(device),
            self.rows,
            self.skipped,
        )

    def __len__(self) -> int:
        return int(self.rows.shape[0])


class Pipeline:
    """The fitted preprocessors of every input and the task's target encoding, kept and saved as one object.

    Why one object: what the model learned is only meaningful together with how its inputs
    were prepared (the tokenizer's vocabulary, the numeric means, the label order), so the
    two are fitted on the same training rows, saved together, and re-applied unchanged to
    any later table. It is also the unit that is shared: unimodal baselines and ablations
    :meth:`restrict` one fitted pipeline instead of refitting, so every model sees the same
    preprocessed values.
    """

    def __init__(self, schema: Schema, preprocessors: dict[str, Preprocessor], target: Task | None) -> None:
        self.schema = schema
        self.preprocessors = preprocessors
        self.target = target

    @classmethod
    def fit(
        cls,
        train: pd.DataFrame,
        schema: Schema,
        encoders: dict[str, str] | None = None,
        *,
        base_dir: str | None = None,
        cache_dir: str | os.PathLike | None = None,
    ) -> "Pipeline":
        """Create and fit every preprocessor (and the task's target encoding) on the training rows.

        ``encoders`` names the encoder of each input where the model config chooses it (else
        the schema's ``encoder``); a pretrained tower's required preprocessing is merged into
        the input's options here, before anything is fitted. The rows are not checked against
        the schema here: :mod:`tessera.prepare` validates the whole table once before splitting it.
        A derived text input (``via``) has its source column checked and, when its tokenizer
        learns from the rows, is fitted on the derived texts (files relative to ``base_dir``;
        texts kept in the feature cache ``cache_dir``).
        """
        from tessera.derive import training_frame
        from tessera.encoders.input_options import merge_input_options

        encoders = encoders or {}
        preprocessors = {}
        for name, spec in schema.inputs.items():
            encoder = encoders.get(name) or spec.encoder
            options = merge_input_options(encoder, spec.modality, spec.options, where=f"input '{name}'")
            pre = create_preprocessor(spec.modality, spec.columns, **options, **({"via": spec.via} if spec.via else {}))
            rows = train
            if spec.via:
                rows = training_frame(
                    train, spec.columns[0], spec.via, base_dir, cache_dir,
                    texts_needed=pre.learns_from_texts, where=f"input '{name}'",
                )
            try:
                pre.fit(rows)
            except DataError as e:
                raise e.located(column=spec.columns[0] if len(spec.columns) == 1 else None) from None
            preprocessors[name] = pre
        target = None
        if schema.target:
            target = create_task(schema.task or infer_task(train, schema.target), schema.target).fit(train)
        return cls(schema, preprocessors, target)

    def restrict(self, inputs: list[str]) -> "Pipeline":
        """The same fitted pipeline over a subset of inputs (for unimodal baselines and ablations)."""
        unknown = set(inputs) - set(self.preprocessors)
        if unknown:
            raise SchemaError(f"unknown input(s) {sorted(unknown)}; inputs are {sorted(self.preprocessors)}")
        schema = Schema(
            {k: v for k, v in self.schema.inputs.items() if k in inputs},
            self.schema.target, self.schema.task, self.schema.split, self.schema.ignore,
        )
        return Pipeline(schema, {k: v for k, v in self.preprocessors.items() if k in inputs}, self.target)

    # -- persistence -------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        return {
            "schema": self.schema.to_dict(),
            "preprocessors": {n: p.state_dict() for n, p in self.preprocessors.items()},
            "target": None if self.target is None else self.target.state_dict(),
        }

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> "Pipeline":
        schema = Schema.from_dict(state["schema"])
        pres = {n: Preprocessor.from_state(s) for n, s in state["preprocessors"].items()}
        target = None if state["target"] is None else Task.from_state(state["target"])
        return cls(schema, pres, target)

    # -- data ----------------------------------------------------------------------------------
    def dataset(
        self, table: Table, *, with_target: bool = True, on_error: OnError = "raise", validate: bool = True,
        cache_dir: str | os.PathLike | None = None,
    ) -> "TableDataset":
        """The rows of ``table`` to decode; ``validate=False`` when the table was checked against the schema already.

        ``cache_dir``: the feature cache, where derived text inputs read and keep their texts.
        """
        with_target = with_target and self.target is not None and all(c in table.frame.columns for c in self.target.columns)
        if validate:
            self.schema.validate(table.frame, require_target=with_target, source=table.source)
        return TableDataset(self, table, with_target=with_target, on_error=check_on_error(on_error), cache_dir=cache_dir)

    def loader(
        self,
        dataset: "TableDataset",
        *,
        batch_size: int = 64,
        shuffle: bool = False,
        num_workers: int = 0,
        seed: int = 0,
    ) -> DataLoader:
        generator = torch.Generator().manual_seed(seed)
        return DataLoader(
            dataset,
            batch_size=batch_size,
            shuffle=shuffle,
            num_workers=num_workers,
            collate_fn=Collator(self.preprocessors, dataset.on_error),
            generator=generator,
            persistent_workers=False,
        )


class TableDataset(Dataset):
    """Rows of one table; each item is decoded by the pipeline's preprocessors."""

    def __init__(
        self, pipeline: Pipeline, table: Table, *, with_target: bool, on_error: OnError, cache_dir: str | os.PathLike | None = None
    ) -> None:
        self.pipeline = pipeline
        self.base_dir = table.base_dir
        self.cache_dir = None if cache_dir is None else str(cache_dir)
        self.on_error = on_error
        frame = table.frame
        self.rows = frame.index.to_numpy()
        # Plain Python lists per column: much faster to index in workers than DataFrame rows.
        self.values = {
            name: [frame[c].tolist() for c in pre.columns] for name, pre in pipeline.preprocessors.items()
        }
        self.targets: np.ndarray | None = None
        self.target_known: np.ndarray | None = None
        if with_target and pipeline.target is not None:
            self.targets, self.target_known = pipeline.target.encode(frame)

    def __len__(self) -> int:
        return len(self.rows)

    def cells(self, name: str, rows: torch.Tensor) -> list[Any]:
        """The raw cells of a single-column input for the given table rows (a batch's ``rows``)."""
        if not hasattr(self, "_position"):
            self._position = {int(r): i for i, r in enumerate(self.rows)}
        column = self.values[name][0]
        return [column[self._position[int(r)]] for r in rows]

    def __getitem__(self, i: int) -> tuple[int, dict[str, Any] | None, Any, DataError | None]:
        row = int(self.rows[i])
        ctx = LoadContext(base_dir=self.base_dir, row=row, cache_dir=self.cache_dir)
        samples = {}
        try:
            for name, pre in self.pipeline.preprocessors.items():
                samples[name] = load_located(pre, [col[i] for col in self.values[name]], ctx)
        except DataError as e:
            # Returned, not raised: a DataLoader worker would wrap it in a traceback dump.
            return row, None, None, e
        target = None if self.targets is None else self.targets[i]
        return row, samples, target, None


class Collator:
    """Stacks items into a :class:`Batch`; drops (skip) or raises (raise) unusable rows."""

    def __init__(self, preprocessors: dict[str, Preprocessor], on_error: OnError) -> None:
        self.preprocessors = preprocessors
        self.on_error = on_error

    def __call__(self, items: Sequence[tuple[int, Any, Any, DataError | None]]) -> Batch:
        skipped = [err for _, _, _, err in items if err is not None]
        if skipped and self.on_error == "raise":
            return Batch({}, None, torch.empty(0, dtype=torch.long), skipped)
        good = [it for it in items if it[3] is None]
        inputs = {
            name: collate_samples(pre, [it[1][name] for it in good]) for name, pre in self.preprocessors.items()
        } if good else {}
        target = None
        if good and good[0][2] is not None:
            target = torch.from_numpy(np.stack([np.asarray(it[2]) for it in good]))
        rows = torch.tensor([it[0] for it in good], dtype=torch.long)
        return Batch(inputs, target, rows, skipped)


def iterate(loader: DataLoader, report: SkipReport | None = None) -> Iterator[Batch]:
    """Yield non-empty batches, raising the first DataError under ``raise`` and recording skips."""
    on_error = loader.collate_fn.on_error  # type: ignore[attr-defined]
    for batch in loader:
        if batch.skipped:
            if on_error == "raise":
                raise batch.skipped[0]
            if report is not None:
                for e in batch.skipped:
                    report.add(e)
        if len(batch):
            yield batch


@dataclass
class CachedSplit:
    """A whole split decoded once and kept as stacked tensors."""

    inputs: dict[str, ModalityBatch]
    target: torch.Tensor | None
    rows: torch.Tensor

    def __len__(self) -> int:
        return int(self.rows.shape[0])

    def batches(self, batch_size: int, *, shuffle: bool = False, seed: int = 0, drop_last: bool = False) -> Iterator[Batch]:
        n = len(self)
        order = torch.randperm(n, generator=torch.Generator().manual_seed(seed)) if shuffle else torch.arange(n)
        stop = n - (n % batch_size) if drop_last and n >= batch_size else n
        for start in range(0, stop, batch_size):
            idx = order[start : start + batch_size]
            yield Batch(
                {k: v.index(idx) for k, v in self.inputs.items()},
                None if self.target is None else self.target[idx],
                self.rows[idx],
            )

    def subset(self, mask: torch.Tensor) -> "CachedSplit":
        idx = torch.nonzero(mask, as_tuple=False).flatten()
        return CachedSplit(
            {k: v.index(idx) for k, v in self.inputs.items()},
            None if self.target is None else self.target[idx],
            self.rows[idx],
        )


class StreamSplit:
    """Decode batches on the fly each epoch, for collections too large to cache.

    With ``features`` (:mod:`tessera.features`), frozen inputs arrive as their encoders'
    features, read from the feature store after the first epoch.
    """

    def __init__(
        self, pipeline: Pipeline, dataset: TableDataset, num_workers: int, report: SkipReport | None,
        features: FrozenFeatures | None = None,
    ) -> None:
        self.pipeline, self.dataset, self.num_workers, self.report = pipeline, dataset, num_workers, report
        self.features = features

    def __len__(self) -> int:
        return len(self.dataset)

    def batches(self, batch_size: int, *, shuffle: bool = False, seed: int = 0) -> Iterator[Batch]:
        loader = self.pipeline.loader(self.dataset, batch_size=batch_size, shuffle=shuffle, num_workers=self.num_workers, seed=seed)
        batches = iterate(loader, self.report)
        if self.features is None:
            return batches
        return (self.features.apply(b, self.dataset) for b in batches)


def cache_split(
    pipeline: Pipeline,
    dataset: TableDataset,
    *,
    batch_size: int = 256,
    num_workers: int = 0,
    report: SkipReport | None = None,
    description: str = "decoding",
    features: FrozenFeatures | None = None,
) -> CachedSplit:
    """Decode every row once (in ``num_workers`` processes) and stack the results.

    With ``features``, each decoded batch of a frozen input is replaced by its encoder's
    features at once (read from the feature store, or computed and stored), so the decoded
    pixels or samples of a large split are never all held together.
    """
    loader = pipeline.loader(dataset, batch_size=batch_size, num_workers=num_workers)
    parts: list[Batch] = []
    if features is not None:
        description = f"{description}, frozen features of {features.describe()}"
    with progress_bar(description, total=len(dataset)) as advance:
        for batch in loader:
            if batch.skipped:
                if dataset.on_error == "raise":
                    raise batch.skipped[0]
                if report is not None:
                    for e in batch.skipped:
                        report.add(e)
            if len(batch):
                if features is not None:
                    batch = features.apply(batch, dataset)
                parts.append(batch)
            counts = {} if features is None else {"computed": features.computed, "reused": features.reused}
            advance(len(batch) + len(batch.skipped), **counts)
    if not parts:
        raise DataError(f"no usable rows left in {description} (all {len(dataset)} rows failed)")
    inputs = {name: ModalityBatch.concat([p.inputs[name] for p in parts]) for name in parts[0].inputs}
    target = None if parts[0].target is None else torch.cat([p.target for p in parts])
    rows = torch.cat([p.rows for p in parts])
    return CachedSplit(inputs, target, rows)


def split_frame(frame: pd.DataFrame, schema: Schema, *, val_fraction: float = 0.1, test_fraction: float = 0.0, seed: int = 0) -> dict[str, pd.DataFrame]:
    """Use the schema's split column when there is one, else a seeded random split."""
    if schema.split and schema.split in frame.columns:
        names = frame[schema.split].map(lambda v: SPLIT_VALUES.get(str(v).lower(), str(v)))
        parts = {s: frame[names == s] for s in ("train", "val", "test")}
        if len(parts["train"]) == 0:
            raise DataError("no rows have split 'train'", column=schema.split)
        return {k: v for k, v in parts.items() if len(v)}
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(frame))
    n_val = int(round(val_fraction * len(frame)))
    n_test = int(round(test_fraction * len(frame)))
    parts = {
        "test": frame.iloc[np.sort(order[:n_test])],
        "val": frame.iloc[np.sort(order[n_test : n_test + n_val])],
        "train": frame.iloc[np.sort(order[n_test + n_val :])],
    }
    return {k: v for k, v in parts.items() if len(v)}


def default_workers() -> int:
    """Worker processes for decoding: all cores but never more than 4 (this targets laptops)."""
    return min(4, available_cores())
