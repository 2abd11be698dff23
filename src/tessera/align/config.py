"""Alignment configs are data too: `tessera align CONFIG` trains a shared space and saves an :class:`Embedder`.

    data:
      table: photos.csv          # or `recipe: flickr8k`; schema as in fit configs
    model: {dim: 256, encoder_dim: 128, loss: clip, anchor: null,
            encoders: {caption: {name: sentence_transformer, options: {model: PATH}}}}
    train: {epochs: 10, batch_size: 64, lr: 0.001, queue_size: 0, seed: 0}
    output: runs/space

No target is needed: paired inputs of a row supervise each other. Rows of the schema's
``val`` split (or a random 10 %) report paired Recall@1 after each epoch.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tessera.config import check_sections
from tessera.files import read_yaml
from tessera.errors import SchemaError

MODEL_KEYS = {"dim", "encoder_dim", "loss", "anchor", "encoders", "init_temperature"}


@dataclass
class AlignTrainConfig:
    epochs: int = 10
    batch_size: int = 64
    lr: float = 1e-3
    queue_size: int = 0
    seed: int = 0
    weight_decay: float = 0.01
    max_train_rows: int | None = None
    device: str = "auto"

    @classmethod
    def from_dict(cls, d: dict[str, Any] | None, source: str) -> "AlignTrainConfig":
        d = dict(d or {})
        unknown = set(d) - set(cls.__dataclass_fields__)
        if unknown:
            raise SchemaError(f"{source}: train: unknown key(s) {sorted(unknown)}; known: {sorted(cls.__dataclass_fields__)}")
        cfg = cls(**d)
        if cfg.epochs < 1 or cfg.batch_size < 2 or cfg.lr <= 0 or cfg.queue_size < 0:
            raise SchemaError(f"{source}: train: epochs >= 1, batch_size >= 2 (a contrastive batch needs negatives), lr > 0, queue_size >= 0")
        return cfg


@dataclass
class AlignConfig:
    data: dict[str, Any]
    model: dict[str, Any] = field(default_factory=dict)
    train: AlignTrainConfig = field(default_factory=AlignTrainConfig)
    output: Path = Path("runs/embedder")
    base_dir: Path = Path(".")


def parse_align_config(raw: Any, source: str = "config", base_dir: str | os.PathLike = ".") -> AlignConfig:
    data = check_sections(raw, source, {"table", "recipe", "recipe_options", "schema", "inputs"})
    model = dict(raw.get("model") or {})
    bad = set(model) - MODEL_KEYS
    if bad:
        raise SchemaError(f"{source}: model: unknown key(s) {sorted(bad)}; allowed: {sorted(MODEL_KEYS)}")
    base = Path(base_dir)
    output = Path(raw.get("output", "runs/embedder"))
    return AlignConfig(
        data=data,
        model=model,
        train=AlignTrainConfig.from_dict(raw.get("train"), source),
        output=output if output.is_absolute() else base / output,
        base_dir=base,
    )


def load_align_config(path: str | os.PathLike) -> AlignConfig:
    path = Path(path)
    return parse_align_config(read_yaml(path), str(path), path.resolve().parent)


def run_align(cfg: AlignConfig, output: str | os.PathLike | None = None):
    """Train the shared space a config describes and save it; returns (embedder, history, output folder)."""
    import torch

    from tessera.align.embedder import Embedder
    from tessera.align.train import fit_alignment
    from tessera.config import FitConfig, resolve_data
    from tessera.pipeline import Pipeline, cache_split, split_frame
    from tessera.schema import resolve_schema
    from tessera.table import Table, read_table

    table_path, schema = resolve_data(FitConfig(data={k: v for k, v in cfg.data.items() if k != "inputs"}, base_dir=cfg.base_dir))
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
    schema.target = None  # alignment is self-supervised: labels stay metadata
    parts = split_frame(t.frame, schema, seed=cfg.train.seed)
    train_frame = parts["train"]
    if cfg.train.max_train_rows and len(train_frame) > cfg.train.max_train_rows:
        train_frame = train_frame.sample(n=cfg.train.max_train_rows, random_state=cfg.train.seed).sort_index()
    pipeline = Pipeline.fit(train_frame, schema)
    decode = lambda frame, name: cache_split(  # noqa: E731
        pipeline, pipeline.dataset(Table(frame, t.base_dir, t.source), with_target=False), description=f"decoding {name}"
    )
    train = decode(train_frame, "train")
    val = decode(parts["val"], "val") if "val" in parts else None
    torch.manual_seed(cfg.train.seed)
    embedder = Embedder.create(pipeline, **cfg.model)
    c = cfg.train
    history = fit_alignment(
        embedder.model, train, val, epochs=c.epochs, batch_size=c.batch_size, lr=c.lr,
        queue_size=c.queue_size, seed=c.seed, weight_decay=c.weight_decay, device=c.device,
    )
    embedder.model.to("cpu").eval()
    out = embedder.save(output or cfg.output)
    return embedder, history, out

