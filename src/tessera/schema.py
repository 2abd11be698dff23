"""The schema: which columns feed which model input, in which modality, and what to predict.

A schema is data (a dict / YAML file), inferred from the table when the user gives none,
printed for them to confirm, and validated against the table with errors that name
the column. Numeric and categorical columns are grouped into one input each, the way
tabular models consume them; every other column is its own input.

YAML form::

    target: label          # a column, a list of columns (multilabel), or null
    task: multiclass       # a task registered in tessera.tasks (inferred from the target when absent)
    split: split           # optional column holding train / val / test
    inputs:
      photo: {modality: image, options: {size: 64}}
      price: {modality: numeric, columns: [price, weight]}
      said: {modality: text, from: recording, via: transcribe}   # text derived from another column
    ignore: [id]
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

import numpy as np
import pandas as pd
import yaml

from tessera.derive import derivation
from tessera.errors import DataError, SchemaError
from tessera.media import SIGNATURE_BYTES, URL_PREFIXES, is_missing, sniff_mime
from tessera.tasks import TASKS, infer_task

SPLIT_VALUES = {"train": "train", "val": "val", "valid": "val", "validation": "val", "dev": "val", "test": "test"}


@dataclass
class InputSpec:
    modality: str
    columns: list[str]
    options: dict[str, Any] = field(default_factory=dict)
    encoder: str | None = None  # encoder registry name; None = the modality's default
    via: str | None = None  # a derived text input: how its text comes from the source column (tessera.derive)

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {"modality": self.modality}
        if self.via:
            d.update({"from": self.columns[0], "via": self.via})
        else:
            d["columns" if len(self.columns) != 1 else "column"] = self.columns if len(self.columns) != 1 else self.columns[0]
        if self.options:
            d["options"] = dict(self.options)
        if self.encoder:
            d["encoder"] = self.encoder
        return d


@dataclass
class Schema:
    inputs: dict[str, InputSpec]
    target: list[str] | None = None
    task: str | None = None
    split: str | None = None
    ignore: list[str] = field(default_factory=list)

    # -- (de)serialisation ----------------------------------------------------------------
    @classmethod
    def from_dict(cls, d: dict[str, Any], source: str = "schema") -> "Schema":
        if not isinstance(d, dict):
            raise SchemaError(f"{source}: expected a mapping with 'inputs', got {type(d).__name__}")
        unknown = set(d) - {"inputs", "target", "task", "split", "ignore"}
        if unknown:
            raise SchemaError(f"{source}: unknown key(s) {sorted(unknown)}; allowed: inputs, target, task, split, ignore")
        from tessera.preprocess import modalities, preprocessor_class

        known = modalities()
        raw_inputs = d.get("inputs")
        if not isinstance(raw_inputs, dict) or not raw_inputs:
            raise SchemaError(f"{source}: 'inputs' must map input names to {{modality: ..., column(s): ...}}")
        inputs: dict[str, InputSpec] = {}
        for name, spec in raw_inputs.items():
            where = f"{source}: input '{name}'"
            if isinstance(spec, str):
                spec = {"modality": spec}
            if not isinstance(spec, dict):
                raise SchemaError(f"{where}: expected a mapping, got {spec!r}")
            bad = set(spec) - {"modality", "column", "columns", "options", "encoder", "from", "via"}
            if bad:
                raise SchemaError(f"{where}: unknown key(s) {sorted(bad)}; allowed: modality, column(s), options, encoder, from, via")
            modality = spec.get("modality")
            if modality not in known:
                raise SchemaError(f"{where}: modality must be one of {known}, got {modality!r}")
            if sum(k in spec for k in ("column", "columns", "from")) > 1:
                raise SchemaError(f"{where}: give one of 'column', 'columns' or 'from'")
            via = _derived(spec, modality, where)
            columns = spec.get("columns", spec.get("column", spec.get("from", name)))
            columns = [columns] if isinstance(columns, str) else list(columns)
            if not columns or not all(isinstance(c, str) for c in columns):
                raise SchemaError(f"{where}: columns must be column names, got {columns!r}")
            if len(columns) > 1 and not preprocessor_class(modality).multi_column:
                grouping = " and ".join(m for m in known if preprocessor_class(m).multi_column)
                raise SchemaError(f"{where}: only {grouping} inputs group several columns")
            options = spec.get("options") or {}
            if not isinstance(options, dict):
                raise SchemaError(f"{where}: options must be a mapping, got {options!r}")
            inputs[str(name)] = InputSpec(modality, columns, dict(options), spec.get("encoder"), via)
        target = d.get("target")
        if target is not None:
            target = [target] if isinstance(target, str) else list(target)
        task = d.get("task")
        if task is not None:
            if task not in TASKS:
                raise SchemaError(f"{source}: task must be one of {TASKS.known()}, got {task!r}")
            task = TASKS.canonical(task)  # e.g. binary is multiclass
        schema = cls(inputs=inputs, target=target, task=task, split=d.get("split"), ignore=list(d.get("ignore") or []))
        schema._check_consistent(source)
        return schema

    def _check_consistent(self, source: str) -> None:
        used: dict[str, str] = {}
        for name, spec in self.inputs.items():
            for c in spec.columns:
                if c in used and used[c] != name:
                    # A video column may feed an audio input too (its sound track), and a derived text input
                    # reads its source column beside that column's own input; other reuse is a mistake.
                    pair = {self.inputs[used[c]].modality, spec.modality}
                    if pair != {"video", "audio"} and not (spec.via or self.inputs[used[c]].via):
                        raise SchemaError(f"{source}: column '{c}' is used by inputs '{used[c]}' and '{name}'")
                used.setdefault(c, name)
        for t in self.target or []:
            if t in used:
                raise SchemaError(f"{source}: target column '{t}' is also an input ('{used[t]}')")
        if self.task and self.target:
            TASKS.get(self.task).check_columns(self.target, source)

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {}
        if self.target is not None:
            d["target"] = self.target[0] if len(self.target) == 1 else list(self.target)
        if self.task:
            d["task"] = self.task
        if self.split:
            d["split"] = self.split
        d["inputs"] = {n: s.to_dict() for n, s in self.inputs.items()}
        if self.ignore:
            d["ignore"] = list(self.ignore)
        return d

    @classmethod
    def load(cls, path: str | os.PathLike) -> "Schema":
        from tessera.files import read_yaml

        return cls.from_dict(read_yaml(path, "schema file"), source=str(path))

    def save(self, path: str | os.PathLike) -> Path:
        from tessera.files import atomic_write_text

        return atomic_write_text(path, yaml.safe_dump(self.to_dict(), sort_keys=False))

    # -- queries -----------------------------------------------------------------------------
    def columns_used(self) -> list[str]:
        cols = [c for s in self.inputs.values() for c in s.columns] + list(self.target or [])
        if self.split:
            cols.append(self.split)
        return list(dict.fromkeys(cols))

    def validate(self, df: pd.DataFrame, *, require_target: bool = True, source: str = "table") -> None:
        """Check the table fits the schema: columns exist, the table is not empty, targets usable."""
        if len(df) == 0:
            raise DataError("the table has no rows", file=source if source != "table" else None)
        missing = [c for c in self.columns_used() if c not in df.columns]
        if not require_target:
            missing = [c for c in missing if c not in (self.target or []) and c != self.split]
        if missing:
            owners = []
            for c in missing:
                owner = next((n for n, s in self.inputs.items() if c in s.columns), None)
                owners.append(f"'{c}'" + (f" (input '{owner}')" if owner else ""))
            raise SchemaError(
                f"the schema names column(s) {', '.join(owners)} that {source} does not have; "
                f"its columns are {list(df.columns)}"
            )
        from tessera.preprocess import preprocessor_class

        for name, spec in self.inputs.items():
            for c in spec.columns:
                reads = derivation(spec.via).source if spec.via else spec.modality
                preprocessor_class(reads).check_column(df[c], c)
        if self.split and self.split in df.columns:
            bad = sorted({str(v) for v in df[self.split].dropna().unique()} - set(SPLIT_VALUES))
            if bad:
                raise DataError(f"split values must be train/val/test, found {bad[:5]}", column=self.split)


def _derived(spec: dict[str, Any], modality: str, where: str) -> str | None:
    """A derived input's ``via`` (None for other inputs), checked: it needs ``from``, and gives text."""
    if "via" not in spec and "from" not in spec:
        return None
    if "via" not in spec or "from" not in spec:
        raise SchemaError(f"{where}: a derived input needs both 'from' (the source column) and 'via' (e.g. transcribe, ocr)")
    d = derivation(spec["via"], where)
    if modality != "text":
        raise SchemaError(f"{where}: via {d.name} gives text; a derived input has modality: text, not {modality}")
    if not isinstance(spec["from"], str):
        raise SchemaError(f"{where}: 'from' must be one column name, got {spec['from']!r}")
    return d.name


