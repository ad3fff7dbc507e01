"""The shared state in a real Redis, seen by several ``RedisState`` objects (as by several
processes) over a real PostgreSQL: global rates and quotas, reconciliation from the usage table,
Redis down and back, idempotent enrols, key revocation through the 1 s cache."""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import socket
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
import redis
from fastapi.testclient import TestClient
from sqlalchemy import select, text
from sqlalchemy.orm import Session

from faceatlas.client import FaceAtlasClient
from faceatlas.db import create_database_engine
from faceatlas.errors import StateUnavailable
from faceatlas.gallery import Gallery
from faceatlas.gallery.models import Collection, FaceRecord, Subject
from faceatlas.service import create_app, redis_state
from faceatlas.service.accounts import Accounts
from faceatlas.service.db import AuditRecord, UsageRecord, database_identity, migrate
from faceatlas.service.inference import InferencePool
from faceatlas.service.redis_state import RedisState
from faceatlas.service.shared_state import StoredAnswer, month_of
from faceatlas.service.tenants import operator_accounts
from faceatlas.settings import ServiceSettings

DATABASE = "d" * 32  # the id of the database whose state the RedisState objects made here keep


@pytest.fixture
def accounts(new_database, tmp_path: Path) -> Iterator[Accounts]:
    with new_database("postgresql", tmp_path) as url:
        engine = create_database_engine(url)
        migrate(engine)
        yield Accounts(engine)
        engine.dispose()


def _generous_restart_grace(monkeypatch: pytest.MonkeyPatch) -> None:
    """A restart of Redis is waited out for 5 s, not the 1.2 s that heartbeats every 0.2 s need:
    a heartbeat thread starved for a second on a loaded machine still beats within the grace."""
    monkeypatch.setattr(redis_state, "restart_grace", lambda: 5.0)


def _wait_out_the_restart_grace(state: RedisState) -> None:
    """Return once a process saw Redis restarted empty and the restart grace it set has passed."""
    key = state.name(redis_state.RESTARTED_KEY)
    deadline = time.monotonic() + 10
    while not state.redis.exists(key):
        assert time.monotonic() < deadline, "no process saw Redis restarted empty within 10 s"
        time.sleep(0.05)
    deadline = time.monotonic() + redis_state.restart_grace() + 10
    while state.redis.exists(key):
        assert time.monotonic() < deadline, "the restart grace never ended"
        time.sleep(0.05)


@pytest.fixture
def states(redis_server, accounts: Accounts, monkeypatch: pytest.MonkeyPatch) -> Iterator[list[RedisState]]:
    """Three independent RedisState objects (three 'processes') on one flushed Redis, beating
    every 0.2 s, with a restart grace of 5 s (see :func:`_generous_restart_grace`)."""
    monkeypatch.setattr(redis_state, "HEARTBEAT_SECONDS", 0.2)
    _generous_restart_grace(monkeypatch)
    redis_server.flush()
    settings = ServiceSettings(database_url="sqlite://", redis_url=redis_server.url)
    made = [RedisState(settings, accounts.calls_this_month, DATABASE) for _ in range(3)]
    yield made
    for state in made:
        state.close()


def test_a_stored_answer_keeps_its_call_media_type_and_path_whatever_blanks_they_hold(states: list[RedisState]) -> None:
    """The value's head is split at blanks: the console's forms named their call "console <path>", so
    a second sending of a form was refused as another call's (409), and an erasure never found the
    outcome it stored (its path read back as "application/json /v1/...")."""
    first, second = states[0], states[1]
    call = "console /console/galleries/vip/enrol"
    assert first.begin_idempotent("acme", "console:t1", call) is None
    first.finish_idempotent("acme", "console:t1", StoredAnswer(200, b'{"ok": 1}', "text/csv; charset=utf-8",
                                                               "/v1/collections/vip/subjects/al/faces"), call)
    again = second.begin_idempotent("acme", "console:t1", call)
    assert again is not None and again.status == 200 and again.body == b'{"ok": 1}'
    assert again.path == "/v1/collections/vip/subjects/al/faces" and again.media_type == "text/csv;charset=utf-8"
    gone = StoredAnswer(404, b"{}", "application/json", "/v1/collections/vip/subjects")
    assert second.replace_answers("acme", lambda a: a.path.startswith("/v1/collections/vip/subjects/al"), gone) == 1
    assert first.begin_idempotent("acme", "console:t1", call).status == 404  # type: ignore[union-attr]


def test_a_keys_rate_is_one_bucket_for_every_process(states: list[RedisState]) -> None:
    # 60 concurrent takes spread over 3 processes, burst 10, a trickle of 0.01 token/s: 10 pass
    with ThreadPoolExecutor(12) as pool:
        waits = list(pool.map(lambda i: states[i % 3].take(7, 0.01, 10), range(60)))
    assert sum(w == 0.0 for w in waits) == 10
    assert all(w > 0 for w in waits if w != 0.0)
    assert states[0].take(8, 100.0, 10) == 0.0  # another key: its own bucket


