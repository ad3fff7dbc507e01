"""A database restored from a backup, next to an index copy of the history the restore undid.

The restore moves a collection's revision back; the writes made after it reach the same revision
numbers again, with other faces under the same (reused) face ids. An index copy (a file of an
index folder, the revision stored in Milvus) trusted for its revision number alone answered a 1:N
search for Angelina Jolie, erased with the lost history, with "George W. Bush" (the restored
history's face under her face id), found nobody for Colin Powell (erased in the lost history, held
by the restored database), and kept the erased vectors on disk; caught up from there, it stayed
wrong (operator probe, finding 1). Each copy records the database's history token of its revision
and is rebuilt when the database holds another (``collection_revisions``).

Real LFW photos embedded by the SCRFD + MobileFaceNet pack; SQLite (a file copy of the closed
database is its backup) and PostgreSQL (``pg_dump`` of the test's schema, restored with ``psql``
after the schema is dropped); FAISS index files and Milvus Lite."""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest
from sqlalchemy import create_engine, make_url, select, text

from faceatlas.engine import Embedding, get_pack
from faceatlas.gallery import Gallery
from faceatlas.gallery.index.milvus import MilvusStore
from faceatlas.gallery.models import Collection
from faceatlas.gallery.sync import IndexCache
from tests.gallery.test_catch_up import _full_id_reads, _record
from tests.gallery.test_erasure import vectors_on_disk

BOTH_BACKENDS = pytest.mark.parametrize("vector_backend", ["faiss", "milvus"], indirect=True)
PEOPLE = {"bush": "George_W_Bush", "powell": "Colin_Powell", "blair": "Tony_Blair",
          "schroeder": "Gerhard_Schroeder", "serena": "Serena_Williams", "jolie": "Angelina_Jolie"}
RID = get_pack("scrfd-mbf").recognizer_id


@pytest.fixture(scope="module")
def faces(shared: Path, fast_analyzer) -> dict[str, np.ndarray]:
    """Three real embeddings per person: photos 0 and 1 are enrolled, photo 2 is the probe."""
    lfw = shared / "data" / "lfw" / "images"
    return {name: np.stack([fast_analyzer.analyze_one(str(photo)).as_embedding().vector
                            for photo in sorted((lfw / folder).glob("*.jpg"))[:3]])
            for name, folder in PEOPLE.items()}


class Backup:
    """A backup of the test's database, and its restore over the live one (the galleries closed)."""

    def __init__(self, url: str, folder: Path) -> None:
        self.url, self.folder = make_url(url), folder
        self.copy = folder / "backup"

    def take(self) -> None:
        if self.url.get_backend_name() == "sqlite":
            shutil.copyfile(str(self.url.database), self.copy)  # the database is closed: a copy is a backup
            return
        if shutil.which("pg_dump") is None or shutil.which("psql") is None:
            pytest.skip("pg_dump and psql are needed to back up and restore PostgreSQL")
        subprocess.run(["pg_dump", *self._connection(), "--no-owner", "-n", self._schema(), "-f", str(self.copy)],
                       check=True, env=self._env())

    def restore(self) -> None:
        if self.url.get_backend_name() == "sqlite":
            database = Path(str(self.url.database))
            for leftover in (database, Path(f"{database}-wal"), Path(f"{database}-shm")):
                leftover.unlink(missing_ok=True)
            shutil.copyfile(self.copy, database)
            return
        admin = create_engine(os.environ["FACEATLAS_TEST_PG_URL"], isolation_level="AUTOCOMMIT")
        try:
            with admin.connect() as connection:
                connection.execute(text(f"DROP SCHEMA {self._schema()} CASCADE"))
        finally:
            admin.dispose()
        subprocess.run(["psql", *self._connection(), "-q", "-v", "ON_ERROR_STOP=1", "-f", str(self.copy)],
                       check=True, env=self._env(), stdout=subprocess.DEVNULL)

    def _schema(self) -> str:
        return str(self.url.query["options"]).removeprefix("-csearch_path=")

    def _connection(self) -> list[str]:
        return ["-h", str(self.url.host), "-p", str(self.url.port), "-U", str(self.url.username),
                "-d", str(self.url.database)]

    def _env(self) -> dict[str, str]:
        return {**os.environ, **({"PGPASSWORD": self.url.password} if self.url.password else {})}


