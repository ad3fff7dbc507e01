"""The user's corrections of an album and the explicit re-cluster.

Corrections are constraints kept forever: a merge must-links every face of both people (one
``lock``), a move or split must-links the moved faces with their new person and cannot-links them
with the faces of the person they left, a reject cannot-links the face with its old person.
Neither a later scan (which never splits a person, and joins two only where no cannot-link and
no pair of names keeps them apart) nor :meth:`Album.recluster` (which joins locks first, never
joins a cannot-link pair nor the faces of two named people, and gives a named person the new
person holding most of its faces before any unnamed one is matched) undoes them.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Sequence
from contextlib import suppress
from functools import partial

import numpy as np
from sqlalchemy import delete, select, update
from sqlalchemy.orm import Session

from faceatlas.apps.albums import clustering
from faceatlas.apps.albums.album import (
    COLLECTION,
    LIBRARIES,
    UNSORTED,
    AlbumCore,
    _Library,
    face_ids,
    person_number,
    photo_ids,
)
from faceatlas.apps.albums.db import CannotLink, FaceRow, Person, Photo
from faceatlas.apps.albums.types import AlbumFace, Erasure, PersonInfo, ReclusterReport
from faceatlas.errors import AlreadyExists, InvalidArgument, ModelMismatch
from faceatlas.gallery import NAME_MAX_LENGTH, Gallery, NotFound, check_text, mismatch_message


def _check_name(name: str) -> None:
    """:class:`InvalidArgument` naming the rule a person's name (stripped) breaks, if any."""
    shown = f"{name[:40]!r}{'...' if len(name) > 40 else ''}"
    if not name:
        raise InvalidArgument(f"a person's name is 1 to {NAME_MAX_LENGTH} characters, not blank")
    if person_number(name) is not None:
        raise InvalidArgument(f"a person's name cannot look like a person id (p<digits>, in any case, or digits: got "
                              f"{shown}): a reference by it is read as the id p{person_number(name)}, so the name "
                              "would be ambiguous; choose another name")
    if name.lower() == UNSORTED:
        raise InvalidArgument(f"a person's name cannot be '{UNSORTED}' (in any case): it names the pool of faces the "
                              f"quality gate kept out (got {shown})")
    if "/" in name:
        raise InvalidArgument(f"a person's name is 1 to {NAME_MAX_LENGTH} characters without '/': a name is part of "
                              f"a URL path (got {shown})")
    if name in (".", ".."):
        raise InvalidArgument(f"a person's name cannot be {name!r}: a name is part of a URL path, which resolves it "
                              "away (as it does '%2E')")