def test_a_tenants_quota_is_one_counter_seeded_from_the_bill(states: list[RedisState], accounts: Accounts) -> None:
    accounts.create_tenant("acme")
    accounts.record_usage([UsageRecord(tenant_id="acme", operation="detect", status=200) for _ in range(5)]
                          + [UsageRecord(tenant_id="acme", operation="detect", status=503)])  # 5 billed
    granted = []
    lock = threading.Lock()

    def call(i: int) -> None:
        state = states[i % 3]
        if state.spend("acme", 12) == 0.0:
            with lock:
                granted.append(i)
            state.settle("acme", billed=True)

    with ThreadPoolExecutor(12) as pool:
        list(pool.map(call, range(40)))
    assert len(granted) == 7  # quota 12, 5 already billed in the usage table
    # a 5xx gives its count back
    states[1].redis.delete(states[1].name("quota", "acme", time.strftime("%Y-%m", time.gmtime())))
    assert states[1].spend("acme", 6) == 0.0  # reseeded: 5 billed + this one
    states[1].settle("acme", billed=False)
    assert states[2].spend("acme", 6) == 0.0
    assert states[0].spend("acme", 6) > 0


def test_reconciliation_drops_the_calls_of_a_dead_process(states: list[RedisState], accounts: Accounts) -> None:
    accounts.create_tenant("acme")
    dead, alive = states[0], states[1]
    assert dead.spend("acme", 3) == 0.0
    assert dead.spend("acme", 3) == 0.0  # two calls admitted, never answered: the process dies
    dead.close()  # its heartbeat stops, its alive key is gone
    assert alive.spend("acme", 3) == 0.0  # in flight on a live process; the counter says 3
    accounts.record_usage([UsageRecord(tenant_id="acme", operation="detect", status=200)])
    alive.settle("acme", billed=True)
    assert alive.reconcile() == 1  # counter := 1 billed + 0 in flight
    assert alive.spend("acme", 3) == 0.0
    assert alive.spend("acme", 3) == 0.0
    assert alive.spend("acme", 3) > 0


