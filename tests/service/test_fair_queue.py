"""The inference queue is shared fairly by the tenants (found by a noisy-neighbour probe: one tenant's
16 parallel big detects took a quiet tenant's small detect from 23 ms to 1.7 s, its album uploads
skipped the queue and held the threads every call needs for its key check): a tenant holds at most
its share of the queue (503 ``overloaded`` beyond it, others still admitted), the workers take the
tenants' jobs in turn, and album uploads are jobs of the queue as a detect is."""

from __future__ import annotations

import asyncio
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from faceatlas.errors import Overloaded
from faceatlas.service.inference import InferencePool
from faceatlas.service.metrics import ServiceMetrics
from faceatlas.settings import ServiceSettings


def _until(condition: Callable[[], bool], seconds: float = 10.0) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.005)


def test_a_tenant_holds_its_share_and_the_workers_take_the_tenants_in_turn(fast_analyzer, examples: Path) -> None:
    photo = (examples / "tests" / "test_images" / "obama.jpg").read_bytes()
    pool = InferencePool(fast_analyzer, ServiceMetrics(), workers=1, queue_size=8, per_tenant=4, batching=False)
    ran: list[str] = []
    gate, started = threading.Event(), threading.Event()

    def block() -> None:
        started.set()
        gate.wait(30)

    def job(name: str, image: bytes | None = None) -> int:
        ran.append(name)
        return len(pool.analyze_sync(image)) if image is not None else 0

    async def scenario() -> tuple[list[Any], list[str]]:
        blocker = asyncio.ensure_future(pool.run(block, tenant="a"))
        await asyncio.to_thread(started.wait, 10)  # the one worker is busy with a's first job
        tasks = [asyncio.ensure_future(pool.run(job, f"a{i}", tenant="a")) for i in range(1, 5)]
        await asyncio.to_thread(_until, lambda: pool.waiting("a") == 4)
        refused = []
        with pytest.raises(Overloaded) as over_share:  # a holds its share: its next call is refused...
            await pool.run(job, "a5", tenant="a")
        refused.append(str(over_share.value))
        tasks.append(asyncio.ensure_future(pool.run(job, "b1", photo, tenant="b")))  # ...b's admitted
        tasks += [asyncio.ensure_future(pool.run(job, f"c{i}", tenant="c")) for i in range(1, 4)]
        await asyncio.to_thread(_until, lambda: pool.waiting() == 8)
        with pytest.raises(Overloaded) as full:  # the whole queue's bound holds for a tenant waiting already
            await pool.run(job, "c4", tenant="c")
        refused.append(str(full.value))
        tasks.append(asyncio.ensure_future(pool.run(job, "d1", tenant="d")))  # a tenant with none: admitted
        await asyncio.to_thread(_until, lambda: pool.waiting() == 9)
        gate.set()
        await blocker
        return await asyncio.gather(*tasks), refused

    try:
        results, refused = asyncio.run(scenario())
    finally:
        gate.set()
        pool.close()
    assert "for this tenant" in refused[0] and "for this tenant" not in refused[1]
    # the waiting tenants in turn, each one's jobs in order: b's one job ran behind one of a's, not
    # behind a's four (first come, first served ran a1-a4, b1, c1-c3)
    assert ran == ["a1", "b1", "c1", "d1", "a2", "c2", "a3", "c3", "a4"], ran
    assert results[4] == 1  # b's job analysed its photo: one face
    assert pool.waiting() == 0


def test_two_busy_tenants_within_their_shares_leave_room_for_a_quiet_one(fast_analyzer) -> None:
    """Two tenants each holding its share (half the queue) filled the whole queue, and a third tenant's
    first call was refused 503: a tenant with no job waiting is admitted past the bound (one job each,
    at most another queue's worth), and a tenant waiting already is still held to it."""
    pool = InferencePool(fast_analyzer, ServiceMetrics(), workers=1, queue_size=8, batching=False)
    ran: list[str] = []
    gate, started = threading.Event(), threading.Event()

    def block() -> None:
        started.set()
        gate.wait(30)

    async def scenario() -> list[Any]:
        blocker = asyncio.ensure_future(pool.run(block, tenant="x"))
        await asyncio.to_thread(started.wait, 10)
        tasks = [asyncio.ensure_future(pool.run(ran.append, f"{tenant}{i}", tenant=tenant))
                 for tenant in ("a", "b") for i in range(pool.per_tenant)]
        await asyncio.to_thread(_until, lambda: pool.waiting() == 8)
        with pytest.raises(Overloaded):  # the queue is full for a tenant waiting already
            await pool.run(ran.append, "a-over", tenant="a")
        tasks += [asyncio.ensure_future(pool.run(ran.append, "c1", tenant="c")),
                  asyncio.ensure_future(pool.run(ran.append, "x1", tenant="x"))]  # x's first waiting job
        await asyncio.to_thread(_until, lambda: pool.waiting() == 10)
        with pytest.raises(Overloaded):  # c's second is beyond the bound
            await pool.run(ran.append, "c2", tenant="c")
        gate.set()
        await blocker
        return await asyncio.gather(*tasks)

    try:
        asyncio.run(scenario())
    finally:
        gate.set()
        pool.close()
    assert ran[:4] == ["a0", "b0", "c1", "x1"] and len(ran) == 10, ran
    assert pool.waiting() == 0


