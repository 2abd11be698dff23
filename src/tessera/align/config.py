"""Alignment configs are data too: `tessera align CONFIG` trains a shared space and saves an :class:`Embedder`.

    data:
      table: photos.csv          # or `recipe: flickr8k`; schema as in fit configs
    model: {dim: 256, encoder_dim: 128, loss: clip, anchor: null,
            encoders: {caption: {name: sentence_transformer, options: {model: PATH}}}}
    train: {epochs: 10, batch_size: 64, lr: 0.001, queue_size: 0, seed: 0}
    output: runs/space

No target is needed: paired inputs of a row supervise each other. Rows of the schema's
``val`` split (or a random 10 %) report Recall@1 and @5 over unique items, with chance, after each epoch.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Any, ClassVar

from pydantic import Field, field_validator, model_validator

from tessera.config import FIT_DATA_KEYS, ConfigFile, FitConfig, resolve_data
from tessera.errors import SchemaError
from tessera.files import read_yaml
from tessera.prepare import DataSettings, prepare
from tessera.schema import resolve_schema
from tessera.settings import PathLike, Settings
from tessera.table import read_table


class AlignModelConfig(Settings):
    """The ``model`` section: arguments of :func:`tessera.align.build_align_model` (only those given are passed)."""

    section: ClassVar[str] = "model"
    dim: int = 256
    encoder_dim: int = 128
    loss: str = "clip"
    anchor: str | None = None
    encoders: dict[str, dict[str, Any]] = {}
    init_temperature: float | None = None

    def build_kwargs(self) -> dict[str, Any]:
        return self.model_dump(exclude_unset=True)


class AlignTrainConfig(DataSettings):
    """The ``train`` section: the contrastive optimisation, plus how rows are split and read (:class:`DataSettings`)."""

    section: ClassVar[str] = "train"
    epochs: Annotated[int, Field(ge=1)] = 10
    batch_size: int = 64
    lr: Annotated[float, Field(gt=0)] = 1e-3
    queue_size: Annotated[int, Field(ge=0)] = 0
    weight_decay: float = 0.01
    device: str = "auto"
    num_workers: int | None = 0  # decoding processes (alignment decodes in this process by default)

    @field_validator("batch_size")
    @classmethod
    def _batch_size(cls, value: int) -> int:
        if value < 2:
            raise ValueError("must be at least 2: a contrastive batch needs negatives")
        return value


class AlignConfig(ConfigFile):
    """An alignment config file."""

    data_keys: ClassVar[tuple[str, ...]] = ("table", "recipe", "recipe_options", "schema", "inputs")
    model: AlignModelConfig = Field(default_factory=AlignModelConfig)
    train: AlignTrainConfig = Field(default_factory=AlignTrainConfig)
    output: PathLike = Path("runs/embedder")

    @model_validator(mode="after")
    def _inputs(self) -> "AlignConfig":
        inputs = self.data.get("inputs")
        if inputs is not None and not (isinstance(inputs, list) and all(isinstance(i, str) for i in inputs)):
            raise ValueError(f"data: inputs must be a list of input names, got {inputs!r}")
        return self


def parse_align_config(raw: Any, source: str = "config", base_dir: str | os.PathLike = ".") -> AlignConfig:
    return AlignConfig.from_dict(raw, source).located(base_dir)


def load_align_config(path: str | os.PathLike) -> AlignConfig:
    path = Path(path)
    return parse_align_config(read_yaml(path), str(path), path.resolve().parent)


def run_align(cfg: AlignConfig, output: str | os.PathLike | None = None):
    """Train the shared space a config describes and save it; returns (embedder, history, output folder)."""
    import torch

    from tessera.align.embedder import Embedder
    from tessera.align.train import fit_alignment

    data = {k: v for k, v in cfg.data.items() if k in FIT_DATA_KEYS}
    table_path, schema = resolve_data(FitConfig(data=data, base_dir=cfg.base_dir))
    t = read_table(table_path)
    schema = resolve_schema(t.frame, schema)
    if cfg.data.get("inputs"):
        keep = list(cfg.data["inputs"])
        missing = set(keep) - set(schema.inputs)
        if missing:
            raise SchemaError(f"data: inputs {sorted(missing)} are not in the schema; inputs are {sorted(schema.inputs)}")
        schema.inputs = {k: v for k, v in schema.inputs.items() if k in keep}
    if len(schema.inputs) < 2:
        raise SchemaError(f"alignment needs at least two inputs; the schema has {sorted(schema.inputs)}")
    prepared = prepare(t, schema, None, cfg.train, supervised=False, encoders=cfg.model.encoders, only=("train", "val"))
    torch.manual_seed(cfg.train.seed)
    embedder = Embedder.create(prepared.pipeline, **cfg.model.build_kwargs())
    c = cfg.train
    history = fit_alignment(
        embedder.model, prepared.splits["train"], prepared.splits.get("val"), epochs=c.epochs, batch_size=c.batch_size,
        lr=c.lr, queue_size=c.queue_size, seed=c.seed, weight_decay=c.weight_decay, device=c.device,
    )
    embedder.model.to("cpu").eval()
    out = embedder.save(output or cfg.output)
    return embedder, history, out
