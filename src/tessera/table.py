"""Reading the user's table: CSV, TSV, Parquet, JSON Lines, or an in-memory pandas/Arrow table.

Media paths in a table are relative to the table's folder, so the folder is returned
with the frame. Rows are renumbered 0..n-1 so that errors can name a row the user can find.

Text formats (CSV, TSV) say nothing of types, and pandas reads ``02134`` as the number 2134:
a postal code or product code loses its leading zero and becomes a magnitude. A column of
digits in which some value has a leading zero is therefore kept as text, as written, so
schema inference can see it is a code.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from tessera.errors import DataError

READERS = {
    ".csv": "csv",
    ".tsv": "tsv",
    ".parquet": "parquet",
    ".pq": "parquet",
    ".jsonl": "jsonl",
    ".ndjson": "jsonl",
    ".json": "json",
    ".feather": "feather",
    ".arrow": "feather",
}


@dataclass
class Table:
    frame: pd.DataFrame
    base_dir: str | None  # where relative media paths start
    source: str  # what to call the table in messages


def read_table(data: Any, base_dir: str | os.PathLike | None = None) -> Table:
    """Read a table from a path or accept a DataFrame / pyarrow Table / list of dicts."""
    if isinstance(data, Table):
        return data
    if isinstance(data, pd.DataFrame):
        frame, source = data, "the table"
    elif type(data).__module__.startswith("pyarrow"):
        frame, source = data.to_pandas(), "the Arrow table"
    elif isinstance(data, list):
        frame, source = pd.DataFrame(data), "the list of records"
    elif isinstance(data, (str, os.PathLike)):
        path = Path(data).expanduser()
        frame = _read_file(path)
        source = str(path)
        base_dir = base_dir if base_dir is not None else path.resolve().parent
    else:
        raise DataError(f"cannot read a table from {type(data).__name__}; give a file path or a pandas DataFrame")
    if len(frame) == 0:
        raise DataError("the table has no rows", file=source if source != "the table" else None)
    frame = frame.reset_index(drop=True)
    frame.columns = [str(c) for c in frame.columns]
    dupes = frame.columns[frame.columns.duplicated()].tolist()
    if dupes:
        raise DataError(f"the table has duplicate column names {dupes}", file=source)
    return Table(frame, None if base_dir is None else str(base_dir), source)


def _read_file(path: Path) -> pd.DataFrame:
    if not path.exists():
        raise DataError("table file not found", file=path)
    if path.is_dir():
        raise DataError("expected a table file (CSV, Parquet, JSONL), got a directory", file=path)
    kind = READERS.get(path.suffix.lower())
    if kind is None:
        raise DataError(f"unknown table format '{path.suffix}'; use one of {sorted(READERS)}", file=path)
    try:
        if kind in ("csv", "tsv"):
            return _read_delimited(path, "," if kind == "csv" else "\t")
        if kind == "parquet":
            return pd.read_parquet(path)
        if kind == "jsonl":
            return pd.read_json(path, lines=True)
        if kind == "json":
            return pd.read_json(path)
        return pd.read_feather(path)
    except pd.errors.EmptyDataError:
        raise DataError("the table file is empty", file=path) from None
    except (ValueError, OSError, pd.errors.ParserError) as e:
        raise DataError(f"cannot parse as {kind}: {e}", file=path) from None
    except Exception as e:  # pyarrow raises its own error types for corrupt Parquet
        raise DataError(f"cannot read as {kind}: {type(e).__name__}: {e}", file=path) from None


LEADING_ZERO = re.compile(r"^\s*[+-]?0\d")


def _read_delimited(path: Path, sep: str) -> pd.DataFrame:
    """A CSV/TSV as pandas reads it, except integer columns written with leading zeros, kept as text."""
    frame = pd.read_csv(path, sep=sep)
    integers = [c for c in frame.columns if pd.api.types.is_integer_dtype(frame[c]) or _whole_floats(frame[c])]
    if not integers:
        return frame
    raw = pd.read_csv(path, sep=sep, usecols=integers, dtype=str, keep_default_na=True)
    for c in integers:
        if raw[c].dropna().str.match(LEADING_ZERO).any():
            frame[c] = raw[c]
    return frame


def _whole_floats(col: pd.Series) -> bool:
    """An integer column with gaps, which pandas reads as floats."""
    values = col.dropna()
    return pd.api.types.is_float_dtype(col) and col.isna().any() and len(values) > 0 and bool((values % 1 == 0).all())