def test_a_cancelled_waiting_job_leaves_the_queue_and_never_runs(fast_analyzer) -> None:
    """A job whose caller went away (a client disconnected: its task cancelled) stayed queued, held a
    place of its tenant's share (the tenant's retry refused 503) and still ran; now it leaves its lane,
    while a job a worker took already runs on (its answer dropped)."""
    metrics = ServiceMetrics()
    pool = InferencePool(fast_analyzer, metrics, workers=1, queue_size=8, per_tenant=4, batching=False)
    ran: list[str] = []
    gate, started = threading.Event(), threading.Event()

    def block() -> None:
        started.set()
        gate.wait(30)
        ran.append("blocker")

    async def scenario() -> str:
        blocker = asyncio.ensure_future(pool.run(block, tenant="a"))
        await asyncio.to_thread(started.wait, 10)
        tasks = [asyncio.ensure_future(pool.run(ran.append, f"a{i}", tenant="a")) for i in range(4)]
        others = [asyncio.ensure_future(pool.run(ran.append, "b0", tenant="b"))]
        await asyncio.to_thread(_until, lambda: pool.waiting() == 5)
        for task in [*tasks[1:3], blocker]:  # the callers went away (the blocker is running already)
            task.cancel()
        await asyncio.gather(*tasks[1:3], blocker, return_exceptions=True)
        assert (pool.waiting("a"), pool.waiting()) == (2, 3)
        assert metrics.queue_depth._value.get() == 3
        for task in (tasks[0], tasks[3]):  # the first and the last of its lane
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        assert (pool.waiting("a"), pool.waiting(), list(pool._turns)) == (0, 1, ["b"])
        retries = [asyncio.ensure_future(pool.run(ran.append, f"retry{i}", tenant="a")) for i in range(4)]
        await asyncio.to_thread(_until, lambda: pool.waiting("a") == 4)  # its whole share again
        gate.set()
        await asyncio.gather(*others, *retries)
        return "done"

    try:
        assert asyncio.run(scenario()) == "done"
    finally:
        gate.set()
        pool.close()
    assert ran == ["blocker", "b0", "retry0", "retry1", "retry2", "retry3"], ran
    assert pool.waiting() == 0


def test_a_worker_outlives_the_event_loop_of_a_call_that_went_away(fast_analyzer) -> None:
    """A job whose caller's event loop closed before it finished (a client, a test client, a server
    shutting down) killed its worker: telling the loop raised, in the worker's thread; with one
    worker, every later call waited for good."""
    pool = InferencePool(fast_analyzer, ServiceMetrics(), workers=1, queue_size=4, per_tenant=4, batching=False)
    gate, started = threading.Event(), threading.Event()

    def block() -> str:
        started.set()
        gate.wait(30)
        return "late"

    async def leave() -> None:  # the call starts, then its loop ends while the job still runs
        asyncio.ensure_future(pool.run(block, tenant="a"))
        await asyncio.to_thread(started.wait, 10)

    try:
        asyncio.run(leave())
        gate.set()

        async def next_call() -> str:
            return await asyncio.wait_for(pool.run(lambda: "served", tenant="b"), 20)

        assert asyncio.run(next_call()) == "served"
    finally:
        gate.set()
        pool.close()


def test_a_closed_pool_refuses_a_job_instead_of_holding_it_for_good(fast_analyzer) -> None:
    """``close()`` lets the workers exit once the jobs waiting are done; a job given after it (a call
    arriving while the server shuts down) was queued for no worker, and its request hung until
    uvicorn's graceful timeout. It is refused at once: ``Overloaded`` (503, Retry-After)."""
    metrics = ServiceMetrics()
    pool = InferencePool(fast_analyzer, metrics, workers=1, queue_size=4, batching=False)
    assert asyncio.run(pool.run(lambda: "served", tenant="a")) == "served"
    pool.close()

    async def late_call() -> str:
        return await asyncio.wait_for(pool.run(lambda: "never", tenant="a"), 5)

    with pytest.raises(Overloaded, match="shutting down") as refused:
        asyncio.run(late_call())
    assert refused.value.status == 503 and refused.value.retry_after is not None
    assert pool.waiting() == 0  # nothing left queued for no worker
    assert metrics.rejected.labels("overloaded")._value.get() == 1


