"""Prometheus metrics of one service instance (its own registry, exposed at ``/metrics``).

With ``serve --processes N`` each process counts its own calls; the processes then keep their
values in files of one folder (prometheus_client's multiprocess mode, on when
``PROMETHEUS_MULTIPROC_DIR`` names a folder before the process imports prometheus_client), and a
scrape, whichever process answers it, sums them all: the counters of every process, the queue
depth of the live ones. :func:`multiprocess_folder` is the supervisor's side of it."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest, multiprocess

from faceatlas.settings import metrics_folder, metrics_folder_set


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
        # several processes: the jobs waiting in every live one (a dead process's queue is gone)
        self.queue_depth = Gauge("faceatlas_inference_queue_depth", "jobs waiting for a worker", registry=self.registry,
                                 multiprocess_mode="livesum")
        self.rejected = Counter("faceatlas_rejected", "calls refused", ["reason"], registry=self.registry)

    def latest(self) -> bytes:
        """The exposition of ``/metrics``: this process's registry, or, in multiprocess mode, the
        sum over every process of the server (a fresh registry each scrape, as the files change)."""
        folder = metrics_folder()
        if not folder:
            return generate_latest(self.registry)
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry, path=folder)
        return generate_latest(registry)


@contextmanager
def multiprocess_folder() -> Iterator[str]:
    """A fresh folder for the metrics of the server processes about to be started, named in
    ``PROMETHEUS_MULTIPROC_DIR`` (which they inherit) while the block runs, removed after it."""
    folder = tempfile.mkdtemp(prefix="faceatlas-metrics-")
    try:
        with metrics_folder_set(folder):
            yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def process_gone(pid: int, folder: str) -> None:
    """A server process exited: its live gauges (the queue depth) leave the sum; its counters stay."""
    multiprocess.mark_process_dead(pid, folder)
