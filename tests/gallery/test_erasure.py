"""Erasure is a legal promise: once a delete returns, no file under the index folder, no vector
store and no database row holds a vector of what was deleted — whether this process had the
index loaded or not, through every door that deletes (the gallery, the API, the CLI, retail's
member erasure), with enrolments running beside it, and after a SIGKILL (issue 15, items 1–3).
The tests marked ``BOTH_BACKENDS`` run on the FAISS index files and on Milvus Lite."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
import zipfile
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from faceatlas.apps.retail import Camera, ConsentRecord, Privacy, RetailStore, StoreConfig
from faceatlas.apps.retail.store import COLLECTION as MEMBERS
from faceatlas.db import create_database_engine
from faceatlas.engine import Embedding, Face, l2_normalize
from faceatlas.gallery import Gallery, NotFound
from faceatlas.gallery.index import load_index
from faceatlas.gallery.models import Collection, FaceRecord, Subject
from faceatlas.service import create_app
from faceatlas.service.accounts import Accounts
from faceatlas.service.db import migrate as migrate_service
from faceatlas.settings import ServiceSettings

DIM = 128
BOTH_BACKENDS = pytest.mark.parametrize("vector_backend", ["faiss", "milvus"], indirect=True)


def vectors_on_disk(index_dir: Path, vectors: np.ndarray) -> list[str]:
    """Which of ``vectors`` any file under ``index_dir`` holds: as the exact float32 or float16
    bytes the gallery stores, or (in any array of a NumPy archive, temporary ones included) as a
    row within 1e-3 of it."""
    stored = l2_normalize(np.asarray(vectors, np.float32))
    found = []
    for path in (p for p in index_dir.rglob("*") if p.is_file()):
        blob = path.read_bytes()
        for row, vector in enumerate(stored):
            if vector.tobytes() in blob or vector.astype(np.float16).tobytes() in blob:
                found.append(f"vector {row} in {path.name}")
        if zipfile.is_zipfile(path):
            with np.load(path, allow_pickle=False) as archive:
                for name in archive.files:
                    array = archive[name]
                    if array.ndim == 2 and array.shape[1] == DIM and array.dtype.kind == "f" and len(array):
                        close = (array.astype(np.float32) @ stored.T).max(axis=0) > 1 - 1e-3
                        found += [f"vector {row} in {path.name}:{name}" for row in np.flatnonzero(close)]
    return found


def assert_erased(gallery: Gallery, index_dir: Path, vectors: np.ndarray, face_ids: Iterable[int] = (),
                  milvus_held: Callable[[Iterable[int]], list[int]] | None = None) -> None:
    """Neither a file under ``index_dir`` nor a face row of the database holds any of ``vectors``,
    and (given ``milvus_held``) Milvus holds none of ``face_ids``."""
    assert not vectors_on_disk(index_dir, vectors)
    with gallery._sessions() as session:
        blobs = list(session.scalars(select(FaceRecord.embedding)))
    stored = np.frombuffer(b"".join(blobs), np.float32).reshape(-1, DIM)
    assert not len(stored) or (stored @ l2_normalize(vectors).T).max() < 1 - 1e-3
    if milvus_held is not None:
        assert milvus_held(face_ids) == []


def _unit(rng: np.random.Generator, n: int) -> np.ndarray:
    vectors = rng.normal(size=(n, DIM)).astype(np.float32)
    return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)


def _fill(db_url: str, index_dir: Path, subjects: int, per_subject: int = 3
          ) -> tuple[str, dict[str, tuple[list[int], np.ndarray]]]:
    rng = np.random.default_rng(3)
    enrolled = {}
    with Gallery.open(db_url, tenant="erase", index_dir=index_dir) as gallery:
        rid = gallery.create_collection("c", "scrfd-mbf").recognizer_id
        gallery.search("c", Embedding(_unit(rng, 1)[0], rid))  # an index kept in step from the start
        for n in range(subjects):
            vectors = _unit(rng, per_subject)
            enrolled[f"p{n}"] = (gallery.add_embeddings("c", f"p{n}", vectors, recognizer_id=rid), vectors)
    return rid, enrolled


@BOTH_BACKENDS
def test_delete_in_a_process_that_never_loaded_the_index(db_url: str, index_dir: Path, vector_backend: str,
                                                         milvus_held: Callable[[Iterable[int]], list[int]]) -> None:
    _, enrolled = _fill(db_url, index_dir, subjects=4)
    p1_ids, p2_ids = enrolled["p1"][0], enrolled["p2"][0]
    if vector_backend == "faiss":
        assert vectors_on_disk(index_dir, enrolled["p1"][1])  # the check sees vectors that are there
    else:
        assert milvus_held(p1_ids) == p1_ids  # and so does Milvus's
    with Gallery.open(db_url, tenant="erase", index_dir=index_dir) as fresh:
        assert fresh.delete_subject("c", "p1") == 3
        assert_erased(fresh, index_dir, enrolled["p1"][1], p1_ids, milvus_held)
        fresh.delete_face("c", p2_ids[0])
        assert not vectors_on_disk(index_dir, enrolled["p2"][1][:1]) and milvus_held(p2_ids[:1]) == []
        # nothing else was lost: the other subjects' faces are still found
        rid = fresh.get_collection("c").recognizer_id
        assert fresh.search("c", Embedding(enrolled["p3"][1][0], rid), k=1)[0].external_id == "p3"


# -- every door that deletes or merges, each in a process that has not loaded the index ---------
# Real photos (LFW, 250x250): "doomed" (two photos of George W. Bush) is erased; "blair" and "tony"
# (one photo of Tony Blair each) are merged; a third photo of each person is the probe.

DOORS = ["gallery", "api", "cli", "retail"]
STORE = StoreConfig(id="erase-store", cameras=[Camera(id="in", role="entrance")],
                    privacy=Privacy(keep_face_crops=True))
Held = Callable[[Iterable[int]], list[int]]


@pytest.fixture(scope="session")
def photos(shared: Path) -> dict[str, list[str]]:
    lfw = shared / "data" / "lfw" / "images"
    return {name: [str(p) for p in sorted((lfw / folder).glob("*.jpg"))[:3]]
            for name, folder in (("bush", "George_W_Bush"), ("blair", "Tony_Blair"))}


@pytest.fixture(scope="session")
def probes(photos: dict[str, list[str]], fast_analyzer) -> dict[str, Face]:
    """The face of each person's third photo (never enrolled), detected once."""
    return {name: fast_analyzer.analyze_one(shots[2]) for name, shots in photos.items()}