@contextmanager
def _elsewhere(db_url: str, folder: Path, monkeypatch: pytest.MonkeyPatch, backend: str) -> Iterator[Gallery]:
    """The restored database written by another server: another index folder, and on Milvus one
    that does not write Milvus (its copy stays the lost history's), as a server of the FAISS
    backend does."""
    with monkeypatch.context() as patched:
        patched.setenv("FACEATLAS_VECTOR_BACKEND", "faiss")
        with Gallery.open(db_url, tenant="t", index_dir=folder) as gallery:
            yield gallery
    assert os.environ["FACEATLAS_VECTOR_BACKEND"] == backend


def _enrol(gallery: Gallery, name: str, photos: np.ndarray) -> list[int]:
    return gallery.add_embeddings("c", name, photos, recognizer_id=RID, name=PEOPLE[name])


def _found(gallery: Gallery, vector: np.ndarray) -> list[str]:
    """Who a 1:N search (the collection's default open-set cut) names for ``vector``."""
    return [match.external_id for match in gallery.search("c", Embedding(vector, RID), k=3)]


def _revision(gallery: Gallery) -> int:
    with gallery._sessions() as session:
        return session.scalars(select(Collection.revision)).one()


def _nearest(gallery: Gallery, vector: np.ndarray) -> float:
    return gallery.search("c", Embedding(vector, RID), k=1, rank_only=True)[0].similarity


