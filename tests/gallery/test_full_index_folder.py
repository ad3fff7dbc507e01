"""An index folder that cannot be written (its disk full, or mounted read-only) while the database
works: the folder holds only a copy, so searches are served from memory; a delete that cannot
rewrite an index file removes it (no file keeps the erased vectors) and finishes; a folder where
even that fails refuses the delete before it commits, with a clear error (storage_unavailable).

The fault is simulated without root: writes to files under the index folder fail with ENOSPC
(the file is created, as on a full disk, then no byte fits) and, read-only, opening a file for
writing, renaming and unlinking there fail with EROFS. The probe of a 64 KiB tmpfs answered 500
after the delete had committed, left the erased face in collection-<id>.npz until the sweep and
never erased the subject's id from the audit trail (/tmp/s/probe-fault.md, items 2 and 3)."""

from __future__ import annotations

import builtins
import errno
import io
import logging
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from faceatlas.db import create_database_engine
from faceatlas.engine import Embedding, Face
from faceatlas.errors import NotFound, StorageUnavailable
from faceatlas.gallery import Gallery
from faceatlas.gallery.models import FaceRecord
from faceatlas.service import create_app
from faceatlas.service.accounts import Accounts
from faceatlas.service.db import migrate as migrate_service
from faceatlas.settings import ServiceSettings
from tests.gallery.test_erasure import _seed, photos, probes, vectors_on_disk  # noqa: F401 (fixtures)


class _NoSpace(io.FileIO):
    """A file opened for writing on a full disk: created, but no byte fits."""

    def write(self, data: Any) -> int:
        raise OSError(errno.ENOSPC, "No space left on device")