def _space(door: str) -> tuple[str, str]:
    """The gallery tenant and collection a door reaches: the CLI's tenant by name, the API's
    ``svc:<tenant>``, a retail store's members."""
    return {"api": ("svc:acme", "c"), "retail": (f"app:retail:{STORE.id}", MEMBERS)}.get(door, ("erase", "c"))


def _seed(door: str, db_url: str, index_dir: Path, photos: dict[str, list[str]],
          analyzer) -> tuple[list[int], np.ndarray]:
    """Enrol the people where ``door`` reaches them, load the index once (so a copy of every
    vector is saved, in the index file or Milvus) and close; returns the doomed face ids and vectors."""
    tenant, collection = _space(door)
    if door == "retail":
        with RetailStore.open(STORE, analyzer, db_url, index_dir=index_dir) as store:
            for member, shots in (("doomed", photos["bush"][:2]), ("blair", photos["blair"][:1])):
                store.members.enrol(member, shots, ConsentRecord(("visit_recognition",), member), member_id=member)
    else:
        with Gallery.open(db_url, tenant=tenant, index_dir=index_dir) as gallery:
            gallery.create_collection(collection, analyzer, keep_crops=True)
            for subject, shots in (("doomed", photos["bush"][:2]), ("blair", photos["blair"][:1]),
                                   ("tony", photos["blair"][1:2])):
                assert len(gallery.enrol_images(collection, subject, shots, analyzer).added) == len(shots)
    with Gallery.open(db_url, tenant=tenant, index_dir=index_dir) as gallery:
        ids = [face.id for face in gallery.list_faces(collection, subject="doomed").items]
        assert len(ids) == 2 and all(gallery.face_crop(collection, face_id) for face_id in ids)
        _, vectors = gallery.face_vectors(collection, ids)
        gallery.search(collection, Embedding(vectors[0], analyzer.pack.recognizer_id), k=1)  # loaded and saved
    return ids, vectors


