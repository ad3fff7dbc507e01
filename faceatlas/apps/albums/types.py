"""Plain result types of the albums app."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from faceatlas.db import utc_text
from faceatlas.gallery import Rejection


@dataclass(frozen=True)
class AlbumFace:
    """A face of an album photo; ``person`` None: in the unsorted pool."""

    id: int
    photo_id: int
    source: str
    bbox: list[float]
    quality: float
    yaw: float
    person: str | None
    unsorted: bool

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class PersonInfo:
    """A person of the album: ``id`` like ``p12``, its face count and cover face (the best quality)."""

    id: str
    name: str | None
    faces: int
    cover_face: int | None
    cover_source: str | None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class PhotoInfo:
    """A photo of the album, with its EXIF date when it has one."""

    id: int
    source: str
    taken_at: datetime | None
    added_at: datetime

    def to_dict(self) -> dict[str, Any]:  # the EXIF date is the camera's local time: no offset
        return {**asdict(self), "taken_at": self.taken_at.isoformat() if self.taken_at else None,
                "added_at": utc_text(self.added_at)}


@dataclass(frozen=True)
class ContactSheet:
    """A contact sheet written: its file, its tiles (one per face) and the photos that could
    not be read (moved, deleted, or a path relative to where an old scan ran), each once: their
    faces are grey tiles."""

    path: Path
    faces: int
    unreadable: list[str]

    def to_dict(self) -> dict[str, Any]:
        return {"path": str(self.path), "faces": self.faces, "unreadable": list(self.unreadable)}


@dataclass(frozen=True)
class PhotoListing:
    """The photos under a folder that a scan adds (``paths``, at least one), the HEIC/HEIF
    photos it leaves out (``left_out``, resolved paths) and the entries named as photos that are no
    file to read (``unreadable``: a dangling link, a FIFO, a socket, a device; never opened), each
    a :class:`~faceatlas.gallery.Rejection` (``invalid_image``), which a scan reports among its ``failed``:
    :func:`~faceatlas.apps.albums.list_photos`."""

    folder: Path
    paths: list[Path]
    left_out: list[str]
    unreadable: list[Rejection] = field(default_factory=list)


@dataclass
class ScanReport:
    """What a scan did: photos added, skipped (already scanned; ``moved`` of them were found at
    a new path, which the album now holds), ``changed`` (paths the album held whose content changed:
    the old photo and its faces were dropped, the new content added or skipped as any photo),
    failed (each a :class:`~faceatlas.gallery.Rejection`: a photo that did not decode, or an entry named
    as a photo that is no file to read, a dangling link or a FIFO, never opened nor counted as a photo),
    left out (HEIC/HEIF photos, which FaceAtlas does not decode); faces placed with people, faces in
    the unsorted pool, people created. ``erased``: what dropping the changed photos erased, for
    the door (not in :meth:`to_dict`: the erasures name people)."""

    photos: int = 0
    skipped: int = 0
    moved: int = 0
    changed: int = 0
    failed: list[Rejection] = field(default_factory=list)
    left_out: list[str] = field(default_factory=list)  # HEIC/HEIF photos under the folder: not decoded
    faces: int = 0
    unsorted: int = 0
    new_people: int = 0
    erased: list[Erasure] = field(default_factory=list, repr=False)

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        del out["erased"]
        out["failed"] = [rejection.to_dict() for rejection in self.failed]  # {"source", "error", "message"}
        return out


@dataclass(frozen=True)
class ReclusterReport:
    """What a re-cluster did: faces that changed person, people now, people removed."""

    moved: int
    people: int
    removed: int

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class Erasure:
    """What an erasure removed (a person, a photo, a face, a whole album): faces with their vectors,
    crops and constraints; photos left with no face of anyone (a photo's row keeps its hash and
    path, and the album skipped that photo for good when it was added again); people left with no
    face. ``people`` are the ids of the people removed, ``ids`` every person id that held their
    faces (theirs and the ids absorbed into them), ``names`` their names and ``face_ids`` the faces
    removed: what a door erases of them where it keeps them (stored answers, its audit trail).
    :meth:`to_dict` holds only the counts, which name no one."""

    faces_deleted: int
    photos_deleted: int
    people_deleted: int
    people: tuple[str, ...] = ()
    ids: tuple[str, ...] = ()
    names: tuple[str, ...] = ()
    face_ids: tuple[int, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        return {"faces_deleted": self.faces_deleted, "photos_deleted": self.photos_deleted,
                "people_deleted": self.people_deleted}
