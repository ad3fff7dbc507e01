"""The bill when its usage row cannot be written (PostgreSQL): a write call that happened is answered
as it happened and billed once the database takes the row (the next call, or the shutdown); a call
that did nothing is answered 503 ``database_unavailable``, neither billed nor counted.

The failure is the one a probe found: ``svc_usage`` locked by another session and the server's
connection waiting on it terminated (``pg_terminate_backend``), at every try, while the gallery's
tables stay writable: the enrolment is committed, its answer kept for its Idempotency-Key, and only
the bill's insert fails. It had answered 503 "not served" for a face enrolled, a retry with the key
replayed the 201 (billed 0 times), and a retry without one enrolled twice."""

from __future__ import annotations

import io
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from PIL import Image
from sqlalchemy import create_engine, text
from sqlalchemy.exc import IntegrityError, OperationalError

from faceatlas.db import create_database_engine
from faceatlas.service import create_app
from faceatlas.service.accounts import Accounts, FollowUps
from faceatlas.service.db import migrate
from faceatlas.settings import ServiceSettings


@contextmanager
def usage_insert_fails(database_url: str) -> Iterator[list[int]]:
    """``svc_usage`` locked by another session while every connection that waits on it is
    terminated (a killed connection, each try); the backends terminated are listed."""
    locker = create_engine(database_url)
    admin = create_engine(database_url, isolation_level="AUTOCOMMIT")
    terminated: list[int] = []
    stop = threading.Event()

    def terminate_waiting() -> None:
        with admin.connect() as connection:
            while not stop.wait(0.01):
                waiting = connection.execute(text(
                    "SELECT pid FROM pg_locks WHERE relation = 'svc_usage'::regclass AND NOT granted")).scalars()
                for pid in waiting:
                    connection.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": pid})
                    terminated.append(pid)

    with locker.connect() as lock:
        lock.execute(text("LOCK TABLE svc_usage IN ACCESS EXCLUSIVE MODE"))
        killer = threading.Thread(target=terminate_waiting)
        killer.start()
        try:
            yield terminated
        finally:
            stop.set()
            killer.join()
            lock.rollback()  # the lock is released
    locker.dispose()
    admin.dispose()


def _usage(accounts: Accounts, operation: str) -> tuple[int, int]:
    """(billed calls, failed calls) of ``operation`` on acme's bill."""
    rows = [r for r in accounts.usage_report("acme") if r["operation"] == operation]
    return sum(r["calls"] for r in rows), sum(r["failed"] for r in rows)


