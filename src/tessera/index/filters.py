"""The index's filter language for untrusted callers: structured metadata filters, made into LanceDB ``where`` SQL.

A filter maps a metadata column to a value (``{"color": "red"}``), a list of values
(``{"color": ["red", "blue"]}``, any of them) or comparisons (``{"price": {"gte": 1, "lt": 5}}``);
conditions on several columns all apply. Column names are checked against the index and
values are quoted, so no SQL text ever comes from the caller: a quote in a value is data.
Trusted callers (``tessera search --where``) may still pass SQL to
:meth:`~tessera.index.store.VectorIndex.search` directly.
"""

from __future__ import annotations

import math
import re
from typing import Any, Mapping, Sequence

from tessera.errors import TesseraError

HIDDEN = ("thumbnail", "path")  # stored for display, not for filtering (a path filter would probe the server's files)
OPERATORS = {"gt": ">", "gte": ">=", "lt": "<", "lte": "<=", "ne": "!="}
MAX_VALUES = 1000  # values kept from one list
MAX_TEXT = 1000  # characters of one value
IDENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


class FilterError(TesseraError):
    """A filter the index cannot apply: an unknown column, an unknown operator, or a value of the wrong kind."""


def filterable(columns: Sequence[str]) -> list[str]:
    """The metadata columns a filter may name."""
    return [c for c in columns if c not in HIDDEN]


def where(filters: Mapping[str, Any], columns: Sequence[str], kinds: Mapping[str, str] | None = None) -> str | None:
    """The LanceDB ``where`` clause for ``filters`` over an index with metadata ``columns`` (None: no filter).

    ``kinds``: column -> "number", "text" or "bool", the kind of value a filter on it must give
    (a text value for a number column is refused here, not by LanceDB's SQL planner).
    """
    allowed = filterable(columns)
    kinds = kinds or {}
    clauses = []
    for column, cond in filters.items():
        if column not in allowed:
            raise FilterError(f"cannot filter on {column!r}; filterable columns: {allowed}")
        col = column if IDENT.match(column) else "`" + column.replace("`", "") + "`"
        kind = kinds.get(column)
        if isinstance(cond, list):
            if not cond:
                raise FilterError(f"filter {column!r}: the list of values is empty")
            clauses.append(f"{col} IN ({', '.join(_literal(v, column, kind) for v in cond[:MAX_VALUES])})")
        elif isinstance(cond, dict):
            bad = set(cond) - set(OPERATORS)
            if bad or not cond:
                raise FilterError(f"filter {column!r}: use the operators {sorted(OPERATORS)}")
            clauses.extend(f"{col} {OPERATORS[op]} {_literal(v, column, kind)}" for op, v in cond.items())
        else:
            clauses.append(f"{col} = {_literal(cond, column, kind)}")
    return " AND ".join(clauses) or None


def _literal(value: Any, column: str, kind: str | None = None) -> str:
    given = ("bool" if isinstance(value, bool) else "number" if isinstance(value, (int, float))
             else "text" if isinstance(value, str) else None)
    if kind is not None and given is not None and given != kind:
        raise FilterError(f"filter {column!r}: the column holds {kind} values, got {given} {str(value)[:40]!r}")
    if isinstance(value, bool):
        return "TRUE" if value else "FALSE"
    if isinstance(value, int):
        if not -(2**63) <= value < 2**63:  # what a metadata column can hold; past it LanceDB's parser fails
            raise FilterError(f"filter {column!r}: the number is out of range (64-bit integers)")
        return repr(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            raise FilterError(f"filter {column!r}: numbers must be finite")
        return repr(value)
    if isinstance(value, str):
        if len(value) > MAX_TEXT:
            raise FilterError(f"filter {column!r}: value too long")
        return "'" + value.replace("'", "''") + "'"
    raise FilterError(f"filter {column!r}: values must be strings, numbers or booleans")