def test_the_share_defaults_to_half_the_queue() -> None:
    from faceatlas.service.inference import tenant_share

    assert ServiceSettings().queue_per_tenant is None
    assert (tenant_share(32, None), tenant_share(1, None), tenant_share(32, 40), tenant_share(32, 5)) == (16, 1, 32, 5)
    assert ServiceSettings.from_env(queue_per_tenant=3).queue_per_tenant == 3


@contextmanager
def _busy(pool: InferencePool, tenant: str) -> Iterator[threading.Event]:
    """The pool's workers held by another tenant's jobs and ``tenant`` holding its whole share of the
    queue (one job, for the time being); set the event to let them go."""
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    gate = threading.Event()
    busy = threading.Semaphore(0)

    def block() -> None:
        busy.release()
        gate.wait(60)

    share = pool.per_tenant
    pool.per_tenant = 1
    jobs = [asyncio.run_coroutine_threadsafe(pool.run(block, tenant="someone-else"), loop)
            for _ in range(len(pool._workers))]
    try:
        for _ in jobs:
            assert busy.acquire(timeout=10), "the workers did not take the blocking jobs"
        jobs.append(asyncio.run_coroutine_threadsafe(pool.run(lambda: None, tenant=tenant), loop))
        _until(lambda: pool.waiting(tenant) == 1)
        yield gate
    finally:
        gate.set()
        for job in jobs:
            job.result(timeout=30)
        pool.per_tenant = share
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout=5)
        loop.close()


def test_an_album_upload_is_one_job_of_its_tenant_in_the_queue(api, shared: Path, monkeypatch) -> None:
    photo = sorted((shared / "data" / "lfw" / "images" / "Colin_Powell").glob("*.jpg"))[0].read_bytes()
    pool: InferencePool = api.app.state.pool
    jobs: list[str | None] = []
    run = pool.run

    async def counted(function: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        jobs.append(kwargs.get("tenant"))
        return await run(function, *args, **kwargs)

    monkeypatch.setattr(pool, "run", counted)
    with api.client("acme_write") as http:
        answer = http.post(f"/v1/albums/count_{uuid.uuid4().hex[:6]}/photos", files={"image": photo})
    assert answer.status_code == 200 and answer.json()["faces"] == 1, answer.text
    assert jobs == ["acme"]  # it ran beside the queue, in the threads every call's key check needs


def test_album_uploads_over_the_tenant_s_share_are_refused(api, shared: Path) -> None:
    """They ran in the threads every call needs for its key check and bill (48 parallel ones took a
    quiet tenant's GET from 8 to 519 ms), never refused: now a tenant over its share of the queue is
    answered 503 ``overloaded`` with Retry-After, nothing made, while another tenant's upload waits
    its turn and is done."""
    photo = sorted((shared / "data" / "lfw" / "images" / "Tony_Blair").glob("*.jpg"))[0].read_bytes()
    album = f"fair_{uuid.uuid4().hex[:6]}"
    pool: InferencePool = api.app.state.pool
    answers: dict[str, Any] = {}

    def globex_upload() -> None:
        with api.client("globex_admin") as http:
            answers["globex"] = http.post(f"/v1/albums/{album}/photos", files={"image": photo})

    with _busy(pool, "acme") as gate, api.client("acme_write") as http:
        refused = http.post(f"/v1/albums/{album}/photos", files={"image": photo})
        other = threading.Thread(target=globex_upload)
        other.start()
        _until(lambda: pool.waiting("globex") == 1)  # admitted: waiting for a worker
        gate.set()
        other.join(timeout=60)
    assert refused.status_code == 503, refused.text
    assert refused.json()["error"]["code"] == "overloaded" and int(refused.headers["retry-after"]) >= 1
    assert answers["globex"].status_code == 200 and answers["globex"].json()["faces"] == 1
    with api.client("acme_write") as http:
        assert album not in http.get("/v1/albums").json()["albums"]  # the refused upload made no album
        again = http.post(f"/v1/albums/{album}/photos", files={"image": photo})
        assert again.status_code == 200 and again.json()["faces"] == 1


def test_a_face_pay_is_a_job_of_its_tenant_in_the_queue(api, shared: Path) -> None:
    """Face pay (liveness, a match at the pay FAR) ran in the threads every call needs, beside the
    queue, as album uploads did: a tenant over its share is answered 503 ``overloaded`` for it too."""
    photo = sorted((shared / "data" / "lfw" / "images" / "Tony_Blair").glob("*.jpg"))[0].read_bytes()
    pool: InferencePool = api.app.state.pool
    with _busy(pool, "acme"), api.client("acme_write") as http:
        refused = http.post("/v1/retail/stores/no-store/pay", params={"camera": "till", "event": "e1"},
                            files={"image": photo})
    assert refused.status_code == 503 and refused.json()["error"]["code"] == "overloaded", refused.text
