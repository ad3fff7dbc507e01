"""A tenant's collection exports under way (FACEATLAS_MAX_EXPORTS_PER_TENANT), counted in the shared
state: with several server processes on one Redis (``serve --processes N``) every process agrees,
where each counted its own and a tenant got N times the limit; the places of a process that died are
freed as its Idempotency-Key claims are (its heartbeat key gone); Redis unreachable refuses the export
(503), never lets it through unbounded. Without Redis (one process) the places live in its memory, as
before (tests/service/test_galleries_api.py)."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from faceatlas.db import create_database_engine
from faceatlas.errors import StateUnavailable
from faceatlas.gallery import Gallery
from faceatlas.service import create_app, redis_state
from faceatlas.service.accounts import Accounts
from faceatlas.service.db import migrate
from faceatlas.service.redis_state import RedisState
from faceatlas.service.shared_state import MemoryState
from faceatlas.settings import ServiceSettings
from tests.service.test_shared_state import _wait_out_the_restart_grace

DATABASE = "d" * 32  # the id of the database whose state the RedisState objects made here keep
EXPORTS = "exports"


@pytest.fixture
def processes(monkeypatch: pytest.MonkeyPatch, redis_server) -> Iterator[Callable[[int], list[RedisState]]]:
    """``processes(n)``: n processes' shared states on an empty Redis, beating every 0.2 s, a restart
    of Redis waited out for 5 s (a heartbeat thread starved a second on a loaded machine still beats
    within it); all closed after the test (a close already done is harmless)."""
    made: list[RedisState] = []

    def make(n: int) -> list[RedisState]:
        redis_server.flush()
        monkeypatch.setattr(redis_state, "HEARTBEAT_SECONDS", 0.2)
        monkeypatch.setattr(redis_state, "restart_grace", lambda: 5.0)
        settings = ServiceSettings(database_url="sqlite://", redis_url=redis_server.url)
        made.extend(RedisState(settings, lambda tenant: 0, DATABASE) for _ in range(n))
        return made[-n:]

    yield make
    for state in made:
        state.close()


def _taken(state: RedisState, tenant: str = "acme", limit: int = 2) -> Callable[[], None]:
    release = state.take_slot(EXPORTS, tenant, limit)
    assert release is not None, f"{tenant} was refused a place it should have had"
    return release


def test_a_tenant_s_exports_are_counted_across_processes(processes) -> None:
    first, second = processes(2)
    held = [_taken(first), _taken(second)]  # the limit, 2, over two processes
    assert first.take_slot(EXPORTS, "acme", 2) is None
    assert second.take_slot(EXPORTS, "acme", 2) is None  # each process held 1: it counted only its own
    other = _taken(second, "globex")  # another tenant's places are its own
    held[0]()
    held[0]()  # freed once, however often called: the other process's place is still held
    again = _taken(second)
    assert first.take_slot(EXPORTS, "acme", 2) is None
    for release in (held[1], again, other):
        release()
    assert [_taken(state) is not None for state in (first, first)] == [True, True]
    assert second.take_slot(EXPORTS, "acme", 2) is None


def test_a_dead_process_s_export_places_are_freed(processes, monkeypatch: pytest.MonkeyPatch) -> None:
    """A process gone mid-download (closed, as the idempotency tests' processes die: its heartbeat and
    alive key gone) and one killed (its heartbeat stops, its alive key expires) held the tenant's
    places: they count no more, and the dead process's late release frees no live one's."""
    monkeypatch.setattr(redis_state, "ALIVE_SECONDS", 2)
    gone, killed, alive = processes(3)
    late = _taken(gone)
    _taken(gone)
    assert alive.take_slot(EXPORTS, "acme", 2) is None
    gone.close()  # gone mid-download: nothing released
    held = [_taken(alive), _taken(alive)]
    assert alive.take_slot(EXPORTS, "acme", 2) is None
    late()  # the dead process's late release
    assert alive.take_slot(EXPORTS, "acme", 2) is None

    for release in held:
        release()
    _taken(killed)
    _taken(killed)
    killed._stop.set()  # killed: no more heartbeats, no goodbye (its alive key lives out its seconds)
    for thread in killed._threads:
        thread.join(timeout=10)
    assert alive.take_slot(EXPORTS, "acme", 2) is None
    deadline = time.monotonic() + 2 + 10  # the alive key's seconds, and a loaded machine's slack
    while (release := alive.take_slot(EXPORTS, "acme", 2)) is None:
        assert time.monotonic() < deadline, "the places of a killed process were never freed"
        time.sleep(0.1)
    _taken(alive)
    assert alive.take_slot(EXPORTS, "acme", 2) is None


def test_redis_unreachable_refuses_an_export_place_and_a_restart_keeps_the_places_held(processes,
                                                                                      redis_server) -> None:
    """Redis down: a place is refused (StateUnavailable: 503), never given unbounded; a release then
    does not raise (its answer is being sent) and is written once Redis is back. Redis restarted
    empty: each process writes its places back with its heartbeat, and until every process has beaten
    (the restart grace) a place is refused rather than given past the limit."""
    holder, other = processes(2)
    held = [_taken(holder, limit=3), _taken(holder, limit=3)]
    redis_server.stop()
    try:
        with pytest.raises(StateUnavailable):
            other.take_slot(EXPORTS, "acme", 3)
        held[0]()  # freed while Redis is down: no error
    finally:
        redis_server.start()  # empty
    with pytest.raises(StateUnavailable) as waiting:  # this process knew the state before: the grace begins
        other.take_slot(EXPORTS, "acme", 3)
    assert waiting.value.retry_after == redis_state.restart_grace()
    _wait_out_the_restart_grace(other)
    assert _held_by(other) == 1  # the holder's place written back, the one freed while Redis was down not
    taken = [other.take_slot(EXPORTS, "acme", 3) for _ in range(3)]
    assert [release is not None for release in taken] == [True, True, False]
    held[1]()
    assert _held_by(other) == 2


def _held_by(state: RedisState, tenant: str = "acme") -> int:
    """The places of ``tenant`` Redis counts, over every process."""
    return sum(int(n) for n in state.redis.hvals(state.name("slots", EXPORTS, tenant)))


def test_memory_keeps_the_places_of_its_one_process(redis_server) -> None:
    state = MemoryState(lambda tenant: 0, ServiceSettings(database_url="sqlite://"))
    first, second = state.take_slot(EXPORTS, "acme", 2), state.take_slot(EXPORTS, "acme", 2)
    assert first is not None and second is not None
    assert state.take_slot(EXPORTS, "acme", 2) is None
    assert state.take_slot(EXPORTS, "globex", 2) is not None
    first()
    first()
    assert state.take_slot(EXPORTS, "acme", 2) is not None
    assert state.take_slot(EXPORTS, "acme", 2) is None


def test_two_server_processes_on_one_redis_hold_a_tenant_to_its_exports(redis_server, fast_analyzer,
                                                                         monkeypatch: pytest.MonkeyPatch,
                                                                         tmp_path: Path) -> None:
    """Two apps (two processes of one server) over one database and one Redis, with
    FACEATLAS_MAX_EXPORTS_PER_TENANT=2: a tenant with two exports under way in one is refused a third
    in the other (429 rate_limited, Retry-After; each process counted only its own and served it),
    another tenant is not, and an export that ends frees its place for both."""
    redis_server.flush()
    database_url = f"sqlite:///{tmp_path / 'exports.db'}"
    engine = create_database_engine(database_url)
    migrate(engine)
    accounts = Accounts(engine)
    keys = {}
    for tenant in ("noisy", "quiet"):
        accounts.create_tenant(tenant)
        keys[tenant] = {"Authorization": "Bearer " + accounts.create_key(tenant, ["admin"], rate_per_second=500,
                                                                        burst=500).token}
    # the first two exports stand still while they hold their places (as downloads held unread do)
    gate, entered, lock = threading.Event(), [], threading.Lock()
    export = Gallery.export

    def held_export(self: Gallery, *args: Any, **kwargs: Any) -> int:
        with lock:
            entered.append(1)
            holds = len(entered) <= 2
        if holds:
            assert gate.wait(30), "the held exports were never let go"
        return export(self, *args, **kwargs)

    monkeypatch.setattr(Gallery, "export", held_export)
    settings = ServiceSettings(database_url=database_url, index_dir=tmp_path / "indexes", pack="scrfd-mbf",
                               workers=1, redis_url=redis_server.url, max_exports_per_tenant=2)
    with TestClient(create_app(settings, analyzer=fast_analyzer)) as one, \
            TestClient(create_app(settings, analyzer=fast_analyzer)) as two, ThreadPoolExecutor(2) as pool:
        for tenant in keys:
            assert one.post("/v1/collections", json={"name": "staff"}, headers=keys[tenant]).status_code == 201
        try:
            running = [pool.submit(one.get, "/v1/collections/staff/export", headers=keys["noisy"]) for _ in range(2)]
            deadline = time.monotonic() + 30
            while len(entered) < 2:
                assert time.monotonic() < deadline, "the two exports never started"
                time.sleep(0.02)
            refused = two.get("/v1/collections/staff/export", headers=keys["noisy"])
            assert refused.status_code == 429, f"{refused.status_code}: a third export served by the other process"
            assert refused.json()["error"]["code"] == "rate_limited", refused.text
            assert int(refused.headers["retry-after"]) >= 1
            assert one.get("/v1/collections/staff/export", headers=keys["noisy"]).status_code == 429
            assert two.get("/v1/collections/staff/export", headers=keys["quiet"]).status_code == 200
        finally:
            gate.set()
        assert [done.result(timeout=30).status_code for done in running] == [200, 200]
        for app in (two, one):  # the downloads ended: their places are free in every process
            answer = app.get("/v1/collections/staff/export", headers=keys["noisy"])
            assert answer.status_code == 200 and answer.content[:4] == b"PAR1", answer.text
        assert _held_by(one.app.state.shared, "noisy") == 0  # type: ignore[attr-defined]
    engine.dispose()


def _stopped(state: RedisState) -> RedisState:
    """``state`` without its background heartbeat: only the test's own calls write its places."""
    state._stop.set()
    for thread in state._threads:
        thread.join(timeout=10)
    return state


