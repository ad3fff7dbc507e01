"""Two deployments (two databases: staging and production) sharing one Redis database: each
database's state lives under its own id (``faceatlas:<database id>:...``), so nothing mixes — a
tenant of the same name has a quota counter of its own in each, the same Idempotency-Key enrols
in each, key number 1 of each has a bucket of its own, and a revocation in one is not undone by a
lookup the other cached. The check that one database's servers share one Redis still holds.

What a probe found before: DB2's ``acme`` refused ``quota_exceeded`` with nothing billed once DB1's
used its quota, each reconciliation reset the shared counter from one database's bill (DB1 billed
190 against a quota of 100), DB2's enrol replayed DB1's stored 201 while DB2 had no such
collection, and same-numbered keys shared a bucket."""

from __future__ import annotations

import fcntl
import os
import threading
import time
from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path

import pytest
import redis
from fastapi.testclient import TestClient
from sqlalchemy import update
from sqlalchemy.orm import Session, sessionmaker

from faceatlas.db import create_database_engine
from faceatlas.errors import InvalidSetting
from faceatlas.gallery.models import database_id
from faceatlas.gallery.models import migrate as migrate_gallery
from faceatlas.service import create_app, redis_state
from faceatlas.service.accounts import Accounts
from faceatlas.service.db import ApiKey, migrate
from faceatlas.service.lease import ServerLease
from faceatlas.settings import ServiceSettings

QUOTA = 2


def _database_id(url: str) -> str:
    """The id the database's servers scope its state in Redis by (``gallery_identity``)."""
    engine = create_database_engine(url)
    try:
        migrate_gallery(engine)
        return database_id(sessionmaker(engine))
    finally:
        engine.dispose()


@dataclass
class Deployment:
    """One database and its app in this process, on the shared Redis."""

    http: TestClient
    accounts: Accounts
    url: str
    tokens: dict[str, str]

    def get(self, token: str, path: str = "/v1/collections") -> int:
        return self.http.get(path, headers={"Authorization": f"Bearer {self.tokens[token]}"}).status_code

    def error(self, token: str) -> tuple[int, str]:
        answer = self.http.get("/v1/collections", headers={"Authorization": f"Bearer {self.tokens[token]}"})
        return answer.status_code, answer.json()["error"]["code"] if answer.status_code >= 400 else ""

    def reconcile(self) -> None:
        """Every counter of this database from its bill (a server's own run may hold the lock a moment)."""
        shared = self.http.app.state.shared  # type: ignore[attr-defined]
        deadline = time.monotonic() + 10
        while shared.reconcile() == 0 and time.monotonic() < deadline:
            time.sleep(0.05)


def _accounts(accounts: Accounts) -> dict[str, str]:
    """The same tenants and key numbers in each database: key 1 a slow bucket, key 2 a tenant with a
    quota, key 3 an admin for enrols, key 4 one to revoke."""
    accounts.create_tenant("slow")
    accounts.create_tenant("acme", monthly_quota=QUOTA)
    accounts.create_tenant("beta")
    issued = {
        "slow": accounts.create_key("slow", ["read"], rate_per_second=0.001, burst=2),
        "acme": accounts.create_key("acme", ["read"], rate_per_second=500, burst=500),
        "beta": accounts.create_key("beta", ["admin"], rate_per_second=500, burst=500),
        "revoked": accounts.create_key("beta", ["read"], rate_per_second=500, burst=500),
    }
    assert [key.id for key in issued.values()] == [1, 2, 3, 4]
    return {name: key.token for name, key in issued.items()}


@pytest.fixture
def deployments(redis_server, new_database, fast_analyzer, tmp_path: Path) -> Iterator[list[Deployment]]:
    redis_server.flush()
    made: list[Deployment] = []
    with ExitStack() as stack:
        for n in (1, 2):
            folder = tmp_path / f"db{n}"
            folder.mkdir()
            url = stack.enter_context(new_database("sqlite", folder))
            engine = create_database_engine(url)
            stack.callback(engine.dispose)
            migrate(engine)
            accounts = Accounts(engine)
            tokens = _accounts(accounts)
            settings = ServiceSettings(database_url=url, index_dir=folder / "indexes", pack="scrfd-mbf", workers=1,
                                       redis_url=redis_server.url)
            http = stack.enter_context(TestClient(create_app(settings, analyzer=fast_analyzer)))
            made.append(Deployment(http, accounts, url, tokens))
        # the key to revoke: the same token in both databases (a key table copied from one to the other)
        first, second = made
        with Session(first.accounts.engine) as session:
            key = session.get(ApiKey, 4)
            assert key is not None
            prefix, secret_hash = key.prefix, key.secret_hash
        with Session(second.accounts.engine) as session:
            session.execute(update(ApiKey).where(ApiKey.id == 4).values(prefix=prefix, secret_hash=secret_hash))
            session.commit()
        second.tokens["revoked"] = first.tokens["revoked"]
        yield made


