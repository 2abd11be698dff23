"""How long a client may take to send a request, and how many connections may be open: the server's transport limits.

uvicorn closes idle keep-alive connections (``timeout_keep_alive``) but has no deadline for
a request that is being sent: a connection that sends half a request line, or a body one
byte at a time (slowloris), is held forever, and ~20,000 of them exhausted the server's file
handles until every request failed. :class:`GuardedProtocol` is uvicorn's httptools
protocol with those limits, as Apache's mod_reqtimeout sets them:

- a request's headers must be complete within ``header_timeout_s`` of its first byte, and a
  new connection must send them that soon (and at most :data:`MAX_HEADER_BYTES` of them);
- its body must arrive within ``body_timeout_s`` plus one second per ``body_min_rate`` bytes
  received (a large upload on a slow link passes; a trickle does not);
- past ``max_connections`` open connections, a new one is closed at once, so file handles
  stay bounded whatever a client opens;
- a body is dropped as it arrives once the app has answered without reading it (a request
  refused for its key), as uvicorn does to keep the connection; past ``max_body_bytes`` the
  connection is closed, so a body nobody reads is bounded like one the app reads.

A request over a deadline gets a 408 when nothing has been answered yet, and its connection
is closed. The limits live in the protocol because only it sees a request before its headers
are complete; ASGI middleware runs after that.
"""

from __future__ import annotations

import json
import logging
import time
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from tessera.serve.config import ServeConfig

log = logging.getLogger("tessera.serve")
MAX_HEADER_BYTES = 64 * 1024  # request line and headers together


class GuardedProtocol(HttpToolsProtocol):
    """uvicorn's HTTP/1.1 protocol (httptools) with header and body deadlines and a connection cap (see the module)."""

    header_timeout_s = 10.0
    body_timeout_s = 30.0
    body_min_rate = 10_000
    max_connections = 1000
    max_body_bytes = 10 * 1024 * 1024
    _last_refusal_log = 0.0

    def connection_made(self, transport: Any) -> None:  # type: ignore[override]
        self._timer: Any = None
        self._head_bytes = 0
        self._body_bytes, self._body_start = 0, 0.0
        super().connection_made(transport)
        if len(self.connections) > self.max_connections:
            now = time.monotonic()
            if now - GuardedProtocol._last_refusal_log > 10:
                GuardedProtocol._last_refusal_log = now
                log.warning("%d connections open (the cap is %d): closing new ones",
                            len(self.connections), self.max_connections)
            transport.close()
            return
        self._arm(self.header_timeout_s, self._headers_late)

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    # -- parser callbacks ------------------------------------------------------------------
    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._head_bytes = 0
        self._arm(self.header_timeout_s, self._headers_late)

    def on_url(self, url: bytes) -> None:
        self._count_head(len(url))
        super().on_url(url)

    def on_header(self, name: bytes, value: bytes) -> None:
        self._count_head(len(name) + len(value) + 4)
        super().on_header(name, value)

    def on_headers_complete(self) -> None:
        self._disarm()
        super().on_headers_complete()
        declared = next((v for n, v in self.headers if n == b"content-length"), b"0")
        chunked = any(n == b"transfer-encoding" and b"chunked" in v.lower() for n, v in self.headers)
        if chunked or declared.strip() not in (b"0", b""):
            self._body_bytes, self._body_start = 0, self.loop.time()
            self._arm(self.body_timeout_s, self._body_check)

    def on_body(self, body: bytes) -> None:
        self._body_bytes += len(body)
        if self._body_bytes > self.max_body_bytes and self.cycle is not None and self.cycle.response_complete:
            self.transport.close()  # answered already (the app refused it): no reason to take more
            return
        super().on_body(body)

    def on_message_complete(self) -> None:
        self._disarm()
        super().on_message_complete()

    # -- deadlines ---------------------------------------------------------------------------
    def _count_head(self, n: int) -> None:
        self._head_bytes += n
        if self._head_bytes > MAX_HEADER_BYTES:
            raise ValueError(f"request headers over {MAX_HEADER_BYTES} bytes")  # uvicorn answers 400 and closes

    def _arm(self, delay: float, callback: Any) -> None:
        self._disarm()
        self._timer = self.loop.call_later(delay, callback)

    def _disarm(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _headers_late(self) -> None:
        self._timer = None
        self._expire(f"the request's headers did not arrive within {self.header_timeout_s:g} s")

    def _body_check(self) -> None:
        self._timer = None
        due = self._body_start + self.body_timeout_s + self._body_bytes / self.body_min_rate
        left = due - self.loop.time()
        if left > 0:
            self._arm(left, self._body_check)
        else:
            self._expire(f"the request body arrived slower than {self.body_min_rate} bytes/s "
                         f"after {self.body_timeout_s:g} s ({self._body_bytes} bytes received)")

    def _expire(self, why: str) -> None:
        if self.transport.is_closing():
            return
        if self.cycle is None or not self.cycle.response_started:
            body = json.dumps({"type": "https://tessera.dev/problems/request_timeout", "title": "Request timeout",
                               "status": 408, "detail": why}).encode()
            head = (b"HTTP/1.1 408 Request Timeout\r\ncontent-type: application/problem+json\r\nconnection: close\r\n"
                    b"content-length: " + str(len(body)).encode() + b"\r\n\r\n")
            self.transport.write(head + body)
        self.transport.close()


def protocol_for(config: ServeConfig) -> type[GuardedProtocol]:
    """:class:`GuardedProtocol` with this server's limits (uvicorn creates one protocol object per connection)."""
    return type("Protocol", (GuardedProtocol,), {
        "header_timeout_s": config.header_timeout_s, "body_timeout_s": config.body_timeout_s,
        "body_min_rate": config.body_min_rate, "max_connections": config.max_connections,
        "max_body_bytes": config.max_body_bytes,
    })


def uvicorn_config(app: Any, config: ServeConfig, host: str, port: int, **options: Any) -> Any:
    """The uvicorn settings ``tessera serve`` runs with: the guarded protocol and the keep-alive timeout."""
    import uvicorn

    return uvicorn.Config(app, host=host, port=port, http=protocol_for(config), timeout_keep_alive=config.keep_alive_s,
                          **{"log_level": "info", **options})


def fit_file_limit(config: ServeConfig, reserve: int = 256) -> None:
    """Raise this process's open-file limit to what the connection cap needs (up to the hard limit), or lower the cap.

    ``reserve``: handles kept for everything but client connections (models, databases, worker pipes).
    """
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = config.max_connections + reserve
    if soft != resource.RLIM_INFINITY and soft < want:
        new = want if hard == resource.RLIM_INFINITY else min(want, hard)
        resource.setrlimit(resource.RLIMIT_NOFILE, (new, hard))
        soft = new
    if soft != resource.RLIM_INFINITY and soft < want:
        log.warning("open-file limit %d: capping connections at %d instead of %d",
                    soft, soft - reserve, config.max_connections)
        config.max_connections = max(1, soft - reserve)
