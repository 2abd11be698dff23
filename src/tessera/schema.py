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
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

import numpy as np
import pandas as pd
import yaml

from tessera.derive import derivation
from tessera.errors import DataError, SchemaError
from tessera.leakage import find_leaks, name_tokens
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


SAMPLE_ROWS = 200  # type decisions read a seeded sample of this many values (see infer_modality)
FEW_VALUES = 10  # integers with at most this many distinct values in the sample are categories (ratings, flags)
ID_NAMES = ("id", "uuid", "guid", "key", "idx", "index", "rowid", "row")
CODE_NAMES = ("zip", "zipcode", "postal", "postcode", "postalcode", "plz", "fips", "sku", "isbn", "ean", "upc",
              "gtin", "phone", "code", "iban")
MIN_UNIQUE_ROWS = 20  # a column is "unique per row" only in a table at least this long
LEAK_NOTE = "left out as a likely leak"


def _id_like_name(name: str) -> bool:
    tokens = name_tokens(name)
    return bool(tokens) and (tokens[-1] in ID_NAMES or "".join(tokens) in ID_NAMES)


def _code_like_name(name: str) -> bool:
    return any(t in CODE_NAMES for t in name_tokens(name))


def _digit_strings(values: pd.Series) -> pd.Series | None:
    """The values as stripped strings when every one is written as digits (a code or a number as text)."""
    strings = values.map(lambda v: str(v).strip() if isinstance(v, str) else None)
    if strings.isna().any() or not strings.str.fullmatch(r"[+-]?\d+").all():
        return None
    return strings


def _per_row_unique(values: pd.Series) -> bool:
    return len(values) >= MIN_UNIQUE_ROWS and values.nunique() == len(values)


def _dense_integers(values: pd.Series) -> bool:
    """Integers that fill a range about as long as the column: a row number, in any order."""
    span = float(values.max()) - float(values.min()) + 1
    return span <= 2 * len(values)


def infer_modality(col: pd.Series, base_dir: str | None = None, sample: int = SAMPLE_ROWS) -> tuple[str | None, str]:
    """Guess one column's modality. Returns (modality or None to ignore, the reason, for the user).

    Why each rule is shaped the way it is:

    * **Size-stable.** Counting distinct values in the whole column would make a column of
      the same values categorical in a large table and numeric (or text) in a small one, so
      cardinality is read on a seeded sample of ``sample`` values: a table of 200 rows and
      one of 20,000 drawn from the same distribution give the same answer.
    * **Ids are left out.** A value different in every row (a row number, a product id, a
      code such as ``ISIC_0024306``) identifies the row and predicts nothing on new rows;
      integers count as such only when they also fill a range about as long as the table
      (a shuffled row index) or the name says id, so prices and counts are not mistaken for ids.
    * **Codes are categories.** Postal codes and product codes look like numbers, but their
      magnitude means nothing: digits written with a leading zero, digits stored as text at
      a fixed width, or a name such as ``zip``/``sku``/``code`` make a column a category.
    """
    name = str(col.name)
    values = col.dropna()
    values = values[[not is_missing(v) for v in values]] if values.dtype == object or pd.api.types.is_string_dtype(values) else values
    n = len(values)
    if n == 0:
        return None, "all values missing"
    if pd.api.types.is_bool_dtype(col):
        return "categorical", "boolean"
    scalar = values.map(lambda v: isinstance(v, (str, int, float, bool, np.generic))).all()
    head = values.sample(n=min(sample, n), random_state=0) if scalar else values.iloc[: min(sample, n)]
    distinct = head.nunique() if scalar else len(head)
    if pd.api.types.is_numeric_dtype(col):
        whole = pd.api.types.is_integer_dtype(values) or bool((values % 1 == 0).all())
        if whole and _per_row_unique(values) and (_id_like_name(name) or _dense_integers(values)):
            why = "named like an id" if _id_like_name(name) else "they fill a range as long as the table: a row number"
            return None, f"unique in every row ({why}): an id, left out"
        if whole and _code_like_name(name):
            return "categorical", "a code (its name says so): read as a category, not a number"
        if whole and _id_like_name(name):
            return "categorical", "an id that repeats across rows (of a store, a user ...): read as a category"
        if whole and distinct <= FEW_VALUES:
            return "categorical", f"integer with {distinct} distinct values in a {len(head)}-row sample"
        return "numeric", "numbers"
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
    strings = head.astype(str).str.strip()
    digits = _digit_strings(values) if scalar else None
    if digits is not None:
        widths = digits.str.len()
        if digits.str.match(r"[+-]?0\d").any():
            why = "digits written with leading zeros"
        elif widths.nunique() == 1 and widths.iloc[0] >= 3:
            why = f"digits stored as text, all {widths.iloc[0]} wide"
        elif _code_like_name(name) or _id_like_name(name):
            why = "digits under a code's name"
        else:
            why = ""
        if why:
            if _per_row_unique(values):
                return None, f"a code ({why}) unique in every row: an id, left out"
            return "categorical", f"a code ({why}): read as a category, not a number"
    parsed = pd.to_numeric(strings, errors="coerce")
    if parsed.notna().mean() >= 0.95:
        if _code_like_name(name):
            return "categorical", "a code (its name says so): read as a category, not a number"
        return "numeric", "numbers stored as text"
    words = float(strings.str.split().str.len().mean())
    single_tokens = bool((~strings.str.contains(r"\s")).all())
    if scalar and _per_row_unique(values) and (single_tokens or _id_like_name(name)):
        return None, "unique in every row (one token each): an id or a name, left out"
    if words <= 4 and distinct <= len(head) // 2:
        return "categorical", f"{distinct} distinct short values in a {len(head)}-row sample"
    return "text", f"free text (about {words:.0f} words per value)"