def test_a_write_done_while_its_usage_row_cannot_be_written_is_answered_and_billed(
        new_database, fast_analyzer, examples: Path, tmp_path: Path) -> None:
    image = ("obama.jpg", (examples / "examples" / "obama-240p.jpg").read_bytes(), "image/jpeg")
    blank = io.BytesIO()
    Image.new("RGB", (320, 240), (128, 128, 128)).save(blank, "JPEG")
    faceless = ("blank.jpg", blank.getvalue(), "image/jpeg")
    with new_database("postgresql", tmp_path) as url:
        engine = create_database_engine(url)
        migrate(engine)
        accounts = Accounts(engine)
        accounts.create_tenant("acme")
        token = accounts.create_key("acme", ["write"], rate_per_second=500, burst=500).token
        settings = ServiceSettings(database_url=url, index_dir=tmp_path / "indexes", pack="scrfd-mbf", workers=1)
        app = create_app(settings, analyzer=fast_analyzer)
        with TestClient(app, headers={"Authorization": f"Bearer {token}"}) as http:
            assert http.post("/v1/collections", json={"name": "staff"}).status_code == 201  # the quota count read
            enrol = "/v1/collections/staff/subjects/obama/faces"
            key = {"Idempotency-Key": "enrol-obama"}
            with usage_insert_fails(url) as terminated:
                first = http.post(enrol, files={"image": image}, headers=key)
                tries = len(set(terminated))
                # what did nothing is not served: a read, a write refused (no face)
                read = http.get("/v1/collections/staff/subjects/obama")
                refused = http.post("/v1/collections/staff/subjects/nobody/faces", files={"image": faceless})
            assert first.status_code == 201, first.text  # the face was enrolled: said so
            assert tries >= 2  # the enrol's usage row was tried again (on a new connection), and failed
            assert "idempotent-replayed" not in first.headers
            for answer in (read, refused):
                assert (answer.status_code, answer.json()["error"]["code"]) == (503, "database_unavailable")
            assert app.state.usage.waiting == 1  # the enrol's row, kept until the database takes it
            assert _usage(accounts, "enrol") == (0, 0)

            again = http.post(enrol, files={"image": image}, headers=key)  # a retry: replayed, not billed
            assert (again.status_code, again.content) == (201, first.content)
            assert again.headers["idempotent-replayed"] == "true"
            assert http.get("/v1/collections/staff/subjects/obama").json()["faces"] == 1  # enrolled once
            assert app.state.usage.waiting == 0  # that call's row written, then the one kept
            assert _usage(accounts, "enrol") == (1, 0)  # billed once: the call, not its replay
            assert _usage(accounts, "subjects.get") == (1, 0)  # the 503 read neither billed nor recorded

            # a row still kept at the shutdown is written then
            with usage_insert_fails(url):
                second = http.post("/v1/collections/staff/subjects/biden/faces", files={"image": image})
            assert second.status_code == 201, second.text
            assert app.state.usage.waiting == 1
        assert _usage(accounts, "enrol") == (2, 0)  # each enrol billed once; the faceless one never
        with engine.connect() as connection:
            statuses = connection.execute(text(
                "SELECT status FROM svc_usage WHERE operation = 'enrol' ORDER BY id")).scalars().all()
        assert statuses == [201, 201]
        engine.dispose()


def test_the_bookkeeping_of_a_committed_change_waits_in_order_while_the_database_is_away() -> None:
    """``FollowUps``: a step the database refuses (dropped) is kept and retried in the background;
    a step given while some wait runs after them (an erasure kept never runs after a later record
    of the same id); a step failing for another reason (a bug) raises, as it would have."""
    down = threading.Event()
    down.set()
    done: list[str] = []

    def step(name: str) -> Any:
        def run() -> None:
            if down.is_set():
                raise OperationalError("INSERT", {}, Exception("server closed the connection unexpectedly"))
            done.append(name)
        return run

    in_order = FollowUps(retries=(60,))  # no background retry meanwhile: the next run writes the first
    try:
        assert in_order.run("first", step("first")) is False
        down.clear()
        assert in_order.run("second", step("second")) is True  # the first, waiting, is written before it
        assert done == ["first", "second"] and in_order.waiting == 0
    finally:
        in_order.close()
    follow_ups = FollowUps(retries=(0.05,))
    try:
        down.set()
        assert follow_ups.run("third", step("third")) is False
        down.clear()
        deadline = time.monotonic() + 5
        while follow_ups.waiting:  # written by the background retries
            assert time.monotonic() < deadline
            time.sleep(0.02)
        assert done == ["first", "second", "third"]

        def broken() -> None:
            raise IntegrityError("INSERT", {}, Exception("a bug"))

        with pytest.raises(IntegrityError):
            follow_ups.run("broken", broken)
        assert follow_ups.waiting == 0
    finally:
        follow_ups.close()


def _dropped() -> OperationalError:
    return OperationalError("INSERT", {}, Exception("server closed the connection unexpectedly"))


class _Timeout(Exception):
    sqlstate = "57014"  # PostgreSQL's statement timeout: the statement's own, not the connection's


