"""A per-request cost meter for the key's rate limit, and a cap on request size, so one client cannot starve or exhaust the server.

The rate limit itself is :class:`tessera.ratelimit.RateLimiter` (a token bucket per key). It
counts *units*, not requests: a request is one unit, and its media add what decoding them
costs (:class:`Meter`: decoded pixels and audio seconds), so a client sending large images
reaches its limit long before one sending captions. A request is admitted while its key's
bucket holds a unit; its media cost is taken once its body is parsed, and may leave the
bucket in debt, which the key then waits out.

The size cap is ASGI middleware that refuses a declared ``Content-Length`` over the limit
before reading anything, and counts the bytes of a chunked body as they arrive, so an
oversized upload is never buffered whole. A body the app never reads (a request refused
for its key or its size) is dropped by the server as it arrives, up to the same cap
(:mod:`tessera.serve.connections`).
"""

from __future__ import annotations

import json
from typing import Any

from starlette.exceptions import HTTPException

from tessera.preprocess import DecodeCost
from tessera.serve.problems import problem_body

# A unit of media is ~12 ms of decoding. Measured on this project's 2-core machine (load 9-12):
# decoding and resizing a 1000x1000 PNG took 124 ms, a 500x500 one 35 ms; a 10 s clip took 18 ms
# (16 kHz WAV) to 55 ms (44.1 kHz stereo FLAC) to decode and turn into log-mel features. A short
# text request, the unit every request pays, costs the server ~4 ms of CPU in all.
PIXELS_PER_UNIT = 100_000
SECONDS_PER_UNIT = 2.0


class Meter:
    """What decoding one request's media will cost, in rate-limit units (the request itself is one more)."""

    def __init__(self) -> None:
        self.units = 0.0

    def add(self, cost: DecodeCost) -> None:
        self.units += cost.pixels / PIXELS_PER_UNIT + cost.seconds / SECONDS_PER_UNIT


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
                await self._refuse(send, scope["path"], 400, "the Content-Length header is not a number", "bad_request")
                return
            if too_big:
                await self._refuse(send, scope["path"], 413, self._detail(int(declared)), "payload_too_large")
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
    async def _refuse(send: Any, path: str, status: int, detail: str, kind: str) -> None:
        status, problem = problem_body(path, status, detail, kind)
        body = json.dumps(problem).encode()
        await send({"type": "http.response.start", "status": status, "headers": [(b"content-type", b"application/problem+json"), (b"content-length", str(len(body)).encode())]})
        await send({"type": "http.response.body", "body": body})
