"""Ready-made tables for benchmarks and examples, built from public raw data by recipes.

``prepare("avmnist")`` checks the raw sources in the data home (fetching them when
allowed), runs the recipe, and caches a Parquet table with its schema and a dataset
card under ``cache_home()/avmnist/<key>/``. The key covers the recipe version, every
recipe argument (defaults included) and the data-home path, so changing any of them
builds a new table instead of silently reusing a stale one; an unchanged call returns
the cached table without touching the raw data. Builds happen in a temporary folder
that is renamed into place at the end, so an interrupted build never leaves a table
that looks complete.
"""

from __future__ import annotations

import hashlib
import inspect
import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from tessera.datasets import avmnist, esc50, fashion_mnist, flickr8k, fsdd, home, synthetic
from tessera.datasets.build import Built, render_card
from tessera.datasets.download import download
from tessera.datasets.home import cache_home, data_home
from tessera.datasets.sources import require
from tessera.datasets.synthetic import make_synthetic
from tessera.errors import SchemaError

RECIPES: dict[str, Any] = {
    "avmnist": avmnist,
    "flickr8k": flickr8k,
    "fsdd": fsdd,
    "esc50": esc50,
    "fashion_mnist": fashion_mnist,
    "synthetic": synthetic,
}

TABLE = "table.parquet"
SCHEMA = "schema.yaml"
CARD = "card.md"
META = "prepared.json"  # written last: its presence means the folder is complete


@dataclass
class Prepared:
    name: str
    table_path: Path
    schema: dict[str, Any]
    schema_path: Path
    card_path: Path
    rows: dict[str, int]
    meta: dict[str, Any] = field(default_factory=dict)  # recipe version, arguments, build time, size

    @property
    def path(self) -> Path:
        return self.table_path.parent


