"""Errors that tell the user which file, row and column went wrong, and the skip policy.

Every failure caused by the user's data is raised as a :class:`DataError` carrying
where it happened, so the CLI can print one clear line instead of a decoder traceback.
"""

from __future__ import annotations

import csv
import os
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

OnError = Literal["raise", "skip"]
ON_ERROR_CHOICES = ("raise", "skip")


class TesseraError(Exception):
    """Base class for errors Tessera raises on purpose (the CLI prints these without a traceback)."""


class SchemaError(TesseraError):
    """The schema or config does not fit the table (absent column, unknown modality, ...)."""


class DataError(TesseraError):
    """A value in the user's data cannot be used.

    ``row`` is the 0-based position in the table as read; ``file`` is the media file
    involved, if any. ``str(err)`` reads like ``row 12, column 'image', file 'a.jpg': ...``.
    """

    def __init__(
        self,
        reason: str,
        *,
        row: int | None = None,
        column: str | None = None,
        file: str | os.PathLike | None = None,
    ) -> None:
        self.reason = reason
        self.row = row
        self.column = column
        self.file = None if file is None else str(file)
        super().__init__(self._render())

    def _render(self) -> str:
        where = []
        if self.row is not None:
            where.append(f"row {self.row}")
        if self.column is not None:
            where.append(f"column '{self.column}'")
        if self.file is not None:
            where.append(f"file '{self.file}'")
        return (", ".join(where) + ": " if where else "") + self.reason

    def __reduce__(self):  # keep row/column/file when sent back from a data-loader worker
        return (_rebuild_data_error, (self.reason, self.row, self.column, self.file))

    def located(self, *, row: int | None = None, column: str | None = None) -> "DataError":
        """Return a copy with the row/column filled in where they were unknown to the raiser."""
        return DataError(
            self.reason,
            row=self.row if self.row is not None else row,
            column=self.column if self.column is not None else column,
            file=self.file,
        )


def _rebuild_data_error(reason: str, row: int | None, column: str | None, file: str | None) -> DataError:
    return DataError(reason, row=row, column=column, file=file)


def check_on_error(value: str) -> OnError:
    if value not in ON_ERROR_CHOICES:
        raise SchemaError(f"on_error must be one of {ON_ERROR_CHOICES}, got {value!r}")
    return value  # type: ignore[return-value]


class TesseraWarning(UserWarning):
    """Something the user should know about their data or run; the command line prints it as one plain line."""


@dataclass
class SkipReport:
    """Rows dropped under ``on_error: skip``; written as CSV so the user can fix their data."""

    rows: list[DataError] = field(default_factory=list)

    def add(self, err: DataError) -> None:
        self.rows.append(err)

    def __len__(self) -> int:
        return len(self.rows)

    def write(self, path: str | os.PathLike) -> Path:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(path.suffix + ".tmp")
        with open(tmp, "w", newline="") as fh:
            w = csv.writer(fh)
            w.writerow(["row", "column", "file", "reason"])
            for e in sorted(self.rows, key=lambda e: (e.row if e.row is not None else -1)):
                w.writerow([e.row, e.column or "", e.file or "", e.reason])
        os.replace(tmp, path)
        return path

    def warn(self, path: str | os.PathLike | None = None) -> None:
        if not self.rows:
            return
        where = f"; details in {path}" if path else ""
        first = self.rows[0]
        warnings.warn(
            f"skipped {len(self.rows)} row(s) with unusable data (first: {first}){where}",
            TesseraWarning,
            stacklevel=2,
        )
