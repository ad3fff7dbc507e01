"""Three real server processes (``faceatlas serve`` on three ports, each with its own index
folder, as on three machines) over one PostgreSQL and one Redis: a key's rate and a tenant's
quota hold globally, revocation holds everywhere within a second, enrols through every process
are all found by searches on every other (none lost, none twice), a write retried with its
``Idempotency-Key`` on another process acts once, Redis restarted under load answers 503
``state_unavailable`` while down and then recovers with every served call billed and the quota
held, and a process killed with -9 under load loses no answered call from the bill."""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING

import httpx
import pytest

from faceatlas.db import create_database_engine
from faceatlas.gallery import database_identity
from faceatlas.service.accounts import Accounts
from faceatlas.service.db import migrate
from faceatlas.service.redis_state import RedisState, key_prefix
from faceatlas.settings import ServiceSettings

if TYPE_CHECKING:
    from tests.service.conftest import RedisServer

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")
SURGE_QUOTA = 60  # the monthly quota of the tenant loaded across Redis restarts
RESTARTS = 4


@dataclass
class Cluster:
    urls: list[str]
    processes: list
    accounts: Accounts
    redis: RedisServer
    keys: dict[str, str]

    def get(self, i: int, key: str, path: str, **kwargs) -> httpx.Response:
        return httpx.get(self.urls[i % 3] + path, headers={"Authorization": f"Bearer {self.keys[key]}"},
                         timeout=30, **kwargs)

    def post(self, i: int, key: str, path: str, **kwargs) -> httpx.Response:
        headers = {"Authorization": f"Bearer {self.keys[key]}", **kwargs.pop("headers", {})}
        return httpx.post(self.urls[i % 3] + path, headers=headers, timeout=60, **kwargs)

    def counter(self, tenant: str) -> int:
        import redis

        prefix = key_prefix(database_identity(self.accounts.engine))  # the servers' database
        value = redis.Redis.from_url(self.redis.url).get(f"{prefix}quota:{tenant}:{datetime.utcnow():%Y-%m}")
        return int(value or 0)


