"""Token-bucket rate limits: the server's per-key limit (in cost units), and a client's pace towards a hosted API.

A bucket per key refills continuously and holds one minute's worth, in memory: fine for one
process; several server replicas would need a shared store. It counts *units*, not
requests: the server charges a request one unit plus what decoding its media costs
(:class:`tessera.serve.limits.Meter`), and a take may leave the bucket in debt, which the key
then waits out.
"""

from __future__ import annotations

import threading
import time
from typing import Callable


class RateLimiter:
    """Token buckets per key, in units per minute; ``clock``: seconds, monotonic (injectable for tests)."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._buckets: dict[str, tuple[float, float]] = {}
        self._lock = threading.Lock()
        self._clock = clock

    def take(self, key: str, per_minute: int, units: float = 1.0, need: float = 1.0) -> tuple[bool, float]:
        """Take ``units`` if the bucket holds at least ``need`` (it may go into debt by the rest).

        -> (taken, seconds until the bucket holds ``need`` again). ``per_minute <= 0``: no limit.
        """
        if per_minute <= 0:
            return True, 0.0
        rate = per_minute / 60.0
        now = self._clock()
        with self._lock:
            tokens, last = self._buckets.get(key, (float(per_minute), now))
            tokens = min(float(per_minute), tokens + (now - last) * rate)
            if tokens >= need:
                self._buckets[key] = (tokens - units, now)
                return True, 0.0
            self._buckets[key] = (tokens, now)
            return False, (need - tokens) / rate

    def allow(self, key: str, per_minute: int) -> tuple[bool, float]:
        """One request's admission: one unit, if the bucket holds one."""
        return self.take(key, per_minute)
