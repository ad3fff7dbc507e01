"""Plain result types returned by :class:`faceatlas.gallery.Gallery` (no ORM objects leak out)."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any, Generic, Literal, TypeVar

from faceatlas.db import utc_text
from faceatlas.engine import Face
from faceatlas.errors import (
    EmptyImage,
    FaceAtlasError,
    ImageTooLarge,
    InvalidImage,
    InvalidInput,
    LowQuality,
    NoFace,
    Rejection,
    TooManyFaces,
    TruncatedImage,
)

T = TypeVar("T")
Aggregate = Literal["best", "mean"]
AGGREGATES: tuple[Aggregate, ...] = ("best", "mean")  # a subject's score: its best face, or its mean template


SCORE_DIGITS = 4  # similarities and thresholds in answers (compare's too: FaceAnalyzer's Comparison)


def _rounded(out: dict[str, Any], *keys: str) -> dict[str, Any]:
    """``out`` with the scores under ``keys`` rounded to :data:`SCORE_DIGITS` (None stays None)."""
    for key in keys:
        if out[key] is not None:
            out[key] = round(out[key], SCORE_DIGITS)
    return out


@dataclass(frozen=True)
class CollectionInfo:
    """A collection and the model pack its embeddings belong to."""

    name: str
    pack_name: str
    pack_version: str
    recognizer_id: str
    embedding_size: int
    keep_crops: bool
    metadata: dict[str, Any]
    subjects: int | None  # None: not counted (``Gallery.get_collection(counts=False)``)
    faces: int | None
    created_at: datetime

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "created_at": utc_text(self.created_at)}


@dataclass(frozen=True)
class SubjectInfo:
    """A subject (person) of a collection."""

    external_id: str
    name: str | None
    metadata: dict[str, Any]
    faces: int
    created_at: datetime
    updated_at: datetime

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "created_at": utc_text(self.created_at), "updated_at": utc_text(self.updated_at)}


@dataclass(frozen=True)
class SubjectChange:
    """A subject after an update, and whether the update ``changed`` it (a call that changes
    nothing, as the same name again or no field, writes no audit record)."""

    subject: SubjectInfo
    changed: bool


@dataclass(frozen=True)
class FaceInfo:
    """One enrolled face (its embedding stays in the database)."""

    id: int
    subject: str
    quality: float | None
    source: str | None
    created_at: datetime

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "created_at": utc_text(self.created_at)}


@dataclass(frozen=True)
class Page(Generic[T]):
    """One page of a listing; pass ``next_cursor`` back as ``after`` for the next page (None: last)."""

    items: list[T]
    next_cursor: str | None


@dataclass(frozen=True)
class Match:
    """A subject found by a search: one identity however many of its faces matched.

    ``similarity`` is the score used for ranking and thresholding (best-of or mean template);
    ``matched_faces`` the subject's faces among those the search read that reach a best-of cut
    (every one read when the search ranks only or scores mean templates)."""

    external_id: str
    name: str | None
    similarity: float
    best_similarity: float
    best_face_id: int
    matched_faces: int
    mean_similarity: float | None = None
    far_level: float | None = None
    metadata: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return _rounded(asdict(self), "similarity", "best_similarity", "mean_similarity")


@dataclass(frozen=True)
class Identified:
    """One query face of a 1:N search (None: a search by embedding) and the subjects it matched;
    ``unknown`` is whether none reached the cut (None where the search ranked without deciding)."""

    face: Face | None
    matches: list[Match]
    unknown: bool | None

    def to_dict(self) -> dict[str, Any]:
        """As the API, the CLI's ``--json`` and the Python client read a result."""
        return {"face": None if self.face is None else self.face.to_dict(),
                "matches": [m.to_dict() for m in self.matches], "unknown": self.unknown}


@dataclass(frozen=True)
class Verification:
    """The answer to "is this face subject X"."""

    external_id: str
    match: bool
    similarity: float
    threshold: float
    best_similarity: float
    mean_similarity: float
    far_level: float | None

    def to_dict(self) -> dict[str, Any]:
        return _rounded(asdict(self), "similarity", "threshold", "best_similarity", "mean_similarity")


# the errors of the tree whose codes a rejection carries (see :func:`rejection_error`)
_REJECTION_ERRORS: dict[str, type[FaceAtlasError]] = {
    cls.code: cls for cls in (InvalidImage, EmptyImage, TruncatedImage, ImageTooLarge, NoFace, TooManyFaces, LowQuality)
}


def rejection_error(rejected: Iterable[Rejection], message: str) -> FaceAtlasError:
    """``message`` as the error of the tree that the ``rejected`` share: the class of their one
    code (:class:`NoFace`, :class:`TooManyFaces`, :class:`LowQuality`, :class:`InvalidImage` or its
    kinds), else :class:`InvalidInput` (``bad_request``: reasons of several kinds)."""
    codes = {rejection.code for rejection in rejected}
    kind = _REJECTION_ERRORS.get(codes.pop(), InvalidInput) if len(codes) == 1 else InvalidInput
    return kind(message)


@dataclass
class EnrolReport:
    """What an enrolment added and what it refused (:class:`Rejection`); ``faces``: the enrolled
    faces when they were given analysed (:meth:`Gallery.enrol_faces`); ``found``: (source, how many
    faces the image holds) of each image read (:meth:`Gallery.enrol_images`: a group photo of which
    only the largest face was enrolled says so)."""

    added: list[int] = field(default_factory=list)
    rejected: list[Rejection] = field(default_factory=list)
    faces: list[Any] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)  # sources enrolled to the subject before (``once``)
    found: list[tuple[str, int]] = field(default_factory=list)
    created_subject: bool = False  # the subject was created by this enrolment (audited as such by the service)
    renamed: bool = False  # the name given renamed the existing subject (audited as a subject.update by the service)


@dataclass
class ReembedReport:
    """Outcome of migrating a collection to another pack.

    ``unmigratable``: faces without a stored source crop; ``failed``: crops where the new pack
    found no face. ``applied`` is False when nothing was changed because of those."""

    migrated: int = 0
    unmigratable: list[int] = field(default_factory=list)
    failed: list[int] = field(default_factory=list)
    applied: bool = False
