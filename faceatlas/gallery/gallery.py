"""The gallery: tenants -> collections -> subjects -> faces, with enrolment, search and verify.

Every write commits to the database first and only then updates the derived vector index
(see :mod:`faceatlas.gallery.sync`), so the database is always the source of truth.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Iterable, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any, TypeVar, cast

import cv2
import numpy as np
from sqlalchemy import BigInteger, DateTime, Table, bindparam, delete, func, insert, literal, select, update
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker
from sqlalchemy.orm.exc import StaleDataError

from faceatlas.db import (
    create_database_engine,
    normalize_url,
    require_database,
    rowcount,
    sqlite_path,
    sqlite_write_lock,
)
from faceatlas.engine import (
    DEFAULT_FAR,
    DEFAULT_FPIR,
    Calibration,
    Cut,
    Embedding,
    Face,
    FaceAnalyzer,
    ModelMismatch,
    NoFace,
    Pack,
    as_embedding,
    check_vectors,
    l2_normalize,
    per_comparison_far,
)
from faceatlas.engine.image import ImageInput
from faceatlas.errors import (
    AlreadyExists,
    Conflict,
    FileMissing,
    InvalidArgument,
    InvalidImage,
    NotFound,
    TooManyFaces,
    VectorStoreUnavailable,
)
from faceatlas.gallery import exchange
from faceatlas.gallery.cuts import calibration_for, resolve_threshold, search_cut
from faceatlas.gallery.index import (
    ANN_MIN_FACES,
    Storage,
    VectorIndex,
)
from faceatlas.gallery.index.milvus import MilvusStore
from faceatlas.gallery.milvus_sync import MilvusIndexCache
from faceatlas.gallery.mismatch import mismatch_message, pack_of
from faceatlas.gallery.models import (
    HISTORY_KEPT,
    HISTORY_PRUNE_EVERY,
    Collection,
    CollectionRevision,
    FaceRecord,
    Subject,
    Tenant,
    database_id,
    migrate,
    new_history,
)
from faceatlas.gallery.rules import (
    ID_MAX_LENGTH,
    check_id,
    check_limit,
    check_metadata,
    check_min_quality,
    check_row_id,
    check_stored,
    check_tenant,
    check_text,
    parse_cursor,
)
from faceatlas.gallery.sources import enrolled_photos, photo_source, quality_gate, source_crop, source_text
from faceatlas.gallery.sync import CommittedFaces, IndexCache, decode_embeddings
from faceatlas.gallery.types import (
    Aggregate,
    CollectionInfo,
    EnrolReport,
    FaceInfo,
    Identified,
    Match,
    Page,
    ReembedReport,
    Rejection,
    SubjectChange,
    SubjectInfo,
    Verification,
)
from faceatlas.settings import EngineSettings, StorageSettings

log = logging.getLogger("faceatlas")
DEFAULT_TENANT = "default"
T = TypeVar("T")
REEMBED_ROUNDS = 3  # reads of faces enrolled during a re-embedding before it gives up
_SEARCH_WINDOW = 64  # the fewest faces a search reads first (8 per subject asked, at least this)
_RETAIL_SPACE = "app:retail:"  # a store's gallery space: app:retail:<store id> (its members collection)
_OWNER_BATCH = 10_000  # face ids per query of their subjects (SQLite binds at most 32,766 parameters)


def index_dir_for(url: str, configured: Path | None = None) -> Path | None:
    """The folder of the index files of the gallery database at ``url``, one rule for every door
    (the CLI, ``faceatlas serve``, a store run: when serve kept its own folder, one collection had
    two copies on disk and a delete through one door left the vectors in the other): ``configured``
    (``FACEATLAS_INDEX_DIR``, ``--index-dir``) when given, else ``<db file>.indexes`` beside an
    SQLite file, else none (a server database: indexes in memory, built from the database)."""
    if configured is not None:
        return Path(configured).expanduser()  # a str from a script is taken too
    db_file = sqlite_path(normalize_url(url))
    return None if db_file is None else db_file.with_name(db_file.name + ".indexes")


def _some_face(faces: Sequence[object]) -> None:
    if not faces:
        raise NoFace("no face found in the query image")


class Gallery:
    """Face collections of one tenant. Open with :meth:`open`; :meth:`for_tenant` gives another
    tenant's view over the same database and indexes. Close (or use as a context manager) to
    persist the indexes."""

    def __init__(self, sessions: sessionmaker[Session], indexes: IndexCache | MilvusIndexCache, tenant: str,
                 settings: EngineSettings | None = None) -> None:
        self._sessions = sessions
        self._indexes = indexes
        self.tenant = check_tenant(tenant)
        self.settings = settings or EngineSettings()  # where user calibrations are (read once, not per search)
        self._tenant_id: int = self._tenant_row(tenant)
        self._extrapolated: set[tuple[int, int, float]] = set()  # cuts already logged as extrapolated
        # The pack a server runs (`faceatlas serve` sets it; every tenant view shares it): a mismatch
        # of its embeddings with a collection's says how to serve the collection's pack.
        self.serving: Pack | None = None

    def _tenant_row(self, tenant: str) -> int:
        """The id of ``tenant``'s row, created when new (once, when processes race to create it)."""
        try:
            with self._sessions.begin() as session:
                found = session.scalar(select(Tenant.id).where(Tenant.name == tenant))
                if found is None:
                    row = Tenant(name=tenant)
                    session.add(row)
                    session.flush()
                    found = row.id
                return found
        except IntegrityError:  # another process created it meanwhile: its row is the one
            with self._sessions() as session:
                return session.scalars(select(Tenant.id).where(Tenant.name == tenant)).one()

    @classmethod
    def open(cls, url: str | None = None, *, tenant: str = DEFAULT_TENANT, index_dir: Path | None = None,
             ann_min_faces: int = ANN_MIN_FACES, storage: Storage = "float32",
             autosave_every: int = 1000, settings: EngineSettings | None = None, create: bool = True,
             storage_settings: StorageSettings | None = None) -> Gallery:
        """Connect to ``url`` (default ``$FACEATLAS_DATABASE_URL`` or the SQLite file under
        ``~/.local/share/faceatlas``), run migrations, and return ``tenant``'s gallery. Without
        ``create`` an SQLite file that does not exist is :class:`NotFound` (a read of a mistyped
        path is not an empty gallery), and none is made.

        Indexes are persisted in ``index_dir`` (default: ``$FACEATLAS_INDEX_DIR`` when set, else
        ``<db file>.indexes`` for SQLite and none for a server database). An empty ``url`` is
        :class:`InvalidArgument`, not the default database (``--db "$DB"`` with ``DB`` unset wrote
        to ``~/.local/share/faceatlas``). ``storage_settings`` (default: the environment's) gives
        the defaults of ``url`` and ``index_dir`` and where the vectors are searched (FAISS or Milvus)."""
        check_tenant(tenant)  # before a database file is made for it
        if url is not None and not url.strip():
            raise InvalidArgument("the gallery database is empty: give its URL or SQLite file (or none at all "
                                  "for the default one)")
        storage_settings = storage_settings or StorageSettings()
        url = normalize_url(storage_settings.database_url if url is None else url)
        if not create:
            require_database(url, "gallery database", "`faceatlas gallery create NAME` makes one there")
        engine = create_database_engine(url, connect_timeout=storage_settings.db_connect_timeout)
        migrate(engine)
        index_dir = index_dir_for(url, index_dir or storage_settings.index_dir)
        sessions = sessionmaker(engine, expire_on_commit=False)
        indexes: IndexCache | MilvusIndexCache
        if storage_settings.vector_backend == "milvus":  # FACEATLAS_VECTOR_BACKEND=milvus: vectors in Milvus
            # the prefix claimed in Milvus for this database's id: another database's copy is never taken
            indexes = MilvusIndexCache(MilvusStore(storage_settings.milvus_uri, token=storage_settings.milvus_token,
                                                   prefix=storage_settings.milvus_prefix,
                                                   database=database_id(sessions),
                                                   index_type=storage_settings.milvus_index,
                                                   timeout_s=storage_settings.milvus_timeout), sessions)
        else:
            indexes = IndexCache(index_dir, ann_min_faces=ann_min_faces, storage=storage,
                                 autosave_every=autosave_every, committed=CommittedFaces(sessions))
        return cls(sessions, indexes, tenant, settings)

    def sweep_indexes(self) -> int:
        """Take every face the database no longer has out of this gallery's index folder
        (:meth:`IndexCache.sweep`), for every tenant: a subject or collection deleted through another
        machine's (or process's) index folder leaves this folder here. A server runs it at its start
        and every ``FACEATLAS_RETENTION_SWEEP_SECONDS``; not at every open (a command that reads
        would write, and pay a read of every lagging file's face ids). Returns the files deleted or
        caught up (0 without an index folder, and on Milvus, whose one copy every process erases
        from and :meth:`open` catches up)."""
        if not isinstance(self._indexes, IndexCache):
            return 0
        deleted, updated = self._indexes.sweep(self._sessions)
        return deleted + updated  # said by the caller (the server's retention sweep logs its jobs' counts)

    def for_tenant(self, tenant: str) -> Gallery:
        """The gallery of another tenant on the same database (a tenant space of at most
        ``ID_MAX_LENGTH`` characters, as its column holds; longer is :class:`InvalidArgument`)."""
        if len(tenant) > ID_MAX_LENGTH:  # an app's space: its name (an album's, a store's) is the long part
            raise InvalidArgument(f"a tenant space has 1 to {ID_MAX_LENGTH} characters, not {len(tenant)} "
                                  "(an album or store name too long for its owner's space?)")
        view = Gallery(self._sessions, self._indexes, tenant, self.settings)
        view.serving = self.serving
        return view

    def delete_tenant_space(self, tenant: str) -> int:
        """Delete the tenant space ``tenant`` of this database: each of its collections (as
        :meth:`delete_collection`: every subject, face, crop and index file), then its row. The
        row goes too because its name can say whose it was (an app's space names its owner and
        more: ``app:albums:svc:<tenant>:<album>``, an album's name that may be a person's); a
        space with no row is left without one (:meth:`for_tenant` makes a row, so a deletion run
        twice made the space anew). Returns the collections deleted. A view of the space kept
        elsewhere (its row id) is not to be used after this."""
        with self._sessions() as session:
            found = session.scalar(select(Tenant.id).where(Tenant.name == tenant))
        if found is None:
            return 0
        space = self.for_tenant(tenant)
        collections = space.list_collections()
        for collection in collections:
            space.delete_collection(collection.name)
        with self._sessions.begin() as session:  # a collection made meanwhile keeps the row (and itself)
            if session.scalar(select(func.count()).select_from(Collection).where(Collection.tenant_id == found)) == 0:
                session.execute(delete(Tenant).where(Tenant.id == found))
        return len(collections)

    @property
    def engine(self) -> Engine:
        """The database this gallery (and every tenant view of it) reads and writes."""
        engine: Engine = self._sessions.kw["bind"]
        return engine

    def close(self) -> None:
        """Persist unsaved index changes and release database connections."""
        self.flush()
        self._indexes.close()
        self.engine.dispose()

    def flush(self) -> None:
        """Persist unsaved index changes now (each caught up with the database first)."""
        with self._sessions() as session:
            self._indexes.flush(session)

    def __enter__(self) -> Gallery:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- collections ----------------------------------------------------------------------
    def create_collection(self, name: str, pack: str | Pack | FaceAnalyzer, *, keep_crops: bool = False,
                          metadata: dict[str, Any] | None = None) -> CollectionInfo:
        """A new collection bound to ``pack``'s embedding space. ``keep_crops`` stores a source
        crop of every face (needed to :meth:`reembed` later); off by default."""
        check_id(name, "collection name")
        pack = pack_of(pack)
        return self._create_bound_collection(name, pack.name, pack.version, pack.recognizer_id,
                                             pack.embedding_size, keep_crops=keep_crops,
                                             metadata=metadata)

    def _create_bound_collection(self, name: str, pack_name: str, pack_version: str, recognizer_id: str,
                                 embedding_size: int, *, keep_crops: bool,
                                 metadata: dict[str, Any] | None) -> CollectionInfo:
        for what, text in (("pack name", pack_name), ("pack version", pack_version), ("recognizer id", recognizer_id)):
            check_stored(text, what)  # an import's header names them
        row = Collection(tenant_id=self._tenant_id, name=name, pack_name=pack_name, pack_version=pack_version,
                         recognizer_id=recognizer_id, embedding_size=embedding_size, keep_crops=keep_crops,
                         meta=check_metadata(metadata), revision=0)
        try:
            with self._sessions.begin() as session:
                session.add(row)
                session.flush()
                session.add(CollectionRevision(collection_id=row.id, revision=0, history=new_history()))
        except IntegrityError as exc:
            raise AlreadyExists(f"collection '{name}' already exists") from exc
        return self.get_collection(name)

    def existing_collection(self, name: str, pack: str | Pack | FaceAnalyzer, *,
                            keep_crops: bool = False) -> CollectionInfo:
        """The collection ``name`` when it is the one :meth:`create_collection` with these arguments
        makes (bound to ``pack``'s embedding space, keeping crops or not as ``keep_crops``): an "ensure" step run again
        (`gallery create --exist-ok`) finds it as it asked for it. One of that name made otherwise
        (another pack, crops kept or not) is :class:`AlreadyExists`, naming what differs; none of
        that name, :class:`NotFound`."""
        wanted = pack_of(pack)
        info = self.get_collection(name)
        differs = ([f"pack {info.pack_name}, not {wanted.name}"] if info.pack_name != wanted.name else
                   [f"embedding space {info.recognizer_id}, not {wanted.recognizer_id}"]
                   if info.recognizer_id != wanted.recognizer_id else []) + (
            [f"crops {'kept' if info.keep_crops else 'not kept'}"] if info.keep_crops != keep_crops else [])
        if differs:
            raise AlreadyExists(f"collection '{name}' already exists with other settings: {', '.join(differs)}")
        return info

    def get_collection(self, name: str, *, counts: bool = True) -> CollectionInfo:
        """One collection with its subject and face counts (``counts=False``: without them, None
        each: its row alone, as a door checks that it is there before a body is read; counting its
        faces is a scan, 4.8 ms of a search at 30,000 faces against 0.4 ms)."""
        with self._sessions() as session:
            return self._collection_info(session, self._collection(session, name), counts=counts)

    def set_keep_crops(self, name: str, keep: bool) -> int:
        """Turn the collection's ``keep_crops`` on or off for the faces enrolled from now on; off
        also deletes every crop it holds (no face image outlives the setting that asked for it).
        Returns how many crops were deleted."""
        with self._sessions.begin() as session:
            collection = self._collection(session, name, lock=True)  # an enrolment reads it under this lock
            collection.keep_crops = keep
            if keep:
                return 0
            return rowcount(session.execute(update(FaceRecord).where(FaceRecord.collection_id == collection.id,
                                                                     FaceRecord.crop.is_not(None))
                                            .values(crop=None)))

    def list_collections(self) -> list[CollectionInfo]:
        """Every collection of this tenant, by name."""
        with self._sessions() as session:
            rows = session.scalars(select(Collection).where(Collection.tenant_id == self._tenant_id)
                                   .order_by(Collection.name))
            return [self._collection_info(session, row) for row in rows]

    def delete_collection(self, name: str) -> None:
        """Delete a collection with all its subjects, faces, crops and its index file (its Milvus
        collection). The vectors go first, inside the transaction: when they cannot (Milvus
        unreachable: :class:`VectorStoreUnavailable`) nothing is deleted; a commit that then fails
        loses nothing (the next use copies them again from the database). After the commit they
        are dropped once more: another process's catch-up may have copied them back meanwhile
        (Milvus: what outlives that, or a second drop Milvus fails, is dropped at the next open or
        flush; the delete, committed, is not answered with an error). Of deletes at once, one
        deletes it and the others are :class:`NotFound`."""
        with self._sessions.begin() as session:
            collection = self._collection(session, name, lock=True)  # first: see _collection
            collection_id = collection.id
            session.execute(delete(FaceRecord).where(FaceRecord.collection_id == collection_id))
            session.execute(delete(Subject).where(Subject.collection_id == collection_id))
            # the row's DELETE decides: a delete that read the collection before another's commit
            # deleted nothing and answered success (six at once: four 204s and four audit records)
            if not rowcount(session.execute(delete(Collection).where(Collection.id == collection_id))):
                raise NotFound(f"collection '{name}' not found")
            self._indexes.drop(collection_id)
        try:
            self._indexes.drop(collection_id)
        except VectorStoreUnavailable as error:
            log.warning("collection '%s' is deleted, its vectors dropped; Milvus failed the second drop (%s): "
                        "anything left is dropped at the next open or flush", name, error)

    # -- subjects -------------------------------------------------------------------------
    def add_subject(self, collection: str, external_id: str, *, name: str | None = None,
                    metadata: dict[str, Any] | None = None) -> SubjectInfo:
        """A new subject known by ``external_id`` (unique in the collection)."""
        check_id(external_id)
        name = check_text(name)
        metadata = check_metadata(metadata)
        try:
            with self._sessions.begin() as session:
                coll = self._collection(session, collection)
                session.add(Subject(collection_id=coll.id, external_id=external_id, name=name, meta=metadata or {}))
        except IntegrityError as exc:
            raise AlreadyExists(f"subject '{external_id}' already exists in '{collection}'") from exc
        return self.get_subject(collection, external_id)

    def ensure_subject(self, collection: str, external_id: str, *, name: str | None = None,
                       metadata: dict[str, Any] | None = None) -> SubjectInfo:
        """The subject ``external_id``, created with ``name`` and ``metadata`` when it is new."""
        name = check_text(name)
        metadata = check_metadata(metadata)

        def ensure() -> None:
            with self._sessions.begin() as session:
                coll = self._collection(session, collection)
                subject = self._subject_or_create(session, coll, external_id, name)
                if metadata and not subject.meta:
                    subject.meta = dict(metadata)

        self._once_more_on_race(ensure)
        return self.get_subject(collection, external_id)

    def export(self, collection: str, path: Path, *, with_crops: bool = True) -> int:
        """Write the collection to a Parquet file (see :mod:`faceatlas.gallery.exchange`); returns
        the number of faces written."""
        info = self.get_collection(collection)
        with self._sessions() as session:
            coll = self._collection(session, collection)
            query = (select(Subject.external_id, Subject.name, Subject.meta, FaceRecord.id, FaceRecord.embedding,
                            FaceRecord.quality, FaceRecord.source, FaceRecord.crop, Subject.created_at,
                            Subject.updated_at, FaceRecord.created_at)
                     .outerjoin(FaceRecord, FaceRecord.subject_id == Subject.id)
                     .where(Subject.collection_id == coll.id).order_by(Subject.id, FaceRecord.id)
                     .execution_options(yield_per=exchange.BATCH))
            return exchange.write_collection(Path(path), info, session.execute(query).partitions(),
                                             with_crops=with_crops)

    def import_(self, path: Path, *, name: str | None = None) -> int:
        """Create a collection (named as exported, or ``name``) from a Parquet export, keeping the
        exported pack identity; returns the number of faces imported. All or nothing: a file
        refused part way (a row that breaks a rule) leaves no collection behind. The collection
        keeps crops when the export's did and the file carries them: faces imported without any
        crop (an export ``--without-crops`` of a collection that kept them) leave it off, else it
        promised a reembed that then refused every face for its missing crop. Subjects and faces
        keep the times the file carries (when each was created; a subject's last update), so a
        restored backup keeps when each person was enrolled; an export without them (before
        ``format_minor`` 1) imports with the import's time, as a time the file leaves null does."""
        header = exchange.read_header(Path(path))
        target = check_id(header["collection"] if name is None else name, "collection name")  # "": refused
        self._create_bound_collection(target, header["pack_name"], header["pack_version"], header["recognizer_id"],
                                      header["embedding_size"], keep_crops=header["keep_crops"],
                                      metadata=header.get("metadata") or {})
        try:
            imported, crops = self._import_subjects(Path(path), target, header["recognizer_id"],
                                                    header["embedding_size"])
            if header["keep_crops"] and imported and not crops:  # an older export without its crops
                self.set_keep_crops(target, False)
            return imported
        except BaseException:
            self.delete_collection(target)
            raise

    def _import_subjects(self, path: Path, target: str, recognizer_id: str, embedding_size: int) -> tuple[int, int]:
        """The faces imported and how many of them came with a crop."""
        imported = crops = 0
        for by_subject in exchange.read_subjects(path, embedding_size):
            face_times: dict[int, datetime] = {}
            for external_id, entry in by_subject.items():
                self.ensure_subject(target, external_id, name=entry["name"], metadata=entry["metadata"])
                faces = entry["faces"]
                if faces:
                    ids = self.add_embeddings(target, external_id,
                                              np.asarray([f["embedding"] for f in faces], np.float32),
                                              recognizer_id=recognizer_id, qualities=[f["quality"] for f in faces],
                                              sources=[f["source"] for f in faces], crops=[f["crop"] for f in faces])
                    face_times.update((face_id, f["created_at"]) for face_id, f in zip(ids, faces, strict=True)
                                      if f["created_at"] is not None)
                    imported += len(faces)
                    crops += sum(f["crop"] is not None for f in faces)
            self._restore_times(target, by_subject, face_times)
        return imported, crops

    def _restore_times(self, collection: str, by_subject: dict[str, dict[str, Any]],
                       face_times: dict[int, datetime]) -> None:
        """Set the imported subjects' ``created_at``/``updated_at`` and the faces' ``created_at`` to
        the exported times (naive UTC), after their rows were written (which stamped the import's
        time); a time the export lacks stays the import's."""
        subjects = [{"external": external_id, "created": entry["created_at"], "updated": entry["updated_at"]}
                    for external_id, entry in by_subject.items()
                    if entry["created_at"] is not None or entry["updated_at"] is not None]
        if not subjects and not face_times:
            return  # an export without times (before format_minor 1)
        # Core statements, run once per row (executemany); the ORM's bulk UPDATE takes no WHERE
        subjects_table, faces_table = cast(Table, Subject.__table__), cast(Table, FaceRecord.__table__)
        with self._sessions.begin() as session:
            coll = self._collection(session, collection)
            if subjects:  # both given explicitly (a null keeps the row's): updated_at's onupdate stamps neither
                session.execute(
                    update(subjects_table)
                    .where(subjects_table.c.collection_id == coll.id,
                           subjects_table.c.external_id == bindparam("external"))
                    .values(created_at=func.coalesce(bindparam("created", type_=DateTime()),
                                                     subjects_table.c.created_at),
                            updated_at=func.coalesce(bindparam("updated", type_=DateTime()),
                                                     subjects_table.c.updated_at)),
                    subjects)
            if face_times:
                session.execute(
                    update(faces_table)
                    .where(faces_table.c.id == bindparam("face"), faces_table.c.collection_id == coll.id)
                    .values(created_at=bindparam("created")),
                    [{"face": face_id, "created": created} for face_id, created in face_times.items()])

    def get_subject(self, collection: str, external_id: str) -> SubjectInfo:
        """One subject with its face count."""
        with self._sessions() as session:
            subject = self._subject(session, self._collection(session, collection), external_id)
            return self._subject_info(session, subject)

    def list_subjects(self, collection: str, *, limit: int = 100, after: str | None = None) -> Page[SubjectInfo]:
        """Subjects in enrolment order, ``limit`` per page (keyset pagination)."""
        check_limit(limit)
        with self._sessions() as session:
            coll = self._collection(session, collection)
            query = select(Subject).where(Subject.collection_id == coll.id)
            cursor = parse_cursor(after)
            if cursor is not None:
                query = query.where(Subject.id > literal(cursor, BigInteger))  # 64-bit: any cursor compares
            rows = list(session.scalars(query.order_by(Subject.id).limit(limit + 1)))
            counts = self._face_counts(session, [row.id for row in rows[:limit]])
            items = [_subject_info(row, counts.get(row.id, 0)) for row in rows[:limit]]
            return Page(items, str(rows[limit - 1].id) if len(rows) > limit else None)

    def list_faces(self, collection: str, *, subject: str | None = None, limit: int = 100,
                   after: str | None = None) -> Page[FaceInfo]:
        """Faces of the collection (or of one subject) in enrolment order, keyset-paginated."""
        check_limit(limit)
        with self._sessions() as session:
            coll = self._collection(session, collection)
            query = (select(FaceRecord.id, Subject.external_id, FaceRecord.quality, FaceRecord.source,
                            FaceRecord.created_at)
                     .join(Subject, Subject.id == FaceRecord.subject_id)
                     .where(FaceRecord.collection_id == coll.id))
            if subject is not None:
                query = query.where(FaceRecord.subject_id == self._subject(session, coll, subject).id)
            cursor = parse_cursor(after)
            if cursor is not None:
                query = query.where(FaceRecord.id > literal(cursor, BigInteger))
            rows = session.execute(query.order_by(FaceRecord.id).limit(limit + 1)).all()
            items = [FaceInfo(*row) for row in rows[:limit]]
            return Page(items, str(items[-1].id) if len(rows) > limit else None)

    def face_crop(self, collection: str, face_id: int) -> bytes | None:
        """The stored source crop (JPEG) of one face of the collection; None when the collection
        keeps no crops. A face id of another collection is :class:`NotFound`."""
        check_row_id(face_id)
        with self._sessions() as session:
            coll = self._collection(session, collection)
            row = session.execute(select(FaceRecord.crop).where(FaceRecord.id == literal(face_id, BigInteger),
                                                                FaceRecord.collection_id == coll.id)).first()
            if row is None:
                raise NotFound(f"no face {face_id} in collection '{collection}'")
            return row[0] if coll.keep_crops else None

    def update_subject(self, collection: str, external_id: str, *, name: str | None = None,
                       metadata: dict[str, Any] | None = None, replace_metadata: bool = False,
                       new_external_id: str | None = None) -> SubjectInfo:
        """Change a subject's name, metadata (merged unless ``replace_metadata``) or external id."""
        return self.change_subject(collection, external_id, name=name, metadata=metadata,
                                   replace_metadata=replace_metadata, new_external_id=new_external_id).subject

    def change_subject(self, collection: str, external_id: str, *, name: str | None = None,
                       metadata: dict[str, Any] | None = None, replace_metadata: bool = False,
                       new_external_id: str | None = None) -> SubjectChange:
        """:meth:`update_subject`, saying whether it changed the subject: no field given, or each
        as it was (the same name again, metadata merged to what it held), changes nothing."""
        name = check_text(name)
        if metadata is not None:
            check_metadata(metadata)
        if new_external_id is not None:
            check_id(new_external_id)
        try:
            with self._sessions.begin() as session:
                subject = self._subject(session, self._collection(session, collection), external_id)
                before = (subject.name, dict(subject.meta), subject.external_id)
                if name is not None:
                    subject.name = name
                if metadata is not None:
                    subject.meta = check_metadata(dict(metadata) if replace_metadata else {**subject.meta, **metadata})
                if new_external_id is not None:
                    subject.external_id = new_external_id
                changed = (subject.name, dict(subject.meta), subject.external_id) != before
        except IntegrityError as exc:
            raise AlreadyExists(f"subject '{new_external_id}' already exists in '{collection}'") from exc
        except StaleDataError as exc:  # its UPDATE matched no row: another writer deleted (or merged) it meanwhile
            raise NotFound(f"subject '{external_id}' not found in '{collection}'") from exc
        return SubjectChange(self.get_subject(collection, new_external_id or external_id), changed)

    def merge_subjects(self, collection: str, keep: str, absorb: str) -> SubjectInfo:
        """Move every face of ``absorb`` to ``keep`` (metadata merged, ``keep`` wins) and delete
        ``absorb``; the index regroups the moved faces under ``keep`` at once. Either deleted (or
        merged away) by another writer after they were read is :class:`NotFound`, nothing changed:
        ``keep``'s row is updated first (its row lock held to the commit, so no delete of it commits
        before the faces reference it: the faces' foreign key failed, a 500), ``absorb``'s deleted
        last, each checked by the rows it matched."""
        if keep == absorb:
            raise InvalidArgument("cannot merge a subject into itself")
        with self._sessions.begin() as session:
            coll = self._collection(session, collection, lock=True)  # first: see _collection
            kept, absorbed = self._subject(session, coll, keep), self._subject(session, coll, absorb)
            if not rowcount(session.execute(update(Subject).where(Subject.id == kept.id).values(
                    meta={**absorbed.meta, **kept.meta}, name=kept.name or absorbed.name))):
                raise NotFound(f"subject '{keep}' not found in '{collection}'")  # rolled back
            # the faces moved are the ones the UPDATE moved (RETURNING), not a read before it
            moved = sorted(session.execute(update(FaceRecord).where(FaceRecord.subject_id == absorbed.id)
                                           .values(subject_id=kept.id)
                                           .returning(FaceRecord.id, FaceRecord.embedding)).all())
            if not rowcount(session.execute(delete(Subject).where(Subject.id == absorbed.id))):
                raise NotFound(f"subject '{absorb}' not found in '{collection}'")  # rolled back
            revision, history = self._bump(session, coll)
            self._stamp(session, [row[0] for row in moved], revision)  # other processes regroup them at their catch-up
        face_ids = np.asarray([row[0] for row in moved], np.int64)
        vectors = decode_embeddings([row[1] for row in moved], coll.embedding_size)
        self._indexes.applied(coll.id, revision, removed=face_ids,
                              added=(face_ids, vectors, np.full(len(face_ids), kept.id, np.int64)), history=history)
        return self.get_subject(collection, keep)

    def delete_subject(self, collection: str, external_id: str) -> int:
        """Delete a subject and every face row, crop and index entry of it; returns the face count.
        The index file is rewritten at once so no vector of the subject stays on disk. An id that
        no subject can have (empty, blank) is :class:`InvalidArgument`; of deletes at once, one
        deletes it and the others are :class:`NotFound`."""
        check_id(external_id)
        with self._sessions.begin() as session:
            coll = self._collection(session, collection, lock=True)  # first: see _collection
            subject = self._subject(session, coll, external_id)
            # the faces erased are the ones the DELETE removed (RETURNING), not a read before it
            face_ids = np.sort(np.fromiter(session.scalars(delete(FaceRecord).where(FaceRecord.subject_id == subject.id)
                                                           .returning(FaceRecord.id)), dtype=np.int64))
            if not rowcount(session.execute(delete(Subject).where(Subject.id == subject.id))):  # deleted meanwhile
                raise NotFound(f"subject '{external_id}' not found in '{collection}'")
            revision, history = self._bump(session, coll, removed=bool(len(face_ids)))  # none: no full diff elsewhere
            journal = self._indexes.intend_erase(coll.id, face_ids)  # written before the commit
        self._indexes.applied(coll.id, revision, removed=face_ids, save_now=True, journal=journal, history=history)
        return len(face_ids)

    def delete_face(self, collection: str, face_id: int) -> None:
        """Delete one face (row, crop and index entry)."""
        check_row_id(face_id)
        with self._sessions.begin() as session:
            coll = self._collection(session, collection, lock=True)  # first: see _collection
            deleted = rowcount(session.execute(delete(FaceRecord).where(FaceRecord.collection_id == coll.id,
                                                               FaceRecord.id == face_id)))
            if not deleted:
                raise NotFound(f"face {face_id} not found in '{collection}'")
            revision, history = self._bump(session, coll, removed=True)
            journal = self._indexes.intend_erase(coll.id, np.array([face_id]))
        self._indexes.applied(coll.id, revision, removed=np.array([face_id]), save_now=True, journal=journal,
                              history=history)

    def move_faces(self, collection: str, face_ids: Sequence[int], to_subject: str, *, name: str | None = None) -> int:
        """Move faces (of any subjects of the collection) to ``to_subject`` (created when needed);
        the index regroups them at once. Returns how many moved."""
        wanted = [check_row_id(int(f)) for f in face_ids]
        if not wanted:
            return 0

        def move() -> tuple[int, int, list[Any], int, int, str]:
            with self._sessions.begin() as session:
                coll = self._collection(session, collection, lock=True)  # first: see _collection
                target = self._subject_or_create(session, coll, to_subject, name)
                moved = session.execute(select(FaceRecord.id, FaceRecord.embedding)
                                        .where(FaceRecord.collection_id == coll.id, FaceRecord.id.in_(wanted))
                                        .order_by(FaceRecord.id)).all()
                if len(moved) != len(set(wanted)):
                    raise NotFound(f"a face of {sorted(set(wanted))[:10]} is not in '{collection}'")
                if rowcount(session.execute(update(FaceRecord).where(FaceRecord.id.in_(wanted))
                                            .values(subject_id=target.id))) != len(moved):  # one deleted meanwhile
                    raise NotFound(f"a face of {sorted(set(wanted))[:10]} is not in '{collection}'")  # rolled back
                revision, history = self._bump(session, coll)
                self._stamp(session, [row[0] for row in moved], revision)  # regrouped by other processes too
                return coll.id, coll.embedding_size, list(moved), target.id, revision, history

        coll_id, size, moved, target_id, revision, history = self._once_more_on_race(move)
        ids = np.asarray([row[0] for row in moved], np.int64)
        vectors = decode_embeddings([row[1] for row in moved], size)
        self._indexes.applied(coll_id, revision, removed=ids,
                              added=(ids, vectors, np.full(len(ids), target_id, np.int64)), history=history)
        return len(ids)

    def face_vectors(self, collection: str, face_ids: Sequence[int] | None = None) -> tuple[np.ndarray, np.ndarray]:
        """The ids and embeddings (one row each, by id) of the collection's faces, or of ``face_ids``."""
        with self._sessions() as session:
            coll = self._collection(session, collection)
            query = select(FaceRecord.id, FaceRecord.embedding).where(FaceRecord.collection_id == coll.id)
            if face_ids is not None:
                query = query.where(FaceRecord.id.in_([check_row_id(int(f)) for f in face_ids]))
            rows = session.execute(query.order_by(FaceRecord.id)).all()
            return (np.asarray([row[0] for row in rows], np.int64),
                    decode_embeddings([row[1] for row in rows], coll.embedding_size))

    # -- enrolment ------------------------------------------------------------------------
    def add_embeddings(self, collection: str, external_id: str, embeddings: np.ndarray | Sequence[np.ndarray], *,
                       recognizer_id: str, qualities: Sequence[float | None] | None = None,
                       sources: Sequence[str | None] | None = None, crops: Sequence[bytes | None] | None = None,
                       name: str | None = None) -> list[int]:
        """Enrol raw embeddings made by the recogniser ``recognizer_id`` (refused with
        :class:`ModelMismatch` when it is not the collection's). The subject is created if needed,
        named ``name``; an existing subject keeps its name (apps' and batch jobs' raw vectors: an
        album's promote adds to a subject without renaming it; a door's enrolment renames, :meth:`enrol_images`)."""
        return self._enrol_vectors(collection, external_id, embeddings, recognizer_id, qualities, sources, crops,
                                   name)[0]

    def _enrol_vectors(self, collection: str, external_id: str, embeddings: np.ndarray | Sequence[np.ndarray],
                       recognizer_id: str, qualities: Sequence[float | None] | None,
                       sources: Sequence[str | None] | None, crops: Sequence[bytes | None] | None,
                       name: str | None, once: bool = False,
                       rename: bool = False) -> tuple[list[int], list[int], bool, bool]:
        """:meth:`_add_vectors` of the checked, L2-normalised ``embeddings``, once more on a race."""
        vectors = l2_normalize(check_vectors(embeddings))
        return self._once_more_on_race(lambda: self._add_vectors(collection, external_id, vectors, recognizer_id,
                                                                 qualities, sources, crops, name, once=once,
                                                                 rename=rename))

    def _add_vectors(self, collection: str, external_id: str, vectors: np.ndarray, recognizer_id: str,
                     qualities: Sequence[float | None] | None, sources: Sequence[str | None] | None,
                     crops: Sequence[bytes | None] | None, name: str | None,
                     once: bool = False, rename: bool = False) -> tuple[list[int], list[int], bool, bool]:
        """Insert the faces; returns their ids, the positions (in ``vectors``) left out, whether
        the subject was created by this enrolment and whether it was renamed. ``name``: a new
        subject's name; with ``rename``, an existing subject's too (:meth:`enrol_images`' rule),
        in the same transaction as its faces. ``once``:
        a face whose source (a photo) is enrolled to the subject already is left out, read while
        this transaction holds the collection's writes (its row lock; SQLite's write lock): two runs
        of one folder at once each read the other's photos as new and enrolled every one twice."""
        with self._sessions.begin() as session:
            if once:
                self._hold_writes(session)
            coll = self._collection(session, collection, lock=True)  # a re-embedding switches it after
            self._check_model(coll, recognizer_id, vectors.shape[1])
            subject, created = self._find_or_create_subject(session, coll, external_id, name)
            renamed = rename and not created and name is not None and subject.name != name
            if renamed:
                subject.name = name
            done = self._enrolled_sources(session, coll, external_id) if once and sources is not None else set()
            left_out = [i for i, source in enumerate(sources or ()) if source is not None
                        and photo_source(source) in done]
            kept = sorted(set(range(len(vectors))) - set(left_out))
            # bumped first, the faces carry the revision that adds them (another process's catch-up
            # reads the faces newer than its index, not every face id); the row lock is held already
            revision, history = self._bump(session, coll)
            rows = [
                {"collection_id": coll.id, "subject_id": subject.id, "embedding": vectors[i].tobytes(),
                 "revision": revision,
                 "quality": None if qualities is None else qualities[i],
                 "source": None if sources is None else source_text(sources[i]),
                 "crop": crops[i] if crops is not None and coll.keep_crops else None}
                for i in kept
            ]
            ids = list(session.scalars(insert(FaceRecord).returning(FaceRecord.id, sort_by_parameter_order=True),
                                       rows)) if rows else []
        self._indexes.applied(coll.id, revision, added=(np.asarray(ids, np.int64), vectors[kept],
                                                        np.full(len(ids), subject.id, np.int64)), history=history)
        return ids, left_out, created, renamed

    def enrol_images(self, collection: str, external_id: str, images: Iterable[ImageInput], analyzer: FaceAnalyzer,
                     *, all_faces: bool = False, min_quality: float = 0.0, name: str | None = None,
                     once: bool = False, alone: bool = False) -> EnrolReport:
        """Detect and embed faces in ``images`` (the largest per image, or all of them) and enrol
        those whose quality reaches ``min_quality``. An image that cannot be decoded, shows no
        face or none good enough is listed in ``rejected`` (a :class:`Rejection`) and the
        others are still enrolled; ``found`` says how many faces each image read holds. Source
        crops are kept only when the collection's ``keep_crops`` is on.
        ``once``: an image whose source (its path) is enrolled to the subject already is listed in
        ``skipped``, not read (a run again, or after a stop, enrolled every face twice); one that
        another enrolment wrote while this one read the photos is ``skipped`` too, checked again
        as its faces are inserted (two runs of one folder at once enrolled every photo twice).
        ``alone``: an image holding more than one face is rejected (``too_many_faces``), none of
        its faces enrolled, where the largest might be someone else's (a bystander's).
        ``name``: the subject's display name, the one rule of every enrolment (:meth:`enrol_faces`
        too): a new subject gets it, an existing one is renamed to it (``renamed`` in the report;
        it was kept silently by the CLI, while the console renamed); None keeps the name held."""
        check_min_quality(min_quality)
        name = check_text(name)
        if alone and all_faces:
            raise InvalidArgument("alone (one face per image) and all_faces exclude each other")
        keep_crops = self.get_collection(collection).keep_crops
        report = EnrolReport()
        done = self._sources_of(collection, external_id) if once else set()
        vectors: list[np.ndarray] = []
        qualities: list[float | None] = []
        sources: list[str | None] = []
        crops: list[bytes | None] = []
        for number, image in enumerate(images):
            source = str(image) if isinstance(image, str | Path) else f"image#{number}"
            if isinstance(image, str | Path) and photo_source(source) in done:
                report.skipped.append(source)
                continue
            try:  # a huge photo is reduced while decoding: crops need no more
                decoded = analyzer.load_reduced(image)[0]
            except (InvalidImage, FileMissing) as exc:  # one bad or missing file rejects only itself
                report.rejected.append(Rejection.of(source, exc))
                continue
            if all_faces:
                faces = analyzer.analyze(decoded)
                found = len(faces)
            else:  # only the largest is embedded; the count says whether it was a group photo
                faces, found = analyzer.largest(decoded)
            report.found.append((source, found))
            if not faces:
                report.rejected.append(Rejection(source, NoFace.code, "no face found in the image"))
                continue
            if alone and found > 1:
                report.rejected.append(Rejection(source, TooManyFaces.code, f"{found} faces in the image, where one "
                                                 "person alone is expected"))
                continue
            for face in quality_gate(faces, min_quality, source, report):
                vectors.append(face.as_embedding().vector)
                qualities.append(face.quality)
                sources.append(source)
                crops.append(source_crop(decoded, face) if keep_crops else None)
        if vectors:
            report.added, left_out, report.created_subject, report.renamed = self._enrol_vectors(
                collection, external_id, np.stack(vectors), analyzer.pack.recognizer_id, qualities, sources, crops,
                name, once=once, rename=True)
            for source in dict.fromkeys(str(sources[i]) for i in left_out):  # enrolled meanwhile by another run
                report.skipped.append(source)
        elif name is not None and report.skipped:  # every photo enrolled before (a run again with --name):
            # the name is the subject's all the same (it was kept without a word)
            report.renamed = self.change_subject(collection, external_id, name=name).changed
        return report

    def _sources_of(self, collection: str, external_id: str) -> set[str]:
        """The sources of the subject's faces (none for a subject not enrolled yet)."""
        with self._sessions() as session:
            return self._enrolled_sources(session, self._collection(session, collection), external_id)

    @staticmethod
    def _enrolled_sources(session: Session, coll: Collection, external_id: str) -> set[str]:
        return enrolled_photos(session.scalars(
            select(FaceRecord.source).join(Subject, FaceRecord.subject_id == Subject.id)
            .where(Subject.collection_id == coll.id, Subject.external_id == external_id,
                   FaceRecord.source.is_not(None))))

    def enrol_faces(self, collection: str, external_id: str, faces: Sequence[Face], *,
                    crops: Sequence[bytes | None] | None = None, min_quality: float = 0.0,
                    source: str = "api", name: str | None = None) -> EnrolReport:
        """Enrol already analysed ``faces`` of one image (with their source ``crops`` when the
        collection keeps them) that reach ``min_quality``: the same gate as :meth:`enrol_images`,
        and its rule for ``name`` (a new subject's name; an existing subject is renamed, ``renamed``).
        No face is :class:`NoFace`; none reaching the gate is :class:`InvalidArgument`."""
        check_min_quality(min_quality)
        name = check_text(name)
        if not faces:
            raise NoFace("no face found in the image")
        crop_of = dict(zip(map(id, faces), crops)) if crops is not None else {}
        report = EnrolReport()
        kept = quality_gate(faces, min_quality, source, report)
        if not kept:
            raise InvalidArgument(f"no face reached min_quality {min_quality}")
        embeddings = [f.as_embedding() for f in kept]
        if len({e.recognizer_id for e in embeddings}) > 1:
            raise ModelMismatch("faces of one enrolment come from different recognizers")
        report.added, _, report.created_subject, report.renamed = self._enrol_vectors(
            collection, external_id, np.stack([e.vector for e in embeddings]), embeddings[0].recognizer_id,
            [f.quality for f in kept], [source] * len(kept), [crop_of.get(id(f)) for f in kept], name, rename=True)
        report.faces = kept
        return report

    # -- search -----------------------------------------------------------------------------
    def _note_extrapolated(self, coll: Collection, calibration: Calibration, fpir: float, size: int,
                           templates: bool) -> None:
        """Log, once per collection and decade of its size, a search cut read below the
        calibration's measured tail: the stated FPIR is then an extrapolation (strict), not a measure."""
        decade = (coll.id, int(math.log10(size)), fpir)
        if decade in self._extrapolated or not calibration.extrapolates(fpir, size, templates=templates):
            return
        self._extrapolated.add(decade)
        log.warning("collection '%s' (%s %s): the threshold for FPIR %g is extrapolated below the calibration's "
                    "lowest measured FAR %.1e (per comparison: %.1e); the FPIR reached is then lower than "
                    "stated and fewer enrolled people are found (README: open-set identification)",
                    coll.name, f"{size:,}", "subjects" if templates else "faces", fpir,
                    calibration.lowest_far(templates=templates), per_comparison_far(fpir, size))

    def search(self, collection: str, query: Face | Embedding, *, k: int = 5, threshold: float | None = None,
               fpir: float = DEFAULT_FPIR, far: float | None = None, rank_only: bool = False,
               aggregate: Aggregate = "best", calibration: Calibration | None = None) -> list[Match]:
        """The ``k`` most similar subjects to one embedding. A subject's score is its best face
        (``aggregate="best"``) or its mean template; only subjects reaching the cut are returned —
        none means "unknown". The cut is, first that applies: none (``rank_only``: strangers get
        their nearest subjects; with a ``threshold`` or a ``far`` :class:`InvalidArgument`), a raw
        cosine ``threshold``, the 1:1 threshold of a ``far``, else
        the open-set threshold at which a search of this collection's current size (its faces)
        names a stranger at rate ``fpir`` (default :data:`DEFAULT_FPIR`; see
        :meth:`Calibration.fpir_threshold`). A decision without a calibration is
        :class:`NotCalibrated`; an embedding of another space than the collection's is
        :class:`ModelMismatch`; ``k`` out of 1 to :data:`SEARCH_K_MAX` or another ``aggregate`` is
        :class:`InvalidArgument`."""
        cut = search_cut(k=k, threshold=threshold, fpir=fpir, far=far, rank_only=rank_only, aggregate=aggregate)
        embedding = as_embedding(query)
        vector = l2_normalize(embedding.vector)[0]
        with self._sessions() as session:
            coll = self._collection(session, collection)
            self._check_model(coll, embedding.recognizer_id, len(vector))
            calibration = calibration or calibration_for(coll, self.settings)
            index = self._indexes.get(session, coll)
            templates = aggregate == "mean"  # subjects scored by their mean template: the template tail
            size = len(index)
            if templates and cut.fpir is not None and cut.threshold is None and cut.far is None:  # size read
                size = session.scalar(select(func.count()).select_from(Subject)
                                      .where(Subject.collection_id == coll.id)) or 0
            cutoff = resolve_threshold(coll, cut, calibration, gallery_size=max(size, 1), templates=templates)
            if cut.threshold is None and cut.far is None and cut.fpir is not None and calibration is not None:
                self._note_extrapolated(coll, calibration, cut.fpir, max(size, 1), templates)
            if len(index) == 0:
                return []
            # a subject's best face decides the cut (aggregate "best"): faces below it count for nobody
            floor = cutoff if cutoff is not None and aggregate == "best" else None
            best = self._nearest_subjects(session, coll, index, vector, k, floor)
            means = self._mean_similarities(session, vector, list(best)) if aggregate == "mean" else {}
            if aggregate == "mean":  # a subject deleted since its faces were read has no faces, no template
                best = {subject_id: found for subject_id, found in best.items() if subject_id in means}
            ranked = sorted(best, key=lambda s: means[s] if aggregate == "mean" else best[s][0], reverse=True)
            subjects = {row.id: row for row in session.scalars(select(Subject).where(Subject.id.in_(ranked[:k])))}
            matches = []
            for subject_id in ranked[:k]:
                score = means[subject_id] if aggregate == "mean" else best[subject_id][0]
                if cutoff is not None and score < cutoff:
                    continue
                row = subjects.get(subject_id)
                if row is None:  # deleted or merged away since its faces were read: no longer a subject
                    continue
                matches.append(Match(row.external_id, row.name, score, best[subject_id][0], best[subject_id][1],
                                     best[subject_id][2], means.get(subject_id),
                                     calibration.far_level(score) if calibration else None, dict(row.meta)))
            return matches

    def identify(self, collection: str, query: Face | Embedding, *, cut: Cut | None = None, k: int = 5,
                 aggregate: Aggregate = "best", calibration: Calibration | None = None) -> list[Match]:
        """1:N with a door's decision: :meth:`search` at ``cut``, by default the one default of
        every door (``Cut.given()``: :data:`DEFAULT_FPIR` for the collection's size, the cut that
        rises with it). The console searched at the 1:1 ``DEFAULT_FAR`` instead, and named about
        one stranger in five of a 2,000-subject collection that the API called unknown."""
        decision = Cut.given() if cut is None else cut
        return self.search(collection, query, k=k, aggregate=aggregate, calibration=calibration,
                           **decision.search_options())

    def _nearest_subjects(self, session: Session, coll: Collection, index: VectorIndex, vector: np.ndarray, k: int,
                          floor: float | None) -> dict[int, tuple[float, int, int]]:
        """Subject id -> (best similarity, its face, its faces read that reach ``floor``) of the
        subjects of the faces nearest to ``vector``: at least ``k`` subjects with a face reaching
        ``floor`` (any face when None) when the index holds them. The window of faces read starts at
        ``max(8k, 64)`` and grows four times over while fewer subjects reach the floor (one subject
        with many close faces filled a fixed window alone), until the index is read whole, returns
        fewer faces than asked, or its farthest face read is below the floor (none after it reaches it)."""
        size = len(index)
        window = min(size, max(8 * k, _SEARCH_WINDOW))
        owner: dict[int, int] = {}  # face id -> subject id, read from the database once per face
        while True:
            sims, face_ids = index.search(vector[None], window)
            hits = [(int(f), float(s)) for f, s in zip(face_ids[0], sims[0]) if f >= 0]
            unknown = [f for f, _ in hits if f not in owner]
            for start in range(0, len(unknown), _OWNER_BATCH):
                rows = session.execute(select(FaceRecord.id, FaceRecord.subject_id)
                                       .where(FaceRecord.collection_id == coll.id,
                                              FaceRecord.id.in_(unknown[start:start + _OWNER_BATCH])))
                owner.update((face_id, subject_id) for face_id, subject_id in rows)
            best: dict[int, tuple[float, int, int]] = {}
            for face_id, similarity in hits:
                subject_id = owner.get(face_id)
                if subject_id is None:  # deleted since the index was read
                    continue
                score, best_face, matched = best.get(subject_id, (-math.inf, -1, 0))
                if similarity > score:
                    score, best_face = similarity, face_id
                best[subject_id] = (score, best_face, matched + (floor is None or similarity >= floor))
            reached = sum(floor is None or score >= floor for score, _, _ in best.values())
            if (reached >= k or window >= size or len(hits) < window
                    or (floor is not None and hits and hits[-1][1] < floor)):
                return best
            window = min(size, window * 4)

    def search_image(self, collection: str, image: ImageInput, analyzer: FaceAnalyzer, *, all_faces: bool = False,
                     **options: Any) -> tuple[list[Identified], int]:
        """Search with the largest face of ``image`` (or every face); options as :meth:`search`
        (:meth:`identify_faces` at their cut). Also returns how many faces the image holds (a group
        photo searched by its largest face says so).
        The options are checked before any face is analysed, as the API checks them: a ``k`` out of
        bounds, or a ``far`` the calibration holds no threshold for (:class:`FarNotCalibrated`), was
        refused only after the image was read and its faces embedded."""
        self._check_analyzer(collection, analyzer)
        calibration = options.pop("calibration", None) or analyzer.calibration
        cut = search_cut(**options)
        cut.check(calibration)
        if all_faces:
            faces = analyzer.analyze(image)
            found = len(faces)
        else:
            faces, found = analyzer.largest(image)
        return self.identify_faces(collection, faces, cut=cut, k=options.get("k", 5),
                                   aggregate=options.get("aggregate", "best"), calibration=calibration), found

    def identify_faces(self, collection: str, faces: Sequence[Face | Embedding], *, cut: Cut | None = None,
                       k: int = 5, aggregate: Aggregate = "best",
                       calibration: Calibration | None = None) -> list[Identified]:
        """:meth:`identify` for each query face of one image (an image without a face is
        :class:`NoFace`), each with its decision: ``unknown`` when the cut decides and no subject
        reached it (None when it only ranks). The API's and the console's search (their faces
        analysed on the server's pool) and the CLI's, one answer."""
        decision = Cut.given() if cut is None else cut
        _some_face(faces)
        results = []
        for face in faces:
            matches = self.identify(collection, face, cut=decision, k=k, aggregate=aggregate, calibration=calibration)
            results.append(Identified(face if isinstance(face, Face) else None, matches,
                                      not matches if decision.decides else None))
        return results

    def verify(self, collection: str, external_id: str, query: Face | Embedding, *, threshold: float | None = None,
               far: float = DEFAULT_FAR, aggregate: Aggregate = "best",
               calibration: Calibration | None = None, cut: Cut | None = None) -> Verification:
        """Is ``query`` subject ``external_id``? Compared with all the subject's faces exactly, at
        ``cut`` (a door's :meth:`Cut.verifying`) when given, else at ``threshold`` or ``far``."""
        if cut is None:
            cut = Cut(threshold=threshold, far=far)
        elif cut.fpir is not None:
            raise InvalidArgument("a verification is decided at a far or a threshold, not an fpir")
        embedding = as_embedding(query)
        vector = l2_normalize(embedding.vector)[0]
        with self._sessions() as session:
            coll = self._collection(session, collection)
            self._check_model(coll, embedding.recognizer_id, len(vector))
            subject = self._subject(session, coll, external_id)
            calibration = calibration or calibration_for(coll, self.settings)
            cutoff = resolve_threshold(coll, cut, calibration, gallery_size=1)
            if cutoff is None:
                raise InvalidArgument("verify needs a far or a raw threshold")
            vectors = self._subject_vectors(session, [subject.id]).get(subject.id)
            if vectors is None:
                raise NotFound(f"subject '{external_id}' has no enrolled faces")
            best = float((vectors @ vector).max())
            mean = float(l2_normalize(vectors.mean(axis=0))[0] @ vector)
            score = mean if aggregate == "mean" else best
            return Verification(external_id, score >= cutoff, score, cutoff, best, mean,
                                calibration.far_level(score) if calibration else None)

    # -- migration --------------------------------------------------------------------------
    def reembed(self, collection: str, analyzer: FaceAnalyzer, *, drop_unmigratable: bool = False) -> ReembedReport:
        """Move a collection to ``analyzer``'s pack by re-embedding the stored source crops.

        Faces without a crop (or whose crop yields no face) cannot be migrated: unless
        ``drop_unmigratable`` they are reported and nothing changes; otherwise they are deleted.
        Faces enrolled while it runs are re-embedded too before the switch (each enrolment locks the
        collection's row, so none lands between the last read and the switch); faces still arriving
        after :data:`REEMBED_ROUNDS` rounds are :class:`Conflict` and nothing changes (a face of the
        old space kept in the new one made every later search and export fail)."""
        report = ReembedReport()
        new_vectors: dict[int, np.ndarray] = {}
        for _ in range(REEMBED_ROUNDS):
            self._reembed_read(collection, analyzer, report, new_vectors)
            if (report.unmigratable or report.failed) and not drop_unmigratable:
                return report
            applied = self._reembed_write(collection, analyzer.pack, report, new_vectors)
            if applied is not None:
                self._indexes.drop(applied)
                report.migrated, report.applied = len(new_vectors), True
                return report
        raise Conflict(f"faces are being enrolled into '{collection}' while it is re-embedded; stop the "
                       "enrolments and run it again (nothing changed)")

    def _reembed_read(self, collection: str, analyzer: FaceAnalyzer, report: ReembedReport,
                      new_vectors: dict[int, np.ndarray]) -> None:
        """The new vectors of the collection's faces not read yet (``report`` and ``new_vectors`` grow)."""
        seen = set(new_vectors) | set(report.unmigratable) | set(report.failed)
        with self._sessions() as session:
            coll = self._collection(session, collection)
            rows = session.execute(select(FaceRecord.id, FaceRecord.crop).where(FaceRecord.collection_id == coll.id)
                                   .order_by(FaceRecord.id).execution_options(yield_per=256))
            for face_id, crop in rows:
                if face_id in seen:
                    continue
                if crop is None:
                    report.unmigratable.append(face_id)
                    continue
                decoded = cv2.imdecode(np.frombuffer(crop, np.uint8), cv2.IMREAD_COLOR)
                faces = analyzer.analyze(decoded, max_faces=1) if decoded is not None else []
                if faces:
                    new_vectors[face_id] = faces[0].as_embedding().vector
                else:
                    report.failed.append(face_id)

    def _reembed_write(self, collection: str, pack: Pack, report: ReembedReport,
                       new_vectors: dict[int, np.ndarray]) -> int | None:
        """The switch to ``pack`` in one transaction holding the collection's row; None (nothing
        written) when a face not read yet is there (enrolled meanwhile), else the collection's id."""
        with self._sessions.begin() as session:
            coll = self._collection(session, collection, lock=True)
            known = set(new_vectors) | set(report.unmigratable) | set(report.failed)
            present = set(session.scalars(select(FaceRecord.id).where(FaceRecord.collection_id == coll.id)))
            if present - known:
                return None
            dropped = report.unmigratable + report.failed
            revision, _ = self._bump(session, coll, removed=bool(dropped))  # the row is held (lock) already
            if dropped:
                session.execute(delete(FaceRecord).where(FaceRecord.id.in_(dropped)))
            for face_id, vector in new_vectors.items():
                session.execute(update(FaceRecord).where(FaceRecord.id == face_id)
                                .values(embedding=l2_normalize(vector)[0].tobytes(), revision=revision))
            coll.pack_name, coll.pack_version = pack.name, pack.version
            coll.recognizer_id, coll.embedding_size = pack.recognizer_id, pack.embedding_size
            return coll.id

    # -- internals --------------------------------------------------------------------------
    @staticmethod
    def _once_more_on_race(write: Callable[[], T]) -> T:
        """Run ``write`` (one transaction that may create a subject). When a concurrent writer
        created the same subject between its lookup and its insert (the unique key refuses the
        second row), or deleted the subject it found (its faces' foreign key, or its UPDATE matching
        no row: :class:`StaleDataError`), the transaction rolled back whole: run it once more, it
        now finds the subject, or creates it again."""
        try:
            return write()
        except (IntegrityError, StaleDataError):
            try:
                return write()
            except (IntegrityError, StaleDataError) as exc:
                raise Conflict("a concurrent change to the same subject; try again") from exc

    def _collection(self, session: Session, name: str, *, lock: bool = False) -> Collection:
        """The tenant's collection ``name``; ``lock``: its row held until the transaction ends
        (PostgreSQL's FOR NO KEY UPDATE, the lock its revision bump takes anyway, taken first: a
        re-embedding's switch and an enrolment wait for each other, while inserts that only
        reference the row, a subject's, are not held up; SQLite has one writer at a time anyway).
        Every write that bumps the revision takes it first, before any row of a subject or face (one
        lock order: an enrolment holding it waited for a subject's row that a delete held while it
        waited for this one, a deadlock), so none changes the faces another is reading to write."""
        query = select(Collection).where(Collection.tenant_id == self._tenant_id, Collection.name == name)
        found = session.scalar(query.with_for_update(key_share=True) if lock else query)
        if found is None:
            raise NotFound(f"collection '{name}' not found")
        return found

    @staticmethod
    def _hold_writes(session: Session) -> None:
        """Take the database's write lock for the rest of ``session``'s transaction, before its
        first read, where a read then a write must not interleave with another writer's. SQLite:
        ``BEGIN IMMEDIATE`` (its driver begins a transaction only at the first write, so the reads
        before it saw the database as it was before another writer's commit). PostgreSQL: nothing
        here; the collection's row lock (:meth:`_collection` with ``lock``) orders the writers, and
        each statement after it sees what the one before committed."""
        sqlite_write_lock(session.connection())

    @staticmethod
    def _subject(session: Session, collection: Collection, external_id: str) -> Subject:
        found = session.scalar(select(Subject).where(Subject.collection_id == collection.id,
                                                     Subject.external_id == external_id))
        if found is None:
            raise NotFound(f"subject '{external_id}' not found in '{collection.name}'")
        return found

    @staticmethod
    def _subject_or_create(session: Session, collection: Collection, external_id: str, name: str | None) -> Subject:
        return Gallery._find_or_create_subject(session, collection, external_id, name)[0]

    @staticmethod
    def _find_or_create_subject(session: Session, collection: Collection, external_id: str,
                                name: str | None) -> tuple[Subject, bool]:
        """The subject, and whether it was created now."""
        query = select(Subject).where(Subject.collection_id == collection.id, Subject.external_id == external_id)
        found = session.scalar(query)
        if found is not None:
            return found, False
        check_id(external_id)
        name = check_text(name)
        # a concurrent enrolment creating the same subject fails this flush: the caller's
        # _once_more_on_race runs the whole transaction again, which then finds the subject
        found = Subject(collection_id=collection.id, external_id=external_id, name=name or external_id, meta={})
        session.add(found)
        session.flush()
        return found, True

    @staticmethod
    def _bump(session: Session, collection: Collection, *, removed: bool = False) -> tuple[int, str]:
        """Increment the collection revision in the current transaction; returns the new value and
        its history token (random, recorded in ``collection_revisions``: an index copy of another
        history at the same revision, a database restored from a backup and written again, is told
        by it). ``removed``: the transaction removes faces, recorded as the collection's
        ``removed_revision`` (a catch-up from before it diffs every face id; see
        :meth:`IndexCache._catch_up`). Faces the transaction adds or moves carry the new revision
        (:meth:`_stamp`, or set as inserted)."""
        values: dict[str, Any] = {"revision": Collection.revision + 1}
        if removed:
            values["removed_revision"] = Collection.revision + 1
        revision = session.scalar(update(Collection).where(Collection.id == collection.id)
                                  .values(**values).returning(Collection.revision))
        assert revision is not None, "the collection row is locked by this transaction"
        history = new_history()
        session.execute(insert(CollectionRevision).values(collection_id=collection.id, revision=revision,
                                                          history=history))
        if revision % HISTORY_PRUNE_EVERY == 0:  # a copy older than the tokens kept is rebuilt
            session.execute(delete(CollectionRevision).where(CollectionRevision.collection_id == collection.id,
                                                             CollectionRevision.revision <= revision - HISTORY_KEPT))
        return revision, history

    @staticmethod
    def _stamp(session: Session, face_ids: Sequence[int], revision: int) -> None:
        """Record ``revision`` on faces this transaction moved to another subject (rows it holds)."""
        ids = [int(face_id) for face_id in face_ids]
        for start in range(0, len(ids), _OWNER_BATCH):
            session.execute(update(FaceRecord).where(FaceRecord.id.in_(ids[start:start + _OWNER_BATCH]))
                            .values(revision=revision))

    @staticmethod
    def _face_counts(session: Session, subject_ids: list[int]) -> dict[int, int]:
        rows = session.execute(select(FaceRecord.subject_id, func.count()).where(FaceRecord.subject_id.in_(subject_ids))
                               .group_by(FaceRecord.subject_id))
        return {subject_id: count for subject_id, count in rows}

    def _subject_info(self, session: Session, subject: Subject) -> SubjectInfo:
        return _subject_info(subject, self._face_counts(session, [subject.id]).get(subject.id, 0))

    @staticmethod
    def _collection_info(session: Session, row: Collection, *, counts: bool = True) -> CollectionInfo:
        subjects = faces = None
        if counts:
            subjects = session.scalar(select(func.count()).where(Subject.collection_id == row.id)) or 0
            faces = session.scalar(select(func.count()).where(FaceRecord.collection_id == row.id)) or 0
        return CollectionInfo(row.name, row.pack_name, row.pack_version, row.recognizer_id, row.embedding_size,
                              row.keep_crops, dict(row.meta), subjects, faces, row.created_at)

    @staticmethod
    def _subject_vectors(session: Session, subject_ids: list[int]) -> dict[int, np.ndarray]:
        grouped: dict[int, list[bytes]] = {}
        rows = session.execute(select(FaceRecord.subject_id, FaceRecord.embedding)
                               .where(FaceRecord.subject_id.in_(subject_ids)))
        for subject_id, blob in rows:
            grouped.setdefault(subject_id, []).append(blob)
        return {sid: np.frombuffer(b"".join(blobs), np.float32).reshape(len(blobs), -1)
                for sid, blobs in grouped.items()}

    def _mean_similarities(self, session: Session, vector: np.ndarray, subject_ids: list[int]) -> dict[int, float]:
        """Cosine of ``vector`` with each subject's mean template (normalised mean embedding)."""
        vectors = self._subject_vectors(session, subject_ids)
        return {sid: float(l2_normalize(v.mean(axis=0))[0] @ vector) for sid, v in vectors.items()}

    def _check_analyzer(self, collection: str, analyzer: FaceAnalyzer) -> None:
        info = self.get_collection(collection)
        if analyzer.pack.recognizer_id != info.recognizer_id:
            raise ModelMismatch(self._mismatch(info.name, info.pack_name, info.recognizer_id,
                                               analyzer.pack.recognizer_id))

    def _check_model(self, collection: Collection, recognizer_id: str, size: int) -> None:
        if recognizer_id != collection.recognizer_id:
            raise ModelMismatch(self._mismatch(collection.name, collection.pack_name, collection.recognizer_id,
                                               recognizer_id))
        if size != collection.embedding_size:
            raise ModelMismatch(f"collection '{collection.name}' holds {collection.embedding_size}-d embeddings, "
                                f"got {size}-d")

    def _mismatch(self, collection: str, pack_name: str, expected: str, got: str) -> str:
        """:func:`mismatch_message` for this gallery: a store's members collection is named as the
        store; a server's own embeddings (:attr:`serving`) say how to serve the collection's pack."""
        store = self.tenant.removeprefix(_RETAIL_SPACE) if self.tenant.startswith(_RETAIL_SPACE) else None
        holder = f"store '{store}'" if store is not None and collection == "members" else f"collection '{collection}'"
        serving = self.serving.name if self.serving is not None and got == self.serving.recognizer_id else None
        return mismatch_message(holder, pack_name, expected, got, serving=serving)


def _subject_info(row: Subject, faces: int) -> SubjectInfo:
    return SubjectInfo(row.external_id, row.name, dict(row.meta), faces, row.created_at, row.updated_at)