def prepare(
    name: str,
    *,
    data_home: str | os.PathLike | None = None,
    cache_dir: str | os.PathLike | None = None,
    force: bool = False,
    download: bool = True,
    progress: bool = True,
    **recipe_kwargs: Any,
) -> Prepared:
    """Build (or reuse) the table for recipe ``name``; see the module docstring for caching.

    ``data_home`` and ``cache_dir`` override :func:`data_home` and :func:`cache_home`
    (the table lands in ``cache_dir/name/<key>/``). ``download=False`` turns a missing raw
    file into an error that names it instead of a fetch. ``recipe_kwargs`` are the
    recipe's own arguments (e.g. ``snr_db`` or ``n_train`` for ``avmnist``).
    """
    recipe = RECIPES.get(name)
    if recipe is None:
        raise SchemaError(f"unknown dataset recipe {name!r}; known recipes: {', '.join(sorted(RECIPES))}")
    kwargs = _bind(name, recipe.build, recipe_kwargs)
    raw = Path(data_home if data_home is not None else home.data_home()).expanduser().resolve()
    root = Path(cache_dir if cache_dir is not None else home.cache_home()).expanduser()
    key = _cache_key(name, recipe, kwargs, raw)
    final = root / name / key
    if not force and (final / META).is_file():
        return _load(name, final)

    for source in recipe.SOURCES:
        require(source, raw, download=download, progress=progress)
    from tessera.files import atomic_dir

    with atomic_dir(final) as tmp:
        start = time.perf_counter()
        built: Built = recipe.build(raw, tmp, progress=progress, **kwargs)
        frame = built.frame.reset_index(drop=True)
        frame.to_parquet(tmp / TABLE, index=False, compression="zstd", row_group_size=10_000)
        seconds = time.perf_counter() - start
        rows = _rows(frame, built.schema)
        meta = {
            "name": name,
            "recipe_version": recipe.VERSION,
            "kwargs": kwargs,
            "data_home": str(raw) if recipe.SOURCES else None,
            "key": key,
            "rows": rows,
            "columns": list(frame.columns),
            "build_seconds": round(seconds, 2),
            "table_bytes": (tmp / TABLE).stat().st_size,
            "built_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        }
        (tmp / SCHEMA).write_text(yaml.safe_dump(built.schema, sort_keys=False))
        (tmp / CARD).write_text(_card(name, built, frame, meta))
        (tmp / META).write_text(json.dumps(meta, indent=2))
    return _load(name, final)


def _bind(name: str, build: Any, given: dict[str, Any]) -> dict[str, Any]:
    """All recipe arguments with defaults filled in, so the cache key sees the full configuration."""
    params = {
        p.name: p.default
        for p in inspect.signature(build).parameters.values()
        if p.kind is inspect.Parameter.KEYWORD_ONLY and p.name != "progress"
    }
    unknown = sorted(set(given) - set(params))
    if unknown:
        raise SchemaError(f"recipe {name!r} has no argument(s) {unknown}; its arguments are {sorted(params)}")
    kwargs = {**params, **given}
    return json.loads(json.dumps(kwargs))  # tuples -> lists, and fail early on unserialisable values


def _cache_key(name: str, recipe: Any, kwargs: dict[str, Any], raw: Path) -> str:
    ident = {
        "name": name,
        "version": recipe.VERSION,
        "kwargs": kwargs,
        "data_home": str(raw) if recipe.SOURCES else None,
    }
    return hashlib.sha256(json.dumps(ident, sort_keys=True).encode()).hexdigest()[:16]


def _rows(frame: Any, schema: dict[str, Any]) -> dict[str, int]:
    split = schema.get("split")
    if not split:
        return {"all": len(frame)}
    counts = frame[split].value_counts()
    return {s: int(counts[s]) for s in ("train", "val", "test") if s in counts}


def _load(name: str, folder: Path) -> Prepared:
    meta = json.loads((folder / META).read_text())
    return Prepared(
        name=name,
        table_path=folder / TABLE,
        schema=yaml.safe_load((folder / SCHEMA).read_text()),
        schema_path=folder / SCHEMA,
        card_path=folder / CARD,
        rows=meta["rows"],
        meta=meta,
    )


def _card(name: str, built: Built, frame: Any, meta: dict[str, Any]) -> str:
    """The recipe's own text first, then the facts every card states the same way."""
    schema = built.schema
    roles: dict[str, str] = {}
    for input_name, spec in schema.get("inputs", {}).items():
        for col in spec.get("columns") or [spec.get("column", input_name)]:
            roles[col] = f"input `{input_name}` ({spec['modality']})"
    target = schema.get("target")
    for col in [target] if isinstance(target, str) else target or []:
        roles[col] = f"target ({schema.get('task')})"
    if schema.get("split"):
        roles[schema["split"]] = "split (train / val / test)"
    for col in schema.get("ignore", []):
        roles[col] = "kept, not a model input"
    lines = [render_card(name, built.card).rstrip(), "", "## Rows", "", "| split | rows |", "|---|---|"]
    lines += [f"| {s} | {n:,} |" for s, n in meta["rows"].items()]
    lines += [f"| total | {len(frame):,} |", "", "## Columns", "", "| column | type | role |", "|---|---|---|"]
    lines += [f"| `{c}` | {frame[c].dtype} | {roles.get(c, '')} |" for c in frame.columns]
    lines += ["", "## Schema", "", "```yaml", yaml.safe_dump(schema, sort_keys=False).rstrip(), "```", ""]
    lines += [
        "## Build",
        "",
        f"- recipe `{name}` version {meta['recipe_version']}, "
        f"arguments: `{json.dumps(meta['kwargs'], sort_keys=True)}`",
        f"- raw data: `{meta['data_home']}`" if meta["data_home"] else "- raw data: none (generated)",
        f"- built {meta['built_at']} in {meta['build_seconds']:.1f} s; table {meta['table_bytes'] / 1e6:.1f} MB "
        "(Parquet, zstd)",
        "",
    ]
    return "\n".join(lines)


__all__ = ["RECIPES", "Prepared", "prepare", "data_home", "cache_home", "download", "make_synthetic", "require"]