@contextmanager
def _service(db_url: str, index_dir: Path, analyzer) -> Iterator[tuple[FastAPI, TestClient]]:
    """The API over the test's database, with an admin key of tenant acme."""
    engine = create_database_engine(db_url)
    migrate_service(engine)
    accounts = Accounts(engine)
    accounts.create_tenant("acme")
    token = accounts.create_key("acme", ["admin"]).token
    app = create_app(ServiceSettings(database_url=db_url, index_dir=index_dir, pack="scrfd-mbf", workers=1),
                     analyzer=analyzer)
    try:
        with TestClient(app, headers={"Authorization": f"Bearer {token}"}) as http:
            assert not app.state.gallery._indexes._states  # the app has loaded no index
            yield app, http
    finally:
        engine.dispose()


def _cli(db_url: str, index_dir: Path, *args: str) -> dict:
    """``python -m faceatlas.cli gallery ARGS --json`` in a fresh process (the backend settings inherited)."""
    done = subprocess.run([sys.executable, "-m", "faceatlas.cli", "gallery", *args, "--db", db_url,
                           "--tenant", "erase", "--json"], capture_output=True, text=True, timeout=300,
                          env={**os.environ, "FACEATLAS_INDEX_DIR": str(index_dir)})
    assert done.returncode == 0, done.stdout + done.stderr
    return json.loads(done.stdout)


def _index_and_db_ids(gallery: Gallery, collection: str) -> tuple[set[int], set[int]]:
    with gallery._sessions() as session:
        coll = gallery._collection(session, collection)
        index_ids = set(gallery._indexes.get(session, coll).ids().tolist())
        db_ids = set(session.scalars(select(FaceRecord.id).where(FaceRecord.collection_id == coll.id)))
    return index_ids, db_ids


@BOTH_BACKENDS
@pytest.mark.parametrize("door", DOORS)
def test_erasure_through_every_door(door: str, db_url: str, index_dir: Path, vector_backend: str,
                                    milvus_held: Held, release_milvus_lite: Callable[[], None],
                                    photos: dict[str, list[str]], probes: dict[str, Face], fast_analyzer) -> None:
    tenant, collection = _space(door)
    ids, vectors = _seed(door, db_url, index_dir, photos, fast_analyzer)
    assert vectors_on_disk(index_dir, vectors) if vector_backend == "faiss" else milvus_held(ids) == ids

    if door == "gallery":
        with Gallery.open(db_url, tenant=tenant, index_dir=index_dir) as gallery:
            assert not gallery._indexes._states
            assert gallery.delete_subject(collection, "doomed") == 2
    elif door == "api":
        with _service(db_url, index_dir, fast_analyzer) as (_, http):
            answer = http.delete("/v1/collections/c/subjects/doomed")
            assert answer.status_code == 204, answer.text
    elif door == "cli":
        release_milvus_lite()
        assert _cli(db_url, index_dir, "delete", "c", "--subject", "doomed", "--yes")["faces"] == 2
    else:
        with RetailStore.open(STORE, fast_analyzer, db_url, index_dir=index_dir) as store:
            assert not store.gallery._indexes._states
            assert store.members.erase("doomed").faces_deleted == 2
            with pytest.raises(NotFound):
                store.members.get("doomed")

    # as the door left them: no vector in an index file or Milvus, before this process reopens anything
    assert not vectors_on_disk(index_dir, vectors)
    assert milvus_held(ids) == []
    with Gallery.open(db_url, tenant=tenant, index_dir=index_dir) as gallery:
        assert_erased(gallery, index_dir, vectors)  # no face row of any tenant holds them
        with gallery._sessions() as session:
            assert not session.scalar(select(func.count()).select_from(FaceRecord).where(FaceRecord.id.in_(ids)))
            assert not session.scalar(select(func.count()).select_from(Subject).join(Collection)
                                      .where(Subject.external_id == "doomed"))
        for face_id in ids:  # nor its crops
            with pytest.raises(NotFound):
                gallery.face_crop(collection, face_id)
        index_ids, db_ids = _index_and_db_ids(gallery, collection)
        assert index_ids == db_ids and not index_ids & set(ids)
        ranked = gallery.search(collection, probes["bush"], k=5, rank_only=True)
        assert "doomed" not in [match.external_id for match in ranked]
        found = gallery.search(collection, probes["blair"], k=1)
        assert found[0].external_id in ("blair", "tony")  # the others are still recognised (Tony Blair twice)
    assert not vectors_on_disk(index_dir, vectors) and milvus_held(ids) == []  # and after a load and a close