# ---------------------------------------------------------------------------------------------
# Inference
# ---------------------------------------------------------------------------------------------

TARGET_NAMES = ("label", "labels", "target", "y", "class", "category")


def sniff_modality(head: bytes) -> str | None:
    """The media modality of content, from its magic numbers; None when it is no known media."""
    from tessera.preprocess import media_modality_of

    return media_modality_of(sniff_mime(head))


def cell_modality(value: Any, base_dir: str | None) -> str | None:
    """The media modality of one cell (a file path, bytes, or a record with either), or None."""
    from tessera.preprocess import media_modalities, preprocessor_class

    if isinstance(value, dict):
        if value.get("bytes") is not None:
            return sniff_modality(bytes(value["bytes"][:SIGNATURE_BYTES]))
        value = value.get("path")
    if isinstance(value, (bytes, bytearray, memoryview)):
        return sniff_modality(bytes(value[:SIGNATURE_BYTES]))
    if not isinstance(value, str) or len(value) > 1024 or "\n" in value:
        return None
    suffix = Path(value.split("?")[0]).suffix.lower()
    for modality in media_modalities():
        if suffix in preprocessor_class(modality).extensions:
            return modality
    if value.lower().startswith(URL_PREFIXES) or suffix:
        return None
    path = Path(value) if Path(value).is_absolute() or base_dir is None else Path(base_dir) / value
    try:
        if path.is_file():
            with open(path, "rb") as fh:
                return sniff_modality(fh.read(SIGNATURE_BYTES))
    except OSError:
        return None
    return None


