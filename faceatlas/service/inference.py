"""Inference off the event loop: a bounded job queue shared fairly by the tenants, worker threads,
and a micro-batcher that sends the faces of several concurrent requests through the recogniser as
one batch.

A full queue refuses new work at once (:class:`Overloaded`, answered 503 with Retry-After)
instead of letting memory and latency grow, and so does a tenant's full share of it: one tenant's
burst cannot take every place. A tenant with no job waiting is still admitted past the queue's bound
(a reserve of one job per such tenant, at most another ``queue_size`` in all), so tenants that fill
the queue within their shares do not shut a quiet one out. A job whose caller went away (cancelled:
a client disconnected) leaves the queue before it runs. The workers take the tenants' jobs in turn
(each tenant's in order), so a quiet tenant's call waits behind about one job of each busy tenant,
not behind all of them.
"""

from __future__ import annotations

import asyncio
import logging
import queue
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from faceatlas.engine import Face, FaceAnalyzer
from faceatlas.errors import Overloaded
from faceatlas.gallery import source_crop
from faceatlas.service.metrics import ServiceMetrics
from faceatlas.settings import DEFAULT_QUEUE_SIZE

log = logging.getLogger(__name__)


@dataclass
class _EmbedRequest:
    crops: list[np.ndarray]
    done: threading.Event = field(default_factory=threading.Event)
    result: np.ndarray | None = None
    error: BaseException | None = None


class MicroBatcher:
    """Collects crops from concurrent callers for up to ``max_wait`` seconds (or ``max_batch``
    crops) and embeds them in one recogniser call."""

    def __init__(
        self, embed: Callable[[list[np.ndarray]], np.ndarray], max_batch: int, max_wait: float, metrics: ServiceMetrics
    ) -> None:
        self._embed = embed
        self.max_batch = max_batch
        self.max_wait = max_wait
        self._metrics = metrics
        self._requests: queue.Queue[_EmbedRequest | None] = queue.Queue()
        self._thread = threading.Thread(target=self._loop, name="faceatlas-batcher", daemon=True)
        self._thread.start()

    def embed(self, crops: list[np.ndarray]) -> np.ndarray:
        """Embeddings of ``crops``, computed together with other callers' crops."""
        request = _EmbedRequest(crops)
        self._requests.put(request)
        request.done.wait()
        if request.error is not None:
            raise request.error
        assert request.result is not None, "a finished request has a result or an error"
        return request.result

    def close(self) -> None:
        self._requests.put(None)
        self._thread.join(timeout=5)

    def _loop(self) -> None:
        while True:
            first = self._requests.get()
            if first is None:
                return
            pending, count = [first], len(first.crops)
            deadline = time.monotonic() + self.max_wait
            while count < self.max_batch:
                remaining = deadline - time.monotonic()
                try:
                    item = (
                        self._requests.get(timeout=max(0.0, remaining))
                        if remaining > 0
                        else self._requests.get_nowait()
                    )
                except queue.Empty:
                    break
                if item is None:
                    self._requests.put(None)
                    break
                pending.append(item)
                count += len(item.crops)
            self._run(pending, count)

    def _run(self, pending: list[_EmbedRequest], count: int) -> None:
        self._metrics.batch_size.observe(count)
        try:
            vectors = self._embed([crop for request in pending for crop in request.crops])
        except BaseException as exc:  # noqa: BLE001 - handed to every waiting caller, who re-raises it
            for request in pending:
                request.error = exc
                request.done.set()
            return
        start = 0
        for request in pending:
            request.result = vectors[start : start + len(request.crops)]
            start += len(request.crops)
            request.done.set()


@dataclass(frozen=True)
class Largest:
    """The largest face of a photo (``faces``: it alone, or none), its source crop (``crops``, None
    unless asked for) and ``found``, how many faces the photo holds."""

    faces: list[Face]
    crops: list[bytes | None]
    found: int