@pytest.fixture(scope="module")
def cluster(redis_server: RedisServer, new_database, shared: Path, service_tools,
            tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    folder = tmp_path_factory.mktemp("scale")
    redis_server.flush()
    with new_database("postgresql", folder) as database_url:
        engine = create_database_engine(database_url)
        migrate(engine)
        accounts = Accounts(engine)
        accounts.create_tenant("acme")
        accounts.create_tenant("capped", monthly_quota=9)
        accounts.create_tenant("load")
        accounts.create_tenant("surge", monthly_quota=SURGE_QUOTA)
        keys = {
            "admin": accounts.create_key("acme", ["admin"], rate_per_second=1000, burst=1000).token,
            "slow": accounts.create_key("acme", ["read"], rate_per_second=0.01, burst=6).token,
            "revoked": accounts.create_key("acme", ["read"], rate_per_second=100, burst=100).token,
            "capped": accounts.create_key("capped", ["read"], rate_per_second=1000, burst=1000).token,
            "load": accounts.create_key("load", ["detect"], rate_per_second=1000, burst=1000).token,
            "surge": accounts.create_key("surge", ["detect"], rate_per_second=1000, burst=1000).token,
        }
        logs = [folder / f"p{i}" / "server.log" for i in range(3)]
        for log in logs:
            log.parent.mkdir()
        with ThreadPoolExecutor(3) as pool:
            started = list(pool.map(lambda log: service_tools.start(
                database_url, shared, log, FACEATLAS_REDIS_URL=redis_server.url, FACEATLAS_WORKERS="1"), logs))
        processes = [p for p, _ in started]
        yield Cluster([u for _, u in started], processes, accounts, redis_server, keys)
        for process in processes:
            if process.poll() is None:
                service_tools.stop(process)
        engine.dispose()


def _burst(cluster: Cluster, key: str, calls: int) -> list[httpx.Response]:
    with ThreadPoolExecutor(9) as pool:
        return list(pool.map(lambda i: cluster.get(i, key, "/v1/collections"), range(calls)))


def test_a_keys_rate_holds_across_processes(cluster: Cluster) -> None:
    answers = _burst(cluster, "slow", 30)  # burst 6, a trickle of 0.01 token/s
    statuses = [a.status_code for a in answers]
    assert statuses.count(200) == 6, statuses
    assert statuses.count(429) == 24
    assert {a.json()["error"]["code"] for a in answers if a.status_code == 429} == {"rate_limited"}


def test_a_tenants_quota_holds_across_processes(cluster: Cluster) -> None:
    answers = _burst(cluster, "capped", 30)  # quota 9 calls this month
    statuses = [a.status_code for a in answers]
    assert statuses.count(200) == 9, statuses
    assert {a.json()["error"]["code"] for a in answers if a.status_code == 429} == {"quota_exceeded"}
    assert cluster.accounts.calls_this_month("capped") == 9 == cluster.counter("capped")


def test_revocation_holds_on_every_process_within_a_second(cluster: Cluster) -> None:
    assert [cluster.get(i, "revoked", "/v1/collections").status_code for i in range(3)] == [200] * 3
    cluster.accounts.revoke_key(cluster.keys["revoked"].split("_")[1])
    time.sleep(1.05)
    assert [cluster.get(i, "revoked", "/v1/collections").status_code for i in range(3)] == [401] * 3


def _people(shared: Path, count: int) -> list[Path]:
    root = shared / "data" / "lfw" / "images"
    names = sorted(p.name for p in root.iterdir() if (p / f"{p.name}_0002.jpg").exists())
    return [root / name / f"{name}_0001.jpg" for name in names[:count]]


def test_enrols_through_every_process_are_found_by_every_process(cluster: Cluster, shared: Path) -> None:
    assert cluster.post(0, "admin", "/v1/collections", json={"name": "crowd"}).status_code == 201
    people = _people(shared, 9)

    def enrol(i: int) -> tuple[dict, dict]:
        path = f"/v1/collections/crowd/subjects/{people[i].parent.name}/faces"
        files = {"image": (people[i].name, people[i].read_bytes(), "image/jpeg")}
        idem = {"Idempotency-Key": f"crowd-{i}"}
        first = cluster.post(i, "admin", path, files=files, headers=idem)
        retry = cluster.post(i + 1, "admin", path, files=files, headers=idem)  # the retry lands elsewhere
        assert first.status_code == retry.status_code == 201, (first.text, retry.text)
        return first.json(), retry.json()

    with ThreadPoolExecutor(9) as pool:
        answers = list(pool.map(enrol, range(len(people))))
    assert all(first == retry for first, retry in answers)
    subjects = cluster.get(2, "admin", "/v1/collections/crowd/subjects", params={"limit": 100}).json()
    assert sorted(s["external_id"] for s in subjects["subjects"]) == sorted(p.parent.name for p in people)
    assert all(s["faces"] == 1 for s in subjects["subjects"])  # none lost, none twice

    def search(i: int, person: Path) -> list[str]:
        files = {"image": (person.name, person.read_bytes(), "image/jpeg")}
        found = cluster.post(i, "admin", "/v1/collections/crowd/search", files=files,
                             params={"k": 1, "rank_only": True})
        assert found.status_code == 200, found.text
        return [m["external_id"] for m in found.json()["results"][0]["matches"]]

    for i, person in enumerate(people):  # enrolled through process i % 3, searched on the next one
        assert search(i + 1, person) == [person.parent.name]
    # erasure is never served stale: deleted through one process, gone on the others at once
    gone = people[0].parent.name
    response = httpx.delete(f"{cluster.urls[0]}/v1/collections/crowd/subjects/{gone}",
                            headers={"Authorization": f"Bearer {cluster.keys['admin']}"})
    assert response.status_code == 204
    assert search(1, people[0]) != [gone] and search(2, people[0]) != [gone]


def test_a_write_retried_on_another_process_acts_once(cluster: Cluster) -> None:
    key = {"Idempotency-Key": "scale-create"}
    answers = [cluster.post(i, "admin", "/v1/collections", json={"name": "once"}, headers=key) for i in range(3)]
    assert [a.status_code for a in answers] == [201] * 3 and answers[1].content == answers[2].content == \
        answers[0].content
    assert [a.headers.get("idempotent-replayed") for a in answers] == [None, "true", "true"]
    other = cluster.post(1, "admin", "/v1/collections", json={"name": "twice"}, headers=key)
    assert (other.status_code, other.json()["error"]["code"]) == (422, "idempotency_key_reused")
    cluster.post(0, "admin", "/v1/collections/once/subjects", json={"id": "ada"})
    headers = {"Authorization": f"Bearer {cluster.keys['admin']}", "Idempotency-Key": "scale-del"}
    deletes = [httpx.delete(f"{cluster.urls[i]}/v1/collections/once/subjects/ada", headers=headers, timeout=30)
               for i in (2, 0)]
    assert [d.status_code for d in deletes] == [204, 204]  # the retry on another process: not 404
    names = [c["name"] for c in cluster.get(1, "admin", "/v1/collections").json()["collections"]]
    assert "once" in names and "twice" not in names


@pytest.mark.slow  # 22 s; CI runs test_scale.py's slow set
def test_redis_restart_under_load_refuses_bills_and_keeps_the_quota(cluster: Cluster, examples: Path) -> None:
    """redis-server killed and started again (empty: no persistence), four times, while twelve threads
    send metered calls of a tenant with a monthly quota to the three processes: calls while it is
    down answer 503 ``state_unavailable`` (refused, not billed); every call served is on the bill
    and nothing else is; the quota holds across the restarts (the counter, seeded again from the
    bill, is never below it, also for calls admitted before a restart and answered after it) and
    the counter equals the bill once reconciled."""
    image = (examples / "examples" / "obama-240p.jpg").read_bytes()
    answers: list[tuple[str, int, str | None]] = []  # (phase sent and answered in, status, error code)
    errors: list[Exception] = []
    phase = "up"
    lock = threading.Lock()
    done = threading.Event()

    def client(n: int) -> None:
        i = n
        while not done.is_set():
            i += 1
            sent = phase
            try:
                answer = cluster.post(i, "surge", "/v1/detect", files={"image": ("o.jpg", image, "image/jpeg")})
            except httpx.HTTPError as exc:
                with lock:
                    errors.append(exc)
                continue
            code = answer.json()["error"]["code"] if answer.status_code >= 400 else None
            with lock:
                answers.append((sent if sent == phase else "edge", answer.status_code, code))
            if answer.status_code in (429, 503):
                time.sleep(0.02)  # a client told to retry after a while

    def seen(status: int, in_phase: str | None = None) -> int:
        with lock:
            return sum(1 for p, s, _ in answers if s == status and in_phase in (None, p))

    def wait_until(condition: Callable[[], bool], seconds: float) -> None:
        deadline = time.monotonic() + seconds  # by counts, not time: a loaded machine is slower
        while not condition() and time.monotonic() < deadline:
            time.sleep(0.02)

    # twelve clients, four per process: calls wait in the inference queues after they were counted,
    # so a quick restart finds some in flight (the counter seeded afterwards has not seen them)
    threads = [threading.Thread(target=client, args=(n,)) for n in range(12)]
    for thread in threads:
        thread.start()
    try:
        wait_until(lambda: seen(200) >= 8, 60)
        for restart in range(RESTARTS):
            phase = "down"  # before the kill: a call refused between the kill and this line was counted "up"
            cluster.redis.stop()  # SIGKILL, calls in flight
            try:
                if restart == 0:
                    wait_until(lambda: seen(503, "down") >= 1, 10)  # refused while it is down
                else:
                    time.sleep(0.05)  # a quick one: calls admitted before it are answered after it
            finally:
                phase = "restarted"
                cluster.redis.start()  # empty: no counters, no buckets, no heartbeats, no instance
            before = seen(200)
            wait_until(lambda before=before: seen(200) >= before + 3 or seen(429) > 0, 30)
        wait_until(lambda: seen(429, "restarted") >= 1, 60)  # served up to the quota, then refused
    finally:
        done.set()
        for thread in threads:
            thread.join()
    statuses = [s for _, s, _ in answers]
    assert not errors, errors[:3]
    assert set(statuses) <= {200, 429, 503}, statuses
    assert {c for _, s, c in answers if s == 503} == {"state_unavailable"}
    assert {c for _, s, c in answers if s == 429} == {"quota_exceeded"}
    assert seen(200, "up") >= 8 and seen(503, "down") >= 1 and seen(200, "restarted") >= 1
    assert seen(429, "restarted") >= 1 and seen(503, "up") == 0
    served, bill = statuses.count(200), cluster.accounts.calls_this_month("surge")
    assert served == bill  # every call served is billed; a refused one (503, 429) is not
    assert bill <= SURGE_QUOTA  # the quota held across the restart
    assert bill <= cluster.counter("surge")  # seeded again from the bill: never below it
    # exact once reconciled (what a server does every FACEATLAS_QUOTA_RECONCILE_SECONDS)
    settings = ServiceSettings(database_url="sqlite://", redis_url=cluster.redis.url)
    state = RedisState(settings, cluster.accounts.calls_this_month, database_identity(cluster.accounts.engine))
    try:
        deadline = time.monotonic() + 10
        while state.reconcile() == 0 and time.monotonic() < deadline:  # a server's own run may hold the lock
            time.sleep(0.1)
    finally:
        state.close()
    assert cluster.counter("surge") == bill


def test_kill_9_under_load_loses_no_answered_call(cluster: Cluster, examples: Path) -> None:
    image = (examples / "examples" / "obama-240p.jpg").read_bytes()
    billed = errors = 0
    lock = threading.Lock()
    done = threading.Event()  # set once enough calls were answered after the kill (or after 60 s)

    def client(n: int) -> None:
        nonlocal billed, errors
        i = n
        while not done.is_set():
            i += 1
            try:
                answer = cluster.post(i, "load", "/v1/detect", files={"image": ("o.jpg", image, "image/jpeg")})
            except httpx.HTTPError:
                with lock:
                    errors += 1
                continue
            with lock:
                billed += answer.status_code < 500

    def answered_at_least(n: int, seconds: float) -> None:  # by counts, not time: a loaded machine is slower
        deadline = time.monotonic() + seconds
        while billed < n and time.monotonic() < deadline:
            time.sleep(0.05)

    threads = [threading.Thread(target=client, args=(n,)) for n in range(6)]
    for thread in threads:
        thread.start()
    answered_at_least(8, 60)
    victim = cluster.processes[0]
    victim.kill()  # SIGKILL: no shutdown, no flush
    answered_at_least(billed + 8, 60)
    done.set()
    for thread in threads:
        thread.join()
    rows = cluster.accounts.calls_this_month("load")
    assert billed > 10 and errors >= 1
    # every answered call is on the bill; a surplus only from calls cut off by the kill (recorded,
    # then the process died before the answer left)
    assert billed <= rows <= billed + errors
    # the dead process's calls in flight stop counting once its heartbeat is gone: counter == bill
    settings = ServiceSettings(database_url="sqlite://", redis_url=cluster.redis.url)
    state = RedisState(settings, cluster.accounts.calls_this_month, database_identity(cluster.accounts.engine))
    try:
        for name in state.redis.scan_iter(match=state.name("alive", f"*-{victim.pid}-*")):
            state.redis.delete(name)  # what its 15 s expiry does
        deadline = time.monotonic() + 10
        while state.reconcile() == 0 and time.monotonic() < deadline:  # a server's own periodic run holds the lock
            time.sleep(0.1)
        assert cluster.counter("load") == cluster.accounts.calls_this_month("load") == rows
    finally:
        state.close()


@pytest.mark.slow
def test_serve_processes_runs_n_engines_and_replaces_a_killed_one(redis_server: RedisServer, new_database,
                                                                  shared: Path, service_tools, tmp_path: Path) -> None:
    """``faceatlas serve --processes 2``: two processes on one port, each loading its engine once;
    one killed with -9 is replaced by uvicorn's supervisor and the port keeps serving."""
    import signal
    import subprocess
    import sys

    with new_database("postgresql", tmp_path) as database_url:
        engine = create_database_engine(database_url)
        migrate(engine)
        accounts = Accounts(engine)
        accounts.create_tenant("acme")
        token = accounts.create_key("acme", ["read"], rate_per_second=100, burst=100).token
        port, log = service_tools.free_port(), tmp_path / "serve.log"
        env = {**os.environ, "FACEATLAS_DATABASE_URL": database_url, "FACEATLAS_PACK": "scrfd-mbf",
               "FACEATLAS_MODEL_DIR": str(shared / "models"), "FACEATLAS_THREADS": "1",
               "FACEATLAS_REDIS_URL": redis_server.url, "FACEATLAS_INDEX_DIR": str(tmp_path / "indexes")}
        server = subprocess.Popen([sys.executable, "-m", "faceatlas.cli", "serve", "--port", str(port),
                                   "--processes", "2"], env=env, stdout=log.open("w"), stderr=subprocess.STDOUT)
        try:
            def started() -> int:
                return log.read_text().count("Application startup complete")

            deadline = time.monotonic() + 180
            while started() < 2 and time.monotonic() < deadline:
                time.sleep(0.5)
            assert started() == 2, log.read_text()[-3000:]
            url = f"http://127.0.0.1:{port}"
            headers = {"Authorization": f"Bearer {token}"}
            assert httpx.get(f"{url}/readyz").status_code == 200
            children = Path(f"/proc/{server.pid}/task/{server.pid}/children").read_text().split()
            workers = [int(pid) for pid in children
                       if "spawn_main" in Path(f"/proc/{pid}/cmdline").read_text()]
            assert len(workers) == 2
            os.kill(workers[0], signal.SIGKILL)
            deadline = time.monotonic() + 180
            while started() < 3 and time.monotonic() < deadline:
                time.sleep(0.5)
            assert started() == 3  # a new process, its engine loaded
            assert all(httpx.get(f"{url}/v1/collections", headers=headers).status_code == 200 for _ in range(10))
            children = Path(f"/proc/{server.pid}/task/{server.pid}/children").read_text().split()
            workers = [int(pid) for pid in children if "spawn_main" in Path(f"/proc/{pid}/cmdline").read_text()]
            import socket

            trickle = socket.create_connection(("127.0.0.1", port))  # an upload that never ends
            trickle.sendall(f"POST /v1/collections HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\r\n"
                            "Content-Type: application/json\r\nContent-Length: 1000000\r\n\r\n{".encode())
            server.kill()  # the supervisor killed: its workers stop by themselves, none left on the port
            server.wait(timeout=10)
            deadline = time.monotonic() + 45  # the graceful shutdown gives the trickling upload 30 s
            while any(Path(f"/proc/{pid}").exists() for pid in workers) and time.monotonic() < deadline:
                time.sleep(0.2)
            assert [pid for pid in workers if Path(f"/proc/{pid}").exists()] == []
            trickle.close()
        finally:
            server.terminate()
            server.wait(timeout=30)
            engine.dispose()