def test_two_databases_on_one_redis_keep_their_state_apart(deployments: list[Deployment], redis_server,
                                                            examples: Path) -> None:
    first, second = deployments
    ids = _database_id(first.url), _database_id(second.url)
    assert ids[0] != ids[1]

    # key 1 of each database: a bucket of its own (burst 2, a trickle)
    assert [first.get("slow") for _ in range(3)] == [200, 200, 429]
    assert [second.get("slow") for _ in range(2)] == [200, 200]
    assert second.get("slow") == 429

    # acme of each database: a quota counter of its own, reconciled from its own bill
    assert [first.error("acme") for _ in range(QUOTA + 1)] == [(200, "")] * QUOTA + [(429, "quota_exceeded")]
    assert second.error("acme") == (200, "")  # DB1's acme used its quota up; DB2's has 1 call of 2
    first.reconcile()
    second.reconcile()  # from DB2's bill (1): DB1's counter is not DB2's
    assert first.error("acme") == (429, "quota_exceeded")
    assert [second.error("acme") for _ in range(2)] == [(200, ""), (429, "quota_exceeded")]
    assert first.accounts.calls_this_month("acme") == second.accounts.calls_this_month("acme") == QUOTA

    # the same Idempotency-Key of beta in each database: two enrols, no answer replayed across
    image = (examples / "examples" / "obama-240p.jpg").read_bytes()
    faces = []
    for deployment in deployments:
        headers = {"Authorization": f"Bearer {deployment.tokens['beta']}", "Idempotency-Key": "same-key"}
        created = deployment.http.post("/v1/collections", json={"name": "staff"}, headers=headers)
        assert created.status_code == 201, created.text
        headers["Idempotency-Key"] = "enrol-1"
        enrolled = deployment.http.post("/v1/collections/staff/subjects/obama/faces", headers=headers,
                                        files={"image": ("o.jpg", image, "image/jpeg")})
        assert enrolled.status_code == 201, enrolled.text
        again = deployment.http.post("/v1/collections/staff/subjects/obama/faces", headers=headers,
                                     files={"image": ("o.jpg", image, "image/jpeg")})
        assert again.json() == enrolled.json()  # within one database, the retry is replayed
        subject = deployment.http.get("/v1/collections/staff/subjects/obama", headers=headers)
        assert subject.status_code == 200 and subject.json()["faces"] == 1
        faces.append(enrolled.json()["face_ids"])
        assert sum(r["calls"] for r in deployment.accounts.usage_report("beta") if r["operation"] == "enrol") == 1
    # a tenant's answers forgotten (its deletion) in one database stay in the other
    client = redis.Redis.from_url(redis_server.url)
    assert redis_state.forget_scope(redis_server.url, ids[0], "beta") == 2
    assert len(list(client.scan_iter(match=f"faceatlas:{ids[1]}:idem:beta:*"))) == 2

    # the same token in both databases, revoked in DB1: DB2's cached lookup never serves DB1
    assert first.get("revoked") == 200 and second.get("revoked") == 200
    first.accounts.revoke_key(first.tokens["revoked"].split("_")[1])
    time.sleep(1.1)  # the key cache's second
    assert second.get("revoked") == 200  # DB2's key: cached again for a second
    assert first.get("revoked") == 401
    assert second.get("revoked") == 200

    # every key FaceAtlas wrote is one database's
    names = {name.decode() for name in client.scan_iter(match="*")}
    assert names and all(name.startswith((f"faceatlas:{ids[0]}:", f"faceatlas:{ids[1]}:")) for name in names), names


