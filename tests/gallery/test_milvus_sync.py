"""The Milvus copy kept in step with the database, the record (``faceatlas/gallery/milvus_sync.py``):
changes made without Milvus, a collection id that SQLite gives again, a Milvus server that
restarts empty, a Milvus that fails after a commit. Real Milvus Lite (embedded, or its server
binary on a loopback port, stopped and started again by the test); Milvus is checked by
querying it directly, not through the gallery."""

from __future__ import annotations

import itertools
import os
import socket
import sqlite3
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest
from sqlalchemy import select

from faceatlas.engine import Embedding
from faceatlas.errors import VectorStoreUnavailable
from faceatlas.gallery import Gallery
from faceatlas.gallery.milvus_sync import MilvusIndexCache
from faceatlas.gallery.models import Collection
from tests.ports import wait_until_listening

pymilvus = pytest.importorskip("pymilvus")

_PREFIXES = (f"s{n}" for n in itertools.count())


@pytest.fixture(scope="module")
def lite_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One Milvus Lite file for the module (its embedded server starts once); each test keeps to
    collections of its own prefix."""
    return tmp_path_factory.mktemp("milvus") / "vectors.db"


@pytest.fixture
def milvus(monkeypatch: pytest.MonkeyPatch, lite_file: Path) -> None:
    """The galleries of the test keep their vectors in Milvus Lite, under a prefix of their own."""
    monkeypatch.setenv("FACEATLAS_VECTOR_BACKEND", "milvus")
    monkeypatch.setenv("FACEATLAS_MILVUS_URI", str(lite_file))
    monkeypatch.setenv("FACEATLAS_MILVUS_PREFIX", next(_PREFIXES))


class LiteServer:
    """Milvus Lite's server binary serving a file on a loopback port: stopped and started again
    by the test (a Milvus server that goes away, or restarts empty)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            self.port = probe.getsockname()[1]
        self.uri = f"http://127.0.0.1:{self.port}"
        self.server = None
        self.start()

    def start(self) -> None:
        from milvus_lite.server import Server

        self.server = Server(str(self.path), f"127.0.0.1:{self.port}")
        # Lite's binary makes and removes $HOME/.cache/milvus: a folder of its own, so that servers
        # started and stopped at once by other test processes do not take it from under this one
        home = os.environ.get("HOME")
        os.environ["HOME"] = str(self.path.parent)
        try:
            assert self.server.init() and self.server.start()
            wait_until_listening(self.port, self.server._p)  # start() only waits 0.5 s for the binary not to exit
        finally:
            if home is None:
                del os.environ["HOME"]
            else:
                os.environ["HOME"] = home

    def stop(self) -> None:
        if self.server is not None:
            self.server.stop()
            self.server = None

    def restart_empty(self) -> None:
        """Stop, delete everything it held, start again on the same port."""
        self.stop()
        for leftover in self.path.parent.glob(f"*{self.path.name}*"):
            if leftover.is_file():
                leftover.unlink()
        self.start()


