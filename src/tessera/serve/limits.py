"""Per-key rate limits and a cap on request size, so one client cannot starve or exhaust the server.

The rate limit is a token bucket per key (refills continuously, allows a burst of one
minute's worth), in memory: fine for one server process; several replicas would need a
shared store. The size cap is ASGI middleware that refuses a declared ``Content-Length``
over the limit before reading anything, and counts the bytes of a chunked body as they
arrive, so an oversized upload is never buffered whole.
"""

from __future__ import annotations

import json
import threading
import time
from typing import Any

from starlette.exceptions import HTTPException


class RateLimiter:
    """``allow(key, per_minute)`` -> (allowed, seconds until a request would be allowed)."""

    def __init__(self) -> None:
        self._buckets: dict[str, tuple[float, float]] = {}
        self._lock = threading.Lock()

    def allow(self, key: str, per_minute: int) -> tuple[bool, float]:
        if per_minute <= 0:
            return True, 0.0
        rate = per_minute / 60.0
        now = time.monotonic()
        with self._lock:
            tokens, last = self._buckets.get(key, (float(per_minute), now))
            tokens = min(float(per_minute), tokens + (now - last) * rate)
            if tokens >= 1.0:
                self._buckets[key] = (tokens - 1.0, now)
                return True, 0.0
            self._buckets[key] = (tokens, now)
            return False, (1.0 - tokens) / rate


class BodyTooLarge(HTTPException):
    """Raised mid-stream; an HTTP exception so FastAPI's body parsing passes it through to the 413 handler."""

    def __init__(self, seen: int, limit: int) -> None:
        super().__init__(413, f"the request body is over {limit} bytes (read {seen} so far); this server accepts at most {limit} bytes")


class BodySizeLimit:
    """ASGI middleware: 413 problem details for bodies over ``max_bytes``."""

    def __init__(self, app: Any, max_bytes: int) -> None:
        self.app, self.max_bytes = app, max_bytes

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope.get("headers") or []).get(b"content-length")
        if declared is not None:
            try:
                too_big = int(declared) > self.max_bytes
            except ValueError:
                await self._refuse(send, 400, "Bad request", "the Content-Length header is not a number", "bad_request")
                return
            if too_big:
                await self._refuse(send, 413, "Payload too large", self._detail(int(declared)), "payload_too_large")
                return
        seen = 0

        async def counted_receive() -> dict:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.max_bytes:
                    raise BodyTooLarge(seen, self.max_bytes)
            return message

        await self.app(scope, counted_receive, send)

    def _detail(self, n: int) -> str:
        return f"the request body is {n} bytes or more; this server accepts at most {self.max_bytes} bytes"

    @staticmethod
    async def _refuse(send: Any, status: int, title: str, detail: str, kind: str) -> None:
        body = json.dumps({"type": f"https://tessera.dev/problems/{kind}", "title": title, "status": status, "detail": detail}).encode()
        await send({"type": "http.response.start", "status": status, "headers": [(b"content-type", b"application/problem+json"), (b"content-length", str(len(body)).encode())]})
        await send({"type": "http.response.body", "body": body})