def _is_number_list(v: Any) -> bool:
    if isinstance(v, str):
        s = v.strip()
        if not (s.startswith("[") and s.endswith("]")):
            return False
        try:
            v = json.loads(s)
        except ValueError:
            return False
    if isinstance(v, np.ndarray):
        return v.dtype.kind in "fiu" and v.size > 1
    if isinstance(v, (list, tuple)) and len(v) > 1:
        flat = [x for item in v for x in (item if isinstance(item, (list, tuple)) else [item])]
        return all(isinstance(x, (int, float)) and not isinstance(x, bool) or x is None for x in flat)
    return False


def infer_modality(col: pd.Series, base_dir: str | None = None, sample: int = 200) -> tuple[str | None, str]:
    """Guess one column's modality. Returns (modality or None to ignore, the reason, for the user)."""
    values = col.dropna()
    values = values[[not is_missing(v) for v in values]] if values.dtype == object or pd.api.types.is_string_dtype(values) else values
    n = len(values)
    if n == 0:
        return None, "all values missing"
    if pd.api.types.is_bool_dtype(col):
        return "categorical", "boolean"
    n_unique = values.nunique(dropna=True) if values.map(lambda v: isinstance(v, (str, int, float, bool))).all() else n
    low_card = n_unique <= max(2, min(50, int(0.05 * n) + 2))
    if pd.api.types.is_numeric_dtype(col):
        if pd.api.types.is_integer_dtype(values) or (values % 1 == 0).all():
            if low_card:
                return "categorical", f"integer with {n_unique} distinct values"
            if n_unique == n and n >= 20 and pd.api.types.is_integer_dtype(values) and values.is_monotonic_increasing:
                return None, "looks like a row id (unique increasing integers)"
        return "numeric", "numbers"
    head = values.iloc[: min(sample, n)]
    kinds = [cell_modality(v, base_dir) for v in head]
    counts = {m: kinds.count(m) for m in set(kinds) if m}
    if counts:
        modality, count = max(counts.items(), key=lambda kv: kv[1])
        if count >= 0.8 * len(head):
            return modality, f"{count}/{len(head)} sampled values look like {modality} files"
    if all(_is_number_list(v) for v in head):
        return "timeseries", "lists of numbers"
    if all(isinstance(v, (bytes, bytearray, memoryview, dict)) for v in head):
        return None, "binary values of an unknown format"
    strings = head.astype(str)
    parsed = pd.to_numeric(strings, errors="coerce")
    if parsed.notna().mean() >= 0.95:
        return "numeric", "numbers stored as text"
    words = strings.str.split().str.len().mean()
    if low_card and words <= 4:
        return "categorical", f"{n_unique} distinct short values"
    return "text", f"free text (about {words:.0f} words per value)"


