"""The gallery's index behaviours on both vector backends: the FAISS/exact index files (default)
and Milvus (``FACEATLAS_VECTOR_BACKEND=milvus``), as Milvus Lite (a file URI: the embedded Milvus)
and as a server (an ``http://`` URI: the code path of a Milvus standalone or cluster, HNSW index,
compaction asked; served here by Milvus Lite's server binary on a loopback port, with IVF_FLAT
for the HNSW it does not build). Milvus is
checked by querying it directly, not through the gallery."""

from __future__ import annotations

import itertools
import json
import os
import random
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from sqlalchemy import select

from faceatlas.engine import Embedding
from faceatlas.errors import VectorStoreUnavailable
from faceatlas.gallery import Gallery
from faceatlas.gallery.index import ExactIndex
from faceatlas.gallery.models import FaceRecord
from tests.ports import wait_until_listening

pymilvus = pytest.importorskip("pymilvus")

BACKENDS = ["faiss", "milvus", "milvus-server"]


@pytest.fixture(scope="module")
def lite_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One Milvus Lite file for the module (its embedded server starts once per process); each
    test keeps to collections of its own prefix."""
    return tmp_path_factory.mktemp("milvus") / "vectors.db"


@pytest.fixture(scope="module")
def prefixes() -> Iterator[str]:
    return (f"t{n}" for n in itertools.count())


@pytest.fixture(scope="module")
def milvus_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The URI of a Milvus server on a free loopback port, for the module."""
    from milvus_lite.server import Server

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = Server(str(tmp_path_factory.mktemp("milvus-server") / "server.db"), f"127.0.0.1:{port}")
    assert server.init() and server.start()
    try:
        wait_until_listening(port, server._p)  # start() only waits 0.5 s for the binary not to exit
        yield f"http://127.0.0.1:{port}"
    finally:
        server.stop()


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch, lite_file: Path,
            prefixes: Iterator[str]) -> str:
    """Selects the backend through the environment, as a user does (and child processes inherit);
    returns the ``FACEATLAS_VECTOR_BACKEND`` value."""
    server = request.param == "milvus-server"
    monkeypatch.setenv("FACEATLAS_VECTOR_BACKEND", "milvus" if server else request.param)
    monkeypatch.setenv("FACEATLAS_MILVUS_URI", request.getfixturevalue("milvus_server") if server else str(lite_file))
    monkeypatch.setenv("FACEATLAS_MILVUS_PREFIX", next(prefixes))
    if server:  # Lite's binary builds FLAT, IVF_FLAT or AUTOINDEX only; a real server's default is HNSW
        monkeypatch.setenv("FACEATLAS_MILVUS_INDEX", "IVF_FLAT")
    return "milvus" if server else str(request.param)


def _enrol(gallery: Gallery, subjects: int, per_subject: int = 3, seed: int = 0, first: int = 0) -> str:
    rid = gallery.get_collection("c").recognizer_id
    rng = np.random.default_rng(seed)
    for subject in range(first, first + subjects):
        gallery.add_embeddings("c", f"p{subject}", rng.normal(size=(per_subject, 128)), recognizer_id=rid)
    return rid


def _index_and_db_ids(gallery: Gallery) -> tuple[set[int], set[int]]:
    with gallery._sessions() as session:
        collection = gallery._collection(session, "c")
        index_ids = set(gallery._indexes.get(session, collection).ids().tolist())
        db_ids = set(session.scalars(select(FaceRecord.id).where(FaceRecord.collection_id == collection.id)))
    return index_ids, db_ids


def _milvus_held(face_ids: list[int], collection: str = "c", tenant: str = "test") -> list[int]:
    """The ids of ``face_ids`` that Milvus holds, asked of Milvus with a client of its own."""
    if not face_ids:
        return []
    client = pymilvus.MilvusClient(os.environ["FACEATLAS_MILVUS_URI"])
    try:
        prefix = os.environ["FACEATLAS_MILVUS_PREFIX"]
        names = [n for n in client.list_collections() if re.fullmatch(rf"{prefix}_{tenant}_[0-9a-f]{{8}}_c\d+", n)]
        assert len(names) == 1, names
        rows = client.query(names[0], ids=face_ids, output_fields=["id"], consistency_level="Strong")
        return sorted(int(row["id"]) for row in rows)
    finally:
        client.close()