def test_a_step_that_fails_for_good_blocks_no_step_behind_it(caplog: pytest.LogCaptureFixture) -> None:
    """A step that failed for good (a statement timeout, a bug that is no database error) was
    retried forever at the head of the queue, every later audit record waiting behind it unwritten
    while their calls were answered; one raising TypeError ended the retrying thread, and every
    later step re-raised it to an unrelated request. The queue had no bound either."""
    done: list[str] = []
    tries = {"timeout": 0, "bug": 0}

    def failing(kind: str) -> Any:
        def run() -> None:
            tries[kind] += 1
            if tries[kind] == 1:
                raise _dropped()  # kept first: the database dropped
            if kind == "timeout":
                raise OperationalError("UPDATE svc_audit", {}, _Timeout("canceling statement due to timeout"))
            raise TypeError("a bug")
        return run

    follow_ups = FollowUps(retries=(60,))
    try:
        assert follow_ups.run("timeout", failing("timeout")) is False
        assert follow_ups.run("bug", failing("bug")) is False  # behind it
        assert follow_ups.run("record", lambda: done.append("record")) is True  # both dropped, logged
        assert done == ["record"] and follow_ups.waiting == 0 and tries == {"timeout": 2, "bug": 2}
        assert "timeout failed; dropped" in caplog.text and "bug failed; dropped" in caplog.text
        with pytest.raises(OperationalError):  # not kept: trying it again only repeats it
            follow_ups.run("now", lambda: (_ for _ in ()).throw(
                OperationalError("UPDATE", {}, _Timeout("canceling statement due to timeout"))))
        follow_ups.MAX_TRIES = 3
        always = follow_ups.run("never", lambda: (_ for _ in ()).throw(_dropped()))
        assert always is False and follow_ups.flush() is False and follow_ups.flush() is False
        assert follow_ups.flush() is True and follow_ups.waiting == 0  # its third try again drops it
        assert "never could not be written in 3 tries" in caplog.text
        follow_ups.MAX_WAITING = 2
        for name in ("a", "b", "c"):
            follow_ups.run(name, lambda: (_ for _ in ()).throw(_dropped()))
        assert follow_ups.waiting == 2 and "c is dropped" in caplog.text
    finally:
        follow_ups.close()


def test_an_audit_record_written_late_names_nothing_erased_meanwhile(tmp_path: Path) -> None:
    """A record kept while the database dropped (this process's enrol of staff/kim) was written after
    another process deleted the subject and erased its ids: the erased name was back in the trail,
    for good; a deleted tenant's records came back the same way."""
    engine = create_database_engine(f"sqlite:///{tmp_path / 'service.db'}")
    migrate(engine)
    follow_ups = FollowUps(retries=(60,))
    server = Accounts(engine, follow_ups=follow_ups)
    other = Accounts(engine)  # another process (or the CLI)
    for tenant in ("acme", "gone"):
        other.create_tenant(tenant)
    real_audit = server.audit
    down = threading.Event()
    down.set()

    def audit(*args: Any, **kwargs: Any) -> None:
        if down.is_set():  # the database dropped: for this process's writes of the trail
            raise _dropped()
        real_audit(*args, **kwargs)

    server.audit = audit  # type: ignore[method-assign]
    erased = {"acme": {"staff/kim"}}
    server.subject_gone = lambda tenant, target: target in erased.get(tenant, set())
    try:
        server.audit_committed("subject.create", "staff/kim", "acme", None)
        server.audit_committed("face.enrol", "staff/kim", "acme", None, {"faces": 1})
        server.audit_committed("subject.create", "staff/ana", "gone", None)
        assert follow_ups.waiting >= 3
        other.erase_subject("acme", "staff/kim", keep_ids=False)  # its deletion, elsewhere, meanwhile
        other.delete_tenant("gone")
        down.clear()
        assert follow_ups.flush() is True
        with engine.connect() as connection:
            rows = connection.execute(text("SELECT tenant_id, action, target FROM svc_audit")).all()
        assert not [row for row in rows if "kim" in row.target], rows
        assert [row.action for row in rows if row.tenant_id == "gone"] == ["tenant.delete"], rows
        assert ("acme", "subject.create", "staff/[erased]") in [tuple(row) for row in rows]
    finally:
        follow_ups.close()
        engine.dispose()


