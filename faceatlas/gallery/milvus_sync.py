"""Keeps each collection's vectors in Milvus in step with the database (``FACEATLAS_VECTOR_BACKEND=milvus``).

The same contract as :class:`faceatlas.gallery.sync.IndexCache`, whose methods the gallery calls:
a copy is trusted only for the revision stored beside it in Milvus (:class:`MilvusStore`); a copy
behind the database is caught up by a set difference of face ids (so a restart, another process's
writes, or a kill between a commit and its Milvus write lose nothing and leave no ghost).

Erasure deletes ahead: :meth:`MilvusIndexCache.intend_erase` (inside the transaction, before the
commit) marks the stored revision stale and deletes the vectors, confirmed by a query; when
Milvus cannot confirm, the delete is refused (:class:`VectorStoreUnavailable`) and nothing is
committed. A delete that then fails to commit loses no face: the stale mark makes the next
:meth:`get` put the vectors back from the database. A Milvus server is then asked to compact the
collection (deleted rows leave its segment files); Milvus Lite has no compaction.

A deleted collection's Milvus collection is dropped inside the delete's transaction, before the
commit (the gallery calls :meth:`MilvusIndexCache.drop` there; a drop Milvus refuses refuses the
delete, nothing committed), and once more after it. Vectors that outlive their collection all the
same (a process killed between its commit and a drop, a concurrent catch-up copying them back, a
delete by a process without Milvus) keep their stored revision, which names them:
:meth:`MilvusIndexCache.recover`, at every open and flush, drops those whose collection the
database no longer has (or has under another identity: an id SQLite gave again). At every open
it also catches up each copy whose stored revision is not the database's: faces erased by a
process that wrote no Milvus (the FAISS backend) leave Milvus then, not at their collection's
next search.

A stored revision also records the database's history token of the revision it vouches for
(``collection_revisions``; in its ``recognizer_id`` field, after the collection's space): a copy
whose token is not the database's for that revision (a database restored from a backup and
written again reaches the same revision numbers with other faces under reused face ids; a copy
stored before the tokens) is dropped and filled anew from the database, never trusted or caught up
by face ids, at its next use and at every open.

A change committed to the database is the record: when Milvus fails to take it afterwards
(:meth:`MilvusIndexCache.applied`), the call still succeeds (a warning is logged, the stored
revision is left behind and the copy caught up at its next use). A Milvus that lost its
collections (a server restarted empty) has them made anew and filled from the database at the
next call, instead of answering 503 until the process restarts.
"""

from __future__ import annotations

import logging
import re
import threading
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from faceatlas.errors import NotFound, VectorStoreUnavailable
from faceatlas.gallery.index import IndexState, VectorIndex
from faceatlas.gallery.index.milvus import STALE, CollectionMissing, MilvusIndex, MilvusStore
from faceatlas.gallery.models import Collection, FaceRecord, Tenant
from faceatlas.gallery.sync import IndexCache, history_of, same_history

_CHECK_CHUNK = 10_000
_HISTORY = re.compile(r"(-?\d+):([0-9a-f]{32})")  # what a stored space ends with after its last "|"
_log = logging.getLogger(__name__)