class IndexDisk:
    """The disk of an index folder: ``full()`` (writes fail with ENOSPC, unlinks and renames work;
    ``journal_fits``: the few bytes of an erasure journal still do), ``read_only()`` (EROFS for
    every write, rename and unlink there) and ``fine()`` again."""

    def __init__(self, folder: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        self.folder = str(folder.resolve())
        self.state = "fine"
        self.journal_fits = False
        self.refused: list[str] = []
        real_open, real_unlink, real_replace = builtins.open, os.unlink, os.replace

        def inside(path: Any) -> bool:
            return isinstance(path, (str, os.PathLike)) and os.path.abspath(os.fspath(path)).startswith(self.folder)

        def refuse(path: Any, code: int) -> None:
            self.refused.append(f"{errno.errorcode[code]} {Path(os.fspath(path)).name}")
            raise OSError(code, os.strerror(code), os.fspath(path))

        def opened(file: Any, mode: str = "r", *args: Any, **kwargs: Any) -> Any:
            if self.state != "fine" and inside(file) and any(flag in mode for flag in "wax+"):
                if self.state == "read_only":
                    refuse(file, errno.EROFS)
                if not (self.journal_fits and os.fspath(file).endswith(".part")):
                    self.refused.append(f"ENOSPC {Path(os.fspath(file)).name}")
                    return _NoSpace(file, "w")
            return real_open(file, mode, *args, **kwargs)

        def unlink(path: Any, *args: Any, **kwargs: Any) -> None:
            if self.state == "read_only" and inside(path):
                refuse(path, errno.EROFS)
            real_unlink(path, *args, **kwargs)

        def replace(source: Any, target: Any, *args: Any, **kwargs: Any) -> None:
            if self.state == "read_only" and inside(target):
                refuse(target, errno.EROFS)
            real_replace(source, target, *args, **kwargs)

        monkeypatch.setattr(builtins, "open", opened)
        monkeypatch.setattr(os, "unlink", unlink)
        monkeypatch.setattr(os, "remove", unlink)
        monkeypatch.setattr(os, "replace", replace)

    def full(self, *, journal_fits: bool = False) -> None:
        self.state, self.journal_fits = "full", journal_fits

    def read_only(self) -> None:
        self.state = "read_only"

    def fine(self) -> None:
        self.state = "fine"


@pytest.fixture
def disk(index_dir: Path, monkeypatch: pytest.MonkeyPatch) -> IndexDisk:
    index_dir.mkdir(parents=True, exist_ok=True)
    return IndexDisk(index_dir, monkeypatch)


def ids_on_disk(folder: Path) -> set[int]:
    """The face ids the index files under ``folder`` hold (their ``ids`` column)."""
    held: set[int] = set()
    for path in folder.rglob("collection-*.npz"):
        with np.load(path, allow_pickle=False) as stored:
            held.update(int(i) for i in stored["ids"])
    return held


def leftovers(folder: Path) -> list[str]:
    """Temporary files of saves and journals under ``folder``."""
    return sorted(p.name for p in folder.rglob("*") if p.name.endswith((".tmp", ".part")))


def _ranked(gallery: Gallery, face: Face) -> list[str]:
    return [match.external_id for match in gallery.search("c", face, k=5, rank_only=True)]


@pytest.mark.parametrize(("loaded", "journal_fits"), [(True, True), (False, True), (True, False)],
                         ids=["in-memory", "file-only", "no-journal"])
def test_a_delete_on_a_full_index_folder_removes_the_file_and_finishes(
        loaded: bool, journal_fits: bool, db_url: str, index_dir: Path, disk: IndexDisk,
        photos: dict[str, list[str]], probes: dict[str, Face], fast_analyzer) -> None:  # noqa: F811
    ids, vectors = _seed("gallery", db_url, index_dir, photos, fast_analyzer)
    assert set(ids) <= ids_on_disk(index_dir) and vectors_on_disk(index_dir, vectors)  # the copy is there
    with Gallery.open(db_url, tenant="erase", index_dir=index_dir) as gallery:
        if loaded:  # the copy in memory too (else the delete scrubs the file as it is)
            assert _ranked(gallery, probes["bush"])[0] == "doomed"
        disk.full(journal_fits=journal_fits)
        assert gallery.delete_subject("c", "doomed") == 2  # answered, not an OSError after the commit
        assert disk.refused, "the fault was not reached"
        assert not ids_on_disk(index_dir) & set(ids)
        assert not vectors_on_disk(index_dir, vectors) and not leftovers(index_dir)
        with pytest.raises(NotFound):
            gallery.get_subject("c", "doomed")
        # searches go on from memory while the disk stays full, the erased face never among them
        assert "doomed" not in _ranked(gallery, probes["bush"])
        assert _ranked(gallery, probes["blair"])[0] in ("blair", "tony")
        assert not vectors_on_disk(index_dir, vectors)
        disk.fine()
        gallery.flush()  # the save is tried again: the copy, without the erased faces, is written
        with gallery._sessions() as session:
            alive = set(session.scalars(select(FaceRecord.id)))
        assert ids_on_disk(index_dir) == alive and not alive & set(ids)
    assert not vectors_on_disk(index_dir, vectors) and not list(index_dir.glob("*.erase-*"))


def test_a_delete_without_a_journal_leaves_no_copy_that_a_save_could_write_back(
        db_url: str, index_dir: Path, disk: IndexDisk,
        photos: dict[str, list[str]], probes: dict[str, Face], fast_analyzer) -> None:  # noqa: F811
    """With no room for the erasure journal the index file was removed before the commit, but this
    process's copy stayed: a save of it meanwhile (another call's enrolment, an autosave, a flush)
    wrote the faces back into a file that no journal named, for a process killed after the commit."""
    ids, vectors = _seed("gallery", db_url, index_dir, photos, fast_analyzer)
    with Gallery.open(db_url, tenant="erase", index_dir=index_dir) as gallery:
        assert _ranked(gallery, probes["bush"])[0] == "doomed"  # the copy in memory
        cache = gallery._indexes
        [collection_id] = list(cache._states)
        cache._unsaved[collection_id] = 1  # a change of another call, not saved yet
        disk.full(journal_fits=False)
        assert cache.intend_erase(collection_id, np.asarray(ids)) is None  # no journal: the file went instead
        assert not ids_on_disk(index_dir) & set(ids)
        disk.fine()
        cache.flush()  # the other call's save, before this delete commits
        assert not ids_on_disk(index_dir) & set(ids) and not vectors_on_disk(index_dir, vectors)


def test_searches_on_a_full_or_read_only_index_folder_are_served_from_memory(
        db_url: str, index_dir: Path, disk: IndexDisk, photos: dict[str, list[str]],  # noqa: F811
        probes: dict[str, Face], fast_analyzer, caplog: pytest.LogCaptureFixture) -> None:  # noqa: F811
    _seed("gallery", db_url, index_dir, photos, fast_analyzer)
    rid = fast_analyzer.pack.recognizer_id
    rng = np.random.default_rng(7)
    # two processes' caches; the searcher saves each catch-up (an autosave every change, not every 1,000)
    with Gallery.open(db_url, tenant="erase", index_dir=index_dir, autosave_every=1) as searcher, \
            Gallery.open(db_url, tenant="erase", index_dir=index_dir) as writer:
        assert _ranked(searcher, probes["blair"])[0] in ("blair", "tony")
        with caplog.at_level(logging.INFO, logger="faceatlas.gallery.sync"):
            for fault in (disk.full, disk.read_only):
                fault()
                for n in range(3):  # each enrol elsewhere makes the next search catch up and save
                    vector = rng.normal(size=len(probes["blair"].embedding)).astype(np.float32)
                    writer.add_embeddings("c", f"{fault.__name__}{n}", vector[None], recognizer_id=rid)
                    found = searcher.search("c", Embedding(vector, rid), k=1, threshold=0.99)
                    assert [match.external_id for match in found] == [f"{fault.__name__}{n}"]
            assert disk.refused
            warned = [r for r in caplog.records if r.levelno == logging.WARNING]
            assert len(warned) == 1, [r.getMessage() for r in warned]  # once per outage, not per search
            disk.fine()
            vector = rng.normal(size=len(probes["blair"].embedding)).astype(np.float32)
            writer.add_embeddings("c", "later", vector[None], recognizer_id=rid)
            found = searcher.search("c", Embedding(vector, rid), k=1, threshold=0.99)  # caught up, saved again
            assert [match.external_id for match in found] == ["later"]
            assert "written again" in caplog.text
        with searcher._sessions() as session:
            alive = set(session.scalars(select(FaceRecord.id)))
        assert ids_on_disk(index_dir) == alive


def test_a_delete_on_a_read_only_index_folder_is_refused_before_it_commits(
        db_url: str, index_dir: Path, disk: IndexDisk, photos: dict[str, list[str]],  # noqa: F811
        probes: dict[str, Face], fast_analyzer) -> None:  # noqa: F811
    ids, vectors = _seed("gallery", db_url, index_dir, photos, fast_analyzer)
    with Gallery.open(db_url, tenant="erase", index_dir=index_dir) as gallery:
        assert _ranked(gallery, probes["bush"])[0] == "doomed"
        disk.read_only()
        with pytest.raises(StorageUnavailable) as refused:
            gallery.delete_subject("c", "doomed")
        assert refused.value.status == 503 and refused.value.code == "storage_unavailable"
        assert "nothing was deleted" in str(refused.value) and str(index_dir) not in str(refused.value)
        assert len(gallery.list_faces("c", subject="doomed").items) == 2  # nothing deleted
        assert _ranked(gallery, probes["bush"])[0] == "doomed"
        disk.fine()
        assert gallery.delete_subject("c", "doomed") == 2  # once it can be written: deleted and scrubbed
    assert not ids_on_disk(index_dir) & set(ids) and not vectors_on_disk(index_dir, vectors)


@contextmanager
def _api(db_url: str, index_dir: Path, analyzer) -> Iterator[tuple[TestClient, Accounts]]:
    engine = create_database_engine(db_url)
    migrate_service(engine)
    accounts = Accounts(engine)
    accounts.create_tenant("acme")
    token = accounts.create_key("acme", ["admin"], rate_per_second=500, burst=500).token
    app = create_app(ServiceSettings(database_url=db_url, index_dir=index_dir, pack="scrfd-mbf", workers=1),
                     analyzer=analyzer)
    try:
        with TestClient(app, headers={"Authorization": f"Bearer {token}"}) as http:
            yield http, accounts
    finally:
        engine.dispose()


def _search(http: TestClient, photo: str) -> list[str]:
    with open(photo, "rb") as handle:
        answer = http.post("/v1/collections/c/search", params={"rank_only": "true", "k": 5},
                           files={"image": handle.read()})
    assert answer.status_code == 200, answer.text
    return [match["external_id"] for match in answer.json()["results"][0]["matches"]]


def test_the_api_erases_a_subject_on_a_full_index_folder_and_refuses_on_a_read_only_one(
        db_url: str, index_dir: Path, disk: IndexDisk, photos: dict[str, list[str]], fast_analyzer) -> None:  # noqa: F811
    with _api(db_url, index_dir, fast_analyzer) as (http, accounts):
        assert http.post("/v1/collections", json={"name": "c"}).status_code == 201
        for subject, shots in (("doomed", photos["bush"][:2]), ("kept", photos["bush"][2:3]),
                               ("blair", photos["blair"][:1])):
            for shot in shots:
                with open(shot, "rb") as handle:
                    answer = http.post(f"/v1/collections/c/subjects/{subject}/faces", files={"image": handle.read()})
                assert answer.status_code == 201, answer.text
        assert _search(http, photos["blair"][2])[0] == "blair"  # the index file is written
        with Gallery.open(db_url, tenant="svc:acme") as gallery:
            doomed = {face.id for face in gallery.list_faces("c", subject="doomed").items}
        assert doomed <= ids_on_disk(index_dir)
        assert any(record.target == "c/doomed" for record in accounts.audit_log("acme", limit=1000))

        disk.read_only()  # refused with a clear error, the subject still there
        answer = http.delete("/v1/collections/c/subjects/kept")
        assert answer.status_code == 503, answer.text
        assert answer.json()["error"]["code"] == "storage_unavailable"
        assert str(index_dir) not in answer.text
        assert http.get("/v1/collections/c/subjects/kept").status_code == 200

        disk.full()
        answer = http.delete("/v1/collections/c/subjects/doomed")
        assert answer.status_code == 204, answer.text
        assert not ids_on_disk(index_dir) & doomed and not leftovers(index_dir)
        trail = accounts.audit_log("acme", limit=1000)
        assert not [record.target for record in trail if "doomed" in record.target]  # the id erased
        assert [record.target for record in trail if record.action == "subject.delete"] == ["c/[erased]"]
        assert "doomed" not in _search(http, photos["bush"][2])  # searches go on, disk still full
        assert http.get("/v1/collections/c/subjects/doomed").status_code == 404
        disk.fine()