def infer_schema(
    df: pd.DataFrame,
    target: str | Iterable[str] | None = None,
    *,
    base_dir: str | os.PathLike | None = None,
    split: str | None = None,
    ignore: Iterable[str] = (),
    overrides: dict[str, str] | None = None,
) -> tuple[Schema, dict[str, str]]:
    """Infer a schema. Returns it with a reason per column, so the user can see why.

    ``overrides`` maps column -> modality (or "ignore") and wins over inference.
    """
    if len(df) == 0:
        raise DataError("the table has no rows")
    overrides = dict(overrides or {})
    base = None if base_dir is None else str(base_dir)
    if target is None:
        target_list = [c for c in df.columns if str(c).lower() in TARGET_NAMES][:1] or None
    else:
        target_list = [target] if isinstance(target, str) else list(target)
    for t in target_list or []:
        if t not in df.columns:
            raise SchemaError(f"target column '{t}' is not in the table; columns are {list(df.columns)}")
    if split is None:
        for c in df.columns:
            if str(c).lower() in ("split", "fold_split", "subset") and set(map(str, df[c].dropna().unique())) <= set(SPLIT_VALUES):
                split = c
                break
    ignore = set(ignore)
    reasons: dict[str, str] = {}
    from tessera.preprocess import modalities, preprocessor_class

    known = modalities()
    grouped: dict[str, list[str]] = {m: [] for m in known if preprocessor_class(m).multi_column}
    inputs: dict[str, InputSpec] = {}
    ignored: list[str] = []
    for c in df.columns:
        if c in (target_list or []) or c == split:
            continue
        if c in ignore or overrides.get(c) == "ignore":
            ignored.append(c)
            reasons[c] = "ignored by request"
            continue
        if c in overrides:
            modality, why = overrides[c], "set by the user"
            if modality not in known:
                raise SchemaError(f"override for column '{c}': modality must be one of {known} or 'ignore'")
        else:
            modality, why = infer_modality(df[c], base)
        reasons[c] = why
        if modality is None:
            ignored.append(c)
        elif modality in grouped:
            grouped[modality].append(c)
        else:
            inputs[_safe_name(c, inputs)] = InputSpec(modality, [c])
    for modality, cols in grouped.items():
        if cols:
            inputs[_safe_name(modality, inputs)] = InputSpec(modality, cols)
    if not inputs:
        raise SchemaError("no usable input columns found; give a schema that names them")
    schema = Schema(inputs=inputs, target=target_list, split=split, ignore=ignored)
    if target_list:
        schema.task = infer_task(df, target_list)
    return schema, reasons


def _safe_name(name: str, taken: dict[str, Any]) -> str:
    name = re.sub(r"[^0-9A-Za-z_]+", "_", str(name)).strip("_") or "input"
    candidate, i = name, 2
    while candidate in taken:
        candidate, i = f"{name}_{i}", i + 1
    return candidate


def resolve_schema(
    df: pd.DataFrame,
    schema: "Schema | dict | str | os.PathLike | None",
    target: str | list[str] | None = None,
    base_dir: str | os.PathLike | None = None,
) -> Schema:
    """Accept a Schema, a dict, a YAML path or None (infer)."""
    if schema is None:
        return infer_schema(df, target, base_dir=base_dir)[0]
    if isinstance(schema, Schema):
        out = schema
    elif isinstance(schema, dict):
        out = Schema.from_dict(schema)
    else:
        out = Schema.load(schema)
    if target is not None:
        out.target = [target] if isinstance(target, str) else list(target)
    if out.target and out.task is None:
        out.task = infer_task(df, out.target)
    return out