@BOTH_BACKENDS
@pytest.mark.parametrize("door", ["gallery", "api", "cli"])
def test_a_merge_through_every_door_regroups_the_index(door: str, db_url: str, index_dir: Path, vector_backend: str,
                                                       milvus_held: Held, release_milvus_lite: Callable[[], None],
                                                       photos: dict[str, list[str]], probes: dict[str, Face],
                                                       fast_analyzer) -> None:
    tenant, collection = _space(door)
    _seed(door, db_url, index_dir, photos, fast_analyzer)
    with Gallery.open(db_url, tenant=tenant, index_dir=index_dir) as gallery:
        moved = [face.id for face in gallery.list_faces(collection, subject="tony").items]

    if door == "gallery":
        with Gallery.open(db_url, tenant=tenant, index_dir=index_dir) as gallery:
            assert not gallery._indexes._states
            assert gallery.merge_subjects(collection, keep="blair", absorb="tony").faces == 2
    elif door == "api":
        with _service(db_url, index_dir, fast_analyzer) as (_, http):
            answer = http.post("/v1/collections/c/subjects/tony/merge", json={"into": "blair"})
            assert answer.status_code == 200 and answer.json()["faces"] == 2, answer.text
    else:
        release_milvus_lite()
        assert _cli(db_url, index_dir, "merge", "c", "tony", "blair")["faces"] == 2

    with Gallery.open(db_url, tenant=tenant, index_dir=index_dir) as gallery:
        with pytest.raises(NotFound):
            gallery.get_subject(collection, "tony")
        index_ids, db_ids = _index_and_db_ids(gallery, collection)
        assert index_ids == db_ids and set(moved) <= index_ids
        if vector_backend == "milvus":
            assert milvus_held(db_ids) == sorted(db_ids)
        ranked = gallery.search(collection, probes["blair"], k=5, aggregate="mean", rank_only=True)
        assert ranked[0].external_id == "blair" and ranked[0].matched_faces == 2  # both photos, one person
        assert "tony" not in [match.external_id for match in ranked]


@BOTH_BACKENDS
def test_concurrent_enrols_and_deletes_leave_no_deleted_vector(db_url: str, index_dir: Path, vector_backend: str,
                                                               milvus_held: Callable[[Iterable[int]], list[int]]
                                                               ) -> None:
    rid, enrolled = _fill(db_url, index_dir, subjects=20, per_subject=2)
    rng = np.random.default_rng(11)
    with Gallery.open(db_url, tenant="erase", index_dir=index_dir) as gallery:
        gallery.search("c", Embedding(enrolled["p0"][1][0], rid), k=1)  # index loaded in this process
        stop = threading.Event()
        errors: list[BaseException] = []

        def enrol() -> None:
            step = 0
            while not stop.is_set():
                try:
                    gallery.add_embeddings("c", f"new{step % 5}", _unit(rng, 2), recognizer_id=rid)
                except BaseException as exc:  # noqa: BLE001 - reported by the test
                    errors.append(exc)
                    return
                step += 1

        workers = [threading.Thread(target=enrol) for _ in range(3)]
        for worker in workers:
            worker.start()
        deleted_vectors = []
        for n in range(20):
            gallery.delete_subject("c", f"p{n}")
            deleted_vectors.append(enrolled[f"p{n}"][1])
        stop.set()
        for worker in workers:
            worker.join()
        assert not errors
        deleted_ids = [face_id for n in range(20) for face_id in enrolled[f"p{n}"][0]]
        assert_erased(gallery, index_dir, np.concatenate(deleted_vectors), deleted_ids, milvus_held)
    with Gallery.open(db_url, tenant="erase", index_dir=index_dir) as reopened:  # and after the graceful shutdown
        assert_erased(reopened, index_dir, np.concatenate(deleted_vectors), deleted_ids, milvus_held)


def test_leftover_of_a_killed_save_is_removed_by_a_delete(db_url: str, index_dir: Path) -> None:
    _, enrolled = _fill(db_url, index_dir, subjects=3)
    saved = next(index_dir.glob("collection-*.npz"))
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True,
                          text=True, check=True).stdout.strip()
    leftover = saved.with_name(f"{saved.name}.{dead}.tmp")  # what a save killed before its rename leaves
    shutil.copy(saved, leftover)
    with Gallery.open(db_url, tenant="erase", index_dir=index_dir) as gallery:
        gallery.delete_subject("c", "p0")
        assert not leftover.exists()
        assert_erased(gallery, index_dir, enrolled["p0"][1])