@BOTH_BACKENDS
@pytest.mark.parametrize("after", ["equal", "behind"])
def test_a_face_id_given_again_after_a_restore_never_names_the_lost_history_s_person(
        db_url: str, index_dir: Path, tmp_path: Path, faces: dict[str, np.ndarray], vector_backend: str,
        after: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """The probe's case (a): Jolie enrolled after the backup (face F, the index saved at her
    revision), the backup restored, Bush's second photo enrolled (face F again, the same revision,
    or one more write: the index behind). Her photo named Bush at 0.71, and her vector stayed."""
    backup = Backup(db_url, tmp_path)
    with Gallery.open(db_url, tenant="t", index_dir=index_dir) as gallery:
        gallery.create_collection("c", "scrfd-mbf")
        for name in ("bush", "powell", "blair"):
            _enrol(gallery, name, faces[name][:1])
        assert _found(gallery, faces["bush"][2]) == ["bush"]
    backup.take()
    with Gallery.open(db_url, tenant="t", index_dir=index_dir) as gallery:  # the history the restore undoes
        (jolie,) = _enrol(gallery, "jolie", faces["jolie"][:1])
        assert _found(gallery, faces["jolie"][2]) == ["jolie"]
        lost = _revision(gallery)
    if vector_backend == "faiss":
        assert vectors_on_disk(index_dir, faces["jolie"][:1])  # the check sees a vector that is there
    backup.restore()
    with _elsewhere(db_url, tmp_path / "elsewhere", monkeypatch, vector_backend) as gallery:
        assert gallery.get_collection("c").subjects == 3  # Jolie's enrolment is undone
        (bush,) = _enrol(gallery, "bush", faces["bush"][1:2])
        if after == "behind":
            _enrol(gallery, "serena", faces["serena"][:1])
        assert bush == jolie and _revision(gallery) == lost + (after == "behind")
    with Gallery.open(db_url, tenant="t", index_dir=index_dir) as gallery:  # the old index folder, or Milvus
        if vector_backend == "faiss":
            gallery.sweep_indexes()  # a server's sweep at its start, before any search
            assert not vectors_on_disk(index_dir, faces["jolie"][:1])
        assert _found(gallery, faces["jolie"][2]) == []  # nobody: she is not in this database
        assert _nearest(gallery, faces["jolie"][0]) < 0.9  # her vector is in no copy
        assert _found(gallery, faces["bush"][2]) == ["bush"]
        assert not gallery.verify("c", "bush", Embedding(faces["jolie"][2], RID)).match
        if after == "behind":
            assert _found(gallery, faces["serena"][2]) == ["serena"]
    if vector_backend == "faiss":
        assert not vectors_on_disk(index_dir, faces["jolie"][:1])
        assert not list(index_dir.glob("*.tmp"))


@BOTH_BACKENDS
@pytest.mark.parametrize("after", ["equal", "behind"])
def test_a_person_the_restored_database_holds_is_found_next_to_a_copy_that_erased_him(
        db_url: str, index_dir: Path, tmp_path: Path, faces: dict[str, np.ndarray], vector_backend: str,
        after: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """The probe's case (b): Powell erased after the backup and the index saved at a later revision;
    the restored database (Powell in it) written to the same revision, or further. A search for
    Powell found nobody while a 1:1 verification matched, and further enrolments did not mend it."""
    backup = Backup(db_url, tmp_path)
    with Gallery.open(db_url, tenant="t", index_dir=index_dir) as gallery:
        gallery.create_collection("c", "scrfd-mbf")
        for name in ("bush", "powell", "blair"):
            _enrol(gallery, name, faces[name][:2])
        assert _found(gallery, faces["powell"][2]) == ["powell"]
    backup.take()
    with Gallery.open(db_url, tenant="t", index_dir=index_dir) as gallery:  # the history the restore undoes
        assert gallery.delete_subject("c", "powell") == 2
        _enrol(gallery, "schroeder", faces["schroeder"][:2])
        assert _found(gallery, faces["powell"][2]) == [] and _found(gallery, faces["schroeder"][2]) == ["schroeder"]
        lost = _revision(gallery)
    backup.restore()
    with _elsewhere(db_url, tmp_path / "elsewhere", monkeypatch, vector_backend) as gallery:
        _enrol(gallery, "serena", faces["serena"][:2])  # the face ids the lost history gave Schroeder
        _enrol(gallery, "schroeder", faces["schroeder"][:1])
        assert _revision(gallery) == lost
        if after == "behind":
            _enrol(gallery, "jolie", faces["jolie"][:1])
    with Gallery.open(db_url, tenant="t", index_dir=index_dir) as gallery:
        assert gallery.verify("c", "powell", Embedding(faces["powell"][2], RID)).match
        assert _found(gallery, faces["powell"][2]) == ["powell"]
        assert _found(gallery, faces["serena"][2]) == ["serena"]
        assert _found(gallery, faces["schroeder"][2]) == ["schroeder"]
        if after == "behind":
            assert _found(gallery, faces["jolie"][2]) == ["jolie"]
        _enrol(gallery, "blair", faces["blair"][2:])  # and it stays right after further enrolments
        assert _found(gallery, faces["powell"][2]) == ["powell"]
        assert _nearest(gallery, faces["schroeder"][1]) < 0.9  # the erased photo's vector is in no copy
    if vector_backend == "faiss":
        assert not vectors_on_disk(index_dir, faces["schroeder"][1:2])


@BOTH_BACKENDS
@pytest.mark.parametrize("change", ["enrolment", "delete"])
def test_a_normal_restart_catches_up_from_its_copy_without_a_rebuild(
        db_url: str, index_dir: Path, tmp_path: Path, faces: dict[str, np.ndarray], vector_backend: str,
        change: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """A copy of this database's history, at the database's revision or behind it (another
    process's writes while this one was down), is trusted or caught up as before the history
    tokens: nothing rebuilt, no Milvus collection dropped, and a copy behind after enrolments only
    reads the faces changed since."""
    drops: list[int] = []
    real_drop = MilvusStore.drop

    def counted_drop(store: MilvusStore, collection_id: int) -> None:
        drops.append(collection_id)
        real_drop(store, collection_id)

    monkeypatch.setattr(MilvusStore, "drop", counted_drop)
    with Gallery.open(db_url, tenant="t", index_dir=index_dir) as gallery:
        gallery.create_collection("c", "scrfd-mbf")
        for name in ("bush", "powell", "blair"):
            _enrol(gallery, name, faces[name][:2])
        assert _found(gallery, faces["bush"][2]) == ["bush"]
    with Gallery.open(db_url, tenant="t", index_dir=index_dir) as gallery:  # restarted at the copy's revision
        builds = _count(gallery, "_build")
        catch_ups = _count(gallery, "_catch_up")
        assert _found(gallery, faces["powell"][2]) == ["powell"]
        assert builds == [] and catch_ups == []
    with _elsewhere(db_url, tmp_path / "elsewhere", monkeypatch, vector_backend) as other:
        _enrol(other, "serena", faces["serena"][:2])
        if change == "delete":
            other.delete_subject("c", "blair")
    with Gallery.open(db_url, tenant="t", index_dir=index_dir) as gallery:  # restarted behind the database
        builds = _count(gallery, "_build")
        statements = _record(gallery)
        assert _found(gallery, faces["serena"][2]) == ["serena"]
        assert _found(gallery, faces["blair"][2]) == ([] if change == "delete" else ["blair"])
        assert builds == []
        if change == "enrolment":
            assert _full_id_reads(statements) == []
    assert drops == []
    if vector_backend == "faiss" and change == "delete":
        assert not vectors_on_disk(index_dir, faces["blair"][:2])


def _count(gallery: Gallery, method: str) -> list[int]:
    """Calls of the index cache's ``method`` from now on (none on Milvus, which builds nothing)."""
    calls: list[int] = []
    cache = gallery._indexes
    if not isinstance(cache, IndexCache):
        return calls
    real: Callable[..., object] = getattr(cache, method)

    def counted(*args: object, **kwargs: object) -> object:
        calls.append(1)
        return real(*args, **kwargs)

    setattr(cache, method, counted)
    return calls


def test_the_downgrade_of_0005_keeps_every_face_and_an_upgrade_again_rebuilds_the_copies_once(
        db_url: str, index_dir: Path, faces: dict[str, np.ndarray]) -> None:
    """0005's downgrade drops the history tokens only; upgraded again, each collection gets a new
    token, which no index copy records: each is rebuilt once (not trusted: the database may have
    been written meanwhile by a version without tokens), then caught up as before."""
    from alembic import command
    from alembic.config import Config

    from faceatlas.db import create_database_engine
    from faceatlas.gallery import models

    with Gallery.open(db_url, tenant="t", index_dir=index_dir) as gallery:
        gallery.create_collection("c", "scrfd-mbf")
        for name in ("bush", "powell"):
            _enrol(gallery, name, faces[name][:2])
        assert _found(gallery, faces["bush"][2]) == ["bush"]
    engine = create_database_engine(db_url)
    try:
        config = Config()
        config.set_main_option("script_location", str(Path(models.__file__).parent / "migrations"))
        with engine.begin() as connection:
            config.attributes["connection"] = connection
            command.downgrade(config, "0004")
        with engine.connect() as connection:
            assert connection.scalar(text("SELECT count(*) FROM faces")) == 4
            assert connection.scalar(text("SELECT count(*) FROM subjects")) == 2
            assert connection.scalar(text("SELECT revision FROM collections")) == 2
    finally:
        engine.dispose()
    with Gallery.open(db_url, tenant="t", index_dir=index_dir) as gallery:  # upgraded again at open
        builds = _count(gallery, "_build")
        assert _found(gallery, faces["powell"][2]) == ["powell"]
        assert builds == [1]
    with Gallery.open(db_url, tenant="t", index_dir=index_dir) as gallery:
        builds = _count(gallery, "_build")
        assert _found(gallery, faces["bush"][2]) == ["bush"] and builds == []
