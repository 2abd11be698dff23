"""The Python API most users touch: ``Predictor().fit(table)``, ``predict``, ``evaluate``, ``save``, ``load``.

``Predictor(preset="best", time_limit=600)`` trains several models instead of one and keeps
a validation-chosen weighted ensemble of them (:mod:`tessera.workflows.best`); it predicts,
saves and loads the same way.

A saved model is a folder with the weights (``model.pt``) and everything else needed to
predict on a new table (``tessera.json``: schema, fitted preprocessors including the
tokenizer, label classes, configs, training history, and the licences of any pretrained
towers, which ``MODEL_CARD.md`` also lists). It is written to a temporary
folder and swapped in whole, so an interrupted save never destroys the previous one.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Annotated, Any, ClassVar

import numpy as np
import pandas as pd
import torch
from pydantic import Field

import tessera
from tessera import zoo
from tessera.ensemble import Ensemble, is_ensemble
from tessera.errors import OnError, SchemaError, SkipReport, TesseraError
from tessera.files import atomic_dir, atomic_path
from tessera.model import ModelConfig, MultimodalModel, build_model, legacy_options, versioned_options
from tessera.pipeline import Pipeline
from tessera.prepare import SKIP_REPORT, decode_table, feature_folder, prepare
from tessera.schema import Schema
from tessera.settings import PathLike, Settings
from tessera.table import read_table
from tessera.train import TrainConfig, TrainResult, resolve_device, run_inference, train

PRESETS = ("default", "best")  # "best": the ensemble workflow (tessera.workflows.best)
MODEL_FILE = "model.pt"
META_FILE = "tessera.json"
CARD_FILE = "MODEL_CARD.md"  # written when the model contains pretrained towers
STATE_FILE = "train_state.pt"  # in a checkpoint folder while its run is unfinished: what resuming needs
# Train settings that say where or how fast a run goes, not what it computes: a resumed run may change them.
RUN_ENVIRONMENT = ("threads", "num_workers", "device", "cache", "checkpoint_dir")


class InferenceConfig(Settings):
    """How a trained model reads and runs new rows: what predicting, evaluating and serving need, and no more.

    Saved with the model; a model saved before these settings existed gets them from its
    training settings (the same device, workers and ``on_error``; twice the batch size).
    """

    section: ClassVar[str] = "inference"
    device: str = "auto"
    batch_size: Annotated[int, Field(ge=1)] = 128
    on_error: OnError = "raise"  # or "skip": leave unusable rows out (``report`` names them)
    num_workers: int | None = None  # decoding processes for large tables; None = up to 4
    cache: bool = True  # decode the whole table first (else stream it batch by batch)
    # Read and fill the feature cache (frozen towers' features, derived texts; tessera.features) as training
    # does. Off by default, so a server needs no cache folder: the towers then run inside the model.
    feature_cache: bool = False
    cache_dir: PathLike | None = None  # the cache; None = the data home's

    @classmethod
    def for_training(cls, train: TrainConfig) -> "InferenceConfig":
        return cls(device=train.device, batch_size=train.batch_size * 2, on_error=train.on_error,
                   num_workers=train.num_workers, cache=train.cache)


class Predictor:
    """A trained multimodal model and everything needed to use it on a new table, as one object.

    Why it exists: a model's weights are useless without the exact preprocessing they were
    trained with and the configs that built them, so the predictor keeps the fitted
    :class:`~tessera.pipeline.Pipeline`, the model and its settings together, trains them
    together (:meth:`fit`), and saves and loads them together, so ``predict`` on a new
    table needs nothing but the saved folder. Training and inference settings are kept
    apart: ``train_config`` describes how it was fitted, ``inference`` how it is run.
    """

    def __init__(
        self,
        model: dict | ModelConfig | None = None,
        train: dict | TrainConfig | None = None,
        inference: dict | InferenceConfig | None = None,
        *,
        preset: str = "default",
        time_limit: float | None = None,
        exclude: list[str] | tuple[str, ...] = (),
    ) -> None:
        if preset not in PRESETS:
            raise SchemaError(f"preset must be one of {list(PRESETS)}, got {preset!r}")
        if time_limit is not None and not time_limit > 0:
            raise SchemaError(f"time_limit must be a positive number of seconds, got {time_limit!r}")
        if exclude and preset != "best":
            raise SchemaError("exclude chooses among preset 'best''s models; add preset='best'")
        self.preset, self.time_limit, self.exclude = preset, time_limit, tuple(exclude)
        self.model_config = model if isinstance(model, ModelConfig) else ModelConfig.from_dict(model)
        self.train_config = train if isinstance(train, TrainConfig) else TrainConfig.from_dict(train)
        if inference is None:
            self.inference = InferenceConfig.for_training(self.train_config)
        else:
            self.inference = inference if isinstance(inference, InferenceConfig) else InferenceConfig.from_dict(inference)
        self.pipeline: Pipeline | None = None
        self.model: MultimodalModel | None = None
        self.result: TrainResult | None = None
        self.metrics: dict[str, Any] = {}
        self.split_note = ""  # how fit split the rows (a split column, or a seeded split), for the log
        self.ensemble: Ensemble | None = None  # preset "best": the models and their weights

    # -- training ------------------------------------------------------------------------------
    def fit(
        self,
        table: Any,
        schema: Schema | dict | str | os.PathLike | None = None,
        *,
        target: str | list[str] | None = None,
        skip_report: str | os.PathLike = SKIP_REPORT,
        keep: list[str] | tuple[str, ...] = (),
        resume: bool = False,
    ) -> "Predictor":
        """Prepare the table (:func:`tessera.prepare.prepare`) and train on its splits.

        ``keep``: columns an inferred schema would leave out as likely leaks, kept as inputs.
        ``resume=True`` continues the unfinished run whose state is in ``checkpoint_dir``
        (see :meth:`fit_prepared`).
        """
        if self.preset == "best":
            if resume:
                raise TesseraError(
                    "preset 'best' cannot resume an interrupted run (it keeps no training state between its models): "
                    "start it again without resuming; its time_limit bounds how long that takes"
                )
            from tessera.workflows.best import fit_best

            best = fit_best(table, schema, target, self.model_config, self.train_config, self.inference,
                            time_limit=self.time_limit, exclude=self.exclude, keep=keep, skip_report=skip_report)
            self.ensemble, self.metrics, self.split_note = best.ensemble, best.metrics, best.split_note
            return self
        encoders = self.model_config.encoders
        prepared = prepare(table, schema, target, self.train_config, encoders=encoders, skip_report=skip_report, keep=keep)
        self.split_note = prepared.split_note
        return self.fit_prepared(prepared.pipeline, prepared.splits, resume=resume)

    def fit_prepared(self, pipeline: Pipeline, sources: dict[str, Any], *, resume: bool = False) -> "Predictor":
        """Train on splits from :func:`tessera.prepare.prepare`; inputs the pipeline lacks are ignored.

        With ``checkpoint_dir`` the folder always holds the best model so far (loadable with
        :meth:`load`) and, until the run finishes, the whole training state after the last
        epoch (``train_state.pt``: weights, optimiser, schedule, RNG, history, best weights,
        patience count), each epoch written atomically. ``resume=True`` continues from that
        state, and the run finishes as it would have without the interruption (the same
        weights, given the same data, settings and thread count). At the end the folder gets
        the final model, with the full history and test metrics, and no state.
        """
        self.pipeline = pipeline
        self.metrics = {}
        torch.manual_seed(self.train_config.seed)
        self.model = build_model(pipeline, self.model_config)
        checkpoint_dir = self.train_config.checkpoint_dir
        state = self._resume_state(pipeline) if resume else None

        def save_checkpoint(train_state: dict[str, Any]) -> None:
            saved = {"train": train_state, **self._run_identity(pipeline)}
            if train_state["best_epoch"] == train_state["epoch"]:  # improved: the model holds the best weights
                self.result = TrainResult(history=list(train_state["history"]))
                self.save(checkpoint_dir, training_state=saved)
            else:
                with atomic_path(Path(checkpoint_dir) / STATE_FILE) as tmp:
                    torch.save(saved, tmp)

        self.result = train(
            self.model, sources["train"], sources.get("val"), pipeline.target, self.train_config,
            aux_weight=self.model_config.aux_loss_weight,
            on_epoch_end=save_checkpoint if checkpoint_dir else None, resume=None if state is None else state["train"],
        )
        if "test" in sources:
            self.metrics = {"test": self.metrics_on(sources["test"])}
        elif "val" in sources and len(sources["val"]):  # no test rows: the validation score, which also chose the epoch
            self.metrics = {"val": self.metrics_on(sources["val"])}
        if checkpoint_dir:
            self.save(checkpoint_dir)
        return self

    def _run_identity(self, pipeline: Pipeline) -> dict[str, Any]:
        """What must not change between an interrupted run and its resumption: settings and fitted preprocessing."""
        fitted = json.dumps(pipeline.state_dict(), sort_keys=True, default=_json_default)
        train_config = {k: v for k, v in self.train_config.to_dict().items() if k not in RUN_ENVIRONMENT}
        return {"model_config": self.model_config.to_dict(), "train_config": train_config,
                "pipeline_sha256": hashlib.sha256(fitted.encode()).hexdigest()}

    def _resume_state(self, pipeline: Pipeline) -> dict[str, Any]:
        """The saved state of the unfinished run in ``checkpoint_dir``, checked against this run."""
        folder = self.train_config.checkpoint_dir
        if not folder:
            raise TesseraError("resuming needs train.checkpoint_dir: the folder the interrupted run saved its state in")
        path = Path(folder) / STATE_FILE
        if not path.is_file():
            done = " (it holds a finished model: the run completed)" if (Path(folder) / META_FILE).is_file() else ""
            raise TesseraError(
                f"nothing to resume in {folder}{done}: no {STATE_FILE}, which a run leaves there until it finishes; "
                "train without resuming"
            )
        saved = torch.load(path, map_location="cpu", weights_only=False)  # our own file: tensors, RNG states, numbers
        now = self._run_identity(pipeline)
        changed = [
            f"{section.removesuffix('_config')}.{key}"
            for section in ("model_config", "train_config")
            for key in sorted(set(saved[section]) | set(now[section]))
            if saved[section].get(key) != now[section].get(key)
        ]
        if changed:
            raise SchemaError(
                f"cannot resume the run in {folder}: these settings differ from the interrupted run's: {', '.join(changed)}"
            )
        if saved["pipeline_sha256"] != now["pipeline_sha256"]:
            raise SchemaError(
                f"cannot resume the run in {folder}: the fitted preprocessing differs from the interrupted run's "
                "(the table or the schema changed)"
            )
        return saved

    # -- inference --------------------------------------------------------------------------
    @property
    def task(self) -> Any:
        """What the model predicts (:mod:`tessera.tasks`), fitted on the training rows."""
        if self.ensemble is not None:
            return self.ensemble.task
        if self.pipeline is None:
            raise TesseraError("this predictor is not trained: call fit() or Predictor.load()")
        return self.pipeline.target

    def require_network(self, purpose: str) -> None:
        """Refuse, in one clear line, work that needs a single network when this is an ensemble (preset best)."""
        if self.ensemble is not None:
            names = ", ".join(m.name for m in self.ensemble.members)
            raise TesseraError(
                f"{purpose} needs a single trained network; this model is a preset 'best' ensemble of {names}. "
                "Predict and evaluate it as a whole (Predictor.load, tessera predict / evaluate), or use one of "
                "its networks (its members/ folder)"
            )
        if self.model is None or self.pipeline is None:
            raise TesseraError("this predictor is not trained: call fit() or Predictor.load()")

    def outputs(
        self, table: Any, with_target: bool = False, report: SkipReport | None = None
    ) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor]:
        """Model outputs for a table's rows, their encoded targets (``with_target``, when present) and row numbers."""
        if self.ensemble is not None:
            return self.ensemble.outputs(table, self.inference)
        if self.model is None or self.pipeline is None:
            raise TesseraError("this predictor is not trained: call fit() or Predictor.load()")
        t = read_table(table)
        warn, report = report is None, SkipReport() if report is None else report
        features = None
        frozen = {n: e for n, e in self.model.encoders.items() if e.frozen}
        if self.inference.feature_cache and frozen:
            from tessera.features import FrozenFeatures

            features = FrozenFeatures(frozen, self.pipeline, feature_folder(self.inference), device=next(self.model.parameters()).device)
        source = decode_table(self.pipeline, t, self.inference, report, with_target=with_target, features=features)
        out = run_inference(self.model, source, self.inference.batch_size, resolve_device(self.inference.device))
        if warn and len(report):
            report.warn()
        return out

    def predict_proba(self, table: Any, *, report: SkipReport | None = None) -> pd.DataFrame:
        """Class probabilities (multiclass), label probabilities (multilabel); indexed by table row
        (a DataFrame's own index, else the row number).

        Rows skipped under ``on_error: skip`` are recorded in ``report`` when one is given
        (else a warning names them). The task decides the columns; tasks without
        probabilities (regression) raise.
        """
        out, _, rows = self.outputs(table, with_target=False, report=report)
        return _indexed_like(table, self.task.probabilities(out, rows.numpy()))

    def predict(self, table: Any, *, report: SkipReport | None = None) -> pd.Series | pd.DataFrame:
        """Predictions in the target's own terms (labels, 0/1 per label column, values); indexed as :meth:`predict_proba`."""
        out, _, rows = self.outputs(table, with_target=False, report=report)
        return _indexed_like(table, self.task.predictions(out, rows.numpy()))

    def predict_records(self, table: Any) -> list[dict[str, Any]]:
        """One JSON-ready answer per row, in table order, as the server returns them."""
        out, _, _ = self.outputs(table, with_target=False)
        return self.task.served(out)

    def evaluate(self, table: Any) -> dict[str, float]:
        out, y, _ = self.outputs(table, with_target=True)
        if y is None:
            raise SchemaError(f"evaluate needs the target column(s) {self.task.columns} in the table")
        return self.task.summary_metrics(out, y)

    def metrics_on(self, source: Any) -> dict[str, float]:
        """The task's metrics on a decoded split (``CachedSplit`` or ``StreamSplit``) with targets."""
        out, y, _ = run_inference(self.model, source, self.inference.batch_size, resolve_device(self.inference.device))
        return self.pipeline.target.summary_metrics(out, y)

    # -- persistence ------------------------------------------------------------------------
    def save(self, path: str | os.PathLike, *, training_state: dict[str, Any] | None = None) -> Path:
        """Write the model folder (atomically); ``training_state`` (from :meth:`fit_prepared`) goes in with it."""
        if self.ensemble is not None:
            self.ensemble.info.update(metrics=self.metrics, split_note=self.split_note, inference_config=self.inference.to_dict())
            return self.ensemble.save(path)
        if self.model is None or self.pipeline is None:
            raise TesseraError("nothing to save: the predictor is not trained")
        meta = {
            "tessera_version": tessera.__version__,
            "pipeline": self.pipeline.state_dict(),
            "model_config": self.model_config.to_dict(),
            # Per input, the encoder's versioned options (arch), so a later default cannot change the rebuilt model.
            "encoder_versions": versioned_options(self.model),
            "train_config": self.train_config.to_dict(),
            "inference_config": self.inference.to_dict(),
            "history": self.result.history if self.result else [],
            # What the model answers with (fused, an input's head, a blend), as chosen on validation.
            "output_selection": self.result.output if self.result else None,
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
            if training_state is not None:
                torch.save(training_state, tmp / STATE_FILE)
        return path

    @classmethod
    def load(cls, path: str | os.PathLike, device: str = "cpu") -> "Predictor":
        path = Path(path)
        if is_ensemble(path):
            ensemble = Ensemble.load(path, device=device)
            info = ensemble.info
            inference = InferenceConfig.from_dict(info["inference_config"]) if "inference_config" in info else None
            pred = cls(preset="best", inference=inference)
            pred.inference.device = device
            pred.ensemble, pred.metrics, pred.split_note = ensemble, info.get("metrics", {}), info.get("split_note", "")
            return pred
        meta_path, weights = path / META_FILE, path / MODEL_FILE
        if not meta_path.is_file() or not weights.is_file():
            raise TesseraError(f"{path} is not a saved Tessera model (expected {META_FILE} and {MODEL_FILE})")
        meta = json.loads(meta_path.read_text())
        source = str(meta_path)
        pred = cls(
            model=ModelConfig.from_dict(meta["model_config"], source),
            train=TrainConfig.from_dict(meta["train_config"], source),
            inference=InferenceConfig.from_dict(meta["inference_config"], source) if "inference_config" in meta else None,
        )
        pred.train_config.device = pred.inference.device = device
        pred.pipeline = Pipeline.from_state(meta["pipeline"])
        # A model saved before encoder options were versioned was built with each encoder's legacy options.
        versions = meta["encoder_versions"] if "encoder_versions" in meta else legacy_options(pred.pipeline, pred.model_config)
        pred.model = build_model(pred.pipeline, pred.model_config, pinned=versions)
        pred.model.load_state_dict(torch.load(weights, map_location=device, weights_only=True))
        pred.model.to(device).eval()
        pred.metrics = meta.get("metrics", {})
        pred.result = TrainResult(history=meta.get("history", []), output=meta.get("output_selection"))
        return pred


def _json_default(o: Any) -> Any:
    if isinstance(o, np.generic):
        return o.item()
    if isinstance(o, np.ndarray):
        return o.tolist()
    if isinstance(o, Path):
        return str(o)
    raise TypeError(f"not JSON-serialisable: {type(o).__name__}")


def _indexed_like(table: Any, result: pd.Series | pd.DataFrame) -> pd.Series | pd.DataFrame:
    """``result`` (indexed by row number) with a DataFrame's own index, so it lines up with the caller's frame."""
    if isinstance(table, pd.DataFrame):
        result.index = table.index[result.index.to_numpy()]
    return result
