"""Keys before bodies: no route reads (or makes the server parse) a body for a caller without a valid key."""

from __future__ import annotations

import socket
import time
from urllib.parse import urlparse

import pytest

BODY = 9 * 1024 * 1024  # declared: under the 10 MB cap, so only the key check can refuse it


def test_every_route_checks_the_key_and_reads_its_own_body(make_client) -> None:
    """FastAPI reads a body *parameter* before any dependency runs: no /v1 route may declare one, and each needs the key."""
    from fastapi.routing import APIRoute

    from tessera.serve.dependencies import require_key

    client, _ = make_client()
    routes = [r for r in client.app.routes if isinstance(r, APIRoute) and r.path.startswith(("/v1/", "/metrics"))]
    assert len(routes) >= 8
    for route in routes:
        assert route.body_field is None, f"{route.path} declares its body as a parameter: it is read before the key check"
        calls = [d.call for d in route.dependant.dependencies]
        assert require_key in calls or any(require_key in [s.call for s in d.dependencies] for d in route.dependant.dependencies), route.path


@pytest.mark.parametrize("ctype", ["application/json", "multipart/form-data; boundary=x"])
def test_an_unauthenticated_10mb_post_is_refused_before_its_body_is_sent(live_server, ctype) -> None:
    """The server answers 401 while the client has sent 64 KB of 9 MB, on every POST route in its spec, and still serves afterwards."""
    import httpx

    url, key, _ = live_server
    host, port = urlparse(url).hostname, urlparse(url).port
    spec = httpx.get(url + "/openapi.json").json()
    routes = sorted(p for p, ops in spec["paths"].items() if "post" in ops)
    assert {"/v1/embed", "/v1/feedback", "/v1/predict", "/v1/search"} <= set(routes)
    for path in routes:
        with socket.create_connection((host, port), timeout=10) as s:
            s.sendall(f"POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: {ctype}\r\nContent-Length: {BODY}\r\n\r\n".encode())
            s.sendall(b"{" + b" " * 65535)
            start = time.perf_counter()
            answer = s.recv(65536)
            elapsed = time.perf_counter() - start
        assert answer.startswith(b"HTTP/1.1 401"), (path, answer[:200])
        assert b"application/problem+json" in answer
        assert elapsed < 2.0, f"{path}: 401 after {elapsed:.2f} s"
    r = httpx.post(url + "/v1/embed", json={"input": "text", "text": "a red square"}, headers={"Authorization": f"Bearer {key}"})
    assert r.status_code == 200, r.text
