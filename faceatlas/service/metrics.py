"""Prometheus metrics of one service instance (its own registry, exposed at ``/metrics``)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram


class ServiceMetrics:
    """Request counts and latencies per operation, recogniser batch sizes and queue depth."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter("faceatlas_requests", "API calls", ["operation", "status"], registry=self.registry)
        self.latency = Histogram(
            "faceatlas_request_seconds",
            "API call latency",
            ["operation"],
            registry=self.registry,
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
        )
        self.batch_size = Histogram(
            "faceatlas_recognizer_batch_size",
            "faces per recogniser batch",
            registry=self.registry,
            buckets=(1, 2, 4, 8, 16, 32, 64),
        )
        self.queue_depth = Gauge("faceatlas_inference_queue_depth", "jobs waiting for a worker", registry=self.registry)
        self.rejected = Counter("faceatlas_rejected", "calls refused", ["reason"], registry=self.registry)
