"""Progress bars for anything that takes more than a few seconds (rich; off with TESSERA_PROGRESS=0)."""

from __future__ import annotations

import os
import sys
from contextlib import contextmanager
from typing import Callable, Iterator

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

console = Console(stderr=True)


def enabled() -> bool:
    return os.environ.get("TESSERA_PROGRESS", "1") != "0" and sys.stderr.isatty()


@contextmanager
def progress_bar(description: str, total: int | None) -> Iterator[Callable[..., None]]:
    """Yield ``advance(n=1, **fields)``; ``fields`` show live metrics such as loss or accuracy."""
    if not enabled():
        yield lambda n=1, **fields: None
        return
    progress = Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        TextColumn("{task.fields[metrics]}"),
        console=console,
        transient=False,
    )
    with progress:
        task = progress.add_task(description, total=total, metrics="")

        def advance(n: int = 1, **fields: float | str) -> None:
            metrics = "  ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in fields.items())
            progress.update(task, advance=n, **({"metrics": metrics} if fields else {}))

        yield advance
