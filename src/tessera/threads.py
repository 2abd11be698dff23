"""How many threads torch computes with: by default the cores nobody else is using.

torch starts one OpenMP thread per core. On a machine whose cores are already busy those
threads mostly wait for each other: on a 2-core machine at load 10-28 a fit spent ~78 % of
its threads' CPU time spinning and took over 23 minutes with 2 threads, 4 min 44 s with 1
(issue 18). So the default (``threads: null`` in a config, no ``--threads``) counts the idle
cores when the job starts: the cores minus the 1-minute load average, at least 1 and at most
torch's own default (which ``OMP_NUM_THREADS`` sets). An idle 2-core laptop gets 2 threads,
the same laptop running something else gets 1. A number in the config or on the command
line always wins.

"The cores" are the ones this process may use, not the machine's: a container or CI job limited
to 2 CPUs on a 64-core host (CPU affinity, or a cgroup CPU quota) must not start 64 threads, which
under a quota spend their time throttled.
"""

from __future__ import annotations

import math
import os
from contextlib import contextmanager
from typing import Iterator

import torch


def cgroup_cpu_quota(root: str | os.PathLike = "/sys/fs/cgroup") -> float | None:
    """The CPUs a cgroup quota allows (cgroup v2 ``cpu.max``, else v1 ``cfs_quota_us``), None without one."""
    root = os.fspath(root)
    try:
        with open(os.path.join(root, "cpu.max")) as f:
            quota, period = f.read().split()[:2]
        return None if quota == "max" else int(quota) / int(period)
    except (OSError, ValueError):
        pass
    try:
        with open(os.path.join(root, "cpu", "cpu.cfs_quota_us")) as f:
            quota_us = int(f.read())
        with open(os.path.join(root, "cpu", "cpu.cfs_period_us")) as f:
            period_us = int(f.read())
    except (OSError, ValueError):
        return None
    return quota_us / period_us if quota_us > 0 and period_us > 0 else None


def available_cores() -> int:
    """Cores this process may use: its CPU affinity, capped by a cgroup CPU quota (at least 1)."""
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        cores = os.cpu_count() or 1
    quota = cgroup_cpu_quota()
    if quota is not None:
        cores = min(cores, math.ceil(quota))
    return max(1, cores)


def idle_cores() -> int:
    """Cores not busy with other work, from the 1-minute load average (at least 1)."""
    cores = available_cores()
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