class Album(AlbumCore):
    """An album: :meth:`open`, :meth:`scan`, :meth:`people`, corrections, :meth:`recluster`."""

    def name_person(self, ref: str, name: str) -> PersonInfo:
        """Give a person a name (kept through scans and re-clusters): 1 to 300 characters on one line
        (the gallery's rule for a subject's name, checked before anything is renamed), not one that
        spells a person id (``p5``, ``P5``, ``5``: a reference by it finds person 5, so the name would
        be ambiguous, see :func:`person_number`) nor ``unsorted``, without ``/`` and not ``.`` or ``..``
        (a name is a reference in a URL path, ``people/{name}/faces``, where no router reaches a
        ``/``, even percent-encoded, and a client resolves dot segments away), and no other person's
        of the album (:class:`AlreadyExists`: every later reference by that name would be ambiguous;
        names compare as references find them: case and blanks within count, the form of an accented
        letter does not, as names are kept composed, NFC: see :func:`~faceatlas.gallery.name_key`).
        Each refusal says which rule."""
        name = check_text(name.strip(), "name") or ""
        _check_name(name)
        with self._sessions.begin() as session:
            pid = self._resolve(session, ref)
            holder = next((other for other in self._named(session, name) if other != pid), None)
            if holder is not None:
                raise AlreadyExists(f"p{holder} is already named {name!r} in album '{self.name}': if p{pid} is the "
                                    f"same person, merge them (p{holder} absorbing p{pid}), else choose another name")
            session.execute(update(Person).where(Person.id == pid).values(name=name))
        self.gallery.update_subject(COLLECTION, f"p{pid}", name=name)
        return self.person(f"p{pid}")

    def merge(self, keep: str, absorb: str) -> PersonInfo:
        """One person from two: every face of ``absorb`` moves to ``keep``, all must-linked. The
        merged person keeps ``keep``'s name, or takes ``absorb``'s when ``keep`` has none: where both
        are named, ``absorb``'s name is lost (the console's question says so)."""
        with self._sessions.begin() as session:
            kept, gone = self._resolve(session, keep), self._resolve(session, absorb)
            if kept == gone:
                raise InvalidArgument("cannot merge a person into itself")
            ids_kept = self._person_faces(session, kept)
            ids_gone = self._person_faces(session, gone)
            self._unlink(session, ids_kept, ids_gone)
            session.execute(update(FaceRow).where(FaceRow.id.in_(ids_gone)).values(person_id=kept))
            self._lock(session, ids_kept + ids_gone)
            names = session.execute(select(Person.id, Person.name).where(Person.id.in_([kept, gone]))).all()
            name = dict(names).get(kept) or dict(names).get(gone)
            session.execute(update(Person).where(Person.id == kept).values(name=name))
            self._absorb(session, gone, [kept])  # erasing kept erases what named gone
            session.execute(delete(Person).where(Person.id == gone))
            token = self._bump(session)
        self._advanced(token, partial(_Library.merge, gone=gone, kept=kept))
        self.gallery.merge_subjects(COLLECTION, f"p{kept}", f"p{gone}")
        return self.person(f"p{kept}")

    def move(self, face_id: int, to: str) -> AlbumFace:
        """This face is ``to``: must-linked with that person, cannot-linked with the one it left
        (removed when this was its last face, its id absorbed by ``to``)."""
        with self._sessions.begin() as session:
            target = self._resolve(session, to)
            left = self._relocate(session, face_ids([face_id]), target, lock=True)
            dropped = self._drop_empty_people(session, {pid: {target} for pid in left})
            token = self._bump(session)
        self._advanced(token, self._assigned([int(face_id)], target))
        self.gallery.move_faces(COLLECTION, [int(face_id)], f"p{target}")
        self._drop_subjects(dropped)
        return self.face(face_id)

    def split(self, faces: Sequence[int]) -> PersonInfo:
        """These faces are one new person, not the person(s) they were with (a person left with
        no face is removed, its id absorbed by the new one)."""
        ids = sorted(set(face_ids(faces)))
        if not ids:
            raise InvalidArgument("split needs at least one face")
        with self._sessions.begin() as session:
            person = Person(album_id=self._id)
            session.add(person)
            session.flush()
            left = self._relocate(session, ids, person.id, lock=True)
            dropped = self._drop_empty_people(session, {pid: {person.id} for pid in left})
            token = self._bump(session)
        self._advanced(token, self._assigned(ids, person.id))
        self.gallery.move_faces(COLLECTION, ids, f"p{person.id}")
        self._drop_subjects(dropped)
        return self.person(f"p{person.id}")

    def reject(self, face_id: int) -> AlbumFace:
        """This face is not its person: it leaves (a person of its own) and is never put back. A
        person whose only face it was is removed (a person of no face could still be named, then
        merged carrying the name), its id absorbed by the face's new person."""
        with self._sessions.begin() as session:
            row = self._face_row(session, face_id)
            if row.person_id is None:
                raise InvalidArgument(f"face {face_id} is in the unsorted pool, not with a person")
            person = Person(album_id=self._id)
            session.add(person)
            session.flush()
            left = self._relocate(session, [row.id], person.id, lock=False)
            dropped = self._drop_empty_people(session, {pid: {person.id} for pid in left})
            token = self._bump(session)
        self._advanced(token, self._assigned([row.id], person.id))
        self.gallery.move_faces(COLLECTION, [int(face_id)], f"p{person.id}")
        self._drop_subjects(dropped)
        return self.face(face_id)

    def erase(self, ref: str) -> Erasure:
        """Erase a person: every face row, vector, crop and constraint of theirs, the photos left
        with no face of anyone (a photo's row keeps its hash and path: the same photo added again
        was skipped as known, for good) and the ids they absorbed (merges, scans that joined two
        people, corrections that emptied a person). The result names the ids and names that held
        their faces, for the door to erase what it keeps of them (stored answers, audit trail).
        Copies promoted into a gallery collection (:meth:`promote`) are that collection's subject
        and stay: erase them there."""
        with self._sessions() as session:
            pid = self._resolve(session, ref)
        return self._erase(lambda session: self._person_faces(session, pid), person=pid)

    def delete_face(self, face_id: int) -> Erasure:
        """Delete one face (a person's or one of the unsorted pool): its row, vector, crop and
        constraints; its photo when no face is left on it; its person when it was their last face
        (erased as :meth:`erase` erases one)."""
        return self._erase(lambda session: [self._face_row(session, face_id).id])

    def delete_photo(self, photo_id: int) -> Erasure:
        """Delete a photo: its row (hash, path, date) and every face on it as :meth:`delete_face`
        deletes one; added again, it is scanned again."""
        def faces(session: Session) -> list[int]:
            found = session.scalar(select(Photo.id).where(Photo.album_id == self._id,
                                                          Photo.id == photo_ids([photo_id])[0]))
            if found is None:
                raise NotFound(f"no photo {photo_id} in album '{self.name}'")
            return list(session.scalars(select(FaceRow.id).where(FaceRow.photo_id == found).order_by(FaceRow.id)))
        return self._erase(faces, photo=int(photo_id))

    def _drop_photo(self, photo_id: int) -> Erasure:
        """A scan found the photo's path holding other content: it goes as :meth:`delete_photo` deletes it."""
        return self.delete_photo(photo_id)

    def promote(self, ref: str, gallery: Gallery, collection: str, subject: str) -> int:
        """Enrol a person's faces as ``subject`` of a gallery collection (of the same pack);
        returns how many faces were enrolled. Each enrolled face's source names its album face, so
        promoting again enrols only the faces the subject does not hold yet (it enrolled them twice).
        A collection of another pack is :class:`ModelMismatch` saying what can be done instead (an
        album's faces are of its pack, and cannot be made with another: it said "--pack ... or reembed
        this collection", and `album promote` has no --pack)."""
        self._check_promotable(gallery, collection)
        with self._sessions() as session:
            pid = self._resolve(session, ref)
            name = session.scalar(select(Person.name).where(Person.id == pid))
            faces = self._person_faces(session, pid)
        sources = [f"album:{self._id}/face:{face}" for face in faces]
        held = _sources(gallery, collection, subject)
        fresh = [n for n, source in enumerate(sources) if source not in held]
        if not fresh:
            return 0
        _, vectors = self.gallery.face_vectors(COLLECTION, [faces[n] for n in fresh])
        return len(gallery.add_embeddings(collection, subject, vectors, recognizer_id=self.analyzer.pack.recognizer_id,
                                          sources=[sources[n] for n in fresh], name=name))

    def _check_promotable(self, gallery: Gallery, collection: str) -> None:
        info = gallery.get_collection(collection)  # NotFound for an unknown collection
        pack = self.analyzer.pack
        if info.recognizer_id == pack.recognizer_id:
            return
        reembed = (f", or reembed '{info.name}' to it (`faceatlas gallery reembed {info.name} --pack {pack.name}`, "
                   "from its kept crops)") if info.keep_crops else ""
        raise ModelMismatch(mismatch_message(
            f"collection '{info.name}'", info.pack_name, info.recognizer_id, pack.recognizer_id,
            remedy=f"An album's faces are of its pack '{pack.name}': promote into a collection of that pack, or "
                   f"create one (`faceatlas gallery create NAME --pack {pack.name}`){reembed}."))

    def recluster(self) -> ReclusterReport:
        """Cluster every placed face again under the constraints; a person keeps its id (and
        name) for the new cluster holding most of its faces. The faces of two named people are
        never put in one cluster (as a scan never joins them), so no name is lost to a merge."""
        with self._sessions() as session:
            rows = session.execute(select(FaceRow.id, FaceRow.person_id, FaceRow.lock).where(
                FaceRow.album_id == self._id, FaceRow.unsorted.is_(False)).order_by(FaceRow.id)).all()
            pairs = self._cannot_pairs(session)
            named = set(session.scalars(select(Person.id).where(Person.album_id == self._id,
                                                                Person.name.is_not(None))))
        if not rows:
            return ReclusterReport(0, 0, 0)
        ids = np.asarray([r[0] for r in rows], np.int64)
        _, vectors = self.gallery.face_vectors(COLLECTION, ids.tolist())
        row_of = {fid: n for n, fid in enumerate(ids.tolist())}
        locks = np.asarray([-1 if r[2] is None else r[2] for r in rows], np.int64)
        cannot = [(row_of[a], row_of[b]) for a, b in pairs if a in row_of and b in row_of]
        exclusive = np.asarray([r[1] if r[1] in named else -1 for r in rows], np.int64)
        labels = clustering.cluster(vectors, self.threshold, locks=locks, cannot=cannot, exclusive=exclusive)
        old = [r[1] for r in rows]
        person_of = self._match_people(labels, old, named)
        moves: dict[int, list[int]] = defaultdict(list)
        receivers: dict[int, set[int]] = defaultdict(set)  # who took whose faces
        for fid, label, before in zip(ids.tolist(), labels.tolist(), old):
            if person_of[label] != before:
                moves[person_of[label]].append(fid)
                if before is not None:
                    receivers[before].add(person_of[label])
        with self._sessions.begin() as session:
            for pid, faces in moves.items():
                session.execute(update(FaceRow).where(FaceRow.id.in_(faces)).values(person_id=pid))
            removed = len(self._drop_empty_people(session, receivers))
            token = self._bump(session) if moves else None
        if token is not None:
            self._advanced(token, partial(_Library.assign_faces, moves=dict(moves), vectors_of=self._vectors_of))
        for pid, faces in moves.items():
            self.gallery.move_faces(COLLECTION, faces, f"p{pid}")
        self._drop_empty_subjects()
        return ReclusterReport(sum(map(len, moves.values())), len(set(person_of.values())), removed)

    # -- internals -------------------------------------------------------------------------------
    def _assigned(self, faces: Sequence[int], person: int) -> partial[None]:
        """The cached library's change when ``faces`` become ``person``'s."""
        return partial(_Library.assign_faces, moves={person: list(faces)}, vectors_of=self._vectors_of)

    def _match_people(self, labels: np.ndarray, old: Sequence[int | None], named: set[int]) -> dict[int, int]:
        """Each new cluster's person: the old person with most of its faces (each old person
        used once; named people first, then biggest overlaps first), else a new person. A named
        person thus keeps its name on the cluster holding most of its faces, however many faces
        of an unnamed person share it."""
        overlap = Counter((int(label), pid) for label, pid in zip(labels.tolist(), old) if pid is not None)
        out: dict[int, int] = {}
        used: set[int] = set()
        for (label, pid), _ in sorted(overlap.items(), key=lambda kv: (kv[0][1] not in named, -kv[1], kv[0])):
            if label not in out and pid not in used:
                out[label] = pid
                used.add(pid)
        fresh = sorted(set(labels.tolist()) - set(out))
        if fresh:
            with self._sessions.begin() as session:
                people = [Person(album_id=self._id) for _ in fresh]
                session.add_all(people)
                session.flush()
                out.update({label: p.id for label, p in zip(fresh, people)})
        return out

    def _erase(self, faces_of: Callable[[Session], list[int]], *, person: int | None = None,
               photo: int | None = None) -> Erasure:
        """Erase the faces ``faces_of`` picks (called before the vectors go, and again in the
        transaction that removes the rows): first their vectors, crops and index entries (the
        subject of ``person`` whole), then their rows and constraints, the people left with no face
        (``person`` however many it has), the photos left with no face (``photo`` whatever it
        holds). The process's cached library of the album goes first (no vector of theirs stays in
        memory to match) and the album's revision goes up, so other processes reload theirs. A run
        cut short leaves rows whose vectors are gone (a placement leaves them out): running it
        again finishes the job."""
        with LIBRARIES.lock(self._engine, self._id):  # no placement of this process meanwhile
            LIBRARIES.drop(self._engine, self._id)
            with self._sessions() as session:
                chosen = faces_of(session)  # NotFound before anything goes
            if person is not None:
                with suppress(NotFound):
                    self.gallery.delete_subject(COLLECTION, f"p{person}")
            for face in chosen if person is None else ():
                with suppress(NotFound):
                    self.gallery.delete_face(COLLECTION, face)
            with self._sessions.begin() as session:
                faces = faces_of(session)
                rows = session.execute(select(FaceRow.person_id, FaceRow.photo_id, FaceRow.lock).where(
                    FaceRow.album_id == self._id, FaceRow.id.in_(faces))).all()
                session.execute(delete(CannotLink).where(CannotLink.face_a.in_(faces) | CannotLink.face_b.in_(faces)))
                session.execute(delete(FaceRow).where(FaceRow.id.in_(faces)))
                for old_lock in {r.lock for r in rows if r.lock is not None}:  # named after a face gone, maybe
                    rest = list(session.scalars(select(FaceRow.id).where(FaceRow.album_id == self._id,
                                                                         FaceRow.lock == old_lock)))
                    if rest:
                        session.execute(update(FaceRow).where(FaceRow.id.in_(rest)).values(lock=min(rest)))
                people = {r.person_id for r in rows if r.person_id is not None}
                if person is not None:
                    people.add(person)
                held = set(session.scalars(select(FaceRow.person_id).where(FaceRow.person_id.in_(people))))
                gone = sorted(people - held)
                ids, names = self._forget_people(session, gone)
                photos = {r.photo_id for r in rows} | ({photo} if photo is not None else set())
                kept = set(session.scalars(select(FaceRow.photo_id).where(FaceRow.photo_id.in_(photos))))
                emptied = sorted(photos - kept)
                session.execute(delete(Photo).where(Photo.album_id == self._id, Photo.id.in_(emptied)))
                self._bump(session)
            self._drop_subjects(p for p in gone if p != person)
            LIBRARIES.drop(self._engine, self._id)
        return Erasure(faces_deleted=len(faces), photos_deleted=len(emptied), people_deleted=len(gone),
                       people=tuple(f"p{p}" for p in ([person] if person is not None else []) +
                                    [p for p in gone if p != person]),
                       ids=tuple(ids), names=tuple(names), face_ids=tuple(faces))

    def _drop_subjects(self, people: Iterable[int]) -> None:
        """Delete the gallery subjects of people removed (their faces moved or erased: none left)."""
        for pid in people:
            with suppress(NotFound):
                self.gallery.delete_subject(COLLECTION, f"p{pid}")

    def _drop_empty_subjects(self) -> None:
        with self._sessions() as session:
            live = {f"p{pid}" for pid in session.scalars(select(Person.id).where(Person.album_id == self._id))}
        after: str | None = None
        while True:
            page = self.gallery.list_subjects(COLLECTION, limit=500, after=after)
            for subject in page.items:
                if subject.faces == 0 and subject.external_id not in live and subject.external_id != UNSORTED:
                    self.gallery.delete_subject(COLLECTION, subject.external_id)
            if page.next_cursor is None:
                return
            after = page.next_cursor

    def _person_faces(self, session: Session, pid: int) -> list[int]:
        return list(session.scalars(select(FaceRow.id).where(FaceRow.person_id == pid).order_by(FaceRow.id)))

    def _relocate(self, session: Session, faces: list[int], target: int, *, lock: bool) -> set[int]:
        """Move ``faces`` to the person ``target``: cannot-linked with the faces of the people
        they leave, out of their old locks, must-linked with the target when ``lock``. Returns the
        people they left."""
        rows = list(session.scalars(select(FaceRow).where(FaceRow.album_id == self._id, FaceRow.id.in_(faces))))
        if len(rows) != len(set(faces)):
            raise NotFound(f"a face of {faces} is not in album '{self.name}'")
        left = {r.person_id for r in rows if r.person_id is not None and r.person_id != target}
        old_locks = {r.lock for r in rows if r.lock is not None}
        for pid in left:
            others = [f for f in self._person_faces(session, pid) if f not in faces]
            self._unlink(session, faces, others)  # no duplicate pairs
            session.add_all(CannotLink(album_id=self._id, face_a=a, face_b=b) for a in faces for b in others)
        session.execute(update(FaceRow).where(FaceRow.id.in_(faces)).values(person_id=target, unsorted=False,
                                                                           lock=None))
        for old_lock in old_locks:  # a lock the faces leave keeps its other members (renamed if it was one of them)
            rest = list(session.scalars(select(FaceRow.id).where(FaceRow.lock == old_lock)))
            if rest:
                session.execute(update(FaceRow).where(FaceRow.id.in_(rest)).values(lock=min(rest)))
        if lock:
            self._unlink(session, faces, self._person_faces(session, target))
            self._lock(session, self._person_faces(session, target))
        return left


def _sources(gallery: Gallery, collection: str, subject: str) -> set[str]:
    """The sources of the faces ``subject`` holds in ``collection`` (none when it is not there yet)."""
    held: set[str] = set()
    after = None
    while True:
        try:
            page = gallery.list_faces(collection, subject=subject, limit=1000, after=after)
        except NotFound:
            return held
        held.update(face.source for face in page.items if face.source)
        if page.next_cursor is None:
            return held
        after = page.next_cursor
