"""How the Milvus backend is configured and what it says: which prefix a database's copy takes (two
databases on one Milvus never drop each other's copy), an unreachable server or an index Lite does
not build said at open in one sentence, pymilvus's own log lines kept off stderr, a tenant not told
Milvus's address, and the purge of a Lite file (a deleted subject's vector bytes gone from the disk).
Real Milvus Lite, a file per test (``FACEATLAS_MILVUS_PREFIX`` unset, as a user leaves it)."""

from __future__ import annotations

import logging
import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest

from faceatlas.engine import Embedding
from faceatlas.errors import InvalidSetting, VectorStoreUnavailable
from faceatlas.gallery import Gallery

pymilvus = pytest.importorskip("pymilvus")


@pytest.fixture
def lite(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A Milvus Lite file of this test's own, in a folder of its own (the database is beside it), the
    backend Milvus, no prefix set; its Lite server (started in this process by the galleries or by
    :func:`_held`) stopped at the end."""
    from milvus_lite.server_manager import server_manager_instance

    path = tmp_path / "milvus" / "m.db"
    monkeypatch.setenv("FACEATLAS_VECTOR_BACKEND", "milvus")
    monkeypatch.setenv("FACEATLAS_MILVUS_URI", str(path))
    monkeypatch.delenv("FACEATLAS_MILVUS_PREFIX", raising=False)
    monkeypatch.delenv("FACEATLAS_MILVUS_INDEX", raising=False)
    yield path
    server_manager_instance.release_server(str(path))


def _enrol(gallery: Gallery, subjects: int, seed: int) -> list[int]:
    gallery.create_collection("c", "scrfd-mbf")
    rid = gallery.get_collection("c").recognizer_id
    rng = np.random.default_rng(seed)
    ids: list[int] = []
    for subject in range(subjects):
        ids += gallery.add_embeddings("c", f"p{subject}", rng.normal(size=(3, 128)), recognizer_id=rid)
    return sorted(ids)


def _held(path: Path) -> dict[str, list[int]]:
    """Every Milvus collection of the file (revisions aside) with the face ids it holds, asked of
    Milvus with a client of its own."""
    client = pymilvus.MilvusClient(str(path))
    try:
        held = {}
        for name in client.list_collections():
            if not name.endswith("_revisions"):
                rows = client.query(name, filter="id >= 0", output_fields=["id"], limit=10_000,
                                    consistency_level="Strong")
                held[name] = sorted(int(row["id"]) for row in rows)
        return held
    finally:
        client.close()


def _prefix(gallery: Gallery) -> str:
    return str(gallery._indexes.store.prefix)


# -- two databases, one Milvus ---------------------------------------------------------------------
def test_two_databases_on_one_milvus_keep_their_own_copies_by_default(lite: Path, tmp_path: Path) -> None:
    """Both databases took the prefix ``faceatlas``: the second, finding the first one's copy of
    its collection 1 under its own tenant and name, dropped it (and the first then dropped the
    second's, each rebuilding at every open: 20,000 faces 3.9 s, 1M ~20 min). Now each database
    takes a prefix of its own id, and neither copy is touched by the other."""
    with Gallery.open(f"sqlite:///{tmp_path / 'a.db'}", tenant="x") as first:
        first_ids = _enrol(first, 3, seed=1)
        first_prefix = _prefix(first)
    before = _held(lite)
    assert list(before.values()) == [first_ids]
    with Gallery.open(f"sqlite:///{tmp_path / 'b.db'}", tenant="x") as second:
        second_ids = _enrol(second, 2, seed=2)
        second_prefix = _prefix(second)
    after = _held(lite)
    assert {name: ids for name, ids in after.items() if name in before} == before  # the first's copy, untouched
    assert sorted(ids for name, ids in after.items() if name not in before) == [second_ids]
    assert second_prefix != first_prefix
    assert all(p.startswith("faceatlas_") and len(p) == len("faceatlas_") + 12 for p in (second_prefix, first_prefix))
    with Gallery.open(f"sqlite:///{tmp_path / 'a.db'}", tenant="x") as first:
        assert _prefix(first) == first_prefix  # the same prefix at every open: nothing rebuilt
        _, vectors = first.face_vectors("c", first_ids[:1])
        rid = first.get_collection("c").recognizer_id
        assert first.search("c", Embedding(vectors[0], rid), k=1, rank_only=True)[0].best_face_id == first_ids[0]
    assert _held(lite) == after


def test_a_prefix_another_database_holds_is_refused_and_its_copy_kept(lite: Path, tmp_path: Path,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    """FACEATLAS_MILVUS_PREFIX=shared for two databases: the second dropped the first one's copy.
    Now the prefix is claimed in Milvus by the first: the second is refused, naming the variable."""
    monkeypatch.setenv("FACEATLAS_MILVUS_PREFIX", "shared")
    with Gallery.open(f"sqlite:///{tmp_path / 'a.db'}", tenant="x") as first:
        first_ids = _enrol(first, 2, seed=1)
        first_store = first._indexes.store
    with pytest.raises(InvalidSetting) as refused, Gallery.open(f"sqlite:///{tmp_path / 'b.db'}", tenant="y") as second:
        _enrol(second, 2, seed=2)
    message, owner = str(refused.value), first_store.database
    assert message.startswith("FACEATLAS_MILVUS_PREFIX='shared': ") and owner in message and str(lite) in message
    assert "\n" not in message
    assert list(_held(lite).values()) == [first_ids]
    with Gallery.open(f"sqlite:///{tmp_path / 'a.db'}", tenant="x") as first:  # still the first one's
        assert first.get_collection("c").faces == len(first_ids)


def test_a_copy_made_before_database_ids_is_kept_by_its_database(lite: Path, tmp_path: Path,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    """An installation upgraded with its copy under the old default prefix ``faceatlas``, which no
    database claims: the first database that opens it keeps it (no rebuild); another gets its own."""
    from faceatlas.gallery.index.milvus import _CLAIM_ID

    url = f"sqlite:///{tmp_path / 'a.db'}"
    monkeypatch.setenv("FACEATLAS_MILVUS_PREFIX", "faceatlas")
    with Gallery.open(url, tenant="x") as gallery:
        ids = _enrol(gallery, 2, seed=1)
        database = gallery._indexes.store.database
    client = pymilvus.MilvusClient(str(lite))  # the copy as a version without database ids left it: no claim
    try:
        client.delete("faceatlas_revisions", filter=f"collection_id == {_CLAIM_ID}")
    finally:
        client.close()
    before = _held(lite)
    assert list(before.values()) == [ids]
    monkeypatch.delenv("FACEATLAS_MILVUS_PREFIX")
    with Gallery.open(url, tenant="x") as gallery:
        assert _prefix(gallery) == "faceatlas"
        gallery.search("c", Embedding(np.ones(128), gallery.get_collection("c").recognizer_id), rank_only=True)
    assert _held(lite) == before  # kept, not made again under another name
    client = pymilvus.MilvusClient(str(lite))
    try:
        claim = client.query("faceatlas_revisions", filter=f"collection_id == {_CLAIM_ID}",
                             output_fields=["recognizer_id"], consistency_level="Strong")
    finally:
        client.close()
    assert [row["recognizer_id"] for row in claim] == [database]
    with Gallery.open(f"sqlite:///{tmp_path / 'b.db'}", tenant="x") as other:
        assert _prefix(other) != "faceatlas"
        _enrol(other, 1, seed=2)
    assert {name: held for name, held in _held(lite).items() if name in before} == before


# -- what an open says -----------------------------------------------------------------------------
def _closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def test_a_server_that_cannot_be_reached_is_said_so_with_its_uri_and_timeout() -> None:
    """A port where nothing listens said "Fail connecting to server on ..., illegal connection
    params or server unavailable"; a port where something else answers (as http://10.255.255.1:19530
    does behind a proxy) said "Incorrect port or sdk is incompatible with server". Both now: no Milvus
    server could be reached at the URI within the timeout."""
    import grpc

    from faceatlas.gallery.index.milvus import MilvusStore

    other = grpc.server(ThreadPoolExecutor(max_workers=1))  # a gRPC server that is no Milvus
    port = other.add_insecure_port("127.0.0.1:0")
    other.start()
    try:
        for uri in (f"http://127.0.0.1:{_closed_port()}", f"http://127.0.0.1:{port}"):
            with pytest.raises(VectorStoreUnavailable) as refused:
                MilvusStore(uri, prefix="t", timeout_s=1)
            message = str(refused.value)
            assert message.startswith(f"no Milvus server could be reached at {uri} within 1 s"), message
            assert "FACEATLAS_MILVUS_URI" in message and "Incorrect port" not in message, message
    finally:
        other.stop(None)


def test_hnsw_on_milvus_lite_is_refused_at_open(lite: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """FACEATLAS_MILVUS_INDEX=HNSW on a Lite file opened, and failed at the first collection Milvus
    made ("local mode only support FLAT IVF_FLAT AUTOINDEX"). Now the open refuses it, naming the
    variable, before Lite starts."""
    monkeypatch.setenv("FACEATLAS_MILVUS_INDEX", "HNSW")
    with pytest.raises(InvalidSetting) as refused:
        Gallery.open(f"sqlite:///{tmp_path / 'a.db'}", tenant="x").close()
    message = str(refused.value)
    assert message.startswith("FACEATLAS_MILVUS_INDEX='HNSW': ") and "FLAT" in message and str(lite) in message
    assert not lite.exists()
    monkeypatch.setenv("FACEATLAS_MILVUS_INDEX", "IVF_FLAT")  # what Lite builds is opened
    with Gallery.open(f"sqlite:///{tmp_path / 'a.db'}", tenant="x") as gallery:
        _enrol(gallery, 1, seed=1)


# Opens a Lite store and lists ids (pymilvus warns "failed to get mvccTs" on Lite), then a server
# where nothing listens (pymilvus logs "[ERROR] ... Failed to create new connection"), the log at DEBUG on stdout.
NOISY = """
import logging, sys
import numpy as np
logging.basicConfig(level=logging.DEBUG if sys.argv[3] == "debug" else logging.WARNING, stream=sys.stdout,
                    format="%(name)s %(levelname)s %(message)s")
from faceatlas.errors import FaceAtlasError
from faceatlas.gallery.index.milvus import MilvusStore

store = MilvusStore(sys.argv[1], prefix="t", timeout_s=5)
index = store.open("t_x_c1", 4)
index.add(np.arange(3), np.eye(3, 4))
print("ids", len(index.ids()), flush=True)
store.close()
try:
    MilvusStore(sys.argv[2], prefix="t", timeout_s=1)
except FaceAtlasError as error:
    print("refused", error.code, flush=True)
"""


@pytest.mark.parametrize("level", ["warning", "debug"])
def test_pymilvus_log_lines_stay_off_stderr_and_in_the_debug_log(tmp_path: Path, level: str) -> None:
    """The CLI's stderr had pymilvus's "[WARNING][__setup_ts_by_request] failed to get mvccTs",
    "[ERROR][handler] RPC error ..." before the one-line error, and milvus-lite's pkg_resources
    UserWarning. Now stderr holds none of them; a log at DEBUG (a server's) still has pymilvus's lines."""
    done = subprocess.run([sys.executable, "-c", NOISY, str(tmp_path / "m.db"), f"http://127.0.0.1:{_closed_port()}",
                           level], capture_output=True, text=True, timeout=120,
                          env=dict(os.environ))
    assert "ids 3" in done.stdout and "refused vector_store_unavailable" in done.stdout, done.stdout + done.stderr
    assert done.stderr == "", done.stderr
    pymilvus_lines = [line for line in done.stdout.splitlines() if line.startswith("faceatlas.gallery.index.milvus."
                                                                                   "pymilvus DEBUG ")]
    if level == "debug":
        assert any("Failed to create new connection" in line for line in pymilvus_lines), done.stdout
    else:
        assert pymilvus_lines == [] and "pymilvus" not in done.stdout, done.stdout


def test_a_tenant_is_told_the_vector_store_is_unavailable_not_where_it_is(caplog: pytest.LogCaptureFixture) -> None:
    """VectorStoreUnavailable had no client message: an API caller read the Milvus address (and, for
    a failed call, the Milvus collection's name with a tenant's id). Now the answer is generic
    (503, vector_store_unavailable) and the server log has the detail."""
    from fastapi import FastAPI
    from fastapi.testclient import TestClient

    from faceatlas.gallery.index.milvus import MilvusStore
    from faceatlas.service.errors import install_error_handlers

    uri = f"http://127.0.0.1:{_closed_port()}"
    with pytest.raises(VectorStoreUnavailable) as unreachable:
        MilvusStore(uri, prefix="t", timeout_s=1)
    failed_call = VectorStoreUnavailable("Milvus could not search faceatlas_svc_acme_1a2b3c4d_c7: collection not "
                                         "loaded")
    app = FastAPI()
    install_error_handlers(app)

    @app.get("/{which}")
    def boom(which: str) -> None:
        raise unreachable.value if which == "unreachable" else failed_call

    with caplog.at_level(logging.ERROR, logger="faceatlas.service.errors"):
        answers = [TestClient(app).get(f"/{which}") for which in ("unreachable", "call")]
    for answer in answers:
        assert answer.status_code == 503
        assert answer.json() == {"error": {"code": "vector_store_unavailable",
                                           "message": VectorStoreUnavailable.client_message}}
        assert "127.0.0.1" not in answer.text and "acme" not in answer.text and "Milvus" not in answer.text
    assert uri in caplog.text and "faceatlas_svc_acme_1a2b3c4d_c7" in caplog.text


# -- erasure on Lite's disk ------------------------------------------------------------------------
def _on_disk(folder: Path, needle: bytes) -> list[str]:
    """The files under ``folder`` (Lite's file, journal and whatever it keeps beside them) that hold
    ``needle``; lock files aside (closing a file of a POSIX lock this process holds releases it)."""
    return sorted(str(p) for p in folder.rglob("*")
                  if p.is_file() and not p.name.endswith("lock") and needle in p.read_bytes())


def test_purging_a_lite_file_leaves_no_byte_of_a_deleted_subject(lite: Path, tmp_path: Path) -> None:
    """Lite has no compaction: a deleted subject's vector stays in the .db file (never searched).
    The purge docs/milvus.md gives: with every process of the file stopped, delete the Lite file;
    the next open copies the galleries' vectors again from the database, the deleted ones not."""
    folder = lite.parent  # Lite's folder (the database, which holds the vector too, is not in it)
    secret = np.random.default_rng(42).normal(size=128)
    secret /= np.linalg.norm(secret)
    needle = secret.astype(np.float32).tobytes()[:64]
    url = f"sqlite:///{tmp_path / 'a.db'}"
    with Gallery.open(url, tenant="x") as gallery:
        kept = _enrol(gallery, 3, seed=1)
        rid = gallery.get_collection("c").recognizer_id
        gallery.add_embeddings("c", "victim", [secret], recognizer_id=rid)
        assert _on_disk(folder, needle)  # written to Lite's files
        gallery.delete_subject("c", "victim")
        assert gallery.search("c", Embedding(secret, rid), k=1, rank_only=True)[0].external_id != "victim"
    assert _on_disk(folder, needle)  # Lite's exception (no compaction): the README and docs/milvus.md say so
    for path in folder.iterdir():  # the purge: every process of the file stopped, the file (and its journal) deleted
        if path.name.startswith(("m.db", ".m.db")):
            path.unlink()
    with Gallery.open(url, tenant="x") as gallery:
        _, vectors = gallery.face_vectors("c", kept[:1])
        assert gallery.search("c", Embedding(vectors[0], rid), k=1, rank_only=True)[0].best_face_id == kept[0]
    assert list(_held(lite).values()) == [kept]
    assert _on_disk(folder, needle) == []


def test_the_vector_backend_is_chosen_in_code_too(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """``Gallery.open`` read the backend from the environment only: a program could not put one
    gallery on Milvus and another on FAISS. ``storage_settings`` picks it (and the default database)."""
    from milvus_lite.server_manager import server_manager_instance

    from faceatlas.settings import StorageSettings

    monkeypatch.delenv("FACEATLAS_VECTOR_BACKEND", raising=False)
    path = tmp_path / "milvus" / "m.db"
    chosen = StorageSettings(vector_backend="milvus", milvus_uri=str(path), database_url=str(tmp_path / "g.db"))
    try:
        with Gallery.open(tenant="x", storage_settings=chosen) as gallery:
            ids = _enrol(gallery, 2, seed=3)
        assert list(_held(path).values()) == [ids]
        assert (tmp_path / "g.db").is_file() and not (tmp_path / "g.db.indexes").exists()  # no FAISS files
        with Gallery.open(str(tmp_path / "f.db"), tenant="x") as environment:  # the environment's: FAISS
            _enrol(environment, 1, seed=4)
        assert list(_held(path).values()) == [ids]  # none of its faces went to Milvus
    finally:
        server_manager_instance.release_server(str(path))
