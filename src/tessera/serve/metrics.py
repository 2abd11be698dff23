"""Prometheus instruments of one app: requests and latency per route, inference time, batch sizes, errors by kind.

Each app has its own registry (two apps in one process, as in tests, do not clash), and
drift figures are read from the :class:`~tessera.serve.monitoring.DriftMonitor` at scrape
time rather than pushed on every request.
"""

from __future__ import annotations

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