def _milvus_held_anywhere(face_ids: list[int]) -> list[int]:
    """The ids of ``face_ids`` that any Milvus collection of this test's prefix holds."""
    client = pymilvus.MilvusClient(os.environ["FACEATLAS_MILVUS_URI"])
    try:
        prefix = os.environ["FACEATLAS_MILVUS_PREFIX"]
        found: set[int] = set()
        for name in client.list_collections():
            if not name.startswith(f"{prefix}_") or name == f"{prefix}_revisions":
                continue
            rows = client.query(name, ids=face_ids, output_fields=["id"], consistency_level="Strong")
            found.update(int(row["id"]) for row in rows)
        return sorted(found)
    finally:
        client.close()


def _milvus_collections() -> list[str]:
    """The Milvus collections of this test's prefix that hold faces (its revisions' aside)."""
    client = pymilvus.MilvusClient(os.environ["FACEATLAS_MILVUS_URI"])
    try:
        prefix = os.environ["FACEATLAS_MILVUS_PREFIX"]
        return sorted(n for n in client.list_collections() if n.startswith(f"{prefix}_") and n != f"{prefix}_revisions")
    finally:
        client.close()


def test_search_returns_what_exact_search_returns(db_url: str, tmp_path: Path, backend: str) -> None:
    with Gallery.open(db_url, tenant="test", index_dir=tmp_path / "indexes") as gallery:
        gallery.create_collection("c", "scrfd-mbf")
        rid = _enrol(gallery, 8, per_subject=15)
        ids, vectors = gallery.face_vectors("c")
        exact = ExactIndex(128)
        exact.add(ids, vectors)
        queries = np.random.default_rng(1).normal(size=(10, 128)).astype(np.float32)
        queries /= np.linalg.norm(queries, axis=1, keepdims=True)
        with gallery._sessions() as session:
            index = gallery._indexes.get(session, gallery._collection(session, "c"))
            assert index.kind == ("milvus" if backend == "milvus" else "exact")
            assert len(index) == len(ids) == 120
            sims, found = index.search(queries, 10)
        want_sims, want_ids = exact.search(queries, 10)
        np.testing.assert_array_equal(found, want_ids)
        np.testing.assert_allclose(sims, want_sims, atol=1e-5)
        own = gallery.search("c", Embedding(vectors[7], rid), k=1, rank_only=True)
        assert own[0].best_face_id == ids[7] and own[0].similarity == pytest.approx(1.0, abs=1e-5)


def test_deleting_a_subject_removes_its_vectors(db_url: str, tmp_path: Path, backend: str) -> None:
    with Gallery.open(db_url, tenant="test", index_dir=tmp_path / "indexes") as gallery:
        gallery.create_collection("c", "scrfd-mbf")
        rid = _enrol(gallery, 5)
        doomed = gallery.list_faces("c", subject="p2").items
        doomed_ids = [face.id for face in doomed]
        _, doomed_vectors = gallery.face_vectors("c", doomed_ids)
        if backend == "milvus":
            assert _milvus_held(doomed_ids) == doomed_ids
        assert gallery.delete_subject("c", "p2") == 3
        index_ids, db_ids = _index_and_db_ids(gallery)
        assert index_ids == db_ids and not set(doomed_ids) & index_ids
        if backend == "milvus":
            assert _milvus_held(doomed_ids) == []
        matches = gallery.search("c", Embedding(doomed_vectors[0], rid), k=5, rank_only=True)
        assert "p2" not in [m.external_id for m in matches]
    if backend == "milvus":  # and after the process's gallery is closed
        assert _milvus_held(doomed_ids) == []