def tenant_share(queue_size: int, per_tenant: int | None) -> int:
    """The most jobs one tenant may hold waiting: ``per_tenant`` (at most the queue), or, None, half
    the queue (at least 1), so that one tenant's burst leaves the other half to everyone else."""
    return max(1, queue_size // 2) if per_tenant is None else max(1, min(per_tenant, queue_size))


_Job = tuple[Callable[..., Any], tuple, "asyncio.Future[Any]", asyncio.AbstractEventLoop]


class InferencePool:
    """Runs engine work in ``workers`` threads fed by a queue of at most ``queue_size`` waiting jobs,
    of which one tenant may hold at most ``per_tenant`` (None: half the queue, :func:`tenant_share`).
    A tenant with no job waiting is admitted even when ``queue_size`` jobs wait (its one job beyond the
    bound: a reserve of at most one job per tenant, never more than ``queue_size`` such jobs, so at most
    ``2 * queue_size`` jobs wait in all): busy tenants within their shares never shut a quiet one out.
    A job whose caller was cancelled before a worker took it leaves its lane and never runs.
    Each tenant's jobs wait in their own FIFO lane; the workers take one job from each waiting tenant
    in turn (round robin), so a tenant's one job runs after at most one job of each other tenant."""

    def __init__(
        self,
        analyzer: FaceAnalyzer,
        metrics: ServiceMetrics,
        *,
        workers: int = 2,
        queue_size: int = DEFAULT_QUEUE_SIZE,
        per_tenant: int | None = None,
        batching: bool = True,
        max_batch: int = 32,
        max_wait: float = 0.004,
    ) -> None:
        self.analyzer = analyzer
        self.metrics = metrics
        self.queue_size = queue_size
        self.per_tenant = tenant_share(queue_size, per_tenant)
        self._lock = threading.Condition()
        self._lanes: dict[str, deque[_Job]] = {}  # each tenant's waiting jobs, oldest first; no empty lane
        self._turns: deque[str] = deque()  # the tenants with jobs waiting, the next to be served first
        self._waiting = 0
        self._closing = False
        self.batcher = MicroBatcher(analyzer.embed_aligned, max_batch, max_wait, metrics) if batching else None
        self._workers = [
            threading.Thread(target=self._work, name=f"faceatlas-worker-{i}", daemon=True) for i in range(workers)
        ]
        for worker in self._workers:
            worker.start()

    async def run(self, function: Callable[..., Any], *args: Any, tenant: str = "") -> Any:
        """Run ``function(*args)`` in a worker, in ``tenant``'s turn; raise :class:`Overloaded` when the
        queue is full and ``tenant`` has a job waiting already (or the reserve beyond the bound is
        spent too), or ``tenant`` holds its share of it already (others are still admitted), or the
        pool is closing (:meth:`close`: its workers exit, and the job would wait for good). Cancelled
        (the caller went away) before a worker took it, the job leaves the queue and never runs."""
        loop = asyncio.get_running_loop()
        future = loop.create_future()
        job: _Job = (function, args, future, loop)
        with self._lock:
            lane = self._lanes.get(tenant)
            if self._closing:  # the workers exit once the jobs waiting are done: no one would take it
                refused = "the server is shutting down; retry shortly (another instance may answer)"
            elif self._waiting >= (self.queue_size if lane is not None else 2 * self.queue_size):
                refused = "the server is at capacity; retry shortly"
            elif lane is not None and len(lane) >= self.per_tenant:
                refused = (f"the server is at capacity for this tenant ({self.per_tenant} of its calls wait for "
                           "inference already); retry shortly")
            else:
                refused = ""
                if lane is None:
                    lane = self._lanes[tenant] = deque()
                    self._turns.append(tenant)
                lane.append(job)
                self._waiting += 1
                self.metrics.queue_depth.set(self._waiting)
                self._lock.notify()
        if refused:
            self.metrics.rejected.labels("overloaded").inc()
            raise Overloaded(refused, retry_after=1)
        try:
            return await future
        except asyncio.CancelledError:
            self._withdraw(tenant, job)  # a job a worker took already runs on; its answer is dropped
            raise

    def _withdraw(self, tenant: str, job: _Job) -> None:
        """``job`` out of ``tenant``'s lane, if no worker took it yet."""
        with self._lock:
            lane = self._lanes.get(tenant)
            if lane is None or not any(waiting is job for waiting in lane):
                return
            self._lanes[tenant] = lane = deque(waiting for waiting in lane if waiting is not job)
            if not lane:
                del self._lanes[tenant]
                self._turns.remove(tenant)
            self._waiting -= 1
            self.metrics.queue_depth.set(self._waiting)

    def waiting(self, tenant: str | None = None) -> int:
        """How many jobs wait for a worker (``tenant``'s alone, when given)."""
        with self._lock:
            if tenant is None:
                return self._waiting
            return len(self._lanes.get(tenant, ()))

    async def analyze(
        self, image: Any, *, liveness: bool = False, max_faces: int | None = None, attributes: bool = False,
        tenant: str = "",
    ) -> list[Face]:
        """Every face of ``image`` with embeddings (micro-batched across concurrent calls), in
        ``tenant``'s turn (as every method here: see :meth:`run`)."""
        return await self.run(self.analyze_sync, image, liveness, max_faces, attributes, tenant=tenant)

    def analyze_sync(
        self, image: Any, liveness: bool = False, max_faces: int | None = None, attributes: bool = False
    ) -> list[Face]:
        """The worker-side body of :meth:`analyze` (usable from any worker job)."""
        if self.batcher is None:
            return self.analyzer.analyze(image, liveness=liveness, max_faces=max_faces, attributes=attributes)
        faces = self.analyzer.analyze(image, embed=False, with_crop=True, liveness=liveness, max_faces=max_faces,
                                      attributes=attributes)
        if faces:
            self.analyzer.attach_embeddings(faces, self.batcher.embed([face.crop for face in faces
                                                                       if face.crop is not None]))
            for face in faces:
                face.crop = None
        return faces

    async def faces_and_crops(
        self, image: Any, *, max_faces: int | None = None, keep_crops: bool = False, tenant: str = ""
    ) -> tuple[list[Face], list[bytes | None]]:
        """The faces of ``image`` (as :meth:`analyze`) and, when ``keep_crops``, their source crops
        (what a collection that keeps crops stores for re-embedding)."""

        def work() -> tuple[list[Face], list[bytes | None]]:
            decoded, factor = self.analyzer.load_reduced(image)
            faces = self.analyze_sync(decoded, max_faces=max_faces)
            crops = [source_crop(decoded, face) if keep_crops else None for face in faces]
            for face in faces:
                face.rescale(factor)
            return faces, crops

        return await self.run(work, tenant=tenant)

    async def largest_face(self, image: Any, *, liveness: bool = False, keep_crops: bool = False,
                           tenant: str = "") -> Largest:
        """The largest face of ``image`` as :meth:`faces_and_crops` with ``max_faces=1`` finds it
        (with its liveness on request), and how many faces the photo holds (see
        :meth:`FaceAnalyzer.largest`); its embedding batched with other calls' when batching is on."""

        def work() -> Largest:
            decoded, factor = self.analyzer.load_reduced(image)
            batched = self.batcher is not None  # the aligned crop goes to the batcher, with other calls' faces
            faces, found = self.analyzer.largest(decoded, embed=not batched, with_crop=batched, liveness=liveness)
            aligned = [face.crop for face in faces if face.crop is not None]
            if batched and aligned:
                assert self.batcher is not None
                self.analyzer.attach_embeddings(faces, self.batcher.embed(aligned))
            for face in faces:
                face.crop = None
            crops = [source_crop(decoded, face) if keep_crops else None for face in faces]
            for face in faces:
                face.rescale(factor)
            return Largest(faces, crops, found)

        return await self.run(work, tenant=tenant)

    def close(self) -> None:
        """Stop the workers once the jobs waiting are done."""
        with self._lock:
            self._closing = True
            self._lock.notify_all()
        for worker in self._workers:
            worker.join(timeout=5)
        if self.batcher is not None:
            self.batcher.close()

    def _next(self) -> _Job | None:
        """The next job, the next waiting tenant's oldest (None: closing, nothing waits)."""
        with self._lock:
            while not self._turns:
                if self._closing:
                    return None
                self._lock.wait()
            tenant = self._turns.popleft()
            lane = self._lanes[tenant]
            job = lane.popleft()
            if lane:
                self._turns.append(tenant)  # its next job after every other waiting tenant's
            else:
                del self._lanes[tenant]
            self._waiting -= 1
            self.metrics.queue_depth.set(self._waiting)
            return job

    def _work(self) -> None:
        while True:
            job = self._next()
            if job is None:
                return
            function, args, future, loop = job
            try:
                result = function(*args)
            except BaseException as exc:  # noqa: BLE001 - delivered to the awaiting request, which re-raises it
                _deliver(loop, future, None, exc)
            else:
                _deliver(loop, future, result, None)


def _deliver(loop: asyncio.AbstractEventLoop, future: asyncio.Future, result: Any,
             error: BaseException | None) -> None:
    """A job's outcome to its caller's event loop; none when that loop closed meanwhile (the caller
    went away: telling it raised in the worker's thread, which died, and its share of the pool with it)."""
    try:
        loop.call_soon_threadsafe(_settle, future, result, error)
    except RuntimeError:  # the loop is closed: no one waits for the answer
        log.info("an inference job finished after its caller's event loop closed: its answer is dropped")


def _settle(future: asyncio.Future, result: Any, error: BaseException | None) -> None:
    if future.cancelled():
        return
    if error is not None:
        future.set_exception(error)
    else:
        future.set_result(result)
