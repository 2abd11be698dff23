"""Turning a media cell (path, bytes, or ``{bytes, path}``) into something a decoder can open.

Media columns hold file paths relative to the table, raw bytes (Parquet binary), or
Hugging Face style ``{"bytes": ..., "path": ...}`` records. URLs are refused on purpose:
fetching inside a data loader hides network failures behind decode errors.

What media content *is* is decided in one place, :func:`sniff_mime`, by its bytes (the
``filetype`` library's magic numbers), never by a file name: schema inference and the
server both ask it.
"""

from __future__ import annotations

import io
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import filetype

from tessera.errors import DataError

URL_PREFIXES = ("http://", "https://", "ftp://", "s3://", "gs://", "az://", "hf://")
SIGNATURE_BYTES = 8192  # how much of a file the sniffer looks at (filetype's own limit)


def is_missing(value: Any) -> bool:
    """True for the many ways a table spells 'no value' (None, NaN, NA, empty string)."""
    if value is None:
        return True
    if isinstance(value, float) and math.isnan(value):
        return True
    if isinstance(value, str) and value.strip() == "":
        return True
    if isinstance(value, dict) and ("bytes" in value or "path" in value):
        return is_missing(value.get("bytes")) and is_missing(value.get("path"))
    try:
        import pandas as pd

        if value is pd.NA or value is pd.NaT:
            return True
    except ImportError:  # pragma: no cover - pandas is a dependency
        pass
    return False


@dataclass(frozen=True)
class MediaSource:
    """An openable media item: either a file on disk or bytes in memory."""

    path: Path | None = None
    data: bytes | None = None
    name: str | None = None  # what to call it in error messages

    def open(self) -> io.BufferedIOBase:
        if self.data is not None:
            return io.BytesIO(self.data)
        assert self.path is not None
        return open(self.path, "rb")

    @property
    def label(self) -> str:
        if self.name:
            return self.name
        if self.path is not None:
            return str(self.path)
        return f"<{len(self.data or b'')} bytes>"

    @property
    def suffix(self) -> str:
        ref = self.name or (str(self.path) if self.path else "")
        return Path(ref).suffix.lower()

    def read_bytes(self) -> bytes:
        if self.data is not None:
            return self.data
        assert self.path is not None
        return self.path.read_bytes()


def resolve_media(value: Any, base_dir: str | os.PathLike | None = None, check_exists: bool = True) -> MediaSource:
    """Resolve one media cell. Raises :class:`DataError` (without row/column; callers add them)."""
    if isinstance(value, dict):
        data = value.get("bytes")
        path = value.get("path")
        if data is not None and not is_missing(data):
            return MediaSource(data=bytes(data), name=str(path) if path else None)
        if path is None or is_missing(path):
            raise DataError("media record has neither 'bytes' nor 'path'")
        value = path
    if isinstance(value, (bytes, bytearray, memoryview)):
        if len(value) == 0:
            raise DataError("media bytes are empty")
        return MediaSource(data=bytes(value))
    if isinstance(value, os.PathLike):
        value = os.fspath(value)
    if not isinstance(value, str):
        raise DataError(f"expected a file path or bytes for a media column, got {type(value).__name__} {value!r:.60}")
    text = value.strip()
    if text.lower().startswith(URL_PREFIXES):
        raise DataError(
            f"URLs are not fetched ({text[:80]}); download the files and put local paths "
            "(relative to the table) in this column",
            file=text,
        )
    path = Path(text).expanduser()
    if not path.is_absolute() and base_dir is not None:
        path = Path(base_dir) / path
    if check_exists and not path.is_file():
        reason = "is a directory, not a file" if path.is_dir() else "file not found"
        raise DataError(reason, file=path)
    return MediaSource(path=path)


def sniff_mime(data: bytes | bytearray | memoryview) -> str | None:
    """The MIME type of media content from its magic numbers (``image/png``, ``audio/x-wav`` ...); None when unknown.

    Only the first :data:`SIGNATURE_BYTES` bytes are looked at.
    """
    kind = filetype.guess(bytes(data[:SIGNATURE_BYTES]))
    return kind.mime if kind is not None else None
