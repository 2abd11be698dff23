"""What a long job shows while it runs: bars on a terminal, plain log lines elsewhere, nothing when asked.

Three modes, from ``TESSERA_PROGRESS`` and whether stderr is a terminal:

* ``bars``: rich progress bars, and each epoch's summary line (validation metric included);
* ``lines`` (stderr is a file, a pipe, a notebook, CI): no bars, which would fill a log with
  control codes, but one plain line per finished phase ("decoding train: 10,000 rows in
  12.3 s"), a line every :data:`LINE_EVERY` seconds while a phase runs, and one per epoch, so
  ``tessera fit ... > log 2>&1`` is never silent for long;
* ``off`` (``TESSERA_PROGRESS=0``): nothing, also from the libraries Tessera loads models
  with (:func:`quiet_libraries`).
"""

from __future__ import annotations

import contextlib
import os
import sys
import time
from contextlib import contextmanager
from typing import Callable, Iterator, Literal

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

console = Console(stderr=True)
Mode = Literal["bars", "lines", "off"]
LINE_EVERY = 30.0  # seconds between "still running" lines of one phase in ``lines`` mode


def mode() -> Mode:
    if os.environ.get("TESSERA_PROGRESS", "1") == "0":
        return "off"
    return "bars" if sys.stderr.isatty() else "lines"


def enabled() -> bool:
    """Whether progress bars are drawn (a terminal, and not turned off)."""
    return mode() == "bars"


def log(message: str) -> None:
    """One line for the user about a job's progress: printed above the bars, or plainly, or not at all."""
    current = mode()
    if current == "bars":
        console.print(message, highlight=False, markup=False)
    elif current == "lines":
        print(message, file=sys.stderr, flush=True)


def seconds(value: float) -> str:
    """A duration as a person reads it: 4.2 s, 3 min 05 s."""
    if value < 60:
        return f"{value:.1f} s"
    minutes, rest = divmod(int(round(value)), 60)
    return f"{minutes} min {rest:02d} s"


@contextmanager
def progress_bar(description: str, total: int | None, *, done_line: bool = True) -> Iterator[Callable[..., None]]:
    """Yield ``advance(n=1, **fields)``; ``fields`` show live metrics such as loss or accuracy.

    Off a terminal the phase is logged instead: every :data:`LINE_EVERY` seconds while it
    runs and once at the end (``done_line=False`` leaves the end to the caller, as the
    training loop does with its epoch summary).
    """
    current = mode()
    if current == "lines":
        with _log_lines(description, total, done_line) as advance:
            yield advance
        return
    if current == "off":
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
            progress.update(task, advance=n, **({"metrics": _fields(fields)} if fields else {}))

        yield advance


@contextmanager
def _log_lines(description: str, total: int | None, done_line: bool) -> Iterator[Callable[..., None]]:
    start = last = time.perf_counter()
    count = 0
    shown: dict[str, float | str] = {}

    def advance(n: int = 1, **fields: float | str) -> None:
        nonlocal count, last
        count += n
        shown.update(fields)
        now = time.perf_counter()
        if now - last >= LINE_EVERY:
            last = now
            of = f"/{total:,}" if total else ""
            log(f"{description}: {count:,}{of} after {seconds(now - start)}" + (f" ({_fields(shown)})" if shown else ""))

    yield advance
    if done_line:
        log(f"{description}: {count:,} done in {seconds(time.perf_counter() - start)}")


def _fields(fields: dict[str, float | str]) -> str:
    return "  ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in fields.items())


@contextlib.contextmanager
def quiet_libraries() -> Iterator[None]:
    """Hide the progress bars of transformers and sentence-transformers (their "Loading weights"
    bar) unless Tessera shows bars: a log file gets nothing from them, and ``TESSERA_PROGRESS=0``
    means no bars from anyone."""
    if mode() == "bars":
        yield
        return
    from transformers.utils import logging as hf_logging

    was_enabled = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        if was_enabled:
            hf_logging.enable_progress_bar()