# Enrols and deletes until killed; prints each acknowledged delete with its face ids.
CHILD = """
import sys
import numpy as np
from faceatlas.gallery import Gallery

gallery = Gallery.open(sys.argv[1], tenant="erase", index_dir=sys.argv[2], autosave_every=5)
rid = gallery.get_collection("c").recognizer_id
rng = np.random.default_rng(1000 + int(sys.argv[3]))
print("ready", flush=True)
step = 0
while True:
    vectors = rng.normal(size=(3, 128)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    name = f"s{sys.argv[3]}-{step}"
    ids = gallery.add_embeddings("c", name, vectors, recognizer_id=rid)
    if step % 2:
        gallery.delete_subject("c", name)
        print("deleted", ",".join(map(str, ids)), vectors.tobytes().hex(), flush=True)
    step += 1
"""


def test_sigkill_never_leaves_an_acknowledged_delete_on_disk(db_url: str, index_dir: Path) -> None:
    _fill(db_url, index_dir, subjects=2)
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    acknowledged_ids: list[int] = []
    acknowledged_vectors: list[np.ndarray] = []
    for round_number in range(4):
        child = subprocess.Popen([sys.executable, "-c", CHILD, db_url, str(index_dir), str(round_number)],
                                 stdout=subprocess.PIPE, text=True, env=env)
        assert child.stdout is not None and child.stdout.readline().strip() == "ready"
        time.sleep(0.4 + 0.3 * round_number)
        child.send_signal(signal.SIGKILL)
        out, _ = child.communicate()
        for line in out.splitlines():
            if line.startswith("deleted ") and len(parts := line.split()) == 3 and len(parts[2]) == 3 * DIM * 8:
                acknowledged_ids += [int(i) for i in parts[1].split(",")]
                acknowledged_vectors.append(np.frombuffer(bytes.fromhex(parts[2]), np.float32).reshape(-1, DIM))
        # no search, no reopen: the files as the kill left them
        assert not vectors_on_disk(index_dir, np.concatenate(acknowledged_vectors or [np.empty((0, DIM))]))
    assert len(acknowledged_ids) >= 6
    with Gallery.open(db_url, tenant="erase", index_dir=index_dir) as gallery:
        assert_erased(gallery, index_dir, np.concatenate(acknowledged_vectors))


def test_face_ids_are_never_reused(db_url: str, index_dir: Path) -> None:
    rng = np.random.default_rng(5)
    with Gallery.open(db_url, tenant="erase", index_dir=index_dir) as gallery:
        rid = gallery.create_collection("c", "scrfd-mbf").recognizer_id
        ids = gallery.add_embeddings("c", "a", _unit(rng, 2), recognizer_id=rid)
        gallery.delete_face("c", ids[-1])
        assert gallery.add_embeddings("c", "b", _unit(rng, 1), recognizer_id=rid)[0] > ids[-1]


def test_upgrade_moves_retail_tenants_to_their_own_space(tmp_path: Path) -> None:
    from importlib import resources

    from sqlalchemy import text

    from faceatlas.db import create_database_engine, upgrade
    from faceatlas.gallery.models import migrate

    engine = create_database_engine(f"sqlite:///{tmp_path / 'old.db'}")
    upgrade(engine, Path(str(resources.files("faceatlas.gallery").joinpath("migrations"))), "0001")
    with engine.begin() as connection:
        connection.execute(text("INSERT INTO tenants (name, created_at) VALUES ('retail-shop1', '2026-01-01')"))
    migrate(engine)
    with engine.connect() as connection:
        assert connection.execute(text("SELECT name FROM tenants")).scalars().all() == ["app:retail:shop1"]
        schema = connection.execute(text("SELECT sql FROM sqlite_master WHERE name = 'faces'")).scalar_one()
    assert "AUTOINCREMENT" in schema
    engine.dispose()


