"""Erasure is a legal promise: once a delete returns, no file under the index folder and no
database row holds a vector of what was deleted — whether this process had the index loaded or
not, with enrolments running beside it, and after a SIGKILL (issue 15, items 1–3)."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import threading
import time
import zipfile
from pathlib import Path

import numpy as np
from sqlalchemy import select

from faceatlas.engine import Embedding, l2_normalize
from faceatlas.gallery import Gallery
from faceatlas.gallery.models import FaceRecord

DIM = 128


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


def assert_erased(gallery: Gallery, index_dir: Path, vectors: np.ndarray) -> None:
    """Neither a file under ``index_dir`` nor a face row of the database holds any of ``vectors``."""
    assert not vectors_on_disk(index_dir, vectors)
    with gallery._sessions() as session:
        blobs = list(session.scalars(select(FaceRecord.embedding)))
    stored = np.frombuffer(b"".join(blobs), np.float32).reshape(-1, DIM)
    assert not len(stored) or (stored @ l2_normalize(vectors).T).max() < 1 - 1e-3


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


def test_delete_in_a_process_that_never_loaded_the_index(db_url: str, index_dir: Path) -> None:
    _, enrolled = _fill(db_url, index_dir, subjects=4)
    assert vectors_on_disk(index_dir, enrolled["p1"][1])  # the check sees vectors that are there
    with Gallery.open(db_url, tenant="erase", index_dir=index_dir) as fresh:
        assert fresh.delete_subject("c", "p1") == 3
        assert_erased(fresh, index_dir, enrolled["p1"][1])
        fresh.delete_face("c", enrolled["p2"][0][0])
        assert not vectors_on_disk(index_dir, enrolled["p2"][1][:1])
        # nothing else was lost: the other subjects' faces are still found
        rid = fresh.get_collection("c").recognizer_id
        assert fresh.search("c", Embedding(enrolled["p3"][1][0], rid), k=1)[0].external_id == "p3"


def test_merge_regroups_the_index_at_once(db_url: str, index_dir: Path) -> None:
    rid, enrolled = _fill(db_url, index_dir, subjects=3)
    with Gallery.open(db_url, tenant="erase", index_dir=index_dir) as gallery:
        gallery.merge_subjects("c", "p0", "p1")
        hits = gallery.search("c", Embedding(enrolled["p1"][1][0], rid), k=1)
        assert hits[0].external_id == "p0"


def test_concurrent_enrols_and_deletes_leave_no_deleted_vector(db_url: str, index_dir: Path) -> None:
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
        assert_erased(gallery, index_dir, np.concatenate(deleted_vectors))
    with Gallery.open(db_url, tenant="erase", index_dir=index_dir) as reopened:
        assert_erased(reopened, index_dir, np.concatenate(deleted_vectors))  # and after the graceful shutdown's flush


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
