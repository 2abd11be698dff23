"""Prometheus instruments of one app: requests and latency per route, inference time, batch sizes, errors by kind.

Each app has its own registry (two apps in one process, as in tests, do not clash), and
drift figures are read from the :class:`~tessera.serve.monitoring.DriftMonitor` at scrape
time rather than pushed on every request.
"""

from __future__ import annotations

import time
import uuid
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily

from tessera.serve.monitoring import DriftMonitor

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128)


class Metrics:
    def __init__(self, monitor: DriftMonitor | None = None) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter("tessera_requests", "HTTP requests", ["route", "method", "status"], registry=self.registry)
        self.latency = Histogram("tessera_request_seconds", "Request latency", ["route"], buckets=LATENCY_BUCKETS, registry=self.registry)
        self.inference = Histogram("tessera_inference_seconds", "Model time per batch", ["model"], buckets=LATENCY_BUCKETS, registry=self.registry)
        self.batch_size = Histogram("tessera_batch_size", "Requests per model call", ["model"], buckets=BATCH_BUCKETS, registry=self.registry)
        self.errors = Counter("tessera_errors", "Error responses by kind", ["kind"], registry=self.registry)
        if monitor is not None:
            self.registry.register(_DriftCollector(monitor))

    def on_batch(self, model: str, size: int, seconds: float) -> None:
        self.batch_size.labels(model).observe(size)
        self.inference.labels(model).observe(seconds)

    def render(self) -> bytes:
        return generate_latest(self.registry)


class _DriftCollector:
    def __init__(self, monitor: DriftMonitor) -> None:
        self.monitor = monitor

    def collect(self):
        families: dict[str, GaugeMetricFamily] = {}
        for name, help_text, labels, value in self.monitor.gauges():
            if name not in families:
                families[name] = GaugeMetricFamily(name, help_text, labels=list(labels))
            families[name].add_metric(list(labels.values()), value)
        yield from families.values()


class RequestMetrics:
    """ASGI middleware: a request id for every request (``X-Request-ID``), counts and latency per route, errors by kind.

    Plain ASGI rather than Starlette's ``BaseHTTPMiddleware``, which costs a task and a
    memory stream per request. The route label is the matched route's template
    (``/v1/items/{item_id}/media``), so ids do not explode the label set.
    """

    def __init__(self, app: Any, metrics: Metrics, titles: dict[int, str]) -> None:
        self.app, self.metrics, self.titles = app, metrics, titles

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        state = scope.setdefault("state", {})
        state["request_id"] = request_id = uuid.uuid4().hex
        start = time.perf_counter()
        status = 500

        async def send_with_id(message: dict) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message = {**message, "headers": [*message.get("headers", []), (b"x-request-id", request_id.encode())]}
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        finally:
            path = getattr(scope.get("route"), "path", "unmatched")
            m = self.metrics
            m.requests.labels(path, scope["method"], str(status)).inc()
            m.latency.labels(path).observe(time.perf_counter() - start)
            if status >= 400:
                kind = state.get("error_kind") or self.titles.get(status, "error").lower().replace(" ", "_")
                m.errors.labels(kind).inc()
