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
database no longer has.
"""

from __future__ import annotations

import logging
import threading
from pathlib import Path

import numpy as np
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from faceatlas.gallery.index import IndexState, VectorIndex
from faceatlas.gallery.index.milvus import STALE, MilvusIndex, MilvusStore
from faceatlas.gallery.models import Collection, FaceRecord, Tenant
from faceatlas.gallery.sync import IndexCache

_CHECK_CHUNK = 10_000
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
            self.recover()
        except BaseException:
            store.close()
            raise

    def close(self) -> None:
        self.store.close()

    def path(self, collection_id: int) -> Path | None:
        return None

    def recover(self, session: Session | None = None) -> int:
        """Drop the Milvus collections whose gallery collection the database no longer has (a
        deleted collection whose drop did not happen: see the module docstring); returns how
        many. Face erasure needs nothing here: it deletes ahead of its commit."""
        if session is not None:  # a transaction of its own: the caller's may be a snapshot
            fresh = Session(session.get_bind())
        elif self._sessions is not None:
            fresh = self._sessions()
        else:
            return 0
        with fresh:
            records = self.store.records()  # read before the database: a collection made meanwhile is kept
            ids = [int(record["collection_id"]) for record in records]
            alive = set(fresh.scalars(select(Collection.id).where(Collection.id.in_(ids)))) if ids else set()
        gone = [record for record in records if int(record["collection_id"]) not in alive]
        with self._lock:
            for record in gone:
                collection_id = int(record["collection_id"])
                self._states.pop(collection_id, None)
                self._erasing.pop(collection_id, None)
                self.store.drop(collection_id, space=record["recognizer_id"])
        if gone:
            _log.info("dropped the Milvus vectors of %d deleted collection(s)", len(gone))
        return len(gone)

    def get(self, session: Session, collection: Collection) -> VectorIndex:
        """The collection's index, caught up with the database when its stored revision is behind."""
        with self._lock:
            state = self._states.get(collection.id)
            if state is not None and state.revision == collection.revision:
                return state.index
            tenant = session.get(Tenant, collection.tenant_id)
            name = self.store.name(tenant.name if tenant is not None else "", collection.id)
            record = self.store.record(collection.id)
            if record is not None and (record["name"], record["dim"], record["recognizer_id"]) != \
                    (name, collection.embedding_size, _space(collection)):
                # another space's vectors (re-embedded), or another collection's that had this id (one
                # deleted, a database made anew): start over, never caught up by face ids
                self.store.drop(collection.id)
                record = None
            if record is None:  # vectors under this name with no revision (a drop or a record lost): not trusted
                self.store.discard(name)
            if record is not None and record["revision"] == collection.revision:
                index = state.index if state is not None else self.store.open(name, collection.embedding_size)
                if state is not None and isinstance(index, MilvusIndex):
                    index.recount()  # another process moved it to this revision
            else:
                index = self._catch_up(session, collection, self.store.open(name, collection.embedding_size))
            self._states[collection.id] = IndexState(index, collection.revision,
                                                     {"recognizer_id": _space(collection)})
            return index

    def _catch_up(self, session: Session, collection: Collection, index: MilvusIndex) -> MilvusIndex:
        self.store.set_revision(index.name, collection.id, STALE, _space(collection), collection.embedding_size)
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
        self.store.set_revision(index.name, collection.id, collection.revision, _space(collection),
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
            if record is None:
                return None
            self.store.set_revision(record["name"], collection_id, STALE, record["recognizer_id"], record["dim"])
            index = state.index if state is not None else self.store.open(record["name"], record["dim"])
            index.remove(np.asarray(face_ids, np.int64))
            self.store.compact(record["name"])
        return None

    def applied(self, collection_id: int, revision: int, *,
                added: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None, removed: np.ndarray | None = None,
                save_now: bool = False, journal: Path | None = None) -> None:
        """Apply a committed change from ``revision - 1`` to ``revision`` (as
        :meth:`IndexCache.applied`): removals always, additions to a copy exactly one behind; a
        copy that is not is left stale, caught up by the next :meth:`get` (at once when this
        process had not loaded it)."""
        removed = np.empty(0, np.int64) if removed is None else np.asarray(removed, np.int64)
        with self._lock:
            state = self._states.pop(collection_id, None) or self._erasing.pop(collection_id, None)
            self._erasing.pop(collection_id, None)
            if state is None or not isinstance(state.index, MilvusIndex):
                record = self.store.record(collection_id) if len(removed) else None
                if record is not None:
                    self.store.open(record["name"], record["dim"]).remove(removed)
                if self._sessions is not None:  # not loaded: load it now, so Milvus holds what was written
                    with self._sessions() as session:
                        collection = session.get(Collection, collection_id)
                        if collection is not None:
                            self.get(session, collection)
                return
            index = state.index
            if len(removed):
                index.remove(removed)
            if state.revision != revision - 1:
                return  # left out: the next get() reads the stored revision and catches up
            if added is not None and len(added[0]):
                index.add(*added)
                if self._sessions is not None:  # a delete in another process may have overtaken the write
                    with self._sessions() as session:
                        self._confirm(session, index, np.asarray(added[0], np.int64))
            state.revision = revision
            self._states[collection_id] = state
            self.store.set_revision(index.name, collection_id, revision, state.meta["recognizer_id"], index.dim)

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


def _space(collection: Collection) -> str:
    """What a stored revision names of its collection: the embedding space and the collection's
    creation time (its id alone can name a later collection of this or of a new database)."""
    return f"{collection.recognizer_id}|{collection.created_at.isoformat()}"