def _hash(state: RedisState, tenant: str = "acme") -> dict[bytes, bytes]:
    return state.redis.hgetall(state.name("slots", EXPORTS, tenant))


def test_a_release_the_collector_runs_inside_a_take_is_not_lost(processes) -> None:
    """A place's release is also its Meter's ``weakref.finalize`` callback: the collector may run it in
    the thread of another take, inside its Redis call (the slot lock held: it is reentrant). The take had
    read this process's count before, and wrote it after: the release was lost, the place held in this
    process and in Redis for good (with a limit of 1, the tenant never exported again, anywhere)."""
    mine, other = processes(2)
    _stopped(mine)
    first = _taken(mine)
    script = mine._take_slot

    def take_with_the_collector(*args: Any, **kwargs: Any) -> Any:
        first()  # the collector frees the first place here: same thread, lock held
        return script(*args, **kwargs)

    mine._take_slot = take_with_the_collector
    try:
        second = _taken(mine)
    finally:
        mine._take_slot = script
    assert mine._slots == {(EXPORTS, "acme"): 1} and _held_by(mine) == 1
    second()
    mine._heartbeat()
    assert mine._slots == {} and _hash(mine) == {}, "a place this process freed is still held"
    assert [other.take_slot(EXPORTS, "acme", 2) is not None for _ in range(3)] == [True, True, False]