def infer_schema(
    df: pd.DataFrame,
    target: str | Iterable[str] | None = None,
    *,
    base_dir: str | os.PathLike | None = None,
    split: str | None = None,
    ignore: Iterable[str] = (),
    overrides: dict[str, str] | None = None,
    keep: Iterable[str] = (),
) -> tuple[Schema, dict[str, str]]:
    """Infer a schema. Returns it with a reason per column, so the user can see why.

    ``overrides`` maps column -> modality (or "ignore") and wins over inference. Columns
    that look like the target in another form (:mod:`tessera.leakage`) are left out unless
    named in ``keep`` or ``overrides``. A video column whose files carry sound also feeds an
    audio input reading that sound track.
    """
    if len(df) == 0:
        raise DataError("the table has no rows")
    overrides = dict(overrides or {})
    keep = set(keep)
    base = None if base_dir is None else str(base_dir)
    target_list = _target_columns(df, target)
    for c in keep:
        if c not in df.columns:
            raise SchemaError(f"keep names column '{c}', which is not in the table; columns are {list(df.columns)}")
    split = split if split is not None else _split_column(df)
    skip = set(target_list or []) | ({split} if split is not None else set())
    modality_of, ignored, reasons = _column_modalities(df, skip, set(ignore), overrides, base)
    task = infer_task(df, target_list) if target_list else None
    if target_list:
        train = df if split is None else df[df[split].map(lambda v: SPLIT_VALUES.get(str(v).lower())) == "train"]
        suspects = {c: m for c, m in modality_of.items() if c not in keep and c not in overrides}
        for leak in find_leaks(train if len(train) else df, target_list, task, suspects):
            del modality_of[leak.column]
            ignored.append(leak.column)
            reasons[leak.column] = f"{leak.reason}; {LEAK_NOTE} (keep it with keep: [{leak.column}])"
    inputs = _inputs(df, modality_of, base, reasons)
    if not inputs:
        raise SchemaError("no usable input columns found; give a schema that names them")
    schema = Schema(inputs=inputs, target=target_list, split=split, ignore=ignored)
    schema.task = task
    return schema, reasons


def _target_columns(df: pd.DataFrame, target: str | Iterable[str] | None) -> list[str] | None:
    """The target columns as given, else the first column named like a label (None: no target)."""
    if target is None:
        target_list = [c for c in df.columns if str(c).lower() in TARGET_NAMES][:1] or None
    else:
        target_list = [target] if isinstance(target, str) else list(target)
    for t in target_list or []:
        if t not in df.columns:
            raise SchemaError(f"target column '{t}' is not in the table; columns are {list(df.columns)}")
    return target_list


def _split_column(df: pd.DataFrame) -> str | None:
    """A column named like a split whose values are all split names."""
    for c in df.columns:
        if str(c).lower() in ("split", "fold_split", "subset") and set(map(str, df[c].dropna().unique())) <= set(SPLIT_VALUES):
            return c
    return None


def _column_modalities(
    df: pd.DataFrame, skip: set, ignore: set, overrides: dict[str, str], base: str | None
) -> tuple[dict[str, str], list[str], dict[str, str]]:
    """Each column's modality (overrides first), the columns left out, and a reason per column."""
    from tessera.preprocess import modalities

    known = modalities()
    modality_of: dict[str, str] = {}
    ignored: list[str] = []
    reasons: dict[str, str] = {}
    for c in df.columns:
        if c in skip:
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
        else:
            modality_of[c] = modality
    return modality_of, ignored, reasons


def _inputs(df: pd.DataFrame, modality_of: dict[str, str], base: str | None, reasons: dict[str, str]) -> dict[str, InputSpec]:
    """One input per column (multi-column modalities grouped into one), plus inputs derived from a column
    (a video's sound track), whose reasons are added to ``reasons``."""
    from tessera.preprocess import modalities, preprocessor_class

    grouped: dict[str, list[str]] = {m: [] for m in modalities() if preprocessor_class(m).multi_column}
    inputs: dict[str, InputSpec] = {}
    for c, modality in modality_of.items():
        if modality in grouped:
            grouped[modality].append(c)
            continue
        inputs[_safe_name(c, inputs)] = InputSpec(modality, [c])
        for derived, why in preprocessor_class(modality).derived_inputs(df[c], base):
            name = _safe_name(f"{c}_{derived}", inputs)
            inputs[name] = InputSpec(derived, [c])
            reasons[f"{c} ({derived})"] = why
    for modality, cols in grouped.items():
        if cols:
            inputs[_safe_name(modality, inputs)] = InputSpec(modality, cols)
    return inputs


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
    keep: Iterable[str] = (),
) -> Schema:
    """Accept a Schema, a dict, a YAML path or None (infer; ``keep`` as for :func:`infer_schema`).

    An inferred schema that leaves columns out as likely leaks says so in a warning: a
    column silently dropped from a Python ``fit`` would be a surprise.
    """
    if schema is None:
        inferred, reasons = infer_schema(df, target, base_dir=base_dir, keep=keep)
        leaks = [f"{c} ({reasons[c]})" for c in inferred.ignore if LEAK_NOTE in reasons.get(c, "")]
        if leaks:
            warnings.warn("schema inference left out: " + "; ".join(leaks), stacklevel=2)
        return inferred
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