def test_a_delete_killed_after_its_commit_is_finished_by_the_next_process(db_url: str, index_dir: Path) -> None:
    """The window between the database commit and the index scrub: the delete's journal, written
    before the commit, is carried out when the next process opens the gallery (no search needed)."""
    _, enrolled = _fill(db_url, index_dir, subjects=3)
    with Gallery.open(db_url, tenant="erase", index_dir=index_dir) as gallery:
        applied = gallery._indexes.applied
        gallery._indexes.applied = lambda *args, **kwargs: None  # the process dies right after the commit
        gallery.delete_subject("c", "p1")
        gallery._indexes.applied = applied
        assert list(index_dir.glob("*.erase-*.npy"))  # the journal of the unfinished erasure
        assert vectors_on_disk(index_dir, enrolled["p1"][1])  # still in the file: the scrub never ran
        gallery._indexes._states.clear()  # nothing of this process is saved on close
        gallery._indexes._unsaved.clear()
    Gallery.open(db_url, tenant="erase", index_dir=index_dir).close()  # the next process starts
    assert not list(index_dir.glob("*.erase-*.npy"))
    with Gallery.open(db_url, tenant="erase", index_dir=index_dir) as reopened:
        assert_erased(reopened, index_dir, enrolled["p1"][1])
        rid = reopened.get_collection("c").recognizer_id
        assert reopened.search("c", Embedding(enrolled["p2"][1][0], rid), k=1)[0].external_id == "p2"


def test_a_delete_that_never_committed_loses_no_face(db_url: str, index_dir: Path) -> None:
    """A journal whose delete rolled back (killed before the commit): the file is scrubbed and
    marked stale, and the next load puts the faces that are still in the database back."""
    rid, enrolled = _fill(db_url, index_dir, subjects=3)
    with Gallery.open(db_url, tenant="erase", index_dir=index_dir) as gallery:
        gallery._indexes.intend_erase(1, np.asarray(enrolled["p1"][0], np.int64))
    with Gallery.open(db_url, tenant="erase", index_dir=index_dir) as reopened:
        assert not vectors_on_disk(index_dir, enrolled["p1"][1])  # scrubbed at start, as the journal said
        assert reopened.search("c", Embedding(enrolled["p1"][1][0], rid), k=1)[0].external_id == "p1"


# -- other machines' index folders: each keeps its own FACEATLAS_INDEX_DIR (docs/deploy.md); a delete
# scrubs the folder of the server it went through, the others are swept at their start and every
# FACEATLAS_RETENTION_SWEEP_SECONDS while they run


def _searched(http: TestClient, collection: str, photo: str) -> list[str]:
    """The subjects a search of ``photo``'s face in ``collection`` ranks first, through the API."""
    with open(photo, "rb") as handle:
        answer = http.post(f"/v1/collections/{collection}/search", params={"rank_only": "true", "k": 1},
                           files={"image": handle.read()})
    assert answer.status_code == 200, answer.text
    return [match["external_id"] for match in answer.json()["results"][0]["matches"]]


