"""An album: a library of photos whose faces are grouped into people, incrementally, under the
user's corrections. Vectors live in a gallery collection of the tenant ``app:albums:<owner>:<name>``
(a person ``p<id>`` is a gallery subject, the quality gate's pool the subject ``unsorted``); the
album's tables hold photos, faces, people and constraints (see :mod:`.db`, :mod:`.clustering`).
A process keeps an album's placed faces (ids, people, FAISS index) between calls (:data:`LIBRARIES`)
and uses them only at the album's revision it holds them at, so adding a photo costs its own faces,
not the whole library's, and nothing another process changed or erased is matched."""

from __future__ import annotations

import threading
import weakref
from collections import OrderedDict, defaultdict
from collections.abc import Callable, Iterable, Sequence
from contextlib import suppress
from datetime import datetime
from functools import partial
from pathlib import Path
from typing import Any, Self

import numpy as np
from sqlalchemy import Select, delete, func, or_, select, update
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from faceatlas.apps.albums import clustering
from faceatlas.apps.albums.db import Absorbed, AlbumRecord, CannotLink, FaceRow, Person, Photo, migrate
from faceatlas.apps.albums.photos import contact_sheet as draw_sheet
from faceatlas.apps.albums.photos import content_hash, is_photo_file, list_photos, read_photos, source_of, taken_at
from faceatlas.apps.albums.types import (
    AlbumFace,
    ContactSheet,
    Erasure,
    PersonInfo,
    PhotoInfo,
    PhotoListing,
    ScanReport,
)
from faceatlas.db import create_database_engine, default_database_url, normalize_url, require_database
from faceatlas.engine import (
    Face,
    FaceAnalyzer,
    InvalidImage,
    ModelMismatch,
    check_drawing_path,
    check_output_file,
    l2_normalize,
)
from faceatlas.errors import AlreadyExists, Conflict, InvalidArgument, NotFound
from faceatlas.gallery import ROW_ID_MAX, Gallery, Rejection, check_id, mismatch_message, name_key, source_crop

COLLECTION = "faces"
UNSORTED = "unsorted"
ALBUM_FAR = 1e-6
MIN_QUALITY = 0.25
MAX_YAW = 50.0
MIN_FACE_PX = 24.0
CHUNK = 64
ANALYZE_GROUP = 8  # photos per analyze_many call: the engine's lanes work on them side by side
CACHE_FACES = 2_000_000  # placed faces a process keeps in memory over all its albums (~2 KiB each at 512-d)
PHOTO_ID_MAX = 2**31 - 1  # album_photos.id is an INTEGER
Progress = Callable[[int, int], None]
Token = tuple[datetime, int]  # an album's created_at and revision: what a cached library is current at


def gate(face: Face) -> bool:
    """Whether a face is good enough to cluster (else it waits in the unsorted pool): not tiny,
    not blurred or low-confidence (the engine's quality), not in profile."""
    x1, y1, x2, y2 = face.bbox
    yaw = abs(face.pose.yaw) if face.pose else 0.0
    return min(x2 - x1, y2 - y1) >= MIN_FACE_PX and (face.quality or 0.0) >= MIN_QUALITY and yaw <= MAX_YAW


def list_albums(engine: Engine, owner: str) -> list[str]:
    """The names of ``owner``'s albums, alphabetically (on a database with the album tables)."""
    with sessionmaker(engine)() as session:
        return list(session.scalars(select(AlbumRecord.name).where(AlbumRecord.owner == owner)
                                    .order_by(AlbumRecord.name)))


def erase_owner(engine: Engine, gallery: Gallery, owner: str, *, migrated: bool = True) -> int:
    """Erase every album of ``owner`` (a tenant going away), each as :func:`erase_album` does.
    Returns how many albums were erased. ``migrated`` False: bring the album tables up first."""
    if not migrated:
        migrate(engine)
    with sessionmaker(engine)() as session:
        albums = list(session.execute(select(AlbumRecord.id, AlbumRecord.name).where(AlbumRecord.owner == owner)))
    for album_id, name in albums:
        _erase_album(engine, gallery, owner, album_id, name)
    return len(albums)


def erase_album(engine: Engine, gallery: Gallery, owner: str, name: str, *, migrated: bool = True) -> Erasure:
    """Erase the album ``name`` of ``owner`` whole: first its gallery space ``app:albums:<owner>:<name>``
    (every face, vector, crop and index file, and the space's row, which names the album), then its
    photos, faces, people, constraints, absorbed ids and, last, the album row, so a run cut short
    leaves the album findable and running this again finishes the job. An album of any pack is
    erased (no analyzer is asked for); a missing one is :class:`NotFound`. Returns the counts.
    ``migrated`` False: bring the album tables up first."""
    check_id(name, "album name")
    if not migrated:
        migrate(engine)
    with sessionmaker(engine)() as session:
        album_id = session.scalar(select(AlbumRecord.id).where(AlbumRecord.owner == owner, AlbumRecord.name == name))
    if album_id is None:
        raise NotFound(f"no album '{name}'")
    return _erase_album(engine, gallery, owner, album_id, name)


def _erase_album(engine: Engine, gallery: Gallery, owner: str, album_id: int, name: str) -> Erasure:
    sessions = sessionmaker(engine)
    with sessions() as session:
        counts = [session.scalar(select(func.count()).select_from(table).where(table.album_id == album_id)) or 0
                  for table in (FaceRow, Photo, Person)]
    with LIBRARIES.lock(engine, album_id):  # no placement of this process meanwhile
        LIBRARIES.drop(engine, album_id)
        gallery.delete_tenant_space(f"app:albums:{owner}:{name}")
        with sessions.begin() as session:
            faces = select(FaceRow.id).where(FaceRow.album_id == album_id)
            session.execute(delete(CannotLink).where(
                (CannotLink.album_id == album_id) | CannotLink.face_a.in_(faces) | CannotLink.face_b.in_(faces)))
            session.execute(delete(FaceRow).where(FaceRow.album_id == album_id))
            session.execute(delete(Absorbed).where(Absorbed.album_id == album_id))
            session.execute(delete(Person).where(Person.album_id == album_id))
            session.execute(delete(Photo).where(Photo.album_id == album_id))
            session.execute(delete(AlbumRecord).where(AlbumRecord.id == album_id))
        LIBRARIES.drop(engine, album_id)
    return Erasure(faces_deleted=counts[0], photos_deleted=counts[1], people_deleted=counts[2])