def test_a_call_that_failed_on_a_locked_database_answers_without_waiting_on_it_again(
        fast_analyzer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A write refused by a locked SQLite file (another process's transaction) answered 503 only after
    its busy timeout and then the busy timeout of each try to write its usage row (49 s in all with
    the 30 s default, a proxy's 60 s near): a call that failed on the database is not recorded, as
    when the database is down."""
    import sqlite3

    import faceatlas.db

    monkeypatch.setitem(faceatlas.db.create_database_engine.__kwdefaults__, "busy_s", 0.3)
    path = tmp_path / "service.db"
    engine = create_database_engine(f"sqlite:///{path}")
    migrate(engine)
    accounts = Accounts(engine)
    accounts.create_tenant("acme")
    token = accounts.create_key("acme", ["write"], rate_per_second=500, burst=500).token
    settings = ServiceSettings(database_url=f"sqlite:///{path}", index_dir=tmp_path / "indexes", pack="scrfd-mbf",
                               workers=1)
    app = create_app(settings, analyzer=fast_analyzer)
    tries: list[int] = []
    with TestClient(app, headers={"Authorization": f"Bearer {token}"}) as http:
        real_record = app.state.accounts.record_usage

        def record_usage(rows: Any) -> Any:
            tries.append(len(rows))
            return real_record(rows)

        monkeypatch.setattr(app.state.accounts, "record_usage", record_usage)
        locker = sqlite3.connect(path, timeout=0)
        try:
            locker.execute("BEGIN EXCLUSIVE")  # another process's write transaction, held
            refused = http.post("/v1/collections", json={"name": "staff"})
        finally:
            locker.rollback()
            locker.close()
        assert (refused.status_code, refused.json()["error"]["code"]) == (503, "database_unavailable"), refused.text
        assert tries == []  # its usage row was not waited for (three tries of 0.3 s each before)
        assert http.post("/v1/collections", json={"name": "staff"}).status_code == 201  # the file free again
        assert tries == [1] and app.state.usage.waiting == 0
    with engine.connect() as connection:
        statuses = connection.execute(text("SELECT status FROM svc_usage ORDER BY id")).scalars().all()
    assert statuses == [201]
    engine.dispose()


def test_an_audit_record_written_after_a_delete_that_raced_its_call_names_nothing_erased(tmp_path: Path) -> None:
    """A merge into B (or a rename of B) committed, then B's delete committed and erased B's ids from
    the trail, then the merge's audit record was written: it named B (its ``into``) and its absorbed
    id, whose earlier records the erasure had not found either (21 records in 10 minutes of a soak
    of two processes). A record on a subject is checked once written."""
    engine = create_database_engine(f"sqlite:///{tmp_path / 'service.db'}")
    migrate(engine)
    accounts = Accounts(engine, follow_ups=FollowUps(retries=(60,)))
    accounts.create_tenant("acme")
    live = {"staff/kept"}
    accounts.subject_gone = lambda tenant, target: target not in live
    try:
        accounts.audit_committed("face.enrol", "staff/ana", "acme", None, {"faces": 1})  # ana's history
        accounts.audit_committed("face.enrol", "staff/kept", "acme", None, {"faces": 1})
        live.add("staff/bo")
        accounts.audit_committed("subject.create", "staff/bo", "acme", None)
        live.discard("staff/bo")  # bo's delete committed, its erasure ran: before the merge's record
        accounts.erase_subject("acme", "staff/bo", keep_ids=False)
        accounts.audit_committed("subject.merge", "staff/ana", "acme", None, {"into": "bo"})
        accounts.audit_committed("subject.update", "staff/bo", "acme", None)  # a rename of bo, the same
        with engine.connect() as connection:
            rows = connection.execute(text("SELECT action, target, details FROM svc_audit WHERE tenant_id = 'acme'"
                                           " AND action != 'tenant.create' ORDER BY id")).all()
        named = [row for row in rows if "ana" in row.target or "bo" in row.target or "bo" in str(row.details)]
        assert not named, rows
        assert ("face.enrol", "staff/kept") in [(row.action, row.target) for row in rows]  # a live subject's stays
    finally:
        accounts.follow_ups.close()  # type: ignore[union-attr]
        engine.dispose()
