"""Fit configs are data: a YAML file with `data`, `model`, `train` and `output` sections.

    data:
      table: products.parquet   # or `recipe: avmnist` for a prepared dataset
      schema: schema.yaml       # optional: a path or an inline mapping; inferred when absent
      target: label
    model: {fusion: concat, dim: 128}
    train: {epochs: 10, batch_size: 64}
    output: runs/products
    runner: ray                 # optional: data-parallel training on Ray Train (default: local)
    address: auto               # optional: an existing cluster ('auto', 'ray://HOST:PORT'); none: a local one
    workers: 4                  # optional: Ray Train workers (default 2)

Relative paths are relative to the config file, so a config travels with its data.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Callable

from tessera.errors import SchemaError
from tessera.files import read_yaml
from tessera.model import ModelConfig
from tessera.train import TrainConfig


@dataclass
class FitConfig:
    data: dict[str, Any]
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    output: Path = Path("runs/model")
    base_dir: Path = Path(".")
    runner: str = "local"  # or "ray": data-parallel training on Ray Train (tessera.scale.train)
    address: str | None = None  # Ray cluster: "auto", "ray://HOST:PORT"; none starts a local one
    workers: int = 2  # Ray Train workers

    def with_runner(self, runner: str | None, address: str | None) -> "FitConfig":
        """The config with command-line choices of runner and address (which win over the file's)."""
        from tessera.scale.runner import check_runner

        if address is None and (runner or self.runner) == self.runner:
            address = self.address  # --runner local drops the file's cluster address with its runner
        runner = runner or self.runner
        return replace(self, runner=check_runner(runner, address), address=address)


def parse_fit_config(raw: Any, source: str = "config", base_dir: str | os.PathLike = ".") -> FitConfig:
    data = check_sections(
        raw, source, {"table", "recipe", "recipe_options", "schema", "target"}, extra={"runner", "address", "workers"}
    )
    try:
        model = ModelConfig.from_dict(raw.get("model"))
        train = TrainConfig.from_dict(raw.get("train"))
    except (TypeError, SchemaError) as e:
        raise SchemaError(f"{source}: {e}") from None
    base = Path(base_dir)
    if train.checkpoint_dir and not Path(train.checkpoint_dir).is_absolute():
        train.checkpoint_dir = str(base / train.checkpoint_dir)  # relative to the config, like output
    output = Path(raw.get("output", "runs/model"))
    runner, address, workers = raw.get("runner", "local"), raw.get("address"), raw.get("workers", 2)
    if not isinstance(runner, str) or (address is not None and not isinstance(address, str)):
        raise SchemaError(f"{source}: runner and address must be strings (runner: ray, address: auto)")
    if not isinstance(workers, int) or isinstance(workers, bool) or workers < 1:
        raise SchemaError(f"{source}: workers must be a whole number >= 1, got {workers!r}")
    from tessera.scale.runner import check_runner

    try:
        runner = check_runner(runner, address)
    except SchemaError as e:
        raise SchemaError(f"{source}: {e}") from None
    return FitConfig(
        data=dict(data), model=model, train=train, output=output if output.is_absolute() else base / output, base_dir=base,
        runner=runner, address=address, workers=workers,
    )


def check_sections(raw: Any, source: str, data_keys: set[str], extra: set[str] = frozenset()) -> dict[str, Any]:
    """The shared shape of Tessera's configs: data/model/train/output (and ``extra`` keys), with a table or recipe to read."""
    if not isinstance(raw, dict):
        raise SchemaError(f"{source}: expected a mapping with data/model/train sections")
    allowed = ["data", "model", "train", "output", *sorted(extra)]
    unknown = set(raw) - set(allowed)
    if unknown:
        raise SchemaError(f"{source}: unknown section(s) {sorted(unknown)}; allowed: {', '.join(allowed)}")
    data = raw.get("data")
    if not isinstance(data, dict) or not ({"table", "recipe"} & set(data)):
        raise SchemaError(f"{source}: 'data' needs 'table: PATH' or 'recipe: NAME'")
    bad = set(data) - data_keys
    if bad:
        raise SchemaError(f"{source}: data: unknown key(s) {sorted(bad)}; allowed: {', '.join(sorted(data_keys))}")
    return data


def load_fit_config(path: str | os.PathLike) -> FitConfig:
    path = Path(path)
    return parse_fit_config(read_yaml(path), str(path), path.resolve().parent)


def resolve_data(cfg: FitConfig, on_inferred: Callable[[Any, dict], None] | None = None) -> tuple[Path, Any]:
    """The table path and schema a config names: a prepared recipe, or a table (schema inferred if absent).

    When the schema is inferred, it is passed to ``on_inferred`` with the reason per column,
    so the CLI can show the user what it assumed.
    """
    data = cfg.data
    schema = data.get("schema")
    if "recipe" in data:
        from tessera import datasets

        prepared = datasets.prepare(data["recipe"], **(data.get("recipe_options") or {}))
        table, schema = prepared.table_path, schema or prepared.schema
    else:
        table = Path(data["table"])
        table = table if table.is_absolute() else cfg.base_dir / table
        if schema is None:
            from tessera.schema import infer_schema
            from tessera.table import read_table

            t = read_table(table)
            schema, reasons = infer_schema(t.frame, data.get("target"), base_dir=t.base_dir)
            if on_inferred is not None:
                on_inferred(schema, reasons)
    if isinstance(schema, str):
        schema = Path(schema) if Path(schema).is_absolute() else cfg.base_dir / schema
    return Path(table), schema


def run_fit(cfg: FitConfig, output: str | os.PathLike | None = None, on_inferred: Callable[[Any, dict], None] | None = None):
    """Train as the config says and save; returns (predictor, output folder)."""
    from tessera.predictor import Predictor

    table, schema = resolve_data(cfg, on_inferred)
    predictor = Predictor(model=cfg.model, train=cfg.train)
    if cfg.runner == "ray":
        from tessera.scale.train import fit_ray

        fit_ray(predictor, table, schema, target=cfg.data.get("target"), num_workers=cfg.workers, address=cfg.address)
    else:
        predictor.fit(table, schema=schema, target=cfg.data.get("target"))
    out = predictor.save(output or cfg.output)
    return predictor, out