class MilvusIndexCache:
    """A :class:`MilvusIndex` per collection id, with the revision it reflects."""

    directory: Path | None = None  # nothing is saved in files

    def __init__(self, store: MilvusStore, sessions: sessionmaker[Session] | None = None) -> None:
        self.store = store
        self._sessions = sessions  # to catch up at once a copy that a change finds not loaded
        self._states: dict[int, IndexState] = {}
        self._erasing: dict[int, IndexState] = {}  # set aside between intend_erase and applied
        self._lock = threading.RLock()
        try:
            self.recover(catch_up=True)
        except BaseException:
            store.close()
            raise

    def close(self) -> None:
        self.store.close()

    def path(self, collection_id: int) -> Path | None:
        return None

    def recover(self, session: Session | None = None, *, catch_up: bool = False) -> int:
        """Drop the Milvus copies of collections the database no longer has (a deleted collection
        whose drop did not happen: see the module docstring), or has under another identity (a
        collection deleted without Milvus whose id SQLite gave to a new one); returns how many.

        ``catch_up`` (at every open): also bring up to date every copy whose stored revision is not
        the database's, so faces erased by a process that wrote no Milvus (one on the FAISS
        backend, a delete whose second Milvus write failed after its commit) leave Milvus now, not
        at their collection's next search or enrolment (never, for a collection not used again)."""
        if session is not None:  # a transaction of its own: the caller's may be a snapshot
            fresh = Session(session.get_bind())
        elif self._sessions is not None:
            fresh = self._sessions()
        else:
            return 0
        with fresh:
            records = self.store.records()  # read before the database: a collection made meanwhile is kept
            ids = [int(record["collection_id"]) for record in records]
            alive = {row.id: row for row in fresh.scalars(select(Collection).where(Collection.id.in_(ids)))} \
                if ids else {}
            gone, behind = [], []
            for record in records:
                collection = alive.get(int(record["collection_id"]))
                space, history = _parse(record["recognizer_id"])
                if collection is None or space != _space(collection):
                    gone.append(record)
                elif int(record["revision"]) != collection.revision \
                        or not same_history(fresh, collection.id, history):  # another history's: refilled
                    behind.append(collection)
            with self._lock:
                for record in gone:
                    collection_id = int(record["collection_id"])
                    if collection_id not in alive:
                        self._states.pop(collection_id, None)
                        self._erasing.pop(collection_id, None)
                    self.store.forget(record)
                for collection in behind if catch_up else []:
                    self._states.pop(collection.id, None)  # what Milvus holds is read again
                    self.get(fresh, collection)
        if gone:
            _log.info("dropped the Milvus vectors of %d deleted collection(s)", len(gone))
        if behind and catch_up:
            _log.info("caught up the Milvus vectors of %d collection(s) changed without them", len(behind))
        return len(gone)

    def get(self, session: Session, collection: Collection) -> VectorIndex:
        """The collection's index, caught up with the database when its stored revision is behind.
        This process's copy ahead of ``collection`` (read before another thread's change was
        applied to the copy) is returned as it is: it holds every change committed up to its
        revision (an erasure leaves Milvus before its commit, :meth:`intend_erase`, and the copy is
        set aside until :meth:`applied`); a stored revision ahead of the database with no copy in
        this process (another process's, a database restored from an older backup) is caught up."""
        with self._lock:
            state = self._states.get(collection.id)
            if state is not None and self._current(state, collection) and state.revision >= collection.revision:
                # ahead: the row was read before this copy moved on (another thread's enrolment or
                # delete applied); caught up, every face id was read from Milvus and the database
                # and diffed (190 ms at 30,000 faces on Lite, 1 search in 5 under steady
                # enrolments), the copy put back at the older revision and the next enrolment's
                # applied() left it out: caught up once more
                return state.index
            tenant = session.get(Tenant, collection.tenant_id)
            name = self.store.name(tenant.name if tenant is not None else "", collection.id)
            record = self.store.record(collection.id)
            space, history = _parse(record["recognizer_id"]) if record is not None else ("", {})
            if record is not None and (record["name"], record["dim"], space) != \
                    (name, collection.embedding_size, _space(collection)):
                # another space's vectors (re-embedded), or another collection's that had this id (one
                # deleted, a database made anew): start over, never caught up by face ids
                self.store.drop(collection.id)
                record = None
            if record is not None and not same_history(session, collection.id, history):
                # a copy of another history of the database (restored from a backup, then written
                # again: the same revision numbers, other faces under the same face ids), or one
                # stored before the history tokens: start over, never caught up by face ids
                _log.info("the Milvus vectors of collection %d are not of this database's history (a database "
                          "restored from a backup, or stored before 0005): filled anew from the database",
                          collection.id)
                self.store.drop(collection.id)
                record = None
            if record is None:  # vectors under this name with no revision (a drop or a record lost): not trusted
                self.store.discard(name)
            index = self.store.open(name, collection.embedding_size)  # counted: another process may have moved it
            if record is None or record["revision"] != collection.revision or index.created:
                # behind, or its Milvus collection gone (made anew, empty, by open): copied from the database
                index = self._catch_up(session, collection, index,
                                       _space(collection) if record is None else record["recognizer_id"])
            index.renew = partial(self._renew, collection.id)
            self._states[collection.id] = IndexState(index, collection.revision,
                                                     {"recognizer_id": _space(collection), "resets": self.store.resets})
            return index

    def _current(self, state: IndexState, collection: Collection) -> bool:
        """Whether ``state`` is a copy of ``collection`` (not of another collection that had its id,
        deleted by another process: SQLite gives the id again) that Milvus has not lost since (its
        revisions found gone: a server restarted empty)."""
        return state.meta.get("recognizer_id") == _space(collection) and state.meta.get("resets") == self.store.resets

    def _renew(self, collection_id: int) -> MilvusIndex:
        """The collection's index rebuilt from the database: its Milvus collection was found gone."""
        with self._lock:
            self._states.pop(collection_id, None)
            if self._sessions is None:
                raise CollectionMissing(f"the Milvus collection of gallery collection {collection_id} is gone")
            with self._sessions() as session:
                collection = session.get(Collection, collection_id)
                if collection is None:
                    raise NotFound(f"collection {collection_id} was deleted meanwhile")
                index = self.get(session, collection)
                assert isinstance(index, MilvusIndex)
                return index

    def _catch_up(self, session: Session, collection: Collection, index: MilvusIndex, stored: str) -> MilvusIndex:
        """Bring ``index`` (a copy of this database's history: ``stored``, its space and history
        token, kept while it is marked stale) to the collection's revision by a diff of face ids."""
        self.store.set_revision(index.name, collection.id, STALE, stored, collection.embedding_size)
        db_ids = np.fromiter(session.scalars(select(FaceRecord.id).where(FaceRecord.collection_id == collection.id)),
                             dtype=np.int64)
        held = index.ids()
        index.recount(len(held))
        ghosts = np.setdiff1d(held, db_ids)
        if len(ghosts):
            index.remove(ghosts)
        missing = np.setdiff1d(db_ids, held)
        for chunk in IndexCache._fetch_chunks(session, collection, missing):
            index.add(*chunk)
        self._confirm(session, index, missing)
        self.store.set_revision(index.name, collection.id, collection.revision,
                                _stored(_space(collection), collection.revision,
                                        history_of(session, collection.id, collection.revision)),
                                collection.embedding_size)
        return index

    @staticmethod
    def _confirm(session: Session, index: MilvusIndex, added: np.ndarray) -> None:
        """Delete again the vectors just added whose faces a concurrent delete took from the
        database meanwhile (read in a fresh transaction: the caller's may be a snapshot)."""
        if not len(added):
            return
        with Session(session.get_bind()) as fresh:
            alive: set[int] = set()
            for start in range(0, len(added), _CHECK_CHUNK):
                chunk = [int(i) for i in added[start: start + _CHECK_CHUNK]]
                alive.update(fresh.scalars(select(FaceRecord.id).where(FaceRecord.id.in_(chunk))))
        gone = np.setdiff1d(added, np.fromiter(alive, np.int64, len(alive)))
        if len(gone):
            index.remove(gone)

    def intend_erase(self, collection_id: int, face_ids: np.ndarray) -> Path | None:
        """Before a delete commits: mark the stored copy stale and delete ``face_ids`` from Milvus
        (confirmed). Returns no journal: nothing is left to finish after the commit."""
        if not len(face_ids):
            return None
        with self._lock:
            state = self._states.pop(collection_id, None)
            if state is not None:
                self._erasing[collection_id] = state
            record = self.store.record(collection_id)
            if record is None:  # no copy Milvus vouches for; the one in memory, if any, is emptied of them
                if state is not None:
                    state.index.remove(np.asarray(face_ids, np.int64))
                return None
            self.store.set_revision(record["name"], collection_id, STALE, record["recognizer_id"], record["dim"])
            # not MilvusStore.open: a collection that is gone holds nothing to erase, and is not made here
            index = state.index if state is not None else MilvusIndex(self.store, record["name"], record["dim"], 0)
            index.remove(np.asarray(face_ids, np.int64))
            self.store.compact(record["name"])
        return None

    def applied(self, collection_id: int, revision: int, *,
                added: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None, removed: np.ndarray | None = None,
                save_now: bool = False, journal: Path | None = None, history: str | None = None) -> None:
        """Apply a committed change from ``revision - 1`` to ``revision`` (as
        :meth:`IndexCache.applied`; ``history``: the token it gave ``revision``): removals always,
        additions to a copy exactly one behind; a copy that is not is left stale, caught up by the
        next :meth:`get` (at once when this process had not loaded it, or when its Milvus
        collection is found gone).

        The change is committed: when Milvus fails now, the call does not (an enrolment answered
        503 after its commit was enrolled twice by a client's retry). A warning is logged and the
        stored revision is left behind, so the next :meth:`get` (or the next open:
        :meth:`recover`) copies the change from the database. An erasure lost nothing to it: its
        faces left Milvus, confirmed, before its commit (:meth:`intend_erase`)."""
        removed = np.empty(0, np.int64) if removed is None else np.asarray(removed, np.int64)
        with self._lock:
            state = self._states.pop(collection_id, None) or self._erasing.pop(collection_id, None)
            self._erasing.pop(collection_id, None)
            try:
                self._apply(collection_id, revision, state, added, removed, history)
            except VectorStoreUnavailable as error:
                self._states.pop(collection_id, None)  # caught up from the database at its next use
                _log.warning("collection %d: revision %d is committed but Milvus did not take it (%s); its "
                             "vectors are copied from the database at the collection's next use",
                             collection_id, revision, error)

    def _apply(self, collection_id: int, revision: int, state: IndexState | None,
               added: tuple[np.ndarray, np.ndarray, np.ndarray] | None, removed: np.ndarray,
               history: str | None = None) -> None:
        if state is not None and not self._still_current(collection_id, state):
            state = None  # a copy of another collection that had this id, or one Milvus lost
        if state is None or not isinstance(state.index, MilvusIndex):
            record = self.store.record(collection_id) if len(removed) else None
            if record is not None:  # not MilvusStore.open: a collection that is gone is not made here
                MilvusIndex(self.store, record["name"], record["dim"], 0).remove(removed)
            self._load_now(collection_id)
            return
        index = state.index
        try:
            if len(removed):
                index.remove(removed)
            if state.revision >= revision:  # caught up past this change (a search read its commit first): kept
                self._states[collection_id] = state  # dropped, the next enrolment caught it up again
                return
            if state.revision != revision - 1:
                return  # left out: the next get() reads the stored revision and catches up
            if added is not None and len(added[0]):
                index.add(*added)
                if self._sessions is not None:  # a delete in another process may have overtaken the write
                    with self._sessions() as session:
                        self._confirm(session, index, np.asarray(added[0], np.int64))
        except CollectionMissing:  # Milvus lost it (a server restarted empty): rebuilt from the database now
            self._load_now(collection_id)
            return
        state.revision = revision
        self._states[collection_id] = state
        self.store.set_revision(index.name, collection_id, revision,
                                _stored(state.meta["recognizer_id"], revision, history), index.dim)

    def _still_current(self, collection_id: int, state: IndexState) -> bool:
        """Whether ``state`` is still a copy of the collection the database has under this id, and
        one Milvus has not lost (:meth:`_current`)."""
        if state.meta.get("resets") != self.store.resets:
            return False
        if self._sessions is None:
            return True
        with self._sessions() as session:
            collection = session.get(Collection, collection_id)
            return collection is not None and self._current(state, collection)

    def _load_now(self, collection_id: int) -> None:
        """Catch up a copy this process has not loaded, so Milvus holds what was written."""
        if self._sessions is not None:
            with self._sessions() as session:
                collection = session.get(Collection, collection_id)
                if collection is not None:
                    self.get(session, collection)

    def save(self, collection_id: int) -> None:
        """Nothing to save: Milvus persists every write."""

    def flush(self, session: Session | None = None) -> None:
        """Nothing to save (Milvus persists every write); with a ``session``, drops the vectors of
        collections deleted meanwhile that are left in Milvus (:meth:`recover`)."""
        if session is not None:
            self.recover(session)

    def drop(self, collection_id: int) -> None:
        """Forget a collection's vectors (deleted or re-embedded), in memory and in Milvus."""
        with self._lock:
            self._states.pop(collection_id, None)
            self._erasing.pop(collection_id, None)
            self.store.drop(collection_id)


def _stored(space: str, revision: int, history: str | None) -> str:
    """What a stored revision records in its ``recognizer_id`` field: the collection's space and
    the history token of ``revision`` (none when unknown: the copy is filled anew at its next load)."""
    return space if history is None else f"{space}|{revision}:{history}"


def _parse(stored: str) -> tuple[str, dict[str, Any]]:
    """The space and the history (``history``, ``history_revision``, as an index file's metadata
    records them: :func:`~faceatlas.gallery.sync.same_history`) of a stored revision's
    ``recognizer_id`` field; a field stored before the history tokens is its space alone."""
    space, _, last = str(stored).rpartition("|")
    found = _HISTORY.fullmatch(last)
    if not space or found is None:
        return str(stored), {}
    return space, {"history": found.group(2), "history_revision": int(found.group(1))}


def _space(collection: Collection) -> str:
    """What a stored revision names of its collection: the embedding space and the collection's
    creation time (its id alone can name a later collection of this or of a new database)."""
    return f"{collection.recognizer_id}|{collection.created_at.isoformat()}"