def test_deletes_leave_other_machines_folders_at_their_start_and_by_their_sweep(
        db_url: str, tmp_path: Path, photos: dict[str, list[str]], probes: dict[str, Face], fast_analyzer) -> None:
    here, running, later = (tmp_path / name for name in ("here", "running", "later"))  # three machines' folders
    with Gallery.open(db_url, tenant="svc:acme", index_dir=here) as gallery:
        for name in ("club", "vip", "staff"):
            gallery.create_collection(name, fast_analyzer)
        for collection, subject, shots in (("club", "gina", photos["bush"][:2]),
                                           ("club", "blair", photos["blair"][:1]),
                                           ("vip", "tony", photos["blair"][1:2]),
                                           ("staff", "ann", photos["blair"][:1])):
            assert len(gallery.enrol_images(collection, subject, shots, fast_analyzer).added) == len(shots)
        _, gina = gallery.face_vectors("club", [face.id for face in gallery.list_faces("club", subject="gina").items])
        _, vip = gallery.face_vectors("vip")
        with gallery._sessions() as session:
            vip_file = f"collection-{gallery._collection(session, 'vip').id}.npz"
    erased = np.concatenate([gina, vip])
    for folder in (here, running, later):  # each machine searched every collection: a copy in each folder
        with Gallery.open(db_url, tenant="svc:acme", index_dir=folder) as gallery:
            for name in ("club", "vip", "staff"):
                gallery.search(name, probes["blair"], k=1, rank_only=True)
        assert vectors_on_disk(folder, gina) and vectors_on_disk(folder, vip) and (folder / vip_file).is_file()

    engine = create_database_engine(db_url)
    migrate_service(engine)
    accounts = Accounts(engine)
    accounts.create_tenant("acme")
    auth = {"Authorization": f"Bearer {accounts.create_key('acme', ['admin']).token}"}

    def app(folder: Path, sweep_seconds: float) -> FastAPI:
        return create_app(ServiceSettings(database_url=db_url, index_dir=folder, pack="scrfd-mbf", workers=1,
                                          retention_sweep_seconds=sweep_seconds), analyzer=fast_analyzer)

    try:
        with TestClient(app(running, 0.2), headers=auth) as far, TestClient(app(here, 3600), headers=auth) as http:
            assert _searched(far, "club", photos["blair"][2]) == ["blair"]  # the running server holds club
            for path in ("/v1/collections/club/subjects/gina", "/v1/collections/vip"):
                answer = http.delete(path)
                assert answer.status_code == 204, answer.text
            assert not vectors_on_disk(here, erased)  # the folder of the server deleted through: at once
            deadline = time.monotonic() + 30  # the running machine's: within its sweep period
            while vectors_on_disk(running, erased) and time.monotonic() < deadline:
                time.sleep(0.1)
            assert not vectors_on_disk(running, erased) and not (running / vip_file).exists()
            for client in (far, http):  # the live collections' faces are all still found
                assert _searched(client, "club", photos["blair"][2]) == ["blair"]
                assert _searched(client, "staff", photos["blair"][2]) == ["ann"]
                assert client.delete("/v1/collections/vip").status_code == 404
        assert vectors_on_disk(later, erased) and (later / vip_file).is_file()  # a machine that was down
        with TestClient(app(later, 3600), headers=auth) as started:  # is swept when its server starts
            assert not vectors_on_disk(later, erased) and not (later / vip_file).exists()
            assert _searched(started, "club", photos["blair"][2]) == ["blair"]
            assert _searched(started, "staff", photos["blair"][2]) == ["ann"]
    finally:
        engine.dispose()
    for folder in (here, running, later):  # and nothing wrote them back at shutdown
        assert not vectors_on_disk(folder, erased)
        assert not (folder / vip_file).exists()
    with Gallery.open(db_url, tenant="svc:acme", index_dir=later) as gallery:  # and the CLI finds the same
        assert gallery.search("staff", probes["blair"], k=1, rank_only=True)[0].external_id == "ann"
        assert_erased(gallery, later, erased)


def test_a_sweep_beside_writers_of_its_folder_loses_no_face_and_leaves_no_erased_one(db_url: str,
                                                                                   tmp_path: Path) -> None:
    here, there = tmp_path / "here", tmp_path / "there"
    rid, enrolled = _fill(db_url, here, subjects=12)
    more = np.random.default_rng(5)
    index_file = next(here.glob("collection-*.npz"))
    live_save = index_file.with_name(f"{index_file.name}.{os.getppid()}.tmp")  # a live process's save under way
    live_save.write_bytes(b"being written")
    with Gallery.open(db_url, tenant="erase", index_dir=here) as writer, \
            Gallery.open(db_url, tenant="erase", index_dir=here) as sweeper, \
            Gallery.open(db_url, tenant="erase", index_dir=there) as remote:
        sweeper.sweep_indexes()
        assert live_save.exists()  # the sweep left it
        stop = threading.Event()
        errors: list[BaseException] = []

        def run(step: Callable[[int], object]) -> None:
            n = 0
            while not stop.is_set():
                try:
                    step(n)
                except BaseException as exc:  # noqa: BLE001 - reported by the test
                    errors.append(exc)
                    return
                n += 1

        def enrol(n: int) -> None:  # another process of this folder enrols and searches (and saves)
            writer.add_embeddings("c", f"new{n % 4}", _unit(more, 1), recognizer_id=rid)
            writer.search("c", Embedding(enrolled["p11"][1][0], rid), k=1, rank_only=True)

        threads = [threading.Thread(target=run, args=(step,)) for step in (enrol, lambda _: sweeper.sweep_indexes())]
        for thread in threads:
            thread.start()
        for n in range(11):  # another machine erases; its folder is not this one
            remote.delete_subject("c", f"p{n}")
            time.sleep(0.02)
        stop.set()
        for thread in threads:
            thread.join()
        assert not errors
        sweeper.sweep_indexes()
        erased = np.concatenate([enrolled[f"p{n}"][1] for n in range(11)])
        assert not vectors_on_disk(here, erased)
        assert live_save.exists()
        live_save.unlink()
        saved = load_index(index_file)  # the file swept (if left: dropped when it held an erased face) holds
        index_ids, db_ids = _index_and_db_ids(sweeper, "c")  # faces of the database only, maybe not all yet
        assert saved is None or set(saved.index.ids().tolist()) <= db_ids
        assert index_ids == db_ids
        with Gallery.open(db_url, tenant="erase", index_dir=here) as fresh:  # and every live face is found
            for vector in enrolled["p11"][1]:
                assert fresh.search("c", Embedding(vector, rid), k=1, rank_only=True)[0].external_id == "p11"
    assert not vectors_on_disk(here, erased)