def test_a_dead_process_s_calls_never_refuse_a_tenant_under_its_quota(states: list[RedisState], accounts: Accounts,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    """A process killed with calls in flight left them counted until the next reconciliation (60 s
    by default): a tenant under its quota was refused ``quota_exceeded`` meanwhile. A refusal with a
    dead process's calls counted counts the tenant again from the bill first (looked for at most
    every DEAD_CHECK_SECONDS per tenant: 0 here)."""
    monkeypatch.setattr(redis_state, "DEAD_CHECK_SECONDS", 0.0)
    accounts.create_tenant("acme")
    dead, alive = states[0], states[1]
    for _ in range(3):
        assert dead.spend("acme", 4) == 0.0  # admitted, never answered
    accounts.record_usage([UsageRecord(tenant_id="acme", operation="detect", status=200)])
    dead.settle("acme", billed=True)  # one of them answered and billed: 1 row, 2 in flight
    assert alive.spend("acme", 4) == 0.0  # 4 counted: 1 billed, 2 in flight on the dead one, this one
    assert alive.spend("acme", 4) > 0  # refused: the process that counted 2 is alive
    dead.close()
    served = [alive.spend("acme", 4) for _ in range(3)]
    assert served[:2] == [0.0, 0.0] and served[2] > 0  # 1 billed + 1 in flight + 2 more: 4
    assert _counter(alive, "acme") == 4


def _counter(state: RedisState, tenant: str) -> int:
    return int(state.redis.get(state.name("quota", tenant, time.strftime("%Y-%m", time.gmtime()))) or 0)


def test_a_call_served_while_a_counter_is_seeded_counts_once(states: list[RedisState], accounts: Accounts,
                                                             redis_server) -> None:
    """The month's first call seeds the counter from the bill; another process's call admitted on the
    new counter and billed while the seeding process is still at work is in the counter once."""
    accounts.create_tenant("acme")
    other = states[1]
    served: list[str] = []

    def serve_one() -> None:  # another process: admitted, recorded, settled
        assert other.spend("acme", 5) == 0.0
        accounts.record_usage([UsageRecord(tenant_id="acme", operation="detect", status=200)])
        other.settle("acme", billed=True)
        served.append("acme")

    def count_calls(tenant: str) -> int:
        if not served and other.redis.exists(other.name("quota", tenant, time.strftime("%Y-%m", time.gmtime()))):
            serve_one()  # the counter is set: a call on it, while this process reads the bill again
        return accounts.calls_this_month(tenant)

    settings = ServiceSettings(database_url="sqlite://", redis_url=redis_server.url)
    seeding = RedisState(settings, count_calls, DATABASE)
    try:
        assert seeding.spend("acme", 5) == 0.0  # seeds the counter, then counts this call
        if not served:
            serve_one()
        assert _counter(seeding, "acme") == 2  # one billed, one in flight
    finally:
        seeding.close()


def test_a_call_billed_while_the_bill_is_read_is_counted(states: list[RedisState], accounts: Accounts,
                                                         redis_server) -> None:
    """A counter seeded again (its key lost) while a call is in flight: the call's row comes after the
    bill was read and it settles before the counter is set, so it is in neither the rows read nor the
    calls in flight, and still counted."""
    accounts.create_tenant("acme")
    serving = states[1]
    assert serving.spend("acme", 3) == 0.0  # in flight
    serving.redis.delete(serving.name("quota", "acme", time.strftime("%Y-%m", time.gmtime())))
    settled: list[str] = []

    def count_calls(tenant: str) -> int:
        billed = accounts.calls_this_month(tenant)
        if not settled:  # after the first read, before the counter is set
            accounts.record_usage([UsageRecord(tenant_id="acme", operation="detect", status=200)])
            serving.settle("acme", billed=True)
            settled.append(tenant)
        return billed

    settings = ServiceSettings(database_url="sqlite://", redis_url=redis_server.url)
    seeding = RedisState(settings, count_calls, DATABASE)
    try:
        assert seeding.spend("acme", 3) == 0.0
        assert _counter(seeding, "acme") == 2  # one billed, one in flight
        assert seeding.spend("acme", 3) == 0.0
        assert seeding.spend("acme", 3) > 0
    finally:
        seeding.close()


def test_a_revocation_reaches_every_process_s_key_cache_at_once(states: list[RedisState], accounts: Accounts) -> None:
    accounts.create_tenant("acme", monthly_quota=100)
    issued = accounts.create_key("acme", ["read"])
    loads: list[str] = []

    def load(token: str):  # the database's answer, counted
        loads.append(token)
        return accounts.authenticate(token)

    def everyone():  # each process's principal of the key
        return [state.principal(issued.token, load) for state in states]

    assert all(p is not None and p.monthly_quota == 100 for p in everyone())
    assert len(loads) == 1  # one lookup, cached for the others: the cache this test is about
    server = Accounts(accounts.engine, keys_changed=states[0].forget_keys)  # a server's accounts
    server.update_tenant("acme", monthly_quota=5)
    assert [p.monthly_quota if p else None for p in everyone()] == [5, 5, 5]  # not 100 for a second
    rotated = server.rotate_key(issued.prefix)
    assert everyone() == [None, None, None]
    assert all(state.principal(rotated.token, load) is not None for state in states)
    server.revoke_key(rotated.prefix)
    assert [state.principal(rotated.token, load) for state in states] == [None, None, None]


def test_versions_before_and_after_key_generations_read_only_their_own_cached_lookups(states: list[RedisState],
                                                                                      accounts: Accounts) -> None:
    """In a rolling upgrade, a server of the version before read this version's cached lookup (under
    the same name, another shape) as a principal: a KeyError, a 500 for every call of the key."""
    accounts.create_tenant("acme")
    issued = accounts.create_key("acme", ["read"])
    digest = hashlib.sha256(issued.token.encode()).hexdigest()
    assert states[0].principal(issued.token, accounts.authenticate) is not None
    old_name = states[0].name("key", digest)  # where the version before (71e77a7) reads and writes
    assert states[0].redis.get(old_name) is None  # nothing an older server would misread
    states[0].redis.set(old_name, json.dumps({"tenant_id": "acme", "key_id": issued.id, "scopes": ["admin"],
                                              "rate_per_second": 20.0, "burst": 40, "monthly_quota": None}))
    principal = states[1].principal(issued.token, accounts.authenticate)  # an older server's entry: not read
    assert principal is not None and principal.scopes == frozenset({"read"})


def test_a_key_revoked_by_the_cli_is_refused_by_the_servers_at_once(redis_server, accounts: Accounts,
                                                                     caplog: pytest.LogCaptureFixture) -> None:
    redis_server.flush()
    accounts.create_tenant("acme")
    keys = [accounts.create_key("acme", ["read"]) for _ in range(3)]
    settings = ServiceSettings(database_url="sqlite://", redis_url=redis_server.url)
    server = RedisState(settings, accounts.calls_this_month, database_identity(accounts.engine))
    try:
        assert all(server.principal(k.token, accounts.authenticate) is not None for k in keys)
        operator_accounts(accounts.engine, redis_server.url).revoke_key(keys[0].prefix)  # `faceatlas admin key revoke`
        assert server.principal(keys[0].token, accounts.authenticate) is None
        operator_accounts(accounts.engine, redis_server.url).delete_tenant("acme")
        assert server.principal(keys[1].token, accounts.authenticate) is None
        # Redis unreachable for the operator: the revocation is committed all the same, and said
        accounts.create_tenant("beta")
        key = accounts.create_key("beta", ["read"])
        assert operator_accounts(accounts.engine, "redis://127.0.0.1:1/0").revoke_key(key.prefix)
        assert accounts.authenticate(key.token) is None
        assert "cannot be told of a revoked key" in caplog.text
    finally:
        server.close()


def test_redis_down_refuses_then_recovers(states: list[RedisState], accounts: Accounts, redis_server) -> None:
    accounts.create_tenant("acme")
    assert states[0].spend("acme", 100) == 0.0
    states[0].settle("acme", billed=True)
    accounts.record_usage([UsageRecord(tenant_id="acme", operation="detect", status=200)])
    redis_server.stop()
    try:
        with pytest.raises(StateUnavailable):
            states[0].take(1, 10.0, 10)
        with pytest.raises(StateUnavailable):
            states[1].spend("acme", 100)
    finally:
        redis_server.start()
    assert states[0].take(1, 10.0, 10) == 0.0  # the client reconnects by itself
    _wait_out_the_restart_grace(states[0])  # Redis restarted empty: every process beats once
    assert states[1].spend("acme", 2) == 0.0  # reseeded from the bill: 1 + this one
    assert states[2].spend("acme", 2) > 0


def test_calls_in_flight_across_a_restart_of_redis_keep_the_counter_at_the_bill(
        states: list[RedisState], accounts: Accounts, redis_server) -> None:
    """Calls counted before Redis restarted empty, counted again by their process's heartbeat and
    settled after another process seeded the counter again: one billed is counted once, one that
    failed (5xx) gives its count back, and the calls counted since are kept, so the quota holds."""
    accounts.create_tenant("acme")
    assert [states[0].spend("acme", 4) for _ in range(2)] == [0.0, 0.0]  # A and B admitted on process 0
    redis_server.stop()
    redis_server.start()  # empty
    _wait_out_the_restart_grace(states[0])
    assert states[1].spend("acme", 4) == 0.0  # C on process 1: seeded from the bill (0), then counted
    assert states[0].spend("acme", 4) == 0.0  # D on process 0, in flight
    accounts.record_usage([UsageRecord(tenant_id="acme", operation="detect", status=200)])
    states[0].settle("acme", billed=True)  # A answered and billed after the seed
    accounts.record_usage([UsageRecord(tenant_id="acme", operation="detect", status=503)])
    states[0].settle("acme", billed=False)  # B failed: not billed, its count was never in this counter
    counter = states[2].redis.get(states[2].name("quota", "acme", time.strftime("%Y-%m", time.gmtime())))
    assert int(counter or 0) == 3  # A on the bill, C and D in flight
    assert states[2].spend("acme", 4) == 0.0
    assert states[2].spend("acme", 4) > 0  # quota 4: A, C, D and this one


def test_calls_in_flight_across_a_restart_of_redis_are_counted_before_anyone_elses(
        monkeypatch: pytest.MonkeyPatch, redis_server, accounts: Accounts) -> None:
    """Redis restarts empty while four calls of a tenant with a quota of 6 run on one process: the
    other processes' calls of that tenant wait (503, Retry-After) until every process has beaten
    once, which counts those four again; then two more are granted, not six, and the bill of all
    six answered equals the quota."""
    monkeypatch.setattr(redis_state, "HEARTBEAT_SECONDS", 0.2)
    _generous_restart_grace(monkeypatch)
    redis_server.flush()
    settings = ServiceSettings(database_url="sqlite://", redis_url=redis_server.url)
    busy, other = (RedisState(settings, accounts.calls_this_month, DATABASE),
                   RedisState(settings, accounts.calls_this_month, DATABASE))
    try:
        accounts.create_tenant("acme")
        assert [busy.spend("acme", 6) for _ in range(4)] == [0.0] * 4  # admitted, answers pending
        redis_server.stop()
        redis_server.start()  # empty
        with pytest.raises(StateUnavailable) as waiting:
            other.spend("acme", 6)
        assert waiting.value.retry_after == redis_state.restart_grace()
        assert other.spend("globex", None) == 0.0  # no quota: nothing to wait for
        _wait_out_the_restart_grace(other)
        granted = [state.spend("acme", 6) == 0.0 for state in (other, busy, other, busy)]
        assert sum(granted) == 2  # 6 minus the 4 in flight
        accounts.record_usage([UsageRecord(tenant_id="acme", operation="detect", status=200) for _ in range(6)])
        for state in [busy] * 4 + [state for state, ok in zip((other, busy, other, busy), granted, strict=True) if ok]:
            state.settle("acme", billed=True)
        counter = other.redis.get(other.name("quota", "acme", time.strftime("%Y-%m", time.gmtime())))
        assert int(counter or 0) == 6
        assert other.reconcile() >= 1 and other.spend("acme", 6) > 0  # the bill says 6: nothing more
    finally:
        busy.close()
        other.close()


@pytest.mark.parametrize("state", ["memory", "redis"])
def test_idempotent_enrol_and_revocation_through_the_app(state: str, redis_server, accounts: Accounts, fast_analyzer,
                                                         examples: Path, tmp_path: Path) -> None:
    redis_server.flush()
    accounts.create_tenant("acme")
    admin = accounts.create_key("acme", ["admin"], rate_per_second=100, burst=100).token
    url = str(accounts.engine.url.render_as_string(hide_password=False))
    settings = ServiceSettings(database_url=url, index_dir=tmp_path / "indexes", pack="scrfd-mbf", workers=1,
                               redis_url=redis_server.url if state == "redis" else None)
    image = (examples / "examples" / "obama-480p.jpg").read_bytes()
    with TestClient(create_app(settings, analyzer=fast_analyzer),
                    headers={"Authorization": f"Bearer {admin}"}) as http:
        assert http.post("/v1/collections", json={"name": "staff"}).status_code == 201
        files = {"image": ("o.jpg", image, "image/jpeg")}
        path = "/v1/collections/staff/subjects/obama/faces"
        first = http.post(path, files=files, headers={"Idempotency-Key": "enrol-1"})
        again = http.post(path, files=files, headers={"Idempotency-Key": "enrol-1"})
        assert first.status_code == again.status_code == 201
        assert first.json() == again.json() and len(first.json()["face_ids"]) == 1
        client = FaceAtlasClient("http://testserver", admin, http=http)  # the Python client's retry
        retried = client.enrol("staff", "obama", image, idempotency_key="enrol-1")
        assert retried.face_ids == tuple(first.json()["face_ids"])
        other = http.post(path, files=files, headers={"Idempotency-Key": "enrol-2"})
        assert other.json()["face_ids"] != first.json()["face_ids"]
        subject = http.get("/v1/collections/staff/subjects/obama").json()
        assert subject["faces"] == 2  # two keys, two enrols; the retry enrolled nothing
        calls = [r for r in accounts.usage_report("acme") if r["operation"] == "enrol"]
        assert sum(r["calls"] for r in calls) == 2  # the replay is not billed

        # revocation holds within the key cache's second
        prefix = admin.split("_")[1]
        assert http.get("/v1/collections").status_code == 200  # cached now
        accounts.revoke_key(prefix)
        time.sleep(settings.key_cache_seconds + 0.1)
        assert http.get("/v1/collections").status_code == 401


class TcpProxy:
    """A loopback TCP forwarder to the test PostgreSQL: ``down()`` cuts every connection and
    refuses new ones (the database unreachable), ``up()`` serves again on the same port."""

    def __init__(self, target: tuple[str, int]) -> None:
        self.target = target
        self.port = 0
        self._sockets: list[socket.socket] = []
        self._listener: socket.socket | None = None
        self.up()

    def up(self) -> None:
        listener = socket.socket()
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self.port))
        listener.listen(64)
        self.port = listener.getsockname()[1]
        self._listener = listener
        threading.Thread(target=self._accept, args=(listener,), daemon=True).start()

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return
            server = socket.create_connection(self.target)
            self._sockets += [client, server]
            for a, b in ((client, server), (server, client)):
                threading.Thread(target=self._pipe, args=(a, b), daemon=True).start()

    @staticmethod
    def _pipe(source: socket.socket, sink: socket.socket) -> None:
        try:
            while data := source.recv(65536):
                sink.sendall(data)
        except OSError:
            pass
        for sock in (source, sink):
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)

    def down(self) -> None:
        assert self._listener is not None
        with contextlib.suppress(OSError):
            self._listener.shutdown(socket.SHUT_RDWR)  # wakes the accept() blocked on it (Linux)
        self._listener.close()
        for sock in self._sockets:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            sock.close()
        self._sockets.clear()


