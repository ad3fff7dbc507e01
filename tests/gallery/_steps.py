"""Races made at one step of a gallery call, and the checks that the database and the index agree
afterwards: shared by test_write_races.py (writes racing on one gallery, a server's threads) and
test_races.py (another process's delete: a second gallery on the same database).

:func:`when` runs the call in the test's thread; at the chosen statement it runs the racing write
in a thread of its own and goes on once that write is done or, on PostgreSQL, is seen waiting on a
lock (``pg_stat_activity``): a write waiting for a lock the call holds goes on after its commit."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

import numpy as np
from sqlalchemy import Engine, event, select, text

from faceatlas.gallery import Gallery
from faceatlas.gallery.index import load_index
from faceatlas.gallery.index.templates import TemplateIndex
from faceatlas.gallery.models import FaceRecord


def _grouping(index: Any) -> dict[int, int | None]:
    """Face id -> the subject the index groups it under (None for an index that groups none)."""
    if isinstance(index, TemplateIndex):
        rows = index._rows
        ids, nodes = index._ids[:rows], index._node_of[:rows]
        return {int(i): int(index._groups[node]) for i, node in zip(ids, nodes) if i >= 0}
    return {int(i): None for i in index.ids()}


def _database(gallery: Gallery, collection: str) -> tuple[dict[int, int], int]:
    with gallery._sessions() as session:
        coll = gallery._collection(session, collection)
        faces = session.execute(select(FaceRecord.id, FaceRecord.subject_id)
                                .where(FaceRecord.collection_id == coll.id)).all()
        return {int(f): int(s) for f, s in faces}, coll.revision


def _like(grouping: dict[int, int | None], faces: dict[int, int]) -> dict[int, int | None]:
    """``faces`` (face -> subject) as an index of ``grouping``'s kind holds them."""
    grouped = any(subject is not None for subject in grouping.values()) or not grouping
    return {face: subject if grouped else None for face, subject in faces.items()}


def assert_in_step(gallery: Gallery, collection: str = "c") -> dict[int, int]:
    """The index in memory (as a search reads it) and its file hold the database's faces, each
    grouped under its subject; a file behind the database holds no face the database lost.
    Returns the database's faces (face id -> subject id)."""
    faces, revision = _database(gallery, collection)
    with gallery._sessions() as session:
        coll = gallery._collection(session, collection)
        memory = _grouping(gallery._indexes.get(session, coll))
        path = gallery._indexes.path(coll.id)
    assert memory == _like(memory, faces)
    assert path is not None
    saved = load_index(path)
    if saved is not None:
        on_disk = _grouping(saved.index)
        assert set(on_disk) <= set(faces), f"erased faces on disk: {sorted(set(on_disk) - set(faces))}"
        if saved.revision == revision:
            assert on_disk == _like(on_disk, faces)
    gallery.flush()  # as at a graceful shutdown
    saved = load_index(path)
    assert saved is not None and _grouping(saved.index) == _like(_grouping(saved.index), faces)
    return faces


def on_disk(gallery: Gallery, vectors: np.ndarray) -> list[str]:
    """Which of ``vectors`` a file under the gallery's index folder holds (as their float32 bytes)."""
    folder = gallery._indexes.directory
    assert folder is not None
    found = []
    for path in (p for p in folder.rglob("*") if p.is_file()):
        blob = path.read_bytes()
        found += [f"vector {row} in {path.name}" for row, vector in enumerate(vectors) if vector.tobytes() in blob]
    return found


def _waiting_on_a_lock(engine: Engine, pid: int) -> bool:
    with engine.connect() as connection:
        return connection.scalar(text("SELECT wait_event_type FROM pg_stat_activity WHERE pid = :pid"),
                                 {"pid": pid}) == "Lock"


def when(gallery: Gallery, step: str, call: Callable[[], object], racing: Callable[[], object], *,
         racing_on: Gallery | None = None) -> tuple[list[str], list[str]]:
    """Run ``call`` here; when it reaches ``step`` (``"before STATEMENT"`` or ``"after STATEMENT"``,
    the first statement of ``gallery``'s that it runs starting so), run ``racing`` in a thread and go
    on once that is done or, on PostgreSQL, waits on a lock. ``racing_on``: the gallery whose
    database connections ``racing`` uses (another process's; ``gallery`` by default). Returns the
    names of the errors each raised ('ok' for none)."""
    when_, statement = step.split(" ", 1)
    here = threading.get_ident()
    racer_pids: list[int] = []
    outcome: dict[str, str] = {}
    threads: list[threading.Thread] = []
    postgres = gallery.engine.dialect.name == "postgresql"

    def run(name: str, write: Callable[[], object]) -> None:
        try:
            write()
        except Exception as exc:  # noqa: BLE001 - the outcome is what is compared
            outcome[name] = type(exc).__name__
        else:
            outcome[name] = "ok"

    def racer_pid(_conn: Any, cursor: Any, *_args: Any) -> None:
        if postgres and threads and threading.current_thread() is threads[0]:
            racer_pids.append(cursor.connection.info.backend_pid)

    def at(moment: str) -> Callable[..., None]:
        def listen(_conn: Any, _cursor: Any, sql: str, *_args: Any) -> None:
            if threading.get_ident() != here or moment != when_ or threads or not sql.lstrip().startswith(statement):
                return
            racer = threading.Thread(target=run, args=("racing", racing))
            threads.append(racer)
            racer.start()
            deadline = time.monotonic() + 30
            while racer.is_alive():  # polled: the lock wait is the barrier, seen from outside
                assert time.monotonic() < deadline, "the racing write neither ended nor waited on a lock"
                if postgres and racer_pids and _waiting_on_a_lock(gallery.engine, racer_pids[-1]):
                    return
                racer.join(0.01)
        return listen

    racing_engine = (racing_on or gallery).engine
    before, after = at("before"), at("after")
    listeners = [(gallery.engine, "before_cursor_execute", before), (gallery.engine, "after_cursor_execute", after),
                 (racing_engine, "before_cursor_execute", racer_pid)]
    for listener in listeners:
        event.listen(*listener)
    try:
        run("call", call)
    finally:
        for listener in listeners:
            event.remove(*listener)
    assert threads, f"the call never reached {step!r}"
    threads[0].join(30)
    assert not threads[0].is_alive()
    return [outcome["call"]], [outcome["racing"]]
