"""Fetching one file over HTTP(S) so that a failure is never silent and never half-written.

The file streams into ``dest.tmp`` and is renamed into place only once it is complete
and its checksum matches, so an interrupted download cannot be mistaken for a good
file the next time. Every failure names the URL and where the user can put the file by
hand: machines without internet are common, and the fix there is a manual copy.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import urllib.error
import urllib.request
from pathlib import Path

from tessera.errors import TesseraError

CHUNK = 1 << 20
TIMEOUT_S = 60
USER_AGENT = "tessera-datasets/0.1 (python urllib)"  # some hosts refuse urllib's default agent


def sha256_of(path: str | os.PathLike) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(CHUNK), b""):
            h.update(block)
    return h.hexdigest()


def download(
    url: str,
    dest: str | os.PathLike,
    sha256: str | None = None,
    progress: bool = True,
    *,
    manual_hint: str | None = None,
) -> Path:
    """Download ``url`` to ``dest``; a present file with the right checksum is kept as is.

    ``manual_hint`` replaces the default "place the file at <dest>" advice, for sources
    whose manual fix is a converted layout rather than the archive itself.
    """
    dest = Path(dest)
    hint = manual_hint or f"you can download it yourself and place it at {dest}"
    if dest.is_file() and (sha256 is None or sha256_of(dest) == sha256):
        return dest
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_name(dest.name + ".tmp")
    request = urllib.request.Request(url, headers={"User-Agent": USER_AGENT})
    try:
        with urllib.request.urlopen(request, timeout=TIMEOUT_S) as response, open(tmp, "wb") as out:
            total = int(response.headers.get("Content-Length") or 0) or None
            _copy_with_progress(response, out, total, dest.name, progress)
    except urllib.error.HTTPError as e:
        tmp.unlink(missing_ok=True)
        raise TesseraError(f"download failed: {url} answered HTTP {e.code} {e.reason}; {hint}") from None
    except (urllib.error.URLError, OSError, TimeoutError) as e:
        tmp.unlink(missing_ok=True)
        reason = getattr(e, "reason", None) or e
        raise TesseraError(f"download failed: could not fetch {url} ({reason}); {hint}") from None
    if sha256 is not None:
        actual = sha256_of(tmp)
        if actual != sha256:
            tmp.unlink(missing_ok=True)
            raise TesseraError(
                f"checksum mismatch for {url}: expected sha256 {sha256}, got {actual} "
                f"(the file changed upstream or the transfer was corrupted); {hint}"
            )
    os.replace(tmp, dest)
    return dest


def _copy_with_progress(src, out, total: int | None, label: str, progress: bool) -> None:
    from tessera.progress import enabled

    if not (progress and enabled()):
        shutil.copyfileobj(src, out, CHUNK)
        return
    from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TransferSpeedColumn

    columns = (TextColumn("{task.description}"), BarColumn(), DownloadColumn(), TransferSpeedColumn())
    with Progress(*columns, transient=True) as bar:
        task = bar.add_task(f"downloading {label}", total=total)
        for block in iter(lambda: src.read(CHUNK), b""):
            out.write(block)
            bar.advance(task, len(block))
