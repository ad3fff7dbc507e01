"""Keeps each collection's derived vector index in step with the database.

An index is trusted only for the collection ``revision`` it records. When the database has moved
on (another process wrote, or this one crashed before saving), the index is caught up from the
faces changed since its revision (each face records the revision that added or last moved it), or,
when a face was removed since (the collection's ``removed_revision``), by a set difference of face
ids, so a face committed to the database is never lost, a moved face is regrouped under its
subject, and a face deleted from it never lingers in search results or on disk.

A revision number alone does not name a state of the collection: a database restored from a
backup moves it back, and the writes made after the restore reach the same numbers again with other
faces under reused face ids. An index therefore records, beside its revision, the history token
the database gave that revision (``collection_revisions``, random per revision) and is trusted, or
caught up, only when the database holds the same token for it; a file of another history (or one
from before the tokens, or one so far behind that its token was pruned) is rebuilt from the
database, the record (:func:`same_history`).

The index folder holds only a copy: a folder that cannot be written (full, read-only) never fails
a search or an enrolment (the copy in memory serves; the save is tried again later), and a delete
that cannot rewrite a file removes it instead (:meth:`IndexCache._discard`).
"""

from __future__ import annotations

import logging
import os
import threading
import uuid
from collections.abc import Iterator, Sequence
from itertools import chain
from pathlib import Path
from typing import Any

import numpy as np
from sqlalchemy import Row, Select, func, select
from sqlalchemy.orm import Session, sessionmaker

from faceatlas.errors import StorageUnavailable
from faceatlas.gallery.index import (
    ANN_MIN_FACES,
    DEFAULT_EXPANSION_SEARCH,
    IndexState,
    Storage,
    VectorIndex,
    delete_index,
    empty_index,
    load_index,
    read_index_ids,
    read_index_meta,
    save_index,
)
from faceatlas.gallery.models import Collection, CollectionRevision, FaceRecord, Subject
from faceatlas.gallery.rules import check_index_dir

_FETCH_CHUNK = 10_000
STALE = -1  # the revision of an index file that must be caught up from the database when loaded
_BUILD_CHUNK = 200_000

log = logging.getLogger(__name__)


def _reason(error: OSError) -> str:
    """What went wrong with the index folder, without its path (said to a client)."""
    return os.strerror(error.errno) if error.errno else type(error).__name__


def _process_alive(pid: str) -> bool:
    """Whether the process with this id (as written in a temporary file's name) still runs here."""
    if not pid.isdigit():
        return False
    if int(pid) == os.getpid():
        return False  # this process saves under the lock: a file of its own is from a failed save
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def history_of(session: Session, collection_id: int, revision: int) -> str | None:
    """The history token the database holds for a revision of a collection (None: none, the
    revision is not in this database's history, or its token was pruned or never made)."""
    return session.scalar(select(CollectionRevision.history).where(CollectionRevision.collection_id == collection_id,
                                                                   CollectionRevision.revision == revision))


def same_history(session: Session, collection_id: int, meta: dict[str, Any]) -> bool:
    """Whether an index copy whose metadata is ``meta`` belongs to this database's history: the
    token it records for its revision (``history`` of ``history_revision``, kept when the copy is
    later marked stale) is the one the database holds for that revision. A copy of a database
    restored from a backup and written again, one from before the tokens, or one whose token was
    pruned is not (rebuilt: its face ids may name other faces here)."""
    token, revision = meta.get("history"), meta.get("history_revision")
    if not isinstance(token, str) or not isinstance(revision, int) or isinstance(revision, bool):
        return False
    return history_of(session, collection_id, revision) == token


def stamp_history(meta: dict[str, Any], revision: int, history: str | None) -> dict[str, Any]:
    """Record in ``meta`` that its copy is at ``revision`` of the history token ``history`` (None,
    unknown: the record goes, and the copy is rebuilt when it is next loaded from its file)."""
    if history is None:
        meta.pop("history", None)
        meta.pop("history_revision", None)
    else:
        meta["history"], meta["history_revision"] = history, revision
    return meta


def decode_embeddings(blobs: list[bytes], dim: int) -> np.ndarray:
    """Stack float32 embedding blobs from the database into an (n, dim) matrix."""
    if not blobs:
        return np.empty((0, dim), np.float32)
    return np.frombuffer(b"".join(blobs), dtype=np.float32).reshape(len(blobs), dim)