def test_an_erased_subject_leaves_no_copy_in_the_sqlite_journal(tmp_path: Path) -> None:
    """The database file was clean after a delete, but its write-ahead log (``-wal``) kept the
    rows written at the enrolment (the subject's name, metadata, embeddings and face crops) for as
    long as the server ran: a read of the data folder found an erased person. Checked while the
    gallery is still open, as a running server holds it."""
    rng = np.random.default_rng(11)
    doomed, kept = _unit(rng, 2), _unit(rng, 2)
    crop = bytes(range(256)) * 4
    database = tmp_path / "g.db"
    with Gallery.open(str(database), tenant="erase", index_dir=tmp_path / "indexes") as gallery:
        rid = gallery.create_collection("c", "scrfd-mbf").recognizer_id
        gallery.add_subject("c", "zorro_9911", name="Zebediah Quixotestein", metadata={"email": "zebq@example.org"})
        gallery.add_embeddings("c", "zorro_9911", doomed, recognizer_id=rid, crops=[crop, crop])
        gallery.add_embeddings("c", "kept", kept, recognizer_id=rid)
        journal = database.with_name(database.name + "-wal")
        assert b"Quixotestein" in journal.read_bytes()  # what the enrolment wrote is there until the delete
        assert gallery.delete_subject("c", "zorro_9911") == 2
        files = {path.name: path.read_bytes() for path in tmp_path.glob("g.db*") if path.is_file()}
        assert "g.db-wal" in files  # the server's state: the journal still open beside the database
        needles = [b"zorro_9911", b"Quixotestein", b"zebq@example.org", crop[:64],
                   *(vector.tobytes()[:32] for vector in l2_normalize(doomed))]
        assert not [(name, needle[:16]) for name, blob in files.items() for needle in needles if needle in blob]
        assert [m.external_id for m in gallery.search("c", Embedding(kept[0], rid), k=1)] == ["kept"]


def test_a_reader_of_the_journal_delays_its_truncation_without_stalling_the_erasure(tmp_path: Path) -> None:
    """The truncation after an erasure waited 2 s for a reader of the WAL (a backup, another
    process), every later checkin of that connection waited again, and every writer with it; an
    exception in that wait lost the pool its connection. It never waits now: tried again when
    the connection comes back next, once the reader is done; it never raises."""
    import sqlite3

    from faceatlas.db import truncate_journal

    rng = np.random.default_rng(12)
    database = tmp_path / "g.db"
    with Gallery.open(str(database), tenant="erase", index_dir=tmp_path / "indexes") as gallery:
        rid = gallery.create_collection("c", "scrfd-mbf").recognizer_id
        gallery.add_embeddings("c", "zorro_9912", _unit(rng, 2), recognizer_id=rid, name="Zebediah Quixreader")
        gallery.add_embeddings("c", "kept", _unit(rng, 1), recognizer_id=rid)
        reader = sqlite3.connect(database)
        reader.execute("BEGIN")
        reader.execute("SELECT count(*) FROM faces").fetchone()  # a read transaction on the WAL's snapshot
        started = time.monotonic()
        assert gallery.delete_subject("c", "zorro_9912") == 2
        assert time.monotonic() - started < 1.5  # not the 2 s wait per checkin
        journal = database.with_name(database.name + "-wal")
        assert b"Quixreader" in journal.read_bytes()  # the reader holds it
        reader.rollback()
        reader.close()
        for _ in range(3):  # the next uses of the pool's connections truncate it
            gallery.list_subjects("c")
        assert b"Quixreader" not in journal.read_bytes() and b"Quixreader" not in database.read_bytes()
    closed = sqlite3.connect(":memory:")
    closed.close()
    assert truncate_journal(closed) is False  # said, never raised