def _behind_a_proxy(redis_server, accounts: Accounts, index_dir: Path, *,
                    redis_state: bool = True) -> tuple[str, TcpProxy, ServiceSettings]:
    """A fresh tenant ``acme`` with an admin key, and the service's settings reaching its database
    through a TCP proxy the test can take down (Redis flushed, as every test here starts; without
    ``redis_state``, the service keeps its shared state in its memory)."""
    redis_server.flush()
    accounts.create_tenant("acme")
    token = accounts.create_key("acme", ["admin"], rate_per_second=100, burst=100).token
    url = accounts.engine.url
    proxy = TcpProxy((url.host or "127.0.0.1", url.port or 5432))
    proxied = url.set(host="127.0.0.1", port=proxy.port).render_as_string(hide_password=False)
    return token, proxy, ServiceSettings(database_url=proxied, index_dir=index_dir, pack="scrfd-mbf", workers=1,
                                         redis_url=redis_server.url if redis_state else None)


def test_database_down_answers_503_and_serves_nothing_unbilled(redis_server, accounts: Accounts, fast_analyzer,
                                                               examples: Path, tmp_path: Path) -> None:
    token, proxy, settings = _behind_a_proxy(redis_server, accounts, tmp_path / "indexes")
    image = {"image": ("o.jpg", (examples / "examples" / "obama-240p.jpg").read_bytes(), "image/jpeg")}
    with TestClient(create_app(settings, analyzer=fast_analyzer),
                    headers={"Authorization": f"Bearer {token}"}) as http:
        assert http.post("/v1/detect", files=image).status_code == 200  # the key is cached in Redis now
        proxy.down()
        try:
            detect = http.post("/v1/detect", files=image)  # computed, but its usage row cannot be written
            listing = http.get("/v1/collections")
        finally:
            proxy.up()
        assert (detect.status_code, detect.json()["error"]["code"]) == (503, "database_unavailable")
        assert (listing.status_code, listing.json()["error"]["code"]) == (503, "database_unavailable")
        assert http.post("/v1/detect", files=image).status_code == 200  # back by itself
    proxy.down()
    assert accounts.calls_this_month("acme") == 2  # the two answered detects; nothing unbilled went out
    month = time.strftime("%Y-%m", time.gmtime())
    assert int(redis.Redis.from_url(redis_server.url).get(_quota_key(accounts, month))) == 2


