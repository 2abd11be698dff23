"""How many threads torch computes with: by default the cores nobody else is using.

torch starts one OpenMP thread per core. On a machine whose cores are already busy those
threads mostly wait for each other: on a 2-core machine at load 10-28 a fit spent ~78 % of
its threads' CPU time spinning and took over 23 minutes with 2 threads, 4 min 44 s with 1
(issue 18). So the default (``threads: null`` in a config, no ``--threads``) counts the idle
cores when the job starts: the cores minus the 1-minute load average, at least 1 and at most
torch's own default (which ``OMP_NUM_THREADS`` sets). An idle 2-core laptop gets 2 threads,
the same laptop running something else gets 1. A number in the config or on the command
line always wins.
"""

from __future__ import annotations

import os
from contextlib import contextmanager
from typing import Iterator

import torch


def idle_cores() -> int:
    """Cores not busy with other work, from the 1-minute load average (at least 1)."""
    cores = os.cpu_count() or 1
    try:
        load = os.getloadavg()[0]
    except OSError:  # not available on this platform
        return cores
    return max(1, min(cores, int(cores - load + 0.5)))


def resolve_threads(setting: int | None) -> int:
    """The thread count for a ``threads`` setting: the number itself, or (None) :func:`idle_cores`."""
    if setting is not None:
        return setting
    return max(1, min(torch.get_num_threads(), idle_cores()))


@contextmanager
def torch_threads(setting: int | None) -> Iterator[int]:
    """Run the block with torch on :func:`resolve_threads` threads; the caller's count comes back after."""
    before = torch.get_num_threads()
    n = resolve_threads(setting)
    torch.set_num_threads(n)
    try:
        yield n
    finally:
        torch.set_num_threads(before)