def test_a_release_the_collector_runs_inside_the_heartbeat_resurrects_no_place(processes) -> None:
    """The collector running a release inside the heartbeat's write (its pipeline not sent yet): the
    release deleted this process's field and its entry, then the heartbeat wrote the count from before:
    a place in Redis that nothing freed (no entry left to write again) while other processes lived."""
    mine, other = processes(2)
    _stopped(mine)
    release = _taken(mine, limit=1)
    real = mine.redis.pipeline
    interrupted: list[int] = []

    def pipeline(*args: Any, **kwargs: Any) -> Any:
        pipe = real(*args, **kwargs)
        if not interrupted:
            interrupted.append(1)
            send = pipe.execute

            def execute(*a: Any, **k: Any) -> Any:
                release()  # the collector runs the Meter's finalizer here
                return send(*a, **k)

            pipe.execute = execute
        return pipe

    mine.redis.pipeline = pipeline  # type: ignore[method-assign]
    try:
        mine._heartbeat()
    finally:
        mine.redis.pipeline = real  # type: ignore[method-assign]
    assert interrupted, "the heartbeat wrote no places"
    assert mine._slots == {} and _hash(mine) == {}, "the heartbeat wrote back a place freed during it"
    assert other.take_slot(EXPORTS, "acme", 1) is not None


def test_a_release_the_collector_runs_inside_another_release_resurrects_no_place(processes) -> None:
    """The same inside a release's own write: the inner one's count was overwritten by the outer's."""
    mine, other = processes(2)
    _stopped(mine)
    first, second = _taken(mine), _taken(mine)
    real = mine.redis.pipeline
    interrupted: list[int] = []

    def pipeline(*args: Any, **kwargs: Any) -> Any:
        pipe = real(*args, **kwargs)
        if not interrupted:
            interrupted.append(1)
            send = pipe.execute

            def execute(*a: Any, **k: Any) -> Any:
                second()
                return send(*a, **k)

            pipe.execute = execute
        return pipe

    mine.redis.pipeline = pipeline  # type: ignore[method-assign]
    try:
        first()
    finally:
        mine.redis.pipeline = real  # type: ignore[method-assign]
    assert interrupted
    assert mine._slots == {} and _hash(mine) == {}, "a place freed inside another's release is still held"
    mine._heartbeat()
    assert [other.take_slot(EXPORTS, "acme", 2) is not None for _ in range(3)] == [True, True, False]


def test_a_release_on_the_event_loop_never_blocks_it(processes) -> None:
    """A release called in the server's event loop (an export's error path, a Meter's finalizer run by
    the collector there) waits for no Redis call and no lock: it frees the place from another thread.
    Here the slot lock is held (a heartbeat or a take waiting on a slow Redis) while the loop releases."""
    mine, other = processes(2)
    release = _taken(mine, limit=1)
    holding, let_go = threading.Event(), threading.Event()

    def hold_the_lock() -> None:
        with mine._slot_lock:
            holding.set()
            let_go.wait(10)

    holder = threading.Thread(target=hold_the_lock, daemon=True)
    holder.start()
    assert holding.wait(10)

    async def on_the_loop() -> float:
        began = time.monotonic()
        release()
        return time.monotonic() - began

    try:
        took = asyncio.run(on_the_loop())
    finally:
        let_go.set()
        holder.join(10)
    assert took < 1.0, f"the release blocked the event loop {took:.1f} s"
    deadline = time.monotonic() + 10
    while _hash(mine):
        assert time.monotonic() < deadline, "the place released on the loop was never freed"
        time.sleep(0.02)
    assert mine._slots == {}
    assert other.take_slot(EXPORTS, "acme", 1) is not None