def test_servers_of_one_database_still_share_one_redis(redis_server, new_database, tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    """Two databases on one Redis each start (an id of their own); a server of one of them on another
    Redis database number is refused, as before; an older FaceAtlas's id there is named."""
    monkeypatch.setattr(redis_state, "HEARTBEAT_SECONDS", 0.2)  # restart_grace: 1.2 s
    redis_server.flush()
    other_redis = redis_server.url.rsplit("/", 1)[0] + "/1"
    with ExitStack() as stack:
        urls = []
        for n in (1, 2):
            (tmp_path / f"d{n}").mkdir()
            urls.append(stack.enter_context(new_database("sqlite", tmp_path / f"d{n}")))
        clients = [redis.Redis.from_url(url) for url in (redis_server.url, other_redis)]
        for client in clients:
            stack.callback(client.close)

        def lease(url: str, client: redis.Redis) -> ServerLease:
            held = ServerLease.take(url, redis_identity=lambda alone: redis_state.deployment(
                client, _database_id(url), alone))
            stack.callback(held.release)
            return held

        lease(urls[0], clients[0])
        lease(urls[1], clients[0])  # another database on the same Redis: its own deployment id
        lease(urls[0], clients[0])  # a second server of the first database, same Redis
        ids = [_database_id(url) for url in urls]
        deployments = {clients[0].get(f"faceatlas:{i}:deployment") for i in ids}
        assert len(deployments) == 2 and None not in deployments
        with pytest.raises(InvalidSetting, match="use another Redis") as refused:
            lease(urls[0], clients[1])  # the first database's servers count in /0
        assert "older FaceAtlas" not in str(refused.value)
        clients[1].set("faceatlas:deployment", "legacy")  # what servers before database ids set
        with pytest.raises(InvalidSetting, match="older FaceAtlas"):
            lease(urls[0], clients[1])
        clients[1].flushdb()


def test_servers_started_at_once_on_postgresql_name_one_deployment(new_database, tmp_path: Path) -> None:
    """Three servers started at the same moment on a new PostgreSQL database each saw the others'
    holds on it, none was alone to make the deployment id in Redis, and each failed waiting for it
    ("use another Redis": a CI run). Alone now means that no other server has named its deployment:
    a server holding the database but still starting does not keep the first from making it."""
    from sqlalchemy import text

    from faceatlas.service.lease import LOCK_CLASS, _key

    with new_database("postgresql", tmp_path) as url:
        engine = create_database_engine(url)
        with engine.connect() as starting:  # another server, holding the database, not yet at its deployment
            schema = starting.execute(text("SELECT current_schema()")).scalar()
            assert starting.execute(text("SELECT pg_try_advisory_lock_shared(:a, :b)"),
                                    {"a": LOCK_CLASS, "b": _key(schema)}).scalar()
            starting.commit()
            said: list[bool] = []
            first = ServerLease.take(url, redis_identity=lambda alone: said.append(alone) or "deployment-1")
            second = ServerLease.take(url, redis_identity=lambda alone: said.append(alone) or "deployment-1")
            first.release()
            second.release()
        engine.dispose()
    assert said == [True, False]


def test_servers_started_at_once_on_sqlite_wait_out_the_moment_another_holds_it_alone(tmp_path: Path) -> None:
    """A server with Redis starting on an SQLite file holds the file alone a moment (to learn whether
    it is the first), then shares it; another starting in that moment was refused as if beside a
    server without Redis. It waits that moment out; a hold that lasts is still refused."""
    database = tmp_path / "faces.db"
    url = f"sqlite:///{database}"
    starting = os.open(database, os.O_RDWR | os.O_CREAT)
    try:
        fcntl.flock(starting, fcntl.LOCK_EX)  # the other server, between its two steps
        shared = threading.Timer(0.3, lambda: fcntl.flock(starting, fcntl.LOCK_SH))
        shared.start()
        said: list[bool] = []
        second = ServerLease.take(url, redis_identity=lambda alone: said.append(alone) or "deployment-1")
        second.release()
        shared.join()
        assert said == [False]
        fcntl.flock(starting, fcntl.LOCK_EX)  # a server without Redis: alone for good
        with pytest.raises(InvalidSetting, match="without FACEATLAS_REDIS_URL"):
            ServerLease.take(url, redis_identity=lambda alone: "deployment-1")
    finally:
        os.close(starting)