def album_pack(name: str, url: str | None = None, *, owner: str = "default") -> str | None:
    """The pack an existing album was made with (None: no such album yet, or no database yet)."""
    url = normalize_url(url or default_database_url())
    try:
        require_database(url, "album database")  # the one check of a missing SQLite file
    except NotFound:
        return None
    engine = create_database_engine(url)
    try:
        migrate(engine)
        with sessionmaker(engine)() as session:
            return session.scalar(select(AlbumRecord.pack).where(AlbumRecord.owner == owner, AlbumRecord.name == name))
    finally:
        engine.dispose()


class AlbumCore:
    """Scanning and reading of one album of one owner, bound to the pack of ``analyzer``
    (the corrections are :class:`faceatlas.apps.albums.corrections.Album`'s)."""

    def __init__(self, record: AlbumRecord, analyzer: FaceAnalyzer, gallery: Gallery, engine: Engine,
                 far: float, owns: bool, keeps_crops: bool) -> None:
        self.name = record.name
        self.owner = record.owner
        self._id = record.id
        self.analyzer = analyzer
        self.gallery = gallery
        self._engine = engine
        self._sessions = sessionmaker(engine, expire_on_commit=False)
        self.threshold = analyzer.threshold(far)
        self._owns = owns
        self.keeps_crops = keeps_crops

    @classmethod
    def open(cls, name: str, analyzer: FaceAnalyzer, url: str | None = None, *, owner: str = "default",
             index_dir: Path | None = None, far: float = ALBUM_FAR, create: bool = False,
             keep_crops: bool | None = None) -> Self:
        """Open the album ``name`` of ``owner`` on the database ``url``; a new one only when
        ``create`` (to add photos to), else :class:`NotFound`. ``keep_crops``: as :meth:`attach`."""
        check_id(name, "album name")
        url = normalize_url(url or default_database_url())
        if not create:
            require_database(url, "album database", "`faceatlas album scan` makes one")
        engine = create_database_engine(url)
        gallery = Gallery.open(url, index_dir=index_dir)
        try:
            return cls.attach(name, analyzer, gallery, engine, owner=owner, far=far, owns=True, create=create,
                              keep_crops=keep_crops)
        except BaseException:
            gallery.close()
            engine.dispose()
            raise

    @classmethod
    def attach(cls, name: str, analyzer: FaceAnalyzer, gallery: Gallery, engine: Engine, *, owner: str,
               far: float = ALBUM_FAR, owns: bool = False, migrated: bool = False,
               keep_crops: bool | None = None, create: bool = False) -> Self:
        """The album ``name`` of ``owner`` over an open gallery and database engine (a service
        shares its own; closing the album then closes neither unless ``owns``; ``migrated``: the album
        tables are known to be current). Its faces go to the gallery tenant ``app:albums:<owner>:<name>``,
        which no door reaches directly. A missing album is :class:`NotFound` unless ``create`` (only
        adding photos creates: reading or correcting a mistyped name makes nothing).

        An album's pack is that of the photos it holds: one that holds no photo yet (its first
        scan's photos all failed, or an older scan of a folder without photos made it) takes the pack
        of ``analyzer`` when photos are added (``create``); one that holds photos of another pack is
        :class:`ModelMismatch` (scan with its pack, or delete it to scan anew).

        ``keep_crops`` (chosen when the album is created; None: the album's setting, none for a new
        album) keeps a crop of every face with its vector, for :meth:`face_crop` (an album of uploads
        has no photo files to crop from); erasing a person removes them with the vectors. Asked
        otherwise than the album was made, either way, it is a :class:`Conflict` and nothing is
        added (True of an album without crops: it was ignored; False of an album with crops: the
        crops were kept where the user had asked for none), as the gallery's ``keep_crops`` is fixed
        when its collection is made."""
        check_id(name, "album name")
        if not migrated:
            migrate(engine)
        if not create:  # first: a mistyped name is NotFound before its gallery space makes a tenant row
            record = cls._record(engine, owner, name, analyzer, create)
        gallery = gallery.for_tenant(f"app:albums:{owner}:{name}")
        if create:  # after: a name too long for its space makes no album row
            record = cls._record(engine, owner, name, analyzer, create)
        try:  # its row alone, read once: its counts are scans of its faces, read 3 times on every call
            info = gallery.get_collection(COLLECTION, counts=False)
        except NotFound:
            with suppress(AlreadyExists):  # made by another upload creating the album at the same moment
                gallery.create_collection(COLLECTION, analyzer, keep_crops=bool(keep_crops))
            info = gallery.get_collection(COLLECTION, counts=False)
        if info.recognizer_id != analyzer.pack.recognizer_id and create \
                and gallery.get_collection(COLLECTION).faces == 0 and not cls._holds_photos(engine, record.id):
            info = cls._repack(gallery, engine, record, analyzer, info.keep_crops)
        if info.recognizer_id != analyzer.pack.recognizer_id:
            serving = gallery.serving.name if gallery.serving is not None and \
                gallery.serving.recognizer_id == analyzer.pack.recognizer_id else None
            raise ModelMismatch(mismatch_message(
                f"album '{name}'", info.pack_name, info.recognizer_id, analyzer.pack.recognizer_id, serving=serving,
                remedy=f"An album keeps the pack of its first photos: scan it with pack '{info.pack_name}' (`album "
                       f"scan` without --pack takes it, or --pack {info.pack_name}), or delete the album (`faceatlas "
                       f"album delete {name}`: its people and faces go) to scan its photos anew with another pack."))
        if keep_crops and not info.keep_crops:
            raise Conflict(f"album '{name}' was created without face crops and cannot keep them now (keep_crops "
                           "is chosen by the photo that creates an album): add this photo without keep_crops, "
                           "or to a new album created with it")
        if keep_crops is False and info.keep_crops:
            raise Conflict(f"album '{name}' was created keeping face crops and keeps one of every face it is given "
                           "(keep_crops is chosen by the photo that creates an album): the photo was not added. "
                           "Add it to a new album created without crops, or to this one without keep_crops=false "
                           "(its crops are then kept)")
        return cls(record, analyzer, gallery, engine, far, owns, info.keep_crops)

    @staticmethod
    def _holds_photos(engine: Engine, album_id: int) -> bool:
        with sessionmaker(engine)() as session:
            return session.scalar(select(Photo.id).where(Photo.album_id == album_id).limit(1)) is not None

    @staticmethod
    def _repack(gallery: Gallery, engine: Engine, record: AlbumRecord, analyzer: FaceAnalyzer,
                keep_crops: bool) -> Any:
        """The album's empty collection made again for ``analyzer``'s pack (an album that holds no
        photo has no pack yet: the scan adding its first photos gives it theirs)."""
        LIBRARIES.drop(engine, record.id)
        with suppress(NotFound):  # another scan did so at the same moment
            gallery.delete_collection(COLLECTION)
        with suppress(AlreadyExists):
            gallery.create_collection(COLLECTION, analyzer, keep_crops=keep_crops)
        with sessionmaker(engine).begin() as session:
            session.execute(update(AlbumRecord).where(AlbumRecord.id == record.id).values(pack=analyzer.pack.name))
        record.pack = analyzer.pack.name
        return gallery.get_collection(COLLECTION)

    @staticmethod
    def _record(engine: Engine, owner: str, name: str, analyzer: FaceAnalyzer, create: bool) -> AlbumRecord:
        """The album's row, made when new and ``create``: uploads creating one album at once find
        the one row the first made (the others' INSERT was a 500)."""
        sessions = sessionmaker(engine, expire_on_commit=False)
        for attempt in range(2):
            try:
                with sessions.begin() as session:
                    query = select(AlbumRecord).where(AlbumRecord.owner == owner, AlbumRecord.name == name)
                    record = session.scalar(query)
                    if record is None:
                        if not create:
                            raise NotFound(f"no album '{name}'")
                        record = AlbumRecord(owner=owner, name=name, pack=analyzer.pack.name)
                        session.add(record)
                        session.flush()
                    return record
            except IntegrityError:
                if attempt:
                    raise Conflict(f"album '{name}' is being created by another call; try again") from None
        raise AssertionError("unreachable")

    def close(self) -> None:
        """Persist the gallery index; release the database when the album opened it (and the
        libraries cached for it)."""
        if self._owns:
            LIBRARIES.forget(self._engine)
            self.gallery.close()
            self._engine.dispose()
        else:
            self.gallery.flush()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- scanning ---------------------------------------------------------------------------
    def scan(self, folder: Path | PhotoListing, *, on_progress: Progress | None = None) -> ScanReport:
        """Add every photo under ``folder`` (recursive) not scanned before (by content hash); a
        folder without any photo is :class:`InvalidInput` (a wrong folder, not nothing new). A known
        path whose content changed (a photo overwritten in place, an edit) is that photo gone and
        another one added: see :meth:`add_photos`. HEIC/HEIF
        photos are listed in the report's ``left_out``, not decoded; entries named as photos that
        are no file to read (a dangling link, a FIFO: never opened) are among its ``failed``. ``folder`` may be its
        :func:`list_photos`, made before the album was opened (a door checks the folder first: a
        scan of a folder with no photo makes no album)."""
        listing = folder if isinstance(folder, PhotoListing) else list_photos(Path(folder))
        report = self.add_photos(read_photos(listing.paths), total=len(listing.paths), on_progress=on_progress)
        report.failed[:0] = listing.unreadable  # silently skipped before
        report.left_out = list(listing.left_out)
        return report

    def add_photos(self, photos: Iterable[tuple[str, bytes]], *, total: int = 0,
                   on_progress: Progress | None = None) -> ScanReport:
        """Add photos given as (source, bytes): faces that pass :func:`gate` join the person of
        their strongest neighbour above the threshold or start a new person; people are never
        re-clustered (that is :meth:`recluster`). The placed faces are placed against are the
        process's cached library of the album (:data:`LIBRARIES`) while the album's revision is the
        one it was loaded or last updated at, so an upload costs its own faces, not the album's.

        A source that is a photo file the album holds with other content (overwritten at the same
        path: its old faces stayed with their person, the new content came in as a second photo of
        that path, and the contact sheet cropped the old boxes out of the new picture) drops the
        album's old photo first, as :meth:`~faceatlas.apps.albums.Album.delete_photo` does (faces,
        vectors, crops, constraints; a person whose last face it was), counted in the report's
        ``changed`` (its erasures in ``erased``, for the door to erase what it keeps of them); then
        the new content is added as any photo (or skipped, when the album holds it elsewhere)."""
        report = ScanReport()
        batch: list[tuple[str, bytes, str]] = []
        seen: set[str] = set()
        done = 0
        by_path: dict[str, list[tuple[int, str]]] | None = None  # read at the first source that is a file
        for source, data in photos:
            digest = content_hash(data)
            if is_photo_file(source):  # an upload's source names no file: its photos never change
                by_path = self._photos_by_path() if by_path is None else by_path
                self._drop_changed(source, digest, by_path.pop(source, []), report)
            if digest in seen or self._known_photo(digest, source, report):
                report.skipped += 1
            else:
                seen.add(digest)
                batch.append((source, data, digest))
            if len(batch) >= CHUNK:
                self._add_chunk(batch, report)
                done += len(batch)
                batch = []
            if on_progress:
                on_progress(done + len(batch) + report.skipped, total)
        if batch:
            self._add_chunk(batch, report)
        if on_progress:
            on_progress(total or report.photos + report.skipped, total)
        return report

    def _photos_by_path(self) -> dict[str, list[tuple[int, str]]]:
        """The album's photos (id, content hash) by their path, read once per scan (the paths have
        no index: a query per photo read the whole table again)."""
        out: dict[str, list[tuple[int, str]]] = defaultdict(list)
        with self._sessions() as session:
            for photo_id, source, digest in session.execute(select(Photo.id, Photo.source, Photo.sha256).where(
                    Photo.album_id == self._id)):
                out[source].append((photo_id, digest))
        return out

    def _drop_changed(self, source: str, digest: str, held: Sequence[tuple[int, str]], report: ScanReport) -> None:
        """Drop the photos ``held`` at ``source`` whose content is not ``digest`` any more (its file
        was overwritten), as :meth:`_drop_photo` does; one path counts once in ``changed``."""
        stale = [photo_id for photo_id, known in held if known != digest]
        for photo_id in stale:
            with suppress(NotFound):  # deleted meanwhile (another scan, a delete-photo)
                report.erased.append(self._drop_photo(photo_id))
        report.changed += bool(stale)

    def _drop_photo(self, photo_id: int) -> Erasure:
        """Delete one photo and every face on it (:class:`~faceatlas.apps.albums.Album`'s
        ``delete_photo``: the corrections hold the erasure)."""
        raise NotImplementedError

    def _known_photo(self, digest: str, source: str, report: ScanReport) -> bool:
        """Whether the album holds the photo ``digest``; one whose path no longer leads to it
        (moved, or relative to where an old scan ran) takes ``source`` when that is a photo file
        (a moved folder's photos kept their old paths for ever; an upload changes no path)."""
        with self._sessions.begin() as session:
            found = session.execute(select(Photo.id, Photo.source).where(
                Photo.album_id == self._id, Photo.sha256 == digest)).first()
            if found is None:
                return False
            if found.source != source and is_photo_file(source) and not is_photo_file(found.source):
                session.execute(update(Photo).where(Photo.id == found.id).values(source=source))
                report.moved += 1
            return True

    def _add_chunk(self, batch: list[tuple[str, bytes, str]], report: ScanReport) -> None:
        found: list[tuple[int, Face]] = []  # (photo number in batch, face)
        crops: list[bytes | None] = []  # of the found faces, when the album keeps them
        photos: list[Photo] = []
        for (source, data, digest), faces in zip(batch, self._analyze(batch), strict=True):
            if isinstance(faces, InvalidImage):
                report.failed.append(Rejection.of(source, faces))
                continue
            crops += _crops(self.analyzer, data, faces) if self.keeps_crops else [None] * len(faces)
            photos.append(Photo(album_id=self._id, sha256=digest, source=source, taken_at=taken_at(data)))
            found.extend((len(photos) - 1, face) for face in faces)
        good = [i for i, (_, face) in enumerate(found) if gate(face)]
        size = self.analyzer.embedding_size
        vectors = l2_normalize(np.stack([f.as_embedding().vector for _, f in found])) if found else np.empty(
            (0, size), np.float32)
        labels = np.empty(0, np.int64)
        fresh = 0  # labels from here on are new people
        with LIBRARIES.lock(self._engine, self._id):  # this process's placements in the album one at a time
            if good:
                library = self._library()
                blocked, named = self._protected()
                placement = clustering.assign(np.empty((0, size), np.float32), library.labels, vectors[good],
                                              self.threshold, blocked=blocked, exclusive=named, index=library.index)
                labels, fresh = placement.labels, int(library.labels.max(initial=-1)) + 1
                self._join(placement.merged)
            targets: dict[int, list[int]] = defaultdict(list)
            for row, label in zip(good, labels.tolist()):
                targets[label].append(row)
            unsorted = sorted(set(range(len(found))) - set(good))
            person_of = self._people_for(targets, fresh, report)
            groups = [(UNSORTED, None, unsorted)] + [(f"p{person_of[label]}", person_of[label], rows)
                                                      for label, rows in targets.items()]
            added: list[tuple[list[int], list[int], int | None]] = []  # gallery ids, rows, person
            for subject, person, rows in groups:
                if rows:
                    added.append((self.gallery.add_embeddings(
                        COLLECTION, subject, vectors[rows], recognizer_id=self.analyzer.pack.recognizer_id,
                        qualities=[found[r][1].quality for r in rows],
                        sources=[photos[found[r][0]].source for r in rows], crops=[crops[r] for r in rows]),
                        rows, person))
            # the photos and their faces in one transaction: a scan stopped before it (Ctrl-C, a kill)
            # recorded neither, so the next scan adds the photos again (it skipped them, faceless for
            # good); vectors added before the stop are not placed (placement reads these rows)
            try:
                with self._sessions.begin() as session:
                    session.add_all(photos)
                    session.flush()
                    session.add_all(_face_row(fid, self._id, photos[found[r][0]].id, person, found[r][1])
                                    for ids, rows, person in added for fid, r in zip(ids, rows))
                    token = self._bump(session) if any(person is not None for _, _, person in added) else None
            except IntegrityError as exc:  # another scan recorded one of these photos first ("UNIQUE constraint")
                for ids, _, _ in added:
                    for face_id in ids:
                        self.gallery.delete_face(COLLECTION, face_id)
                raise Conflict(f"another scan is adding the same photos to album '{self.name}': run this scan "
                               "again once it has ended (the photos it added are skipped then)") from exc
            if token is not None:
                placed = [(ids, vectors[rows], person) for ids, rows, person in added if person is not None]
                self._advanced(token, partial(_extend_all, placed=placed))
        report.photos += len(photos)
        report.faces += len(good)
        report.unsorted += len(unsorted)

    def _analyze(self, batch: list[tuple[str, bytes, str]]) -> list[list[Face] | InvalidImage]:
        """The faces of each photo, or why it could not be read: ``analyze_many`` on groups of
        :data:`ANALYZE_GROUP` photos (side by side in the engine's lanes; a group's decoded photos
        are in memory at once). A group holding an unreadable photo is decoded photo by photo to
        find it, and its readable photos analysed together again."""
        results: list[list[Face] | InvalidImage] = []
        for start in range(0, len(batch), ANALYZE_GROUP):
            group = [data for _, data, _ in batch[start:start + ANALYZE_GROUP]]
            try:
                results.extend(self.analyzer.analyze_many(group))
                continue
            except InvalidImage:
                pass
            checked = [_unreadable(self.analyzer, data) for data in group]
            faces = iter(self.analyzer.analyze_many([d for d, bad in zip(group, checked, strict=True) if bad is None]))
            results.extend(next(faces) if bad is None else bad for bad in checked)
        return results

    # -- the cached library of placed faces ------------------------------------------------------
    def _library(self) -> _Library:
        """The placed faces as the database has them now: the process's cached library while the
        album's revision is the one it is at, else loaded (and cached). Called holding the album's
        :meth:`Libraries.lock`."""
        token = self._token()
        library = LIBRARIES.get(self._engine, self._id, token)
        if library is None:
            library = _Library(*self._placed(), token)  # read after the token: a change in between reloads
            LIBRARIES.put(self._engine, self._id, library)
        return library

    def _token(self) -> Token:
        with self._sessions() as session:
            row = session.execute(select(AlbumRecord.created_at, AlbumRecord.revision).where(
                AlbumRecord.id == self._id)).first()
        if row is None:
            raise NotFound(f"no album '{self.name}'")
        return row[0], row[1]

    def _bump(self, session: Session) -> Token:
        """Raise the album's revision in the current transaction (one changing its placed faces);
        returns the new token, for :meth:`_advanced` once the transaction is committed."""
        row = session.execute(update(AlbumRecord).where(AlbumRecord.id == self._id).values(
            revision=AlbumRecord.revision + 1).returning(AlbumRecord.created_at, AlbumRecord.revision)).first()
        if row is None:
            raise NotFound(f"no album '{self.name}'")
        return row[0], row[1]

    def _advanced(self, token: Token, change: Callable[[_Library], object] | None) -> None:
        """After this process's committed change that raised the revision to ``token``: bring the
        cached library up to it by ``change`` when it was current just before, else (another
        process changed the album too, or ``change`` is None) drop it, to be loaded again."""
        with LIBRARIES.lock(self._engine, self._id):
            library = LIBRARIES.get(self._engine, self._id, (token[0], token[1] - 1))
            if library is None:
                return
            if change is None:
                LIBRARIES.drop(self._engine, self._id)
                return
            change(library)
            library.token = token

    def _vectors_of(self, face_ids: Sequence[int]) -> tuple[np.ndarray, np.ndarray]:
        return self.gallery.face_vectors(COLLECTION, list(face_ids))

    def _placed(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Ids, vectors and person ids of the faces placed with a person (a face whose vector is
        no longer in the gallery, being erased, left out). The collection's vectors are read whole
        (no list of every id in the query)."""
        with self._sessions() as session:
            rows = session.execute(select(FaceRow.id, FaceRow.person_id).where(
                FaceRow.album_id == self._id, FaceRow.person_id.is_not(None)).order_by(FaceRow.id)).all()
        ids = np.asarray([r[0] for r in rows], np.int64)
        labels = np.asarray([r[1] for r in rows], np.int64)
        known, vectors = self.gallery.face_vectors(COLLECTION) if rows else (
            np.empty(0, np.int64), np.empty((0, self.analyzer.embedding_size), np.float32))
        at = np.minimum(np.searchsorted(known, ids), max(len(known) - 1, 0))
        found = known[at] == ids if len(known) else np.zeros(len(ids), bool)
        return ids[found], vectors[at[found]], labels[found]

    def _protected(self) -> tuple[set[tuple[int, int]], set[int]]:
        """Pairs of people the user's cannot-links keep apart, and the named people."""
        with self._sessions() as session:
            person = dict(session.execute(select(FaceRow.id, FaceRow.person_id).where(
                FaceRow.album_id == self._id, FaceRow.id.in_(
                    select(CannotLink.face_a).where(CannotLink.album_id == self._id).union(
                        select(CannotLink.face_b).where(CannotLink.album_id == self._id))))).all())
            pairs = self._cannot_pairs(session)
            named = set(session.scalars(select(Person.id).where(Person.album_id == self._id,
                                                                Person.name.is_not(None))))
        blocked: set[tuple[int, int]] = set()
        for a, b in pairs:
            pa, pb = person.get(a), person.get(b)
            if pa is not None and pb is not None:
                blocked.add((pa, pb))
        return blocked, named

    def _join(self, merged: dict[int, int]) -> None:
        """People joined by new faces that bridge them (no constraint: a later recluster may part them)."""
        for gone, kept in merged.items():
            with self._sessions.begin() as session:
                session.execute(update(FaceRow).where(FaceRow.person_id == gone).values(person_id=kept))
                name = session.scalar(select(Person.name).where(Person.id == gone))
                if name is not None:
                    session.execute(update(Person).where(Person.id == kept, Person.name.is_(None)).values(name=name))
                self._absorb(session, gone, [kept])
                session.execute(delete(Person).where(Person.id == gone))
                token = self._bump(session)
            self._advanced(token, partial(_Library.merge, gone=gone, kept=kept))
            self.gallery.merge_subjects(COLLECTION, f"p{kept}", f"p{gone}")

    def _people_for(self, targets: dict[int, list[int]], start: int, report: ScanReport) -> dict[int, int]:
        """Person id of each label: an existing person (a label below ``start``), else a new one."""
        out = {label: label for label in targets if label < start}
        fresh = [label for label in targets if label >= start]
        if fresh:
            with self._sessions.begin() as session:
                people = [Person(album_id=self._id) for _ in fresh]
                session.add_all(people)
                session.flush()
                out.update({label: p.id for label, p in zip(fresh, people)})
            report.new_people += len(fresh)
        return out

    # -- reading ----------------------------------------------------------------------------
    def people(self, *, min_faces: int = 1) -> list[PersonInfo]:
        """People with at least ``min_faces`` faces (1 or more), most faces first."""
        if min_faces < 1:
            raise InvalidArgument(f"min_faces is 1 or more faces, not {min_faces}")
        with self._sessions() as session:
            counts = session.execute(select(FaceRow.person_id, func.count()).where(
                FaceRow.album_id == self._id, FaceRow.person_id.is_not(None)).group_by(FaceRow.person_id)).all()
            wanted = {int(pid): n for pid, n in counts if pid is not None and n >= min_faces}
            return sorted((self._info(session, pid, n) for pid, n in wanted.items()),
                          key=lambda p: (-p.faces, int(p.id[1:])))

    def person(self, ref: str) -> PersonInfo:
        """One person by id (``p12`` or ``12``) or by name."""
        with self._sessions() as session:
            pid = self._resolve(session, ref)
            count = session.scalar(select(func.count()).where(FaceRow.person_id == pid)) or 0
            return self._info(session, pid, count)

    def faces(self, ref: str | None) -> list[AlbumFace]:
        """The faces of a person (``None``: the unsorted pool), best quality first."""
        with self._sessions() as session:
            rows = session.execute(self._faces_of(session, ref, FaceRow, Photo.source)).all()
            return [_face(row, source) for row, source in rows]

    def _faces_of(self, session: Session, ref: str | None, *columns: Any) -> Select:
        """The query of ``columns`` (of a face and its photo) for the faces of a person (``None``:
        the unsorted pool), best quality first."""
        query = select(*columns).join(Photo, Photo.id == FaceRow.photo_id).where(FaceRow.album_id == self._id)
        query = query.where(FaceRow.person_id.is_(None) if ref is None else
                            FaceRow.person_id == self._resolve(session, ref))
        return query.order_by(FaceRow.quality.desc(), FaceRow.id)

    def face(self, face_id: int) -> AlbumFace:
        with self._sessions() as session:
            row = self._face_row(session, face_id)
            return _face(row, session.scalar(select(Photo.source).where(Photo.id == row.photo_id)) or "")

    def photo(self, photo_id: int) -> PhotoInfo:
        """One of the album's photos, else :class:`NotFound`."""
        with self._sessions() as session:
            row = session.scalar(select(Photo).where(Photo.album_id == self._id, Photo.id == photo_ids([photo_id])[0]))
            if row is None:
                raise NotFound(f"no photo {photo_id} in album '{self.name}'")
            return PhotoInfo(row.id, row.source, row.taken_at, row.added_at)

    def face_crop(self, face_id: int) -> bytes | None:
        """The kept crop (JPEG) of one of the album's faces; None when the album keeps none."""
        self.face(face_id)  # NotFound for a face of another album
        return self.gallery.face_crop(COLLECTION, face_id)

    def timeline(self, ref: str | None) -> list[PhotoInfo]:
        """The photos of a person by EXIF date (undated last, by scan time); ``None``: the photos
        holding a face of the unsorted pool (as :meth:`faces`)."""
        if ref is not None:
            return self.together([ref])
        with self._sessions() as session:
            return self._photos(session, select(Photo).where(Photo.album_id == self._id, Photo.id.in_(
                select(FaceRow.photo_id).where(FaceRow.album_id == self._id, FaceRow.person_id.is_(None)))))

    def together(self, refs: Sequence[str]) -> list[PhotoInfo]:
        """The photos in which every one of the people ``refs`` appears, by EXIF date."""
        with self._sessions() as session:
            pids = [self._resolve(session, ref) for ref in refs]
            query = select(Photo).where(Photo.album_id == self._id)
            for pid in pids:
                query = query.where(Photo.id.in_(select(FaceRow.photo_id).where(FaceRow.person_id == pid)))
            return self._photos(session, query)

    @staticmethod
    def _photos(session: Session, query: Any) -> list[PhotoInfo]:
        """The photos of ``query`` by EXIF date (undated last, by scan time)."""
        rows = session.scalars(query.order_by(Photo.taken_at.is_(None), Photo.taken_at, Photo.added_at, Photo.id))
        return [PhotoInfo(p.id, p.source, p.taken_at, p.added_at) for p in rows]

    def contact_sheet(self, ref: str | None, path: Path, *, columns: int = 8) -> ContactSheet | None:
        """Write a PNG of the person's faces (``None``: the unsorted pool's, as :meth:`faces`),
        cropped from their photos, to ``path``; the result names the photos that could not be
        read or whose content is not the one scanned (their faces are grey tiles). None, nothing
        written, when there is no face to draw (an empty pool wrote a blank 112x112 PNG). A ``path`` that
        is one of the album's photos (links resolved) is :class:`InvalidArgument` before anything is
        drawn: the sheet was written over the photo, destroying it (any other file is overwritten)."""
        path = Path(path)
        with self._sessions() as session:
            held = session.scalar(select(Photo.source).where(Photo.album_id == self._id,
                                                             Photo.source == source_of(path)).limit(1))
            faces = [(source, list(box), digest) for box, source, digest in session.execute(
                self._faces_of(session, ref, FaceRow.bbox, Photo.source, Photo.sha256))]
        if held is not None:
            raise InvalidArgument(f"contact sheet {path} is the photo {held} of album '{self.name}': writing it "
                                  "would destroy the photo; give another file")
        # checked before drawing, as every command's output image is: a folder was "cannot write an image
        # with suffix '(none)'", /proc/x.png a generic error after the drawing ("could not write the image")
        check_output_file(path, "contact sheet")
        check_drawing_path(path, (), "contact sheet")
        if not faces:
            return None
        return draw_sheet(self.analyzer, faces, path, columns)

    # -- internals shared with corrections ----------------------------------------------------
    def _resolve(self, session: Session, ref: str) -> int:
        text = str(ref).strip()
        number = person_number(text)
        if number is not None and number <= ROW_ID_MAX:  # 10**20 is no row id
            found = session.scalar(select(Person.id).where(Person.album_id == self._id, Person.id == number))
            if found is not None:
                return found
        named = self._named(session, text)
        if len(named) > 1:
            ids = ", ".join(f"p{pid}" for pid in named)
            raise InvalidArgument(f"{len(named)} people are named '{text}': use their ids ({ids})")
        if not named:
            pool = (f": '{UNSORTED}' is the pool of faces the quality gate kept out (its faces and timeline can be "
                    "read; a face leaves it when moved to a person)") if text.lower() == UNSORTED else ""
            raise NotFound(f"no person '{text}' in album '{self.name}'{pool}")
        return named[0]

    def _named(self, session: Session, name: str) -> list[int]:
        """The album's people named ``name``, by id: names compare in Unicode's composed form
        (:func:`name_key`), so "José" typed with a combining accent finds the "José" typed without
        (and a name kept in another form before names were kept composed is found by either)."""
        key = name_key(name)
        rows = session.execute(select(Person.id, Person.name).where(Person.album_id == self._id,
                                                                    Person.name.is_not(None)).order_by(Person.id))
        return [pid for pid, held in rows if held is not None and (held == key or name_key(held) == key)]

    def _face_row(self, session: Session, face_id: int) -> FaceRow:
        row = session.scalar(select(FaceRow).where(FaceRow.album_id == self._id,
                                                   FaceRow.id == face_ids([face_id])[0]))
        if row is None:
            raise NotFound(f"no face {face_id} in album '{self.name}'")
        return row

    def _info(self, session: Session, pid: int, count: int) -> PersonInfo:
        name = session.scalar(select(Person.name).where(Person.id == pid))
        cover = session.execute(select(FaceRow.id, Photo.source).join(Photo, Photo.id == FaceRow.photo_id)
                                .where(FaceRow.person_id == pid).order_by(FaceRow.quality.desc(), FaceRow.id)
                                .limit(1)).first()
        return PersonInfo(f"p{pid}", name, count, cover[0] if cover else None, cover[1] if cover else None)

    def _drop_empty_people(self, session: Session, receivers: dict[int, set[int]] | None = None) -> list[int]:
        """Remove the album's people left with no face (a correction or re-cluster took their last
        ones; a person of no face could still be named, and merged carrying the name); returns their
        ids. ``receivers``: who took the faces of whom, each removed person's id absorbed by those
        people (:meth:`_absorb`), so what named it goes when they are erased. The gallery subjects
        of the removed people are the caller's to delete, once their faces moved there."""
        empty = list(session.scalars(select(Person.id).where(
            Person.album_id == self._id, ~Person.id.in_(select(FaceRow.person_id).where(
                FaceRow.album_id == self._id, FaceRow.person_id.is_not(None))))))
        for pid in empty:
            self._absorb(session, pid, (receivers or {}).get(pid, set()))
        if empty:
            session.execute(delete(Person).where(Person.id.in_(empty)))
        return empty

    def _absorb(self, session: Session, gone: int, into: Iterable[int]) -> None:
        """``gone``'s faces are now those of the people ``into`` (one, or several after a re-cluster)
        and ``gone`` is about to be removed: each of them absorbs its id and the ids it had absorbed
        (:class:`~faceatlas.apps.albums.db.Absorbed`); with no one to take them, they are forgotten."""
        earlier = list(session.scalars(select(Absorbed.absorbed).where(Absorbed.album_id == self._id,
                                                                       Absorbed.person_id == gone)))
        session.execute(delete(Absorbed).where(Absorbed.album_id == self._id, Absorbed.person_id == gone))
        session.add_all(Absorbed(album_id=self._id, person_id=pid, absorbed=old)
                        for pid in sorted(set(into) - {gone}) for old in [gone, *earlier])

    def _forget_people(self, session: Session, people: Iterable[int]) -> tuple[list[str], list[str]]:
        """Remove ``people`` (being erased) and the ids they absorbed; returns every id that held
        their faces (``p<id>``: theirs and the absorbed ones) and their names."""
        wanted = sorted(set(people))
        if not wanted:
            return [], []
        absorbed = set(session.scalars(select(Absorbed.absorbed).where(Absorbed.album_id == self._id,
                                                                       Absorbed.person_id.in_(wanted))))
        names = [n for n in session.scalars(select(Person.name).where(Person.id.in_(wanted))) if n]
        session.execute(delete(Absorbed).where(Absorbed.album_id == self._id, Absorbed.person_id.in_(wanted)))
        session.execute(delete(Person).where(Person.album_id == self._id, Person.id.in_(wanted)))
        return [f"p{pid}" for pid in sorted(set(wanted) | absorbed)], names

    def _cannot_pairs(self, session: Session) -> list[tuple[int, int]]:
        return [(a, b) for a, b in session.execute(select(CannotLink.face_a, CannotLink.face_b)
                                                   .where(CannotLink.album_id == self._id))]

    def _unlink(self, session: Session, faces: Sequence[int], others: Sequence[int]) -> None:
        """Forget cannot-links between ``faces`` and ``others`` (a later correction wins)."""
        if faces and others:
            session.execute(delete(CannotLink).where(or_(
                CannotLink.face_a.in_(faces) & CannotLink.face_b.in_(others),
                CannotLink.face_b.in_(faces) & CannotLink.face_a.in_(others))))

    def _lock(self, session: Session, faces: Sequence[int]) -> None:
        """Must-link ``faces`` (and every face sharing a lock with them)."""
        locks = {x for x in session.scalars(select(FaceRow.lock).where(FaceRow.id.in_(faces))) if x is not None}
        members = set(faces) | set(session.scalars(select(FaceRow.id).where(
            FaceRow.album_id == self._id, FaceRow.lock.in_(locks))))
        session.execute(update(FaceRow).where(FaceRow.id.in_(members)).values(lock=min(members)))


def person_number(ref: str) -> int | None:
    """The person id that ``ref`` spells, else None: ``p`` (either case) and ASCII digits, or the
    digits alone (``p12``, ``P12``, ``12``, ``012``: '²' is a digit to Python, no id). Such a
    reference finds that person (then a person of that name, one named before this rule); no person
    can be named so (:meth:`Album.name_person`)."""
    text = str(ref).strip()
    number = text[1:] if text[:1] in ("p", "P") else text
    return int(number) if number.isascii() and number.isdigit() else None


def face_ids(values: Iterable[int]) -> list[int]:
    """Face ids as the database holds them (1 to 2^63 - 1), else :class:`NotFound`."""
    out = [int(v) for v in values]
    bad = [v for v in out if not 0 < v < 2**63]
    if bad:
        raise NotFound(f"no face {bad[0]}")
    return out


def photo_ids(values: Iterable[int]) -> list[int]:
    """Photo ids as the database holds them (1 to 2^31 - 1: an INTEGER column; PostgreSQL refused a
    larger number with an error, not a miss), else :class:`NotFound`."""
    out = [int(v) for v in values]
    bad = [v for v in out if not 0 < v <= PHOTO_ID_MAX]
    if bad:
        raise NotFound(f"no photo {bad[0]}")
    return out


def _extend_all(library: _Library, placed: list[tuple[list[int], np.ndarray, int]]) -> None:
    """The faces a scan placed, each group with its person."""
    for ids, vectors, person in placed:
        library.extend(ids, vectors, person)


class _Library:
    """An album's placed faces as of ``token``: their gallery face ids, person ids and a FAISS
    index over their vectors (row ``i`` of each is one face; the vectors themselves are only in
    the index)."""

    def __init__(self, ids: np.ndarray, vectors: np.ndarray, labels: np.ndarray, token: Token) -> None:
        self.ids, self.labels, self.token = np.asarray(ids, np.int64), np.asarray(labels, np.int64), token
        self.index: Any = clustering.build_index(vectors) if len(vectors) else None

    def __len__(self) -> int:
        return len(self.ids)

    def extend(self, ids: Sequence[int] | np.ndarray, vectors: np.ndarray, person: int | np.ndarray) -> None:
        """Faces placed with ``person`` (one, or one per face)."""
        if not len(ids):
            return
        vectors = np.ascontiguousarray(vectors, np.float32)
        self.ids = np.concatenate([self.ids, np.asarray(ids, np.int64)])
        self.labels = np.concatenate([self.labels, np.broadcast_to(np.asarray(person, np.int64), (len(ids),))])
        if self.index is None:
            self.index = clustering.build_index(vectors)
        else:
            self.index.add(vectors)

    def merge(self, gone: int, kept: int) -> None:
        """The faces of ``gone`` are ``kept``'s."""
        self.labels[self.labels == gone] = kept

    def assign_faces(self, moves: dict[int, Sequence[int]],
                     vectors_of: Callable[[Sequence[int]], tuple[np.ndarray, np.ndarray]]) -> None:
        """The faces of each person of ``moves`` (person id -> face ids) are theirs; those not
        placed before (from the unsorted pool) join with their vectors (``vectors_of``: ids and
        vectors of the faces still in the gallery)."""
        wanted = np.asarray([f for faces in moves.values() for f in faces], np.int64)
        person = np.asarray([p for p, faces in moves.items() for _ in faces], np.int64)
        if not len(wanted):
            return
        order = np.argsort(self.ids, kind="stable")
        at = np.minimum(np.searchsorted(self.ids, wanted, sorter=order), max(len(order) - 1, 0))
        rows = order[at] if len(order) else np.zeros(len(wanted), np.int64)
        here = self.ids[rows] == wanted if len(order) else np.zeros(len(wanted), bool)
        self.labels[rows[here]] = person[here]
        if not here.all():
            found, vectors = vectors_of(wanted[~here].tolist())
            of = dict(zip(wanted[~here].tolist(), person[~here].tolist()))
            self.extend(found, vectors, np.asarray([of[f] for f in found.tolist()], np.int64))


class Libraries:
    """The libraries of the albums a process used last, by database engine and album id, kept
    between calls (the service opens an album per request on its one engine) up to
    ``max_faces`` placed faces in all (least recently used dropped first; the last one kept
    whatever its size). One is used only at the album's token it holds (:meth:`get`), so another
    process's placements, corrections, erasures and re-clusters make it reload; erasing a person
    drops it at once. :meth:`lock` orders one process's placements in one album."""

    def __init__(self, max_faces: int = CACHE_FACES) -> None:
        self.max_faces = max_faces
        self._guard = threading.Lock()
        self._held: OrderedDict[tuple[int, int], tuple[weakref.ref[Engine], _Library]] = OrderedDict()
        self._locks: dict[tuple[int, int], tuple[weakref.ref[Engine], threading.RLock]] = {}

    def lock(self, engine: Engine, album: int) -> threading.RLock:
        with self._guard:
            held = self._locks.get((id(engine), album))
            if held is None or held[0]() is not engine:
                held = self._locks[(id(engine), album)] = (weakref.ref(engine), threading.RLock())
            return held[1]

    def get(self, engine: Engine, album: int, token: Token) -> _Library | None:
        """The album's library when it is at ``token``; one at another token is dropped."""
        key = (id(engine), album)
        with self._guard:
            held = self._held.get(key)
            if held is None:
                return None
            if held[0]() is not engine or held[1].token != token:
                del self._held[key]
                return None
            self._held.move_to_end(key)
            return held[1]

    def put(self, engine: Engine, album: int, library: _Library) -> None:
        key = (id(engine), album)
        with self._guard:
            self._held[key] = (weakref.ref(engine), library)
            self._held.move_to_end(key)
            while len(self._held) > 1 and sum(len(lib) for _, lib in self._held.values()) > self.max_faces:
                self._held.popitem(last=False)

    def drop(self, engine: Engine, album: int) -> None:
        with self._guard:
            self._held.pop((id(engine), album), None)

    def forget(self, engine: Engine) -> None:
        """Every library and lock of an engine being disposed."""
        with self._guard:
            for table in (self._held, self._locks):
                for key in [k for k in table if k[0] == id(engine)]:
                    del table[key]

    def cached(self, engine: Engine, album: int) -> _Library | None:
        """The library held for the album, whatever its token (for tests and benches)."""
        with self._guard:
            held = self._held.get((id(engine), album))
            return held[1] if held is not None and held[0]() is engine else None


LIBRARIES = Libraries()


def _face_row(face_id: int, album_id: int, photo_id: int, person: int | None, face: Face) -> FaceRow:
    return FaceRow(id=face_id, album_id=album_id, photo_id=photo_id, person_id=person,
                   bbox=[round(float(v), 1) for v in face.bbox], quality=float(face.quality or 0.0),
                   yaw=float(face.pose.yaw) if face.pose is not None else 0.0, unsorted=person is None)


def _face(row: FaceRow, source: str) -> AlbumFace:
    return AlbumFace(row.id, row.photo_id, source, list(row.bbox), row.quality, row.yaw,
                     None if row.person_id is None else f"p{row.person_id}", row.unsorted)


def _crops(analyzer: FaceAnalyzer, data: bytes, faces: Sequence[Face]) -> list[bytes | None]:
    """A crop of each face (boxes in the original's pixels) from the photo decoded as analysis decodes it."""
    if not faces:
        return []
    image, factor = analyzer.load_reduced(data)
    return [source_crop(image, face, scale=1 / factor) for face in faces]


def _unreadable(analyzer: FaceAnalyzer, data: bytes) -> InvalidImage | None:
    """Why the analyzer cannot decode ``data``, or None when it can."""
    try:
        analyzer.load_reduced(data)
    except InvalidImage as exc:
        return exc
    return None
