"""Slow and idle connections are cut while real requests are served: a real `tessera serve` process on a free port."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

HEADER_TIMEOUT, BODY_TIMEOUT, MAX_CONNECTIONS = 2.0, 2.0, 60


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def open_fds(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def closed_by_server(s: socket.socket, within: float) -> bytes | None:
    """What the server sent before closing ``s`` (b"" for nothing), or None if it is still open after ``within`` s."""
    s.settimeout(within)
    got = b""
    try:
        while True:
            chunk = s.recv(4096)
            if not chunk:
                return got
            got += chunk
    except socket.timeout:
        return None
    except ConnectionResetError:
        return got


@pytest.fixture
def served(built, keys_file, tmp_path):
    """`tessera serve --index` with short deadlines and a small connection cap: (url, key, process)."""
    import httpx

    port = free_port()
    cmd = [sys.executable, "-m", "tessera.cli", "serve", "--index", str(built.index), "--keys", str(keys_file[0]),
           "--feedback-db", str(tmp_path / "f.db"), "--port", str(port), "--model-processes", "0", "--torch-threads", "1",
           "--header-timeout", str(HEADER_TIMEOUT), "--body-timeout", str(BODY_TIMEOUT), "--body-min-rate", "1000",
           "--max-connections", str(MAX_CONNECTIONS)]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(Path(__file__).resolve().parents[2] / "src"), *sys.path])}
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                pytest.fail(f"tessera serve exited with {proc.returncode}: {proc.stderr.read().decode()[-2000:]}")
            try:
                if httpx.get(url + "/readyz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.2)
        else:
            pytest.fail("tessera serve did not become ready in 120 s")
        yield url, keys_file[1], proc
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@pytest.mark.slow  # starting `tessera serve` takes ~25 s on 2 busy cores
@pytest.mark.skipif(not os.path.isdir("/proc/self/fd"), reason="counts the server's file handles in Linux /proc")
def test_slow_connections_are_cut_while_real_requests_are_served(served) -> None:
    import httpx

    url, key, proc = served
    headers = {"Authorization": f"Bearer {key}"}
    port = int(url.rsplit(":", 1)[1])
    baseline_fds = open_fds(proc.pid)

    def embed() -> float:
        start = time.perf_counter()
        r = httpx.post(url + "/v1/embed", json={"input": "text", "text": "a red square"}, headers=headers, timeout=10)
        assert r.status_code == 200, r.text
        return time.perf_counter() - start

    def connect(first: bytes) -> socket.socket:
        s = socket.create_connection(("127.0.0.1", port), timeout=5)
        if first:
            s.sendall(first)
        return s

    # Slowloris: idle connections, half-sent headers, and a body that trickles.
    idle = [connect(b"") for _ in range(10)]
    heads = [connect(b"POST /v1/embed HTTP/1.1\r\nHost: x\r\nX-Slow: ") for _ in range(20)]
    body_head = b"POST /v1/embed HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 100000\r\n" + \
                f"Authorization: Bearer {key}\r\n\r\n".encode()
    bodies = [connect(body_head + b'{"input": ') for _ in range(10)]
    assert embed() < 2.0  # 40 slow connections held, well under the cap: real requests are served at once

    # Past the cap, new connections are closed at once: file handles stay bounded whatever a client opens.
    extra = [connect(b"GET /healthz HTTP/1.1\r\nHost: x\r\n") for _ in range(3 * MAX_CONNECTIONS)]
    time.sleep(0.5)
    assert open_fds(proc.pid) <= baseline_fds + MAX_CONNECTIONS + 5
    refused = sum(closed_by_server(s, 0.05) is not None for s in extra)
    assert refused >= 3 * MAX_CONNECTIONS - MAX_CONNECTIONS, refused
    for s in extra:
        s.close()

    # Within the deadlines every slow connection is cut, with a 408 where a request had begun.
    for s in bodies:
        s.sendall(b" ")  # a byte now and then does not buy more time than body_min_rate allows
    cut = [closed_by_server(s, HEADER_TIMEOUT + BODY_TIMEOUT + 3) for s in idle + heads + bodies]
    assert all(c is not None for c in cut), f"{sum(c is None for c in cut)} slow connection(s) still open"
    assert all(c.startswith(b"HTTP/1.1 408") for c in cut[10:]), [c[:40] for c in cut[10:]]
    assert b"did not arrive within 2 s" in cut[10] and b"bytes/s" in cut[-1]
    for s in idle + heads + bodies:
        s.close()
    assert embed() < 2.0
    assert open_fds(proc.pid) <= baseline_fds + 5