class CommittedFaces:
    """What the database holds of a collection now, each read on a session of its own (a fresh
    snapshot, not the one a caller's transaction sees): its revision, the last revision that
    removed a face, and its face ids."""

    def __init__(self, sessions: sessionmaker[Session]) -> None:
        self._sessions = sessions

    def revision(self, collection_id: int) -> int | None:
        """The committed revision (None: the collection is gone)."""
        with self._sessions() as session:
            return session.scalar(select(Collection.revision).where(Collection.id == collection_id))

    def revisions(self, collection_id: int) -> tuple[int, int] | None:
        """The committed (revision, removed_revision), read together (None: the collection is gone)."""
        with self._sessions() as session:
            row = session.execute(select(Collection.revision, Collection.removed_revision)
                                  .where(Collection.id == collection_id)).first()
            return None if row is None else (row[0], row[1])

    def history(self, collection_id: int, revision: int) -> str | None:
        """The committed history token of a revision (:func:`history_of`)."""
        with self._sessions() as session:
            return history_of(session, collection_id, revision)

    def ids(self, collection_id: int) -> np.ndarray:
        with self._sessions() as session:
            return np.fromiter(session.scalars(select(FaceRecord.id).where(FaceRecord.collection_id == collection_id)),
                               dtype=np.int64)