def test_a_restart_catches_up_with_changes_made_without_the_index(db_url: str, tmp_path: Path, backend: str,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    with Gallery.open(db_url, tenant="test", index_dir=tmp_path / "indexes") as gallery:
        gallery.create_collection("c", "scrfd-mbf")
        _enrol(gallery, 4)
        erased = [face.id for face in gallery.list_faces("c", subject="p1").items]
    monkeypatch.setenv("FACEATLAS_VECTOR_BACKEND", "faiss")  # a writer whose changes never reach the index
    with Gallery.open(db_url, tenant="test", index_dir=tmp_path / "elsewhere") as writer:
        _enrol(writer, 3, seed=5, first=10)
        writer.delete_subject("c", "p1")
    monkeypatch.setenv("FACEATLAS_VECTOR_BACKEND", backend)
    with Gallery.open(db_url, tenant="test", index_dir=tmp_path / "indexes") as reopened:
        index_ids, db_ids = _index_and_db_ids(reopened)
        assert index_ids == db_ids and len(db_ids) == 3 * 6
        if backend == "milvus":
            assert _milvus_held(erased) == [] and _milvus_held(sorted(db_ids)) == sorted(db_ids)


def test_a_second_gallery_on_the_same_store_sees_changes_at_once(db_url: str, tmp_path: Path, backend: str) -> None:
    """Two galleries with indexes of their own (as two processes have) over one database and store."""
    with Gallery.open(db_url, tenant="test", index_dir=tmp_path / "indexes") as first, \
            Gallery.open(db_url, tenant="test", index_dir=tmp_path / "indexes") as second:
        first.create_collection("c", "scrfd-mbf")
        rid = _enrol(first, 3)
        assert _index_and_db_ids(second)[0] == _index_and_db_ids(first)[1]  # loaded by the second
        _enrol(first, 1, seed=9, first=5)
        newcomer = first.face_vectors("c", [f.id for f in first.list_faces("c", subject="p5").items])[1][0]
        assert second.search("c", Embedding(newcomer, rid), k=1, rank_only=True)[0].external_id == "p5"
        second.delete_subject("c", "p5")
        index_ids, db_ids = _index_and_db_ids(first)
        assert index_ids == db_ids and len(db_ids) == 9


@pytest.mark.parametrize("backend", ["milvus"], indirect=True)  # Lite: its server stopped here is Milvus unreachable
def test_a_collection_whose_vectors_milvus_cannot_drop_is_not_deleted(db_url: str, tmp_path: Path, backend: str,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    """The database's delete was committed before the Milvus drop: with Milvus unreachable the
    call failed after the collection was gone, and its vectors stayed in Milvus with nothing
    left to name them (dropped by no later open). Now the delete is refused whole, and done
    once Milvus is back."""
    from milvus_lite.server_manager import server_manager_instance

    monkeypatch.setenv("FACEATLAS_MILVUS_TIMEOUT", "1")
    with Gallery.open(db_url, tenant="test", index_dir=tmp_path / "indexes") as gallery:
        gallery.create_collection("c", "scrfd-mbf")
        _enrol(gallery, 3)
        ids = sorted(gallery.face_vectors("c")[0].tolist())
        assert _milvus_held(ids) == ids
        server_manager_instance.release_server(os.environ["FACEATLAS_MILVUS_URI"])  # Milvus Lite stops
        start = time.monotonic()
        with pytest.raises(VectorStoreUnavailable):
            gallery.delete_collection("c")
        # refused within the timeout (1 s; 10 s of slack for a loaded machine), not pymilvus's minutes of retries
        assert time.monotonic() - start < 1 + 10
        assert gallery.get_collection("c").faces == len(ids)  # nothing deleted
        gallery._indexes.store.close()  # Milvus is back: the next call connects (Lite's server starts again)
        assert _milvus_held(ids) == ids
        gallery.delete_collection("c")
        assert _milvus_collections() == []
    with Gallery.open(db_url, tenant="test", index_dir=tmp_path / "indexes") as gallery:
        assert gallery.list_collections() == [] and _milvus_collections() == []


def test_vectors_of_a_collection_deleted_without_their_drop_go_at_the_next_open(db_url: str, tmp_path: Path,
                                                                                   backend: str,
                                                                                   monkeypatch: pytest.MonkeyPatch
                                                                                   ) -> None:
    """A collection deleted by a process whose drop never reached Milvus (killed between its
    commit and its drop; here one on the FAISS backend): its vectors stayed in Milvus for good
    (only a later collection given the same id dropped them). Now the next open drops them."""
    if backend != "milvus":
        pytest.skip("Milvus only")
    with Gallery.open(db_url, tenant="test", index_dir=tmp_path / "indexes") as gallery:
        for name in ("c", "kept"):
            gallery.create_collection(name, "scrfd-mbf")
        _enrol(gallery, 3)
        ids = sorted(gallery.face_vectors("c")[0].tolist())
        kept = gallery.add_embeddings("kept", "k", np.random.default_rng(4).normal(size=(2, 128)),
                                      recognizer_id=gallery.get_collection("kept").recognizer_id)
    assert len(_milvus_collections()) == 2
    monkeypatch.setenv("FACEATLAS_VECTOR_BACKEND", "faiss")
    with Gallery.open(db_url, tenant="test", index_dir=tmp_path / "elsewhere") as writer:
        writer.delete_collection("c")
    assert _milvus_held_anywhere(ids) == ids  # left behind
    monkeypatch.setenv("FACEATLAS_VECTOR_BACKEND", "milvus")
    with Gallery.open(db_url, tenant="test", index_dir=tmp_path / "indexes"):
        assert _milvus_held_anywhere(ids + list(kept)) == sorted(kept)  # only the collection the database has
        assert len(_milvus_collections()) == 1


@pytest.mark.parametrize("backend", ["milvus", "milvus-server"], indirect=True)  # Milvus's own collection names
def test_tenants_and_collections_get_milvus_collections_of_their_own(db_url: str, tmp_path: Path,
                                                                     backend: str) -> None:
    with Gallery.open(db_url, tenant="svc:acme", index_dir=tmp_path / "indexes") as acme:
        other = acme.for_tenant("app:albums:default:holiday")
        for gallery in (acme, other):
            gallery.create_collection("c", "scrfd-mbf")
        rid = _enrol(acme, 2)
        vector = acme.face_vectors("c")[1][0]
        assert other.search("c", Embedding(vector, rid), k=3, rank_only=True) == []
        client = pymilvus.MilvusClient(os.environ["FACEATLAS_MILVUS_URI"])
        prefix = os.environ["FACEATLAS_MILVUS_PREFIX"]
        names = sorted(n for n in client.list_collections() if n.startswith(prefix + "_"))
        client.close()
    assert len([n for n in names if re.fullmatch(rf"{prefix}_svc_acme_[0-9a-f]{{8}}_c\d+", n)]) == 1
    assert len([n for n in names if re.fullmatch(rf"{prefix}_app_albums_default_holiday_[0-9a-f]{{8}}_c\d+", n)]) == 1


def test_a_database_made_anew_never_trusts_the_vectors_left_beside_it(tmp_path: Path, backend: str,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    """The SQLite file deleted, its index folder (or Milvus file) kept: the new database gave the
    new collection and faces the old ids, the copy was caught up by face ids, and an erased
    person's vector answered a search as the new person (similarity 1.0); the new people were
    not found with their own vectors. On Milvus with FACEATLAS_MILVUS_PREFIX unset, the new
    database (a new id) takes a prefix of its own; with the old one's prefix set, it is refused
    (tests/gallery/test_milvus_config.py)."""
    monkeypatch.delenv("FACEATLAS_MILVUS_PREFIX", raising=False)
    url = f"sqlite:///{tmp_path / 'fa.db'}"
    with Gallery.open(url, tenant="test", index_dir=tmp_path / "indexes") as gallery:
        gallery.create_collection("c", "scrfd-mbf")
        rid = _enrol(gallery, 5, seed=1)
        _, erased = gallery.face_vectors("c")
    for leftover in tmp_path.glob("fa.db*"):
        leftover.unlink()
    with Gallery.open(url, tenant="test", index_dir=tmp_path / "indexes") as gallery:
        gallery.create_collection("c", "scrfd-mbf")
        _enrol(gallery, 5, seed=2, first=10)
        ids, vectors = gallery.face_vectors("c")
        for vector in erased:
            assert gallery.search("c", Embedding(vector, rid), k=1, rank_only=True)[0].similarity < 0.5
        for face_id, vector in zip(ids, vectors, strict=True):
            assert gallery.search("c", Embedding(vector, rid), k=1, rank_only=True)[0].best_face_id == face_id


def test_prefixes_and_tenants_that_join_alike_name_two_milvus_collections(tmp_path: Path, backend: str) -> None:
    """Prefix ``fa`` with tenant ``b_x`` and prefix ``fa_b`` with tenant ``x`` (two databases on one
    Milvus file, as the docs ask: a prefix each) named one Milvus collection."""
    from faceatlas.gallery.index.milvus import MilvusStore

    if backend != "milvus":
        pytest.skip("Milvus names only")
    store = MilvusStore(os.environ["FACEATLAS_MILVUS_URI"], prefix="fa")
    other = MilvusStore(os.environ["FACEATLAS_MILVUS_URI"], prefix="fa_b")
    try:
        assert store.name("b_x", 1) != other.name("x", 1)
        assert store.name("b x", 1) != store.name("b_x", 1)
    finally:
        store.close()
        other.close()


# Enrols batches of random embeddings forever, deleting a face now and then.
CHILD = """
import sys
import numpy as np
from faceatlas.gallery import Gallery

gallery = Gallery.open(sys.argv[1], tenant="test", index_dir=sys.argv[2], autosave_every=3)
rid = gallery.get_collection("c").recognizer_id
rng = np.random.default_rng(int(sys.argv[3]))
print("ready", flush=True)
step = 0
while True:
    ids = gallery.add_embeddings("c", f"p{step % 7}", rng.normal(size=(4, 128)), recognizer_id=rid)
    if step % 5 == 4:
        gallery.delete_face("c", ids[0])
    step += 1
"""


# SQLite only, two kills: each round starts a child and reopens (tests/gallery/test_gallery_crash.py
# kills the FAISS backend's writer four times on both databases; here it is slow).
@pytest.mark.parametrize("backend", [pytest.param("faiss", marks=pytest.mark.slow), "milvus", "milvus-server"],
                         indirect=True)
def test_sigkill_mid_enrolment_then_reopen_is_consistent(tmp_path: Path, backend: str,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    lite = backend == "milvus" and "://" not in os.environ["FACEATLAS_MILVUS_URI"]
    if lite:
        monkeypatch.setenv("FACEATLAS_MILVUS_URI", str(tmp_path / "crash.db"))  # Lite: one process per file
    db_url = f"sqlite:///{tmp_path / 'crash.sqlite'}"
    index_dir = tmp_path / "indexes"

    def check() -> None:
        with Gallery.open(db_url, tenant="test", index_dir=index_dir) as gallery:
            index_ids, db_ids = _index_and_db_ids(gallery)
            assert index_ids == db_ids
            if backend == "milvus":
                assert _milvus_held(sorted(db_ids)) == sorted(db_ids)
        release()

    def release() -> None:  # let the next child open the Lite file
        if lite:
            from milvus_lite.server_manager import server_manager_instance

            server_manager_instance.release_server(str(tmp_path / "crash.db"))

    with Gallery.open(db_url, tenant="test", index_dir=index_dir) as setup:
        setup.create_collection("c", "scrfd-mbf")
    release()
    rng = random.Random(3)
    for round_number in range(2):
        child = subprocess.Popen([sys.executable, "-c", CHILD, db_url, str(index_dir), str(round_number)],
                                 stdout=subprocess.PIPE, text=True, env={**os.environ, "PYTHONUNBUFFERED": "1"})
        assert child.stdout is not None and child.stdout.readline().strip() == "ready"
        time.sleep(rng.uniform(0.3, 0.8))
        child.send_signal(signal.SIGKILL)
        child.wait()
        check()



# Opens a MilvusStore on each argument in turn: one line of JSON each, the error it answered (None).
OPEN_STORE = """
import json, sys, time
from faceatlas.errors import FaceAtlasError
from faceatlas.gallery.index.milvus import MilvusStore

for uri in sys.argv[1:]:
    start = time.monotonic()
    try:
        MilvusStore(uri, prefix="t", timeout_s=2).close()
        error, message = None, None
    except FaceAtlasError as raised:
        error, message = type(raised).__name__, str(raised)
    print(json.dumps({"error": error, "message": message, "seconds": time.monotonic() - start}), flush=True)
"""


def _file_modes_enforced() -> list[str]:
    """A command prefix under which a process cannot write what file modes forbid: none for a
    user; root drops the capabilities that let it ignore them (setpriv, from util-linux)."""
    if os.geteuid() != 0:
        return []
    setpriv = shutil.which("setpriv")
    if setpriv is None:
        pytest.skip("root ignores file modes and setpriv is not here to drop that")
    return [setpriv, "--bounding-set=-dac_override,-dac_read_search", "--"]


def _one_clear_sentence(message: str, path: Path, *words: str) -> None:
    assert str(path) in message and "\n" not in message, message
    assert all(word in message for word in words), message
    assert "Exception" not in message and "code=" not in message and "Open local milvus failed" not in message, message


def test_a_damaged_milvus_lite_file_is_refused_in_one_sentence(tmp_path: Path) -> None:
    """Random bytes named m.db: Lite's server printed its log and pymilvus answered "Open local
    milvus failed"; now one sentence names the file and what to do, at once."""
    from faceatlas.gallery.index.milvus import MilvusStore

    damaged = tmp_path / "m.db"
    damaged.write_bytes(np.random.default_rng(0).bytes(100_000))
    start = time.monotonic()
    with pytest.raises(VectorStoreUnavailable) as refused:
        MilvusStore(str(damaged), prefix="t", timeout_s=2)
    assert time.monotonic() - start < 2 + 10  # within the timeout (and a loaded machine's slack), not minutes
    _one_clear_sentence(str(refused.value), damaged, "not a Milvus Lite file", "move it aside")
    error = refused.value
    assert error.__cause__ is None and (error.__context__ is None or error.__suppress_context__)  # no traceback
    assert damaged.read_bytes()[:16] != b"SQLite format 3\x00"  # left as it was


def test_a_read_only_milvus_lite_file_or_folder_is_refused_in_one_sentence(tmp_path: Path) -> None:
    """A Lite file this process may not write was opened and failed at the first write ("internal
    error"); a folder it may not write failed on Lite's lock file (a PermissionError naming the
    lock, not the setting). Both are refused at once, in one sentence naming the file."""
    writable, read_only = tmp_path / "rw", tmp_path / "ro"
    writable.mkdir()
    read_only.mkdir()
    lite = writable / "m.db"
    made = subprocess.run([sys.executable, "-c", OPEN_STORE, str(lite)], capture_output=True, text=True, timeout=60)
    assert json.loads(made.stdout)["error"] is None, made.stdout + made.stderr  # a real Lite file
    lite.chmod(0o444)
    read_only.chmod(0o555)
    try:
        done = subprocess.run([*_file_modes_enforced(), sys.executable, "-c", OPEN_STORE, str(lite),
                               str(read_only / "m.db")], capture_output=True, text=True, timeout=60)
    finally:
        lite.chmod(0o644)
        read_only.chmod(0o755)
    answers = [json.loads(line) for line in done.stdout.splitlines()]
    assert len(answers) == 2, done.stdout + done.stderr
    assert answers[0]["error"] == "VectorStoreUnavailable", answers[0]
    _one_clear_sentence(answers[0]["message"], lite, "cannot be opened for writing", "write access")
    assert answers[1]["error"] == "VectorStoreUnavailable", answers[1]
    _one_clear_sentence(answers[1]["message"], read_only / "m.db", "folder", "cannot be written")
    assert all(answer["seconds"] < 3 for answer in answers), answers
    assert not list(read_only.iterdir())


def test_a_cut_short_milvus_lite_file_is_refused_in_one_sentence(tmp_path: Path) -> None:
    """A Lite file cut short (a copy that stopped) passed the header check: Lite's server printed
    its log on stderr and failed. Now one sentence names the file and the bytes missing."""
    lite = tmp_path / "m.db"
    made = subprocess.run([sys.executable, "-c", OPEN_STORE, str(lite)], capture_output=True, text=True, timeout=60)
    assert json.loads(made.stdout)["error"] is None, made.stdout + made.stderr  # a real Lite file
    whole = lite.read_bytes()
    lite.write_bytes(whole[:len(whole) // 2])
    done = subprocess.run([sys.executable, "-c", OPEN_STORE, str(lite)], capture_output=True, text=True, timeout=60)
    answer = json.loads(done.stdout)
    assert answer["error"] == "VectorStoreUnavailable", answer
    _one_clear_sentence(answer["message"], lite, "cut short", f"of the {len(whole):,} bytes", "move it aside")
    assert "milvus" not in done.stderr.lower(), done.stderr  # none of Lite's server log
    assert answer["seconds"] < 3


def test_a_milvus_lite_file_under_a_file_names_the_file_in_the_way(tmp_path: Path) -> None:
    """FACEATLAS_MILVUS_URI=notes.txt/m.db said "the folder ... cannot be written (Not a directory)"."""
    from faceatlas.gallery.index.milvus import check_lite_file

    notes = tmp_path / "notes.txt"
    notes.write_text("not a folder")
    with pytest.raises(VectorStoreUnavailable) as refused:
        check_lite_file(notes / "sub" / "m.db")
    _one_clear_sentence(str(refused.value), notes / "sub" / "m.db", f"{notes} is a file, not a folder")
    assert notes.read_text() == "not a folder"


# Holds a MilvusStore on argv[1]: "ready", then at a line on stdin closes it ("closed") and waits for another.
HOLD_STORE = """
import sys
from faceatlas.gallery.index.milvus import MilvusStore

store = MilvusStore(sys.argv[1], prefix="t", timeout_s=2)
print("ready", flush=True)
sys.stdin.readline()
store.close()
print("closed", flush=True)
sys.stdin.readline()
"""


def _open_store_in_a_process(*uris: Path) -> list[dict[str, object]]:
    done = subprocess.run([sys.executable, "-c", OPEN_STORE, *map(str, uris)], capture_output=True, text=True,
                          timeout=60)
    return [json.loads(line) for line in done.stdout.splitlines()] or [{"stderr": done.stderr}]


def test_a_milvus_lite_file_is_served_by_one_process_whoever_gives_up(tmp_path: Path) -> None:
    """A second process refused by Lite unlinked the first one's lock file (milvus-lite's cleanup
    of its refused server): a third then served the same file beside the first (two Lite servers
    writing one SQLite file). Now every other process is refused, naming the file and the process
    that holds it, until the holder closes its store (its Lite server stops, the file is free)."""
    lite = tmp_path / "m.db"
    holder = subprocess.Popen([sys.executable, "-c", HOLD_STORE, str(lite)], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, text=True)
    assert holder.stdin is not None and holder.stdout is not None
    try:
        assert holder.stdout.readline().strip() == "ready"
        second, third = _open_store_in_a_process(lite)[0], _open_store_in_a_process(lite)[0]
        assert (second.get("error"), third.get("error")) == ("VectorStoreUnavailable",) * 2, (second, third)
        for answer in (second, third):
            _one_clear_sentence(str(answer["message"]), lite, f"in use by process {holder.pid}",
                                "one process per file")
        holder.stdin.write("\n")
        holder.stdin.flush()
        assert holder.stdout.readline().strip() == "closed"
        assert _open_store_in_a_process(lite)[0].get("error") is None  # free once the holder closed its store
    finally:
        holder.kill()
        holder.wait()


def test_a_milvus_lite_file_another_program_serves_is_refused_and_its_lock_kept(tmp_path: Path) -> None:
    """A program without FaceAtlas's lock (here this test, through pymilvus) serves the file: the
    refused process's Lite cleanup unlinked that program's lock file; now it is refused first."""
    from milvus_lite.server_manager import server_manager_instance

    lite = tmp_path / "m.db"
    client = pymilvus.MilvusClient(str(lite))
    try:
        assert (tmp_path / ".m.db.lock").exists()
        refused = _open_store_in_a_process(lite)[0]
        assert refused.get("error") == "VectorStoreUnavailable", refused
        _one_clear_sentence(str(refused["message"]), lite, "in use by another program", "one process per file")
        assert (tmp_path / ".m.db.lock").exists()  # the program's lock is still there
    finally:
        client.close()
        server_manager_instance.release_server(str(lite))