def _quota_key(accounts: Accounts, month: str) -> str:
    """acme's quota counter in Redis, as the app over ``accounts``'s database names it."""
    return f"{redis_state.key_prefix(database_identity(accounts.engine))}quota:acme:{month}"


def _rows(accounts: Accounts) -> dict[str, list]:
    """What the database holds (read directly, not through the proxy): the gallery's collections,
    subjects and face ids, and the service's usage and audit rows."""
    with Session(accounts.engine) as session:
        return {
            "collections": sorted(session.scalars(select(Collection.name))),
            "subjects": sorted(session.scalars(select(Subject.external_id))),
            "faces": sorted(session.scalars(select(FaceRecord.id))),
            "usage": list(session.execute(select(UsageRecord.operation, UsageRecord.status).order_by(UsageRecord.id))),
            "audit": list(session.execute(select(AuditRecord.action, AuditRecord.target).order_by(AuditRecord.id))),
        }


def test_a_write_while_the_database_is_down_answers_503_and_leaves_nothing(
        redis_server, accounts: Accounts, fast_analyzer, examples: Path, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """An enrolment and a new collection while the database is unreachable (from the start, or
    gone between the call's first read and its write): 503 ``database_unavailable``; once the
    database is back, no collection, subject, face, index entry, usage or audit row of theirs, and
    their Idempotency-Keys are free again (a retry runs; it does not replay the failure)."""
    index_dir = tmp_path / "indexes"
    token, proxy, settings = _behind_a_proxy(redis_server, accounts, index_dir)
    obama = {"image": ("o.jpg", (examples / "examples" / "obama-240p.jpg").read_bytes(), "image/jpeg")}
    lin = {"image": ("l.png", (examples / "examples" / "lin-manuel-miranda.png").read_bytes(), "image/png")}
    enrol_lin = "/v1/collections/staff/subjects/lin/faces"
    cut_while_computing = threading.Event()
    computing = InferencePool.largest_face  # what an enrol of the largest face runs

    async def largest_face(self: InferencePool, *args: Any, **kwargs: Any) -> Any:
        if cut_while_computing.is_set():  # the call has read its collection: the database goes before its write
            cut_while_computing.clear()
            proxy.down()
        return await computing(self, *args, **kwargs)

    monkeypatch.setattr(InferencePool, "largest_face", largest_face)
    app = create_app(settings, analyzer=fast_analyzer)
    with TestClient(app, headers={"Authorization": f"Bearer {token}"}) as http:
        assert http.post("/v1/collections", json={"name": "staff"}).status_code == 201
        assert http.post("/v1/collections/staff/subjects/obama/faces", files=obama).status_code == 201
        found = http.post("/v1/collections/staff/search", files=obama).json()  # the app's index is loaded
        assert found["results"][0]["matches"][0]["external_id"] == "obama"
        before = _rows(accounts)
        month = time.strftime("%Y-%m", time.gmtime())
        quota = int(redis.Redis.from_url(redis_server.url).get(_quota_key(accounts, month)))

        proxy.down()
        try:
            failed = [http.post(enrol_lin, files=lin, headers={"Idempotency-Key": "enrol-lin"}),
                      http.post("/v1/collections", json={"name": "visitors"},
                                headers={"Idempotency-Key": "create-visitors"})]
        finally:
            proxy.up()
        cut_while_computing.set()
        try:
            failed.append(http.post(enrol_lin, files=lin, headers={"Idempotency-Key": "enrol-lin-2"}))
        finally:
            proxy.up()
        assert not cut_while_computing.is_set()  # the third call lost the database on its way
        for answer in failed:
            assert (answer.status_code, answer.json()["error"]["code"]) == (503, "database_unavailable"), answer.text

        # the database is back: nothing of the three calls is in it, nor in Redis's quota, nor in the index
        assert _rows(accounts) == before
        assert (before["subjects"], len(before["faces"])) == (["obama"], 1)
        assert int(redis.Redis.from_url(redis_server.url).get(_quota_key(accounts, month))) == quota
        assert http.get("/v1/collections/staff/subjects/lin").status_code == 404
        assert http.get("/v1/collections/visitors").status_code == 404
        staff = app.state.gallery.for_tenant("svc:acme")  # the index the app searches, as it is in memory
        with staff._sessions() as session:
            assert sorted(staff._indexes.get(session, staff._collection(session, "staff")).ids()) == before["faces"]
        ranked = http.post("/v1/collections/staff/search", files=lin, params={"rank_only": "true"}).json()
        assert [m["external_id"] for m in ranked["results"][0]["matches"]] == ["obama"]

        # the failed calls' Idempotency-Keys were released: a retry runs, once
        retried = http.post(enrol_lin, files=lin, headers={"Idempotency-Key": "enrol-lin"})
        created = http.post("/v1/collections", json={"name": "visitors"},
                            headers={"Idempotency-Key": "create-visitors"})
        assert (retried.status_code, created.status_code) == (201, 201), retried.text + created.text
        assert "Idempotent-Replayed" not in retried.headers and len(retried.json()["face_ids"]) == 1
    proxy.down()
    faces = before["faces"] + retried.json()["face_ids"]
    assert _rows(accounts)["faces"] == faces
    direct = accounts.engine.url.render_as_string(hide_password=False)
    with Gallery.open(direct, tenant="svc:acme", index_dir=index_dir) as gallery, gallery._sessions() as session:
        assert sorted(gallery._indexes.get(session, gallery._collection(session, "staff")).ids()) == faces


def _eventually(check: Any, seconds: float = 10.0) -> None:
    """Wait for ``check()`` to hold (what a process's background retries do once the database is back)."""
    deadline = time.monotonic() + seconds
    while not check():
        assert time.monotonic() < deadline, f"not done within {seconds:g} s"
        time.sleep(0.1)


@contextlib.contextmanager
def _lost_after_commit(state: str, redis_server, accounts: Accounts, fast_analyzer, tmp_path: Path,
                       monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[TestClient, Any]]:
    """The app behind a proxy (its shared state in ``state``: memory or Redis), with collection
    ``staff``, and ``cut(call)``: makes the call while the database drops right after the call's
    change committed (in its audit record's write, or its erasure of a deleted subject's id from
    the audit trail, whichever comes first), and brings the database back once it is answered."""
    token, proxy, settings = _behind_a_proxy(redis_server, accounts, tmp_path / "indexes",
                                             redis_state=state == "redis")
    armed = threading.Event()
    auditing, erasing = Accounts.audit, Accounts.erase_subject

    def drop() -> None:
        if armed.is_set():  # the change committed: the database goes before its bookkeeping
            armed.clear()
            proxy.down()

    def audit(self: Accounts, *args: Any, **kwargs: Any) -> Any:
        drop()
        return auditing(self, *args, **kwargs)

    def erase_subject(self: Accounts, *args: Any, **kwargs: Any) -> Any:
        drop()
        return erasing(self, *args, **kwargs)

    def cut(call: Any) -> Any:
        armed.set()
        try:
            return call()
        finally:
            proxy.up()
            assert not armed.is_set()  # the database went after the commit

    monkeypatch.setattr(Accounts, "audit", audit)
    monkeypatch.setattr(Accounts, "erase_subject", erase_subject)
    with TestClient(create_app(settings, analyzer=fast_analyzer),
                    headers={"Authorization": f"Bearer {token}"}) as http:
        assert http.post("/v1/collections", json={"name": "staff"}).status_code == 201
        yield http, cut


_LIN = "/v1/collections/staff/subjects/lin"


@pytest.mark.parametrize("state", ["memory", "redis"])
def test_a_database_lost_right_after_an_enrol_committed_answers_201_and_a_retry_enrols_nothing_more(
        state: str, redis_server, accounts: Accounts, fast_analyzer, examples: Path, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """The database drops once an enrolment committed, before its audit records are written: the
    call answers its 201, not 503 "nothing was written" with its Idempotency-Key released (a retry
    with the key enrolled the photo a second time). The records wait in the process and are
    written once the database is back; the enrolment is billed once."""
    lin = {"image": ("l.png", (examples / "examples" / "lin-manuel-miranda.png").read_bytes(), "image/png")}
    obama = {"image": ("o.jpg", (examples / "examples" / "obama-240p.jpg").read_bytes(), "image/jpeg")}
    with _lost_after_commit(state, redis_server, accounts, fast_analyzer, tmp_path, monkeypatch) as (http, cut):
        before = _rows(accounts)
        enrolled = cut(lambda: http.post(f"{_LIN}/faces", files=lin, headers={"Idempotency-Key": "enrol-lin"}))
        assert enrolled.status_code == 201, enrolled.text
        face_ids = enrolled.json()["face_ids"]
        assert len(face_ids) == 1 and _rows(accounts)["faces"] == before["faces"] + face_ids

        retried = http.post(f"{_LIN}/faces", files=lin, headers={"Idempotency-Key": "enrol-lin"})
        assert (retried.status_code, retried.headers.get("Idempotent-Replayed")) == (201, "true"), retried.text
        assert retried.json() == enrolled.json()
        assert _rows(accounts)["faces"] == before["faces"] + face_ids  # enrolled once
        _eventually(lambda: [r for r in _rows(accounts)["audit"] if r[1] == "staff/lin"]
                    == [("subject.create", "staff/lin"), ("face.enrol", "staff/lin")])
        assert http.post("/v1/collections/staff/search", files=obama).status_code == 200  # a row written: the kept too
        assert [status for operation, status in _rows(accounts)["usage"] if operation == "enrol"] == [201]  # billed
        assert http.app.state.follow_ups.waiting == 0


@pytest.mark.parametrize("state", ["memory", "redis"])
def test_a_database_lost_right_after_a_delete_committed_answers_204_and_the_erasure_is_finished(
        state: str, redis_server, accounts: Accounts, fast_analyzer, examples: Path, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """The database drops once a subject's deletion committed, before its id leaves the audit
    trail: the call answers its 204 (a retry with its key replays it), not 503 "nothing was
    written" (whose retry answered 404: the erasure could never be finished). Once the database
    is back the audit trail names the subject no more, and the stored answer of its enrolment
    replays a 404 naming nothing (it replayed the erased face's id)."""
    lin = {"image": ("l.png", (examples / "examples" / "lin-manuel-miranda.png").read_bytes(), "image/png")}
    with _lost_after_commit(state, redis_server, accounts, fast_analyzer, tmp_path, monkeypatch) as (http, cut):
        before = _rows(accounts)
        enrolled = http.post(f"{_LIN}/faces", files=lin, headers={"Idempotency-Key": "enrol-lin"})
        assert enrolled.status_code == 201, enrolled.text
        face_id = str(enrolled.json()["face_ids"][0])

        deleted = cut(lambda: http.delete(_LIN, headers={"Idempotency-Key": "delete-lin"}))
        assert deleted.status_code == 204, deleted.text
        assert _rows(accounts)["faces"] == before["faces"] and "lin" not in _rows(accounts)["subjects"]
        again = http.delete(_LIN, headers={"Idempotency-Key": "delete-lin"})
        assert (again.status_code, again.headers.get("Idempotent-Replayed")) == (204, "true"), again.text
        _eventually(lambda: ("subject.delete", "staff/[erased]") in _rows(accounts)["audit"])
        trail = _rows(accounts)["audit"]
        assert not [record for record in trail if "lin" in record[1]], trail
        replay = http.post(f"{_LIN}/faces", files=lin, headers={"Idempotency-Key": "enrol-lin"})
        assert (replay.status_code, replay.json()["error"]["code"]) == (404, "not_found"), replay.text
        assert face_id not in replay.text and "lin" not in replay.text
        assert _rows(accounts)["faces"] == before["faces"]
        assert http.app.state.follow_ups.waiting == 0


def test_many_processes_without_redis_are_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    from typer.testing import CliRunner

    from faceatlas.cli.main import app

    monkeypatch.delenv("FACEATLAS_REDIS_URL", raising=False)
    result = CliRunner().invoke(app, ["serve", "--processes", "2", "--db", "sqlite:///unused.db"])
    assert result.exit_code == 2
    assert result.stderr.startswith("error (usage): --processes 2 needs FACEATLAS_REDIS_URL") and not result.stdout


def test_more_processes_than_the_machine_can_hold_are_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    """`serve --processes 500` started 500 model-loading processes: the kernel's OOM killer took
    them and the tests beside them, and those left ran on as orphans."""
    import os

    from typer.testing import CliRunner

    from faceatlas.cli.main import app

    monkeypatch.setenv("FACEATLAS_REDIS_URL", "redis://127.0.0.1:1/0")  # never reached: refused before
    most = 4 * (os.cpu_count() or 1)
    result = CliRunner().invoke(app, ["serve", "--processes", str(most + 1), "--db", "sqlite:///unused.db"])
    assert result.exit_code == 2, result.output
    assert f"--processes is 1 to {most} on this machine" in result.stderr and not result.stdout


def test_an_erasure_s_scan_of_the_stored_answers_holds_no_call_back() -> None:
    """A single server keeps the answers in memory: an erasure matched every stored answer while it
    held the lock that every metered call's quota takes (0.9 s at 50,000 answers, all traffic
    waiting). The answers are matched outside it; one that changed meanwhile is left as it is."""
    from faceatlas.service.shared_state import MemoryState

    state = MemoryState(lambda tenant: 0, ServiceSettings(database_url="sqlite://"))
    for n in range(3):
        assert state.begin_idempotent("acme", f"k{n}", "call") is None
        state.finish_idempotent("acme", f"k{n}", StoredAnswer(201, b'{"id": "%d"}' % n, "application/json",
                                                              f"/v1/x/{n}"), "call")
    served: list[float] = []

    def match(answer: StoredAnswer) -> bool:
        if not served:  # a metered call meanwhile, from another thread: served, not waiting on the erasure
            caller = threading.Thread(target=lambda: served.append(state.spend("acme", None)))
            caller.start()
            caller.join(timeout=5)
            assert served == [0.0], "a call waited on the erasure's scan"
        return answer.path != "/v1/x/2"

    gone = StoredAnswer(404, b"{}", "application/json", "/v1/x")
    assert state.replace_answers("acme", match, gone) == 2
    assert [state.begin_idempotent("acme", f"k{n}", "call").status for n in range(3)] == [404, 404, 201]  # type: ignore[union-attr]


def test_an_operator_s_revocation_stands_whatever_else_fails(accounts: Accounts, caplog: pytest.LogCaptureFixture,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    """`admin key revoke --db URL` exited 2 on a server setting it does not use (an allow-list entry
    that is wrong), and an error telling Redis of it after the commit said the command failed
    although the key was revoked."""
    from typer.testing import CliRunner

    from faceatlas.cli.main import app

    accounts.create_tenant("acme")
    key = accounts.create_key("acme", ["read"])
    url = accounts.engine.url.render_as_string(hide_password=False)
    monkeypatch.setenv("FACEATLAS_URL_ALLOWLIST", "ftp://nowhere")  # wrong, and no setting of this command's
    done = CliRunner().invoke(app, ["admin", "key", "revoke", key.prefix, "--db", url])
    assert done.exit_code == 0, done.output
    assert accounts.authenticate(key.token) is None
    monkeypatch.delenv("FACEATLAS_URL_ALLOWLIST")
    other = accounts.create_key("acme", ["read"])
    monkeypatch.setenv("FACEATLAS_REDIS_URL", "redis://127.0.0.1:1/0?socket_timeout=soon")  # an option Redis refuses
    done = CliRunner().invoke(app, ["admin", "key", "revoke", other.prefix, "--db", url])
    assert done.exit_code == 0, done.output
    assert accounts.authenticate(other.token) is None and "could not be told of a revoked key" in caplog.text


def test_a_database_down_is_said_once_by_the_reconciliation_without_a_traceback(
        redis_server, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    """With the database down, the quota reconciliation logged a warning with a 40-line traceback every
    period (an operator probe: one each 60 s for as long as the outage lasted). It says it once, in
    one line, and once more when the database answers again; a counter to reconcile is there."""
    redis_server.flush()
    down = create_database_engine("postgresql+psycopg://nobody@127.0.0.1:1/none", connect_timeout=2)
    answers = {"yet": False}

    def calls_this_month(tenant: str) -> int:  # the bill, read from a database that does not answer, then does
        if answers["yet"]:
            return 0
        with down.connect() as connection:
            return int(connection.execute(text("SELECT 0")).scalar_one())

    settings = ServiceSettings(database_url="sqlite://", redis_url=redis_server.url, quota_reconcile_seconds=0.2)
    caplog.set_level(logging.WARNING, logger="faceatlas")
    state = RedisState(settings, calls_this_month, DATABASE)
    try:
        state.redis.set(state.name("quota", "acme", month_of()), 3)
        deadline = time.monotonic() + 30
        while not any("quota reconciliation failed" in r.getMessage() for r in caplog.records):
            assert time.monotonic() < deadline, caplog.text
            time.sleep(0.1)
        time.sleep(3)  # many periods of 0.2 s, each failing (a connect refused at once)
        answers["yet"] = True
        while not any("works again" in r.getMessage() for r in caplog.records):
            assert time.monotonic() < deadline, caplog.text
            time.sleep(0.1)
    finally:
        state.close()
        down.dispose()
    failed = [r for r in caplog.records if "quota reconciliation failed" in r.getMessage()]
    assert len(failed) == 1 and failed[0].exc_info is None, caplog.text
    assert "cannot be reached" in failed[0].getMessage() and "nobody" not in failed[0].getMessage()