@pytest.fixture
def milvus_server(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[LiteServer]:
    """A Milvus server of the test's own; the galleries of the test keep their vectors there."""
    server = LiteServer(tmp_path / "server" / "milvus.db")
    monkeypatch.setenv("FACEATLAS_VECTOR_BACKEND", "milvus")
    monkeypatch.setenv("FACEATLAS_MILVUS_URI", server.uri)
    monkeypatch.setenv("FACEATLAS_MILVUS_PREFIX", "fa")
    monkeypatch.setenv("FACEATLAS_MILVUS_INDEX", "FLAT")  # Lite's binary builds no HNSW
    monkeypatch.setenv("FACEATLAS_MILVUS_TIMEOUT", "1")
    try:
        yield server
    finally:
        server.stop()


def _enrol(gallery: Gallery, collection: str, subjects: int, seed: int, first: int = 0) -> dict[str, list[int]]:
    rid = gallery.get_collection(collection).recognizer_id
    rng = np.random.default_rng(seed)
    return {f"p{s}": gallery.add_embeddings(collection, f"p{s}", rng.normal(size=(3, 128)), recognizer_id=rid)
            for s in range(first, first + subjects)}


def _held(face_ids: list[int], *, only: Callable[[str], bool] = lambda name: True) -> list[int]:
    """Which of ``face_ids`` any Milvus collection of this test's prefix holds (``only``: of those
    whose name passes), asked of Milvus with a client of its own."""
    client = pymilvus.MilvusClient(os.environ["FACEATLAS_MILVUS_URI"])
    try:
        prefix = os.environ["FACEATLAS_MILVUS_PREFIX"]
        found: set[int] = set()
        for name in client.list_collections():
            if name.startswith(f"{prefix}_") and name != f"{prefix}_revisions" and only(name):
                rows = client.query(name, ids=[int(i) for i in face_ids], output_fields=["id"],
                                    consistency_level="Strong")
                found.update(int(row["id"]) for row in rows)
        return sorted(found)
    finally:
        client.close()


def _top(gallery: Gallery, collection: str, vector: np.ndarray) -> tuple[str, float]:
    rid = gallery.get_collection(collection).recognizer_id
    best = gallery.search(collection, Embedding(vector, rid), k=1, rank_only=True)[0]
    return best.external_id, best.similarity


def test_faces_erased_without_milvus_leave_it_at_the_next_open(tmp_path: Path, milvus: None,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    """A subject deleted by a process on the FAISS backend (a CLI without the setting) kept its
    vectors in Milvus until its collection was next searched or enrolled under Milvus: for good
    when it never was. Now the next open brings every copy behind the database up to date."""
    url = f"sqlite:///{tmp_path / 'fa.db'}"
    with Gallery.open(url, tenant="test") as gallery:
        gallery.create_collection("c", "scrfd-mbf")
        gallery.create_collection("d", "scrfd-mbf")
        ids = _enrol(gallery, "c", 3, seed=1)
        other = _enrol(gallery, "d", 2, seed=2)
    erased, kept = ids.pop("p1"), sorted(i for face_ids in [*ids.values(), *other.values()] for i in face_ids)
    monkeypatch.setenv("FACEATLAS_VECTOR_BACKEND", "faiss")
    with Gallery.open(url, tenant="test", index_dir=tmp_path / "faiss") as writer:
        writer.delete_subject("c", "p1")
        writer.delete_face("d", other["p0"][0])
    assert _held(erased) == erased  # left behind by the FAISS process
    monkeypatch.setenv("FACEATLAS_VECTOR_BACKEND", "milvus")
    Gallery.open(url, tenant="test").close()  # opened and closed: no search, no enrolment
    assert _held(erased + [other["p0"][0]]) == []
    assert _held(kept) == sorted(set(kept) - {other["p0"][0]})


def _revision(gallery: Gallery) -> int:
    with gallery._sessions() as session:
        return session.scalars(select(Collection.revision)).one()


def _catch_ups(cache: MilvusIndexCache) -> list[int]:
    """Counts the calls of ``cache``'s catch-up (the diff of every face id), which still run."""
    calls: list[int] = []
    real_catch_up = cache._catch_up

    def counted(*call: object) -> object:
        calls.append(1)
        return real_catch_up(*call)  # type: ignore[arg-type]

    cache._catch_up = counted  # type: ignore[method-assign,assignment]
    return calls


@pytest.mark.parametrize("change", ["enrolment", "delete"])
def test_this_process_s_copy_ahead_of_the_row_a_search_read_is_used_as_it_is(
        tmp_path: Path, milvus: None, change: str) -> None:
    """A search reads the collection's row, then another thread's enrolment (or delete) commits and
    moves this process's copy on before the search asks for it: the copy holds every change up to
    its revision (a deleted face left Milvus before its commit) and is used as it is. It was caught
    up to the older row: every face id read from Milvus and the database and diffed (190 ms at
    30,000 faces on Lite, 1 search in 5 under steady enrolments: bench/catch_up.py --concurrent
    --backend milvus), the stored revision put back, and the next enrolment then left the copy out
    (caught up once more)."""
    url = f"sqlite:///{tmp_path / 'fa.db'}"
    with Gallery.open(url, tenant="test") as gallery:
        gallery.create_collection("c", "scrfd-mbf")
        rid = gallery.get_collection("c").recognizer_id
        ids = _enrol(gallery, "c", 4, seed=1)
        cache = gallery._indexes
        assert isinstance(cache, MilvusIndexCache)
        vector = gallery.face_vectors("c", ids["p2"][:1])[1][0]
        assert _top(gallery, "c", vector)[0] == "p2"  # the copy loaded
        with gallery._sessions() as session:
            row = session.scalars(select(Collection)).one()  # the search's read, at revision R
            before = row.revision
            held = cache._states[row.id]
            if change == "enrolment":
                new = gallery.add_embeddings("c", "new", np.random.default_rng(9).normal(size=(2, 128)),
                                             recognizer_id=rid)  # another thread's
            else:
                gallery.delete_subject("c", "p2")
            assert cache._states[row.id] is held and held.revision == before + 1
            catch_ups = _catch_ups(cache)
            index = cache.get(session, row)
            assert row.revision == before
        assert index is held.index and cache._states[row.id] is held and held.revision == before + 1
        assert catch_ups == []
        record = cache.store.record(row.id)
        assert record is not None and record["revision"] == before + 1  # not put back
        everyone = sorted(i for face_ids in ids.values() for i in face_ids)
        if change == "enrolment":
            assert _held(everyone + new) == sorted(everyone + new)
        else:
            assert _held(ids["p2"]) == []
            assert _held(everyone) == sorted(set(everyone) - set(ids["p2"]))
            assert _top(gallery, "c", vector)[0] != "p2"
        gallery.add_embeddings("c", "later", np.random.default_rng(10).normal(size=(1, 128)), recognizer_id=rid)
        assert cache._states[row.id] is held and held.revision == before + 2 and catch_ups == []
        assert gallery.get_subject("c", "later").faces == 1


def test_a_copy_a_search_caught_up_past_a_change_is_kept_by_its_apply(tmp_path: Path, milvus: None) -> None:
    """A search reads an enrolment's commit before the enrolment applies it to this process's copy:
    the search catches the copy up past it, and the apply keeps that copy (it holds the change). It
    was dropped: the next enrolment caught it up once more, every face id read and diffed."""
    url = f"sqlite:///{tmp_path / 'fa.db'}"
    with Gallery.open(url, tenant="test") as gallery:
        gallery.create_collection("c", "scrfd-mbf")
        rid = gallery.get_collection("c").recognizer_id
        _enrol(gallery, "c", 3, seed=1)
        cache = gallery._indexes
        assert isinstance(cache, MilvusIndexCache)
        real_applied = cache.applied

        def search_first(collection_id: int, revision: int, **change: object) -> None:
            with gallery._sessions() as session:  # another thread's search, between the commit and the apply
                cache.get(session, session.get_one(Collection, collection_id))
            real_applied(collection_id, revision, **change)  # type: ignore[arg-type]

        cache.applied = search_first  # type: ignore[method-assign]
        late = np.random.default_rng(7).normal(size=(2, 128))
        late_ids = gallery.add_embeddings("c", "late", late, recognizer_id=rid)
        cache.applied = real_applied  # type: ignore[method-assign]
        revision = _revision(gallery)
        (state,) = cache._states.values()
        assert state.revision == revision
        catch_ups = _catch_ups(cache)
        more = gallery.add_embeddings("c", "more", np.random.default_rng(8).normal(size=(1, 128)), recognizer_id=rid)
        (kept,) = cache._states.values()
        assert catch_ups == [] and kept is state
        assert state.revision == revision + 1
        assert _held(late_ids + more) == sorted(late_ids + more)
        assert _top(gallery, "c", late[0] / np.linalg.norm(late[0])) == ("late", pytest.approx(1.0, abs=1e-5))


def test_a_stored_revision_ahead_of_the_database_with_no_copy_here_is_caught_up(
        tmp_path: Path, milvus: None, monkeypatch: pytest.MonkeyPatch) -> None:
    """Unlike this process's copy ahead of a row it read: a revision stored in Milvus ahead of the
    database with no copy in this process (a database restored from an older backup) takes the diff
    of every face id, and faces the database does not hold leave Milvus."""
    url = f"sqlite:///{tmp_path / 'fa.db'}"
    with Gallery.open(url, tenant="test") as gallery:
        gallery.create_collection("c", "scrfd-mbf")
        ids = _enrol(gallery, "c", 3, seed=1)
        monkeypatch.setenv("FACEATLAS_VECTOR_BACKEND", "faiss")
        with Gallery.open(url, tenant="test", index_dir=tmp_path / "faiss") as writer:
            writer.delete_subject("c", "p1")  # without Milvus: its vectors left there
        assert _held(ids["p1"]) == ids["p1"]
        cache = gallery._indexes
        assert isinstance(cache, MilvusIndexCache)
        (collection_id,) = cache._states
        cache._states.clear()  # no copy in this process
        record = cache.store.record(collection_id)
        assert record is not None
        cache.store.set_revision(record["name"], collection_id, _revision(gallery) + 10,
                                 record["recognizer_id"], record["dim"])
        catch_ups = _catch_ups(cache)
        vector = gallery.face_vectors("c", ids["p0"][:1])[1][0]
        assert _top(gallery, "c", vector)[0] == "p0"
        assert catch_ups == [1]
        assert _held(ids["p1"]) == []
        assert _held(ids["p0"] + ids["p2"]) == sorted(ids["p0"] + ids["p2"])


def test_vectors_of_a_collection_whose_id_was_given_again_go_at_the_next_open(
        tmp_path: Path, milvus: None, monkeypatch: pytest.MonkeyPatch) -> None:
    """A collection deleted by a process on the FAISS backend, its id given by SQLite to another
    tenant's new collection at the same revision: the next open saw a live collection at the
    stored revision and kept the deleted collection's vectors in Milvus."""
    url = f"sqlite:///{tmp_path / 'fa.db'}"
    with Gallery.open(url, tenant="evil") as gallery:
        gallery.create_collection("late", "scrfd-mbf")
        erased = sorted(i for face_ids in _enrol(gallery, "late", 3, seed=1).values() for i in face_ids)
    monkeypatch.setenv("FACEATLAS_VECTOR_BACKEND", "faiss")
    with Gallery.open(url, tenant="evil", index_dir=tmp_path / "faiss") as writer:
        writer.delete_collection("late")
        writer.for_tenant("acme").create_collection("new", "scrfd-mbf")
        _enrol(writer.for_tenant("acme"), "new", 3, seed=7)
    assert dict(sqlite3.connect(tmp_path / "fa.db").execute("SELECT name, revision FROM collections")) == {"new": 3}
    assert _held(erased) == erased  # left behind by the FAISS process
    monkeypatch.setenv("FACEATLAS_VECTOR_BACKEND", "milvus")
    Gallery.open(url, tenant="acme").close()
    assert _held(erased) == []


@pytest.mark.parametrize(("deleter", "first"), [("milvus", "search"), ("faiss", "search"), ("faiss", "enrol")])
def test_a_collection_id_given_again_never_reaches_the_old_collections_vectors(
        tmp_path: Path, milvus: None, monkeypatch: pytest.MonkeyPatch, deleter: str, first: str) -> None:
    """Two galleries on one SQLite database (two processes): the second deletes tenant evil's
    collection and tenant acme makes one, which SQLite gives the same id. The first gallery
    trusted its copy of evil's collection at that revision: acme's searches answered 503 naming
    evil's Milvus collection (or, evil's collection deleted without Milvus, searched evil's
    vectors), and an enrolment wrote acme's faces into evil's Milvus collection."""
    url = f"sqlite:///{tmp_path / 'fa.db'}"
    with Gallery.open(url, tenant="acme") as first_process:
        evil = first_process.for_tenant("evil")
        evil.create_collection("late", "scrfd-mbf")
        evil_ids = _enrol(evil, "late", 3, seed=1)
        _top(evil, "late", np.ones(128))  # loaded by the first process
        monkeypatch.setenv("FACEATLAS_VECTOR_BACKEND", deleter)
        with Gallery.open(url, tenant="acme", index_dir=tmp_path / "faiss") as second_process:
            second_process.for_tenant("evil").delete_collection("late")
            second_process.create_collection("new", "scrfd-mbf")
            acme_ids = _enrol(second_process, "new", 3, seed=7, first=50)
        monkeypatch.setenv("FACEATLAS_VECTOR_BACKEND", "milvus")
        rows = dict(sqlite3.connect(tmp_path / "fa.db").execute("SELECT name, revision FROM collections"))
        assert rows == {"new": 3}  # the id of 'late' given again, at its revision
        vectors = first_process.face_vectors("new")[1]
        if first == "enrol":
            acme_ids |= _enrol(first_process, "new", 1, seed=8, first=60)
            assert _held(acme_ids["p60"], only=lambda name: "_evil_" in name) == []  # not into evil's
        assert _top(first_process, "new", vectors[0])[0] == "p50"
        assert _top(first_process, "new", vectors[4]) == ("p51", pytest.approx(1.0, abs=1e-5))
        if first == "search":
            acme_ids |= _enrol(first_process, "new", 1, seed=8, first=60)
        acme = sorted(i for face_ids in acme_ids.values() for i in face_ids)
        assert _held(acme, only=lambda name: "_acme_" in name) == acme
        assert _held(acme, only=lambda name: "_evil_" in name) == []  # none written to evil's collection
        if deleter == "milvus":
            assert _held(sorted(i for face_ids in evil_ids.values() for i in face_ids)) == []


def test_a_milvus_server_that_restarts_empty_is_filled_again_from_the_database(
        tmp_path: Path, milvus_server: LiteServer) -> None:
    """Milvus restarted empty under a running gallery: its revisions collection was made only when
    a store opened, so every search, enrolment and delete answered 503 until the service was
    restarted. Now the first of them makes what is missing and copies the faces again (here a
    search, an enrolment, a delete: each the first call after a restart)."""
    url = f"sqlite:///{tmp_path / 'fa.db'}"
    with Gallery.open(url, tenant="test") as gallery:
        gallery.create_collection("c", "scrfd-mbf")
        ids = _enrol(gallery, "c", 3, seed=1)
        vectors = {face_id: vector for face_id, vector in zip(*gallery.face_vectors("c"))}
        assert _top(gallery, "c", vectors[ids["p2"][0]])[0] == "p2"
        for call in ("search", "enrol", "delete"):
            milvus_server.restart_empty()
            assert _held(list(vectors)) == []
            if call == "search":
                assert _top(gallery, "c", vectors[ids["p2"][0]]) == ("p2", pytest.approx(1.0, abs=1e-5))
            elif call == "enrol":
                ids |= _enrol(gallery, "c", 1, seed=2, first=9)
            else:
                gallery.delete_subject("c", "p0")
                erased = ids.pop("p0")
            alive = sorted(i for face_ids in ids.values() for i in face_ids)
            assert _held(alive + list(vectors)) == alive, call  # every face of the database copied again
        assert _held(erased) == []
        assert _top(gallery, "c", vectors[ids["p1"][1]]) == ("p1", pytest.approx(1.0, abs=1e-5))
        gallery.delete_subject("c", "p1")
        assert _held(alive + list(vectors)) == sorted(set(alive) - set(ids["p1"]))
    with Gallery.open(url, tenant="test") as reopened:
        assert _top(reopened, "c", vectors[ids["p2"][0]])[0] == "p2"


def test_a_collection_dropped_out_of_milvus_is_filled_again_from_the_database(tmp_path: Path, milvus: None) -> None:
    """A gallery collection's Milvus collection dropped by someone else, its revision kept: the next
    use made it anew, empty, and trusted it at the stored revision (a search found nobody), or
    answered 503 (a search through the copy loaded before)."""
    url = f"sqlite:///{tmp_path / 'fa.db'}"

    def drop_it() -> None:
        client = pymilvus.MilvusClient(os.environ["FACEATLAS_MILVUS_URI"])
        prefix = os.environ["FACEATLAS_MILVUS_PREFIX"]
        [name] = [n for n in client.list_collections() if n.startswith(prefix) and n != f"{prefix}_revisions"]
        client.drop_collection(name)
        client.close()

    with Gallery.open(url, tenant="test") as gallery:
        gallery.create_collection("c", "scrfd-mbf")
        ids = _enrol(gallery, "c", 3, seed=1)
        vectors = {face_id: vector for face_id, vector in zip(*gallery.face_vectors("c"))}
        assert _top(gallery, "c", vectors[ids["p2"][0]])[0] == "p2"  # loaded
        drop_it()
        assert _top(gallery, "c", vectors[ids["p2"][0]]) == ("p2", pytest.approx(1.0, abs=1e-5))
        drop_it()
        ids |= _enrol(gallery, "c", 1, seed=2, first=9)
        alive = sorted(i for face_ids in ids.values() for i in face_ids)
        assert _held(alive) == alive
        drop_it()
        gallery.delete_subject("c", "p0")
        assert _top(gallery, "c", vectors[ids["p1"][0]]) == ("p1", pytest.approx(1.0, abs=1e-5))
        assert _held(alive) == sorted(set(alive) - set(ids["p0"]))
    with Gallery.open(url, tenant="test") as reopened:  # not loaded: its revision stored, its collection gone
        drop_it()
        assert _top(reopened, "c", vectors[ids["p1"][0]]) == ("p1", pytest.approx(1.0, abs=1e-5))


def test_an_enrolment_milvus_fails_after_its_commit_is_not_an_error(tmp_path: Path,
                                                                    milvus_server: LiteServer) -> None:
    """The face was committed, then Milvus failed: the call answered 503 and a client's retry
    enrolled it twice. Now it answers the enrolment; the copy catches up once Milvus is back.
    A delete Milvus cannot confirm is still refused, nothing deleted."""
    url = f"sqlite:///{tmp_path / 'fa.db'}"
    with Gallery.open(url, tenant="test") as gallery:
        gallery.create_collection("c", "scrfd-mbf")
        rid = gallery.get_collection("c").recognizer_id
        _enrol(gallery, "c", 2, seed=1)
        milvus_server.stop()
        late = np.random.default_rng(5).normal(size=(2, 128))
        late_ids = gallery.add_embeddings("c", "late", late, recognizer_id=rid)  # answered, not 503
        assert sorted(gallery.face_vectors("c", late_ids)[0].tolist()) == sorted(late_ids)
        assert gallery.get_subject("c", "late").faces == 2
        with pytest.raises(VectorStoreUnavailable):
            gallery.delete_subject("c", "p0")
        assert gallery.get_subject("c", "p0").faces == 3  # refused: nothing deleted
        milvus_server.start()
        deadline = time.monotonic() + 20
        while True:  # the gallery's connection is back once gRPC tries it again (its backoff: seconds)
            try:
                found = _top(gallery, "c", late[1] / np.linalg.norm(late[1]))
                break
            except VectorStoreUnavailable:
                assert time.monotonic() < deadline, "Milvus is back: the gallery should reach it"
                time.sleep(0.5)
        assert found == ("late", pytest.approx(1.0, abs=1e-5))
        assert _held(late_ids) == sorted(late_ids)
        p0 = [face.id for face in gallery.list_faces("c", subject="p0").items]
        assert gallery.delete_subject("c", "p0") == 3
        assert _held(p0) == []
