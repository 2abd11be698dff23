"""Token-bucket rate limits: the server's per-key limit, and a client's pace towards a hosted API.

A bucket per key refills continuously and allows a burst of one minute's worth, in memory:
fine for one process; several server replicas would need a shared store.
"""

from __future__ import annotations

import threading
import time
from typing import Callable


class RateLimiter:
    """``allow(key, per_minute)`` -> (allowed, seconds until a request would be allowed); ``clock``: seconds, monotonic."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._buckets: dict[str, tuple[float, float]] = {}
        self._lock = threading.Lock()
        self._clock = clock

    def allow(self, key: str, per_minute: int) -> tuple[bool, float]:
        if per_minute <= 0:
            return True, 0.0
        rate = per_minute / 60.0
        now = self._clock()
        with self._lock:
            tokens, last = self._buckets.get(key, (float(per_minute), now))
            tokens = min(float(per_minute), tokens + (now - last) * rate)
            if tokens >= 1.0:
                self._buckets[key] = (tokens - 1.0, now)
                return True, 0.0
            self._buckets[key] = (tokens, now)
            return False, (1.0 - tokens) / rate
