"""Fit configs are data: a YAML file with `data`, `model`, `train` and `output` sections.

    data:
      table: products.parquet   # or `recipe: avmnist` for a prepared dataset
      schema: schema.yaml       # optional: a path or an inline mapping; inferred when absent
      target: label
      keep: [dx_type]           # optional: columns inference would leave out as likely leaks
    model: {fusion: concat, dim: 128}
    train: {epochs: 10, batch_size: 64}
    output: runs/products
    preset: best                # optional: several models and a weighted ensemble (default: one model)
    time_limit: 600             # optional, with preset best: seconds it may spend
    runner: ray                 # optional: data-parallel training on Ray Train (default: local)
    address: auto               # optional: an existing cluster ('auto', 'ray://HOST:PORT'); none: a local one
    workers: 4                  # optional: Ray Train workers (default 2)

Relative paths are relative to the config file, so a config travels with its data. The
runner is only named here; the command line picks the code that runs it
(:mod:`tessera.workflows.fit`), so this module knows nothing of Ray.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Any, Callable, ClassVar

from pydantic import Field, field_validator, model_validator

from tessera.errors import SchemaError
from tessera.files import read_yaml
from tessera.model import ModelConfig
from tessera.settings import PathLike, Settings
from tessera.train import TrainConfig

RUNNERS = ("local", "ray")
FIT_DATA_KEYS = ("table", "recipe", "recipe_options", "schema", "target", "keep")


def check_runner(runner: str | None, address: str | None = None) -> str:
    """The runner name, validated; an address only makes sense with the Ray runner."""
    runner = runner or "local"
    if runner not in RUNNERS:
        raise SchemaError(f"runner must be one of {list(RUNNERS)}, got {runner!r}")
    if address and runner != "ray":
        raise SchemaError(f"an address ({address!r}) is for the Ray runner; add runner: ray (--runner ray)")
    if address is not None and not (address == "auto" or address.startswith("ray://") or ":" in address):
        raise SchemaError(f"Ray address must be 'auto', 'ray://HOST:PORT' or 'HOST:PORT', got {address!r}")
    return runner


class ConfigFile(Settings):
    """What fit and alignment config files share: a ``data`` section naming a table or a recipe,
    an ``output`` folder, and ``base_dir``, the file's folder, where relative paths start."""

    data_keys: ClassVar[tuple[str, ...]] = FIT_DATA_KEYS
    data: dict[str, Any]
    output: PathLike
    base_dir: PathLike = Path(".")

    @field_validator("data")
    @classmethod
    def _data(cls, data: dict[str, Any]) -> dict[str, Any]:
        if not ({"table", "recipe"} & set(data)):
            raise ValueError("needs 'table: PATH' or 'recipe: NAME'")
        bad = set(data) - set(cls.data_keys)
        if bad:
            raise ValueError(f"unknown key(s) {sorted(bad)}; allowed: {', '.join(sorted(cls.data_keys))}")
        return data

    def located(self, base_dir: str | os.PathLike) -> Any:
        """The config as read from a file in ``base_dir``: a relative output is relative to the file."""
        self.base_dir = Path(base_dir)
        self.output = self.output if self.output.is_absolute() else self.base_dir / self.output
        return self


class FitConfig(ConfigFile):
    """A fit config file."""

    model: ModelConfig = Field(default_factory=ModelConfig)
    train: TrainConfig = Field(default_factory=TrainConfig)
    output: PathLike = Path("runs/model")
    preset: str = "default"  # or "best": several models and a validation-chosen ensemble (tessera.workflows.best)
    time_limit: Annotated[float, Field(gt=0)] | None = None  # seconds preset "best" may spend; none: no limit
    exclude: list[str] = []  # with preset "best": families of models to leave out (tessera.workflows.best.FAMILIES)
    runner: str = "local"  # or "ray": data-parallel training on Ray Train (tessera.scale.train)
    address: str | None = None  # Ray cluster: "auto", "ray://HOST:PORT"; none starts a local one
    workers: Annotated[int, Field(ge=1)] = 2  # Ray Train workers

    @model_validator(mode="after")
    def _runner(self) -> "FitConfig":
        from tessera.predictor import PRESETS

        try:
            check_runner(self.runner, self.address)
        except SchemaError as e:
            raise ValueError(str(e)) from None
        if self.preset not in PRESETS:
            raise ValueError(f"preset must be one of {list(PRESETS)}, got {self.preset!r}")
        if self.preset == "best" and self.runner != "local":
            raise ValueError("preset 'best' trains in this process; it has no Ray runner")
        return self

    def with_runner(self, runner: str | None, address: str | None) -> "FitConfig":
        """The config with command-line choices of runner and address (which win over the file's)."""
        if address is None and (runner or self.runner) == self.runner:
            address = self.address  # --runner local drops the file's cluster address with its runner
        runner = runner or self.runner
        return self.replace(runner=check_runner(runner, address), address=address)


def parse_fit_config(raw: Any, source: str = "config", base_dir: str | os.PathLike = ".") -> FitConfig:
    """A fit config from its parsed YAML; relative paths (output, checkpoint_dir) resolved against ``base_dir``."""
    cfg = FitConfig.from_dict(raw, source).located(base_dir)
    if cfg.train.checkpoint_dir and not Path(cfg.train.checkpoint_dir).is_absolute():
        cfg.train.checkpoint_dir = str(cfg.base_dir / cfg.train.checkpoint_dir)  # relative to the config, like output
    return cfg


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
            schema, reasons = infer_schema(t.frame, data.get("target"), base_dir=t.base_dir, keep=data.get("keep") or ())
            if on_inferred is not None:
                on_inferred(schema, reasons)
    if isinstance(schema, str):
        schema = Path(schema) if Path(schema).is_absolute() else cfg.base_dir / schema
    return Path(table), schema