class IndexCache:
    """In-memory indexes per collection id, persisted under ``directory`` (None: memory only).
    With ``committed`` (the gallery's), a save checks that no face of the copy it wrote was erased
    by another process meanwhile (:meth:`save`)."""

    def __init__(self, directory: Path | None, *, ann_min_faces: int = ANN_MIN_FACES,
                 storage: Storage = "float32", expansion_search: int = DEFAULT_EXPANSION_SEARCH,
                 autosave_every: int = 1000, committed: CommittedFaces | None = None) -> None:
        self.committed = committed
        self.directory = None if directory is None else Path(directory)
        check_index_dir(self.directory)
        self.ann_min_faces = ann_min_faces
        self.storage = storage
        self.expansion_search = expansion_search
        self.autosave_every = autosave_every
        self._states: dict[int, IndexState] = {}
        self._unsaved: dict[int, int] = {}
        self._lock = threading.RLock()
        self._saves_failing = False  # a save failed and none succeeded since (logged once)
        self.recover()

    # -- erasure journal: a delete is written down before it commits, so a process killed
    # between the commit and the index scrub leaves a note the next process acts on at start
    def intend_erase(self, collection_id: int, face_ids: np.ndarray) -> Path | None:
        """Before a delete commits: note ``face_ids`` in a journal file next to the index (None
        without an index folder). :meth:`applied` removes it once the scrub is done.

        A journal that cannot be written (a full folder) is done without: the collection's index
        file is removed now instead (an unlink works on a full disk), with this process's copy of it
        (which a save before the commit would write back), so no file holds the faces whatever
        happens to this process after the commit (None). A folder where even that fails
        (read-only) refuses the delete: :class:`StorageUnavailable`, raised before the commit, so
        nothing is deleted."""
        path = self.path(collection_id)
        if path is None or not len(face_ids):
            return None
        journal = path.with_name(f"{path.name}.erase-{uuid.uuid4().hex}.npy")
        tmp = journal.with_suffix(".part")
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            try:
                with open(tmp, "wb") as handle:
                    np.save(handle, np.asarray(face_ids, np.int64))
                    handle.flush()
                    os.fsync(handle.fileno())
                os.replace(tmp, journal)
            finally:  # interrupted (Ctrl-C, SIGTERM), the half-written journal goes
                tmp.unlink(missing_ok=True)
        except OSError as exc:
            with self._lock:
                # this process's copy goes too: saved before the commit (a flush, an autosave), it
                # wrote the faces back into a file no journal names (rebuilt from the database instead)
                self._states.pop(collection_id, None)
                try:
                    self._remove_leftovers(collection_id)
                    delete_index(path)
                except OSError as removal:
                    log.error("a delete in collection %d was refused: its erasure journal could not be written "
                              "to %s (%s) nor the index file removed (%s)", collection_id, path.parent, exc, removal)
                    raise StorageUnavailable(
                        f"the index folder of this server can be neither written nor cleared ({_reason(exc)}): "
                        "nothing was deleted; try again later (its operator finds the details in the server "
                        "log)") from removal
            log.warning("the erasure journal of a delete in collection %d could not be written (%s): the index "
                        "file %s was removed instead (rebuilt from the database at its next load)",
                        collection_id, exc, path)
            return None
        return journal

    def recover(self) -> int:
        """Carry out the erasures that killed processes noted but did not finish: their face ids
        leave the index files (marked stale, so a delete that never committed is caught up from
        the database on the next load). Returns the number of journals handled."""
        if self.directory is None or not self.directory.is_dir():
            return 0
        journals = sorted(self.directory.glob("collection-*.npz.erase-*.npy"))
        with self._lock:
            for journal in journals:
                collection_id = int(journal.name.split("-", 1)[1].split(".", 1)[0])
                try:
                    face_ids = np.load(journal, allow_pickle=False)
                except (OSError, ValueError):
                    face_ids = None  # a torn journal: the whole index goes (rebuilt from the database)
                self._states.pop(collection_id, None)
                self._remove_leftovers(collection_id)
                if face_ids is None:
                    delete_index(self.path(collection_id))  # type: ignore[arg-type]
                else:
                    self._erase_on_disk(collection_id, face_ids, None, stale=True)
                journal.unlink(missing_ok=True)
        return len(journals)

    # -- the sweep: an index folder against the database, for erasures made through other folders
    def sweep(self, sessions: sessionmaker[Session]) -> tuple[int, int]:
        """Take out of the folder's index files every face the database no longer has; returns
        (files of deleted collections removed, files of live collections dropped or caught up). An
        erasure scrubs the folder of the process that made it, and no other: another machine's (or
        process's) ``FACEATLAS_INDEX_DIR`` keeps its copy until this runs there (a server runs it at
        its start and every ``FACEATLAS_RETENTION_SWEEP_SECONDS``).

        - The file of a collection that no longer exists is deleted, with its graph files and the
          temporary files of saves killed midway (a save of a live process is left: what it
          renames into place goes at the next sweep). Nothing else would ever remove it: a deleted
          collection is never loaded again.
        - The file of a live collection: see :meth:`_sweep_file` (deleted only when it holds a face
          the database no longer has; one that merely lags, as files do between saves, is left to
          the next load). Faces of live collections are never lost: the database is the record.
        - A file up to date is read no further than its metadata."""
        if self.directory is None or not self.directory.is_dir():
            return 0, 0
        files = {}
        for path in self.directory.glob("collection-*.npz"):  # listed before the database is read
            number = path.name.removeprefix("collection-").removesuffix(".npz")
            if number.isdigit():
                files[int(number)] = path
        if not files:
            return 0, 0
        with sessions() as session:
            alive = set(session.scalars(select(Collection.id).where(Collection.id.in_(list(files)))))
        deleted = updated = 0
        for collection_id in sorted(files):
            if collection_id in alive:
                updated += self._sweep_file(sessions, collection_id)
                continue
            with self._lock:
                self._states.pop(collection_id, None)
                self._unsaved.pop(collection_id, None)
                self._remove_leftovers(collection_id, keep_own=True)
                delete_index(files[collection_id])
            deleted += 1
        return deleted, updated

    def _sweep_file(self, sessions: sessionmaker[Session], collection_id: int) -> int:
        """Drop what the index file of a live collection holds of faces the database no longer has
        (see :meth:`sweep`); 1 when something was done. A file at the database's revision is left
        after a read of its metadata. A file behind it is left too when every face id it holds is
        still in the database (it only lacks faces added since: a load catches those up); one that
        holds an erased face is deleted (rebuilt from the database at its next use), never rewritten
        here: a rewrite from a read made before another process's delete committed put the erased
        vector back, and writers racing on one file deleted each other's graph files. This
        process's copy in memory is caught up there (:meth:`get`: removals applied, saved). A file
        of another history of the database (:func:`same_history`: one restored from a backup and
        written again) is deleted whatever its revision: its face ids may name other faces here, and
        it may hold faces erased in the history it came from."""
        path = self.path(collection_id)
        assert path is not None, "swept in a folder"
        with sessions() as session:
            collection = session.get(Collection, collection_id)
            if collection is None:  # deleted meanwhile: the next sweep
                return 0
            with self._lock:
                self._remove_leftovers(collection_id, keep_own=True)  # a killed save's may hold erased faces
                state = self._states.get(collection_id)
                if state is not None:
                    if state.revision >= collection.revision:  # current, or ahead of the row read (kept)
                        return 0
                    self.get(session, collection)
                    return 1
            meta = read_index_meta(path)
            ours = meta is not None and meta.get("created") == _identity(collection)["created"] \
                and same_history(session, collection_id, meta)
            if ours and meta is not None and isinstance(meta.get("revision"), int) \
                    and collection.removed_revision <= meta["revision"] <= collection.revision:
                return 0  # current, or behind with no face removed since: it holds no erased face
            held = read_index_ids(path) if ours else None
            alive = np.fromiter(session.scalars(select(FaceRecord.id).where(FaceRecord.collection_id == collection_id)),
                                dtype=np.int64) if ours else None
        if ours and held is not None and alive is not None and np.isin(held, alive).all():
            return 0  # behind, but holding no erased face
        with self._lock:
            if collection_id in self._states:  # loaded meanwhile by this process: caught up by get()
                return 0
            delete_index(path)
        return 1

    def close(self) -> None:
        """Nothing is held open (indexes are saved by :meth:`flush`)."""

    def path(self, collection_id: int) -> Path | None:
        """Where the index of ``collection_id`` is persisted."""
        return None if self.directory is None else self.directory / f"collection-{collection_id}.npz"

    def get(self, session: Session, collection: Collection) -> VectorIndex:
        """The collection's index, loaded from disk and caught up with the database if stale. This
        process's copy ahead of ``collection`` (read before another thread's change was applied to
        the copy) is returned as it is: it holds every change committed up to its revision (a
        removal reaches it at its commit, :meth:`applied`); a file ahead of the database is caught
        up by the diff of every face id (:meth:`_catch_up`)."""
        with self._lock:
            state = self._states.get(collection.id)
            held = state is not None  # this process's copy, not a file
            if state is None:
                state = self._load(collection)
            identity = _identity(collection)
            if state is not None and any(state.meta.get(key) != value for key, value in identity.items()):
                # an index of another collection that had this id (SQLite gives the id of a deleted
                # collection again; a kill between its deletion and its file's removal left the file;
                # a database made anew beside the old index folder), or a file from before the stamp:
                # rebuilt from the database, never caught up by face ids (those ids name other faces
                # there: an erased person's vector came back under a new person's face id); a copy of
                # another embedding space (re-embedded by another process) is rebuilt too
                state = None
            if state is not None and not held and not same_history(session, collection.id, state.meta):
                # a file of another history of the database (restored from a backup, then written
                # again: the same revision numbers, other faces under the same face ids), or one
                # from before the history tokens, or so far behind that its token was pruned:
                # rebuilt from the database, never trusted or caught up by its revision number
                log.info("the index file of collection %d is not of this database's history (a database "
                         "restored from a backup, or a file from before 0005): rebuilt from the database",
                         collection.id)
                state = None
            if state is not None and held and state.revision > collection.revision:
                # the row was read before this copy moved on (another thread's enrolment or delete
                # applied): kept as it is, at its revision; caught up, every face id was read and
                # diffed (250–450 ms at 300,000 faces) and the copy went back to the older revision
                return state.index
            if state is None or state.revision != collection.revision:
                state, rewrite = self._catch_up(session, collection, state)
                self._states[collection.id] = state
                # saved at once when faces left it (the file must not keep them) or it was built anew;
                # faces only added (another process's enrolments) count towards the autosave: a search
                # after each of them rewrote the whole file (56 ms of a 110 ms search at 30,000 faces)
                self._note_changes(collection.id, force=rewrite)
            else:  # a file at the database's revision: kept, not read again by every search (it was)
                self._states[collection.id] = state
            return state.index

    def applied(self, collection_id: int, revision: int, *,
                added: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None, removed: np.ndarray | None = None,
                save_now: bool = False, journal: Path | None = None, history: str | None = None) -> None:
        """Apply a committed change that moved the collection from ``revision - 1`` to ``revision``;
        ``added`` is (face ids, vectors, subject ids); ``history``: the history token the change
        gave ``revision`` (None: unknown, the copy saved at it is rebuilt at its next load).

        Additions are applied only to an index exactly one revision behind; any other is left
        stale and the next :meth:`get` catches it up from the database. Removals are erasure: they
        are applied to whatever copy exists — the one in memory, or the file on disk when this
        process has not loaded it — and saved before returning, whatever the revisions say; then
        the erasure's ``journal`` (:meth:`intend_erase`) is removed."""
        self._apply(collection_id, revision, added, removed, save_now, history)
        if journal is not None:  # kept when the scrub failed: the next process start finishes it
            journal.unlink(missing_ok=True)

    def _apply(self, collection_id: int, revision: int, added: tuple[np.ndarray, np.ndarray, np.ndarray] | None,
               removed: np.ndarray | None, save_now: bool = False, history: str | None = None) -> None:
        with self._lock:
            removed = np.empty(0, np.int64) if removed is None else np.asarray(removed, np.int64)
            erasing = len(removed) > 0
            if erasing:
                self._remove_leftovers(collection_id)
            state = self._states.get(collection_id)
            if state is None or state.revision != revision - 1:
                if erasing:  # a stale copy in memory is dropped (the next get() catches up); scrub the file
                    self._states.pop(collection_id, None)
                    self._unsaved.pop(collection_id, None)
                    self._erase_on_disk(collection_id, removed, revision if added is None else None,
                                        history=history)
                return
            if erasing:
                state.index.remove(removed)
                if state.index.needs_rebuild(len(state.index), self.ann_min_faces):  # next get() rebuilds it
                    self._states.pop(collection_id, None)
                    self._unsaved.pop(collection_id, None)
                    self._discard(collection_id, erasing=True)
                    return
            if added is not None and len(added[0]):
                state.index.add(*added)
            state.revision = revision
            stamp_history(state.meta, revision, history)
            self._note_changes(collection_id, force=save_now or erasing, erasing=erasing)

    def _erase_on_disk(self, collection_id: int, face_ids: np.ndarray, revision: int | None, *,
                       stale: bool = False, history: str | None = None) -> None:
        """Take ``face_ids`` out of the collection's index file as it is. Its revision moves to
        ``revision`` (of the history token ``history``) only when it was exactly one behind (a
        change that only removed) in this database's history (its token checked with
        :attr:`committed`); otherwise a later load catches it up (``stale``: it is marked so,
        whatever it was; the token of the revision it had stays, checked at that load). A file that cannot
        be read cannot be scrubbed: it is deleted, with graph files a killed save left behind (the
        next get() rebuilds); so is one that cannot be written (a full folder: :meth:`_discard`)."""
        path = self.path(collection_id)
        if path is None:
            return
        state = load_index(path) if path.is_file() else None
        if state is None:
            self._discard(collection_id, erasing=True)
            return
        held = np.intersect1d(face_ids, state.index.ids())
        if revision is not None and state.revision == revision - 1 and history is not None \
                and self._in_history(collection_id, state.meta, revision - 1):
            state.revision = revision
            stamp_history(state.meta, revision, history)
        elif not len(held):
            return
        elif stale:
            state.revision = STALE
        state.index.remove(held)
        if state.index.needs_rebuild(len(state.index), self.ann_min_faces):
            self._discard(collection_id, erasing=True)
            return
        try:
            save_index(state, path)
        except OSError as exc:
            self._discard(collection_id, erasing=True, cause=exc)

    def _in_history(self, collection_id: int, meta: dict[str, Any], revision: int) -> bool:
        """Whether a file's ``meta`` records this database's history token of ``revision``."""
        if self.committed is None or meta.get("history_revision") != revision:
            return False
        return self.committed.history(collection_id, revision) == meta.get("history")

    def _discard(self, collection_id: int, *, erasing: bool, cause: OSError | None = None) -> None:
        """Remove the collection's index file, its graph files and the temporary files of failed
        saves: the file could not be rewritten (``cause``: a full or read-only folder) or is due
        for a rebuild. An unlink works on a full disk, so an erasure leaves no file holding the
        erased faces. Where even that fails (read-only): for an erasure (``erasing``, after its
        commit) :class:`StorageUnavailable`, saying the scrub is pending (its journal stays, for the
        next start; the sweep deletes the file too); for a cache save, logged (searches go on)."""
        path = self.path(collection_id)
        if path is None:
            return
        try:
            self._remove_leftovers(collection_id)
            delete_index(path)
        except OSError as exc:
            if erasing:
                log.error("the erased faces of collection %d are still in the index file %s: it could be neither "
                          "rewritten (%s) nor removed (%s); they leave it at the next start or sweep that can",
                          collection_id, path, cause, exc)
                raise StorageUnavailable(
                    f"the delete was done, but the index folder of this server can be neither written nor cleared "
                    f"({_reason(exc)}): the erased faces leave its index files once it can (its operator finds the "
                    "details in the server log)") from exc
            self._save_failed(path, cause or exc, removed=False)
            return
        if cause is None:
            return
        if erasing:
            log.warning("the index file %s could not be rewritten for an erasure (%s): it was removed instead "
                        "(rebuilt from the database at its next load)", path, cause)
        else:
            self._save_failed(path, cause, removed=True)

    def _save_failed(self, path: Path, cause: OSError, *, removed: bool) -> None:
        """Log a save of a cached copy that failed: once until a save succeeds again, not per call."""
        if self._saves_failing:
            log.debug("the index file %s could not be written (%s)", path, cause)
            return
        self._saves_failing = True
        log.warning("the index file %s could not be written (%s): searches are served from the copy in memory "
                    "and the save is tried again later; %s (said once until a save succeeds)", path, cause,
                    "the older file was removed (rebuilt from the database at its next load)" if removed
                    else "the older file could not be removed either")

    def _remove_leftovers(self, collection_id: int, *, keep_own: bool = False) -> None:
        """Delete the temporary files of saves that were interrupted (a killed process): they may
        hold vectors that were erased since. A save in progress in another live process is left,
        and (``keep_own``: the sweep) one of this process, which another cache may be writing."""
        path = self.path(collection_id)
        if path is None or not path.parent.is_dir():
            return
        for leftover in path.parent.glob(f"{path.name}.*.tmp"):
            pid = leftover.name.removeprefix(f"{path.name}.").split(".", 1)[0]
            if keep_own and pid == str(os.getpid()):
                continue
            if not _process_alive(pid):
                leftover.unlink(missing_ok=True)

    def save(self, collection_id: int) -> None:
        """Persist one collection's index now (:class:`OSError` when the folder cannot be written:
        the changes stay unsaved). Another process's delete that committed since the copy was read
        scrubbed the file before this save wrote the copy back with the erased faces (processes
        sharing a folder): when the committed revision moved, the faces the database no longer holds
        leave the copy and the file is written again (:attr:`committed`)."""
        with self._lock:
            state = self._states.get(collection_id)
            path = self.path(collection_id)
            if state is not None and path is not None:
                save_index(state, path)
                self._unwrite_erased(collection_id, state, path)
            self._unsaved.pop(collection_id, None)

    def _unwrite_erased(self, collection_id: int, state: IndexState, path: Path) -> None:
        if self.committed is None:
            return
        for _ in range(3):  # a delete elsewhere may commit again meanwhile: read again, a few times
            revisions = self.committed.revisions(collection_id)
            if revisions is None:  # the collection was deleted meanwhile: its file goes
                self._remove_leftovers(collection_id)
                delete_index(path)
                return
            revision, removed_revision = revisions
            if revision == state.revision:
                return  # nothing committed since the copy was read: no face of it was erased
            if removed_revision <= state.revision <= revision:
                return  # only faces added or moved since the copy's revision: it lags, no face of it was erased
            erased = np.setdiff1d(state.index.ids(), self.committed.ids(collection_id), assume_unique=True)
            if not len(erased):
                return  # only faces added meanwhile: the copy lags, the next catch-up adds them
            state.index.remove(erased)
            save_index(state, path)
        self._remove_leftovers(collection_id)
        delete_index(path)  # still moving: no file rather than one that may hold erased faces

    def _save_cached(self, collection_id: int, *, erasing: bool = False) -> None:
        """Persist one collection's index, which is only a copy of the database: when the folder
        cannot be written (full, read-only), the copy in memory goes on serving and stays unsaved
        (the next save tries again), and the older file is removed (it lags the copy, and may hold
        faces removed from it: :meth:`_discard`, which raises only for an ``erasing`` save whose
        file cannot be removed either)."""
        with self._lock:
            try:
                self.save(collection_id)
            except OSError as exc:
                self._discard(collection_id, erasing=erasing, cause=exc)
                return
            if self._saves_failing:
                self._saves_failing = False
                log.info("the index folder %s is written again", self.directory)

    def flush(self, session: Session | None = None) -> None:
        """Persist every index with unsaved changes. With a ``session``, each is first caught up
        with the database, so a copy that another process has erased from since is not written
        back with the erased vectors."""
        with self._lock:
            for collection_id in list(self._unsaved):
                if session is not None:
                    collection = session.get(Collection, collection_id)
                    if collection is None:
                        self.drop(collection_id)
                        continue
                    self.get(session, collection)
                self._save_cached(collection_id)

    def drop(self, collection_id: int) -> None:
        """Forget a collection's index (deleted, or due for a rebuild), in memory and on disk; a
        folder where its files cannot be removed (read-only) is :class:`StorageUnavailable`
        (a collection's delete drops it before its commit too: refused, nothing deleted)."""
        with self._lock:
            self._states.pop(collection_id, None)
            self._unsaved.pop(collection_id, None)
            path = self.path(collection_id)
            if path is not None:
                try:
                    self._remove_leftovers(collection_id)
                    delete_index(path)
                except OSError as exc:
                    log.error("the index file %s could not be removed (%s)", path, exc)
                    raise StorageUnavailable(f"the index folder of this server cannot be cleared ({_reason(exc)}); "
                                             "try again later (its operator finds the details in the server "
                                             "log)") from exc

    def _note_changes(self, collection_id: int, *, force: bool, erasing: bool = False) -> None:
        pending = self._unsaved.get(collection_id, 0) + 1
        self._unsaved[collection_id] = pending
        if force or pending >= self.autosave_every:
            self._save_cached(collection_id, erasing=erasing)

    def _load(self, collection: Collection) -> IndexState | None:
        path = self.path(collection.id)
        if path is None or not path.is_file():
            return None
        state = load_index(path)
        if state is None or state.index.dim != collection.embedding_size \
                or state.meta.get("recognizer_id") != collection.recognizer_id:
            return None
        return state

    def _catch_up(self, session: Session, collection: Collection,
                  state: IndexState | None) -> tuple[IndexState, bool]:
        """The index at the collection's revision, and whether its file must be rewritten now: faces
        left it (the file holds them) or it was built anew (else only faces were added).

        An index at revision R after the collection's last removal (``removed_revision`` <= R) reads
        only the faces with a revision above R (added, moved, re-embedded since): each leaves the
        index where it is there and comes back with its vector and subject now. A face of a
        transaction that committed after ``collection`` was read may be among them: it is applied
        again at the next catch-up, harmlessly. Otherwise (a removal since, a file marked stale, one
        ahead of the database) every face id is diffed with the index's; the faces moved since are
        read by their stamps, or, with no revision to read them against (stale, ahead), found by
        comparing every face's subject with the one the index groups it under."""
        if state is not None and collection.removed_revision <= state.revision <= collection.revision:
            return self._catch_up_changed(session, collection, state)
        db_ids = np.fromiter(session.scalars(select(FaceRecord.id).where(FaceRecord.collection_id == collection.id)),
                             dtype=np.int64)
        meta = _stamp(session, collection)
        if state is None or state.index.needs_rebuild(len(db_ids), self.ann_min_faces):
            return IndexState(self._build(session, collection, len(db_ids)), collection.revision, meta), True
        index = state.index
        ghosts = np.setdiff1d(index.ids(), db_ids, assume_unique=True)
        if len(ghosts):
            index.remove(ghosts)
        # faces moved since the index's revision keep their ids: regrouped from their stamps, or
        # (a file marked stale, one ahead of the database) taken out when grouped under another
        # subject than the database's, then added back with the missing faces
        if 0 <= state.revision <= collection.revision:
            if not self._apply_changed(session, collection, index, state.revision):
                return self._rebuilt(session, collection), True
        else:
            index.remove(self._regrouped(session, collection, index))
        missing = np.setdiff1d(db_ids, index.ids(), assume_unique=True)
        for chunk in self._fetch_chunks(session, collection, missing):
            index.add(*chunk)
        if index.needs_rebuild(len(index), self.ann_min_faces):
            return IndexState(self._build(session, collection, len(db_ids)), collection.revision, meta), True
        return IndexState(index, collection.revision, meta), bool(len(ghosts))

    def _catch_up_changed(self, session: Session, collection: Collection,
                          state: IndexState) -> tuple[IndexState, bool]:
        """:meth:`_catch_up` by the faces changed since ``state.revision``: no face was removed since."""
        if not self._apply_changed(session, collection, state.index, state.revision):
            return self._rebuilt(session, collection), True
        return IndexState(state.index, collection.revision, _stamp(session, collection)), False

    def _apply_changed(self, session: Session, collection: Collection, index: VectorIndex, since: int) -> bool:
        """Put the faces stamped with a revision above ``since`` (added, moved, re-embedded) into
        ``index`` as the database holds them now: each out first where it is there, then in with its
        vector and subject. False (``index`` left half done): it is due for a rebuild instead."""
        changed = self._select(collection).where(FaceRecord.revision > since) \
            .execution_options(yield_per=_FETCH_CHUNK)
        for rows in session.execute(changed).partitions(_FETCH_CHUNK):
            ids, vectors, subjects = self._decode(rows, collection)
            index.remove(ids)
            if index.needs_rebuild(len(index) + len(ids), self.ann_min_faces):
                return False
            index.add(ids, vectors, subjects)
        return True

    @staticmethod
    def _regrouped(session: Session, collection: Collection, index: VectorIndex) -> np.ndarray:
        """The faces ``index`` groups under another subject than the database's (none for an index
        that groups none). Read through the subjects (the faces' subject index: no embedding read)."""
        grouped = index.groups()
        if grouped is None or not len(grouped[0]):
            return np.empty(0, np.int64)
        rows = session.execute(select(FaceRecord.subject_id, FaceRecord.id)
                               .join(Subject, Subject.id == FaceRecord.subject_id)
                               .where(Subject.collection_id == collection.id))
        stored = np.fromiter(chain.from_iterable(rows), np.int64).reshape(-1, 2)
        ids, subjects = grouped
        _, held, found = np.intersect1d(ids, stored[:, 1], assume_unique=True, return_indices=True)
        return ids[held[subjects[held] != stored[found, 0]]]

    def _rebuilt(self, session: Session, collection: Collection) -> IndexState:
        """A new index of the collection, its face count read first."""
        count = session.scalar(select(func.count()).select_from(FaceRecord)
                               .where(FaceRecord.collection_id == collection.id)) or 0
        return IndexState(self._build(session, collection, count), collection.revision, _stamp(session, collection))

    def _build(self, session: Session, collection: Collection, count: int) -> VectorIndex:
        """A new index of the collection's ``count`` faces, streamed from the database a subject
        at a time (memory: the index plus one chunk, not a second copy of every vector)."""
        index = empty_index(count, collection.embedding_size, storage=self.storage,
                            ann_min_faces=self.ann_min_faces, expansion_search=self.expansion_search)
        index.reserve(count)
        for chunk in self._fetch_chunks(session, collection):
            index.add(*chunk)
        return index

    @classmethod
    def _fetch_chunks(cls, session: Session, collection: Collection, ids: np.ndarray | None = None
                      ) -> Iterator[tuple[np.ndarray, np.ndarray, np.ndarray]]:
        """(ids, vectors, subject ids) of the given faces of ``collection`` in chunks; all faces
        when ``ids`` is None, then ordered by subject so a subject's faces arrive together."""
        if ids is None:
            query = cls._select(collection).order_by(FaceRecord.subject_id, FaceRecord.id) \
                .execution_options(yield_per=_FETCH_CHUNK)
            for rows in session.execute(query).partitions(_BUILD_CHUNK):
                yield cls._decode(rows, collection)
            return
        for start in range(0, len(ids), _FETCH_CHUNK):
            chosen = [int(i) for i in ids[start: start + _FETCH_CHUNK]]
            yield cls._decode(session.execute(cls._select(collection).where(FaceRecord.id.in_(chosen))).all(),
                              collection)

    @staticmethod
    def _select(collection: Collection) -> Select:
        return select(FaceRecord.id, FaceRecord.embedding, FaceRecord.subject_id) \
            .where(FaceRecord.collection_id == collection.id)

    @staticmethod
    def _decode(rows: Sequence[Row], collection: Collection) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        return (np.asarray([row[0] for row in rows], np.int64),
                decode_embeddings([row[1] for row in rows], collection.embedding_size),
                np.asarray([row[2] for row in rows], np.int64))


def _stamp(session: Session, collection: Collection) -> dict[str, Any]:
    """The metadata of a copy of ``collection`` at its revision: its identity and the history token
    of that revision (read in ``session``, which read the collection's row)."""
    return stamp_history(dict(_identity(collection)), collection.revision,
                         history_of(session, collection.id, collection.revision))


def _identity(collection: Collection) -> dict[str, str]:
    """What an index file records of its collection beside the revision: the embedding space, and
    the collection's creation time (its id alone can name a later collection)."""
    return {"recognizer_id": collection.recognizer_id, "created": collection.created_at.isoformat()}
