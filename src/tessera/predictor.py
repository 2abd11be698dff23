"""The Python API most users touch: ``Predictor().fit(table)``, ``predict``, ``evaluate``, ``save``, ``load``.

A saved model is a folder with the weights (``model.pt``) and everything else needed to
predict on a new table (``tessera.json``: schema, fitted preprocessors including the
tokenizer, label classes, configs, training history, and the licences of any pretrained
towers, which ``MODEL_CARD.md`` also lists). It is written to a temporary
folder and swapped in whole, so an interrupted save never destroys the previous one.
"""

from __future__ import annotations

import json
import os
import warnings
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import pandas as pd
import torch

import tessera
from tessera import zoo
from tessera.errors import DataError, SchemaError, SkipReport, TesseraError, check_on_error
from tessera.files import atomic_dir
from tessera.model import ModelConfig, MultimodalModel, build_model
from tessera.pipeline import Batch, Pipeline, TableDataset, cache_split, default_workers, iterate, split_frame
from tessera.schema import Schema, resolve_schema
from tessera.table import Table, read_table
from tessera.train import TrainConfig, TrainResult, resolve_device, run_inference, train

MODEL_FILE = "model.pt"
META_FILE = "tessera.json"
CARD_FILE = "MODEL_CARD.md"  # written when the model contains pretrained towers


class StreamSplit:
    """Decode batches on the fly each epoch, for collections too large to cache."""

    def __init__(self, pipeline: Pipeline, dataset: TableDataset, num_workers: int, report: SkipReport | None) -> None:
        self.pipeline, self.dataset, self.num_workers, self.report = pipeline, dataset, num_workers, report

    def __len__(self) -> int:
        return len(self.dataset)

    def batches(self, batch_size: int, *, shuffle: bool = False, seed: int = 0) -> Iterator[Batch]:
        loader = self.pipeline.loader(self.dataset, batch_size=batch_size, shuffle=shuffle, num_workers=self.num_workers, seed=seed)
        return iterate(loader, self.report)


