"""Fine-tuning a saved model on new rows (e.g. user feedback exported by ``tessera feedback export``).

The saved preprocessors are kept as they are, not refitted: the tokenizer, the numeric
scaling and the label classes must stay those the weights were trained with, so new rows
are decoded exactly as the old ones were. Labels the model has never seen are refused
(the output layer has no unit for them). Training continues from the saved weights with a
lower learning rate, so a few hundred corrections adjust the model rather than replace it.
"""

from __future__ import annotations

import copy
import os
from typing import Any, Sequence

import pandas as pd

from tessera.errors import SchemaError, SkipReport
from tessera.pipeline import split_frame
from tessera.predictor import Predictor
from tessera.prepare import decode
from tessera.table import Table, read_table
from tessera.train import train


def fine_tune(
    predictor: Predictor | str | os.PathLike,
    tables: Sequence[Any],
    *,
    epochs: int = 3,
    lr: float | None = None,
    val_fraction: float = 0.0,
) -> Predictor:
    """Continue training ``predictor`` (in place; loaded first if a folder) on the rows of ``tables``.

    ``lr`` defaults to a tenth of the original learning rate. With ``val_fraction`` > 0 a
    part of the new rows is held out and the best epoch on it is kept.
    """
    if not isinstance(predictor, Predictor):
        predictor = Predictor.load(predictor)
    predictor.require_network("fine-tuning")
    pipeline = predictor.pipeline
    target = pipeline.target.columns
    parts = [read_table(t) for t in tables]
    if not parts:
        raise SchemaError("fine-tuning needs at least one table of new rows (--extra-data)")
    for t in parts:
        missing = [c for c in target if c not in t.frame.columns]
        if missing:
            raise SchemaError(f"{t.source or 'the extra table'} has no target column(s) {missing}; the model predicts {target}")
    base_dirs = {t.base_dir for t in parts}
    frame = pd.concat([t.frame for t in parts], ignore_index=True)
    frame = frame[frame[target].notna().all(axis=1)].copy()
    for pre in pipeline.preprocessors.values():  # an input no row has (no request sent it) is missing everywhere
        for column in pre.columns:
            if column not in frame.columns:
                frame[column] = None
    if frame.empty:
        raise SchemaError("the extra data has no rows with a target value")
    table = Table(frame, base_dirs.pop() if len(base_dirs) == 1 else None, parts[0].source)
    cfg = predictor.train_config.replace(
        epochs=epochs, lr=lr if lr is not None else predictor.train_config.lr / 10, on_error="raise",
        checkpoint_dir=None, max_train_rows=None, num_workers=0, cache=True,
    )
    splits = {"train": frame}
    if val_fraction > 0 and len(frame) >= 10:
        schema = copy.deepcopy(pipeline.schema)
        schema.split = None
        splits = split_frame(frame, schema, val_fraction=val_fraction, seed=cfg.seed)
    tables = {name: Table(f, table.base_dir, table.source) for name, f in splits.items()}
    sources = decode(pipeline, tables, cfg, SkipReport())
    previous = predictor.result.history if predictor.result else []
    result = train(
        predictor.model, sources["train"], sources.get("val"), pipeline.target, cfg, aux_weight=predictor.model_config.aux_loss_weight
    )
    result.history = [*previous, *({**h, "fine_tune": True} for h in result.history)]
    predictor.result = result
    predictor.model.eval()
    return predictor