class Predictor:
    def __init__(self, model: dict | ModelConfig | None = None, train: dict | TrainConfig | None = None) -> None:
        self.model_config = model if isinstance(model, ModelConfig) else ModelConfig.from_dict(model)
        self.train_config = train if isinstance(train, TrainConfig) else TrainConfig.from_dict(train)
        self.pipeline: Pipeline | None = None
        self.model: MultimodalModel | None = None
        self.result: TrainResult | None = None
        self.metrics: dict[str, Any] = {}

    # -- training ------------------------------------------------------------------------------
    def fit(
        self,
        table: Any,
        schema: Schema | dict | str | os.PathLike | None = None,
        *,
        target: str | list[str] | None = None,
        skip_report: str | os.PathLike = "tessera-skipped-rows.csv",
    ) -> "Predictor":
        pipeline, sources = self.prepare_data(table, schema, target=target, skip_report=skip_report)
        return self.fit_prepared(pipeline, sources)

    def prepare_data(
        self,
        table: Any,
        schema: Schema | dict | str | os.PathLike | None = None,
        *,
        target: str | list[str] | None = None,
        skip_report: str | os.PathLike = "tessera-skipped-rows.csv",
    ) -> tuple[Pipeline, dict[str, Any]]:
        """Split, fit the preprocessors on train, and decode (or stream) every split.

        Separate from training so several models (a fusion model and its unimodal
        baselines) can share one decoded copy of the data.
        """
        parts = self.split_data(table, schema, target=target)
        report = SkipReport()
        sources = {name: self._source(part, report, name) for name, part in parts.items()}
        if len(report):
            path = report.write(skip_report)
            report.warn(path)
        return self.pipeline, sources

    def split_data(
        self, table: Any, schema: Schema | dict | str | os.PathLike | None = None, *, target: str | list[str] | None = None
    ) -> dict[str, Table]:
        """Split the rows and fit the preprocessors on train, without decoding any media.

        The Ray runner stops here and lets each worker decode its own share of the rows.
        """
        cfg = self.train_config
        check_on_error(cfg.on_error)
        t = read_table(table)
        schema = resolve_schema(t.frame, schema, target, t.base_dir)
        if not schema.target:
            raise SchemaError("fit needs a target: pass target=COLUMN or put 'target:' in the schema")
        schema.validate(t.frame, source=t.source)
        parts = split_frame(t.frame, schema, seed=cfg.seed)
        for name in ("train", "val"):
            if name in parts:
                parts[name] = _drop_unknown_targets(parts[name], schema, name)
        if cfg.max_train_rows and len(parts["train"]) > cfg.max_train_rows:
            parts["train"] = parts["train"].sample(n=cfg.max_train_rows, random_state=cfg.seed).sort_index()
        chosen = {n: str(e["name"]) for n, e in self.model_config.encoders.items() if isinstance(e, dict) and e.get("name")}
        self.pipeline = Pipeline.fit(parts["train"], schema, encoders=chosen)
        return {name: Table(frame, t.base_dir, t.source) for name, frame in parts.items()}

    def fit_prepared(self, pipeline: Pipeline, sources: dict[str, Any]) -> "Predictor":
        """Train on splits from :meth:`prepare_data`; inputs the pipeline lacks are ignored.

        With ``checkpoint_dir`` the whole predictor is saved there (atomically) at every
        validation improvement, so a run that dies mid-way leaves its best model loadable;
        at the end it is saved once more with the full history and test metrics.
        """
        self.pipeline = pipeline
        self.metrics = {}
        torch.manual_seed(self.train_config.seed)
        self.model = build_model(pipeline, self.model_config)
        checkpoint_dir = self.train_config.checkpoint_dir

        def save_checkpoint(model: torch.nn.Module, result: TrainResult) -> None:
            self.result = result  # history so far; the model is self.model, at this epoch's weights
            self.save(checkpoint_dir)

        on_improve = save_checkpoint if checkpoint_dir else None
        self.result = train(
            self.model, sources["train"], sources.get("val"), pipeline.target, self.train_config, on_improve,
            aux_weight=self.model_config.aux_loss_weight,
        )
        if "test" in sources:
            self.metrics = {"test": self._metrics(sources["test"])}
        if checkpoint_dir:
            self.save(checkpoint_dir)
        return self

    def _source(self, table: Table, report: SkipReport | None, name: str = "rows", with_target: bool = True):
        assert self.pipeline is not None
        cfg = self.train_config
        ds = self.pipeline.dataset(table, with_target=with_target, on_error=cfg.on_error)
        workers = default_workers() if cfg.num_workers is None else cfg.num_workers
        workers = workers if len(ds) >= 256 else 0  # process start-up costs more than it saves
        if cfg.cache:
            return cache_split(self.pipeline, ds, num_workers=workers, report=report, description=f"decoding {name}")
        return StreamSplit(self.pipeline, ds, workers, report)

    # -- inference --------------------------------------------------------------------------
    def _outputs(
        self, table: Any, with_target: bool, report: SkipReport | None = None
    ) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor]:
        if self.model is None or self.pipeline is None:
            raise TesseraError("this predictor is not trained: call fit() or Predictor.load()")
        t = read_table(table)
        warn, report = report is None, SkipReport() if report is None else report
        source = self._source(t, report, with_target=with_target)
        out = run_inference(self.model, source, self.train_config.batch_size * 2, resolve_device(self.train_config.device))
        if warn and len(report):
            report.warn()
        return out

    def predict_proba(self, table: Any, *, report: SkipReport | None = None) -> pd.DataFrame:
        """Class probabilities (multiclass), label probabilities (multilabel); indexed by table row.

        Rows skipped under ``on_error: skip`` are recorded in ``report`` when one is given
        (else a warning names them). The task decides the columns; tasks without
        probabilities (regression) raise.
        """
        out, _, rows = self._outputs(table, with_target=False, report=report)
        return self.pipeline.target.probabilities(out, rows.numpy())

    def predict(self, table: Any, *, report: SkipReport | None = None) -> pd.Series | pd.DataFrame:
        """Predictions in the target's own terms (labels, 0/1 per label column, values); indexed by table row."""
        out, _, rows = self._outputs(table, with_target=False, report=report)
        return self.pipeline.target.predictions(out, rows.numpy())

    def predict_records(self, table: Any) -> list[dict[str, Any]]:
        """One JSON-ready answer per row, in table order, as the server returns them."""
        out, _, _ = self._outputs(table, with_target=False)
        return self.pipeline.target.served(out)

    def evaluate(self, table: Any) -> dict[str, float]:
        out, y, _ = self._outputs(table, with_target=True)
        if y is None:
            raise SchemaError(f"evaluate needs the target column(s) {self.pipeline.target.columns} in the table")
        return self.pipeline.target.summary_metrics(out, y)

    def _metrics(self, source) -> dict[str, float]:
        out, y, _ = run_inference(self.model, source, self.train_config.batch_size * 2, resolve_device(self.train_config.device))
        return self.pipeline.target.summary_metrics(out, y)

    # -- persistence ------------------------------------------------------------------------
    def save(self, path: str | os.PathLike) -> Path:
        if self.model is None or self.pipeline is None:
            raise TesseraError("nothing to save: the predictor is not trained")
        meta = {
            "tessera_version": tessera.__version__,
            "pipeline": self.pipeline.state_dict(),
            "model_config": self.model_config.to_dict(),
            "train_config": self.train_config.to_dict(),
            "history": self.result.history if self.result else [],
            "metrics": self.metrics,
            # Pretrained towers, their package versions and licences (tessera.zoo); MODEL_CARD.md says the same.
            "towers": zoo.towers_card(self.model.encoders.items()),
        }
        path = Path(path)
        with atomic_dir(path) as tmp:
            torch.save(self.model.state_dict(), tmp / MODEL_FILE)
            (tmp / META_FILE).write_text(json.dumps(meta, indent=2, default=_json_default))
            if meta["towers"]:
                (tmp / CARD_FILE).write_text(zoo.model_card_markdown(meta["towers"]))
        return path

    @classmethod
    def load(cls, path: str | os.PathLike, device: str = "cpu") -> "Predictor":
        path = Path(path)
        meta_path, weights = path / META_FILE, path / MODEL_FILE
        if not meta_path.is_file() or not weights.is_file():
            raise TesseraError(f"{path} is not a saved Tessera model (expected {META_FILE} and {MODEL_FILE})")
        meta = json.loads(meta_path.read_text())
        pred = cls(model=ModelConfig.from_dict(meta["model_config"]), train=TrainConfig.from_dict(meta["train_config"]))
        pred.train_config.device = device
        pred.pipeline = Pipeline.from_state(meta["pipeline"])
        pred.model = build_model(pred.pipeline, pred.model_config)
        pred.model.load_state_dict(torch.load(weights, map_location=device, weights_only=True))
        pred.model.to(device).eval()
        pred.metrics = meta.get("metrics", {})
        pred.result = TrainResult(history=meta.get("history", []))
        return pred


def _drop_unknown_targets(frame: pd.DataFrame, schema: Schema, split: str) -> pd.DataFrame:
    known = frame[schema.target].notna().all(axis=1)
    if not known.all():
        warnings.warn(f"{int((~known).sum())} {split} row(s) have no target value and are left out", stacklevel=3)
    if not known.any():
        raise DataError(f"no {split} rows have a target value", column=", ".join(schema.target))
    return frame[known]


def _json_default(o: Any) -> Any:
    if isinstance(o, np.generic):
        return o.item()
    if isinstance(o, np.ndarray):
        return o.tolist()
    if isinstance(o, Path):
        return str(o)
    raise TypeError(f"not JSON-serialisable: {type(o).__name__}")
