"""A small Python client for a FaceAtlas server (``faceatlas serve``).

>>> client = FaceAtlasClient("http://127.0.0.1:8000", api_key="fa_...")
>>> [face.bbox for face in client.detect("group.jpg").faces]

Answers are small frozen, hashable dataclasses (``DetectResult``, ``CompareResult``, ``Collection``,
``Subject``, ``SearchResult``, ...) parsed from the JSON; each keeps the JSON itself as ``raw`` (plain
dicts and lists). In a field, a JSON list is a tuple and an object a plain dict (a copy of its own);
such fields are compared but left out of the hash.
This module imports nothing else of faceatlas: it ships on its own.
"""

from __future__ import annotations

import contextlib
import contextvars
import dataclasses
import errno
import io
import json
import math
import os
import re
import stat
import tempfile
import threading
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from email.utils import parsedate_to_datetime
from pathlib import Path
from typing import IO, Any, TypeVar
from urllib.parse import quote
from urllib.request import getproxies

import httpx

__all__ = [
    "AlbumDeletion",
    "AlbumErasure",
    "AlbumFace",
    "AlbumPerson",
    "AlbumPhoto",
    "AlbumPromotion",
    "AlbumRecluster",
    "AlbumScan",
    "ApiKey",
    "AuditEvent",
    "CameraCounts",
    "Collection",
    "CompareResult",
    "ConsentWithdrawal",
    "DEFAULT_FAR",
    "DetectResult",
    "EnrolResult",
    "Face",
    "FaceAtlasApiError",
    "FaceAtlasClient",
    "FaceAtlasClientError",
    "FaceAtlasTransportError",
    "ImageArg",
    "IssuedKey",
    "KycSession",
    "KycSessionPage",
    "LivenessResult",
    "MAX_ANSWER_BYTES",
    "MAX_UPLOAD_BYTES",
    "Match",
    "MinuteCount",
    "RetailAlert",
    "RetailAlertResolution",
    "RetailCart",
    "RetailCartLine",
    "RetailErasure",
    "RetailMember",
    "RetailOccupancy",
    "RetailPayment",
    "RetailProduct",
    "RetailProductRemoval",
    "RetailRefund",
    "RetailReport",
    "RetailReportRow",
    "SearchResult",
    "SearchResults",
    "Subject",
    "SubjectPage",
    "TenantSettings",
    "Usage",
    "UsageRow",
    "Verification",
    "VideoEvent",
]

ImageArg = str | os.PathLike | bytes | bytearray | memoryview | IO[bytes]
# The server's default false-accept rate (faceatlas.engine.DEFAULT_FAR; the client imports nothing
# of the server, a test keeps the two equal).
DEFAULT_FAR = 1e-4


class FaceAtlasClientError(Exception):
    """Every error of this client (catch this one): what it cannot send (an API key or id no
    server accepts, a file too large), an answer that is not FaceAtlas's (a proxy's redirect or
    login page), and the subclasses :class:`FaceAtlasApiError` (the server answered an error) and
    :class:`FaceAtlasTransportError` (no answer). ``code`` names it as the server's codes do."""

    code = "client_error"

    def __init__(self, message: str, code: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code


class FaceAtlasApiError(FaceAtlasClientError):
    """An error answer of the server, with its stable ``code``, HTTP status and Retry-After (seconds)."""

    def __init__(self, status: int, code: str, message: str, retry_after: float | None) -> None:
        super().__init__(message, code)
        self.status = status
        self.retry_after = retry_after

    def __str__(self) -> str:
        wait = f" (retry in {self.retry_after:g} s)" if self.retry_after is not None else ""
        return f"{self.status} {self.code}: {self.message}{wait}"


class FaceAtlasTransportError(FaceAtlasClientError):
    """No answer: the server refused or dropped the connection, or sent none within the client's
    ``timeout`` (``code`` ``timeout``). A write may have been applied all the same: retry it with
    the same ``idempotency_key`` to apply it once."""

    code = "server_unreachable"


T = TypeVar("T")


def _parse(cls: type[T], data: dict[str, Any], **nested: Any) -> T:
    """``cls`` from the JSON object ``data``: its known fields (missing ones take their defaults),
    ``nested`` values already parsed, and ``raw``."""
    if not isinstance(data, dict):
        raise _not_ours(f"a {type(data).__name__} where {cls.__name__} was expected")
    names = {f.name for f in dataclasses.fields(cls)} - {"raw"}  # type: ignore[arg-type]
    values = {k: _field(v) for k, v in data.items() if k in names}
    try:
        return cls(**{**values, **nested, "raw": _plain(data)})
    except TypeError as exc:  # a field missing: not an answer of this API
        raise _not_ours(f"{cls.__name__} lacks a field ({exc})") from None


class _Answer(dict):
    """A JSON object of an answer: a missing key is :class:`FaceAtlasClientError` (an answer of
    something else than the FaceAtlas API), not a KeyError deep in a parse."""

    def __missing__(self, key: str) -> Any:
        raise _not_ours(f"no '{key}' in the answer")


def _not_ours(detail: str) -> FaceAtlasClientError:
    return FaceAtlasClientError(f"the answer is not the FaceAtlas API's ({detail}): is the server URL that "
                                "of a FaceAtlas server, of a version this client knows?", "unexpected_answer")


def _seg(value: str) -> str:
    """``value`` as one URL path segment: percent-encoded, so that an id such as ``a/../b``, ``x?y``
    or ``..`` names itself (never another path the URL would resolve to)."""
    text = str(value)
    return quote(text, safe="") if text.strip(".") else "%2E" * len(text)


def _field(value: Any) -> Any:
    """A field's value as the user gets it: a list as a tuple (an answer is hashable), an object
    as a plain dict (:func:`_plain`; left out of the hash)."""
    if isinstance(value, list):
        return tuple(_field(v) for v in value)
    return _plain(value)


def _plain(value: Any) -> Any:
    """The JSON as plain dicts and lists, a copy per field and for ``raw`` (a missing key is a
    KeyError, ``json.dumps`` takes it, and changing it changes no other field): none of the
    client's own answer type."""
    if isinstance(value, list):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    return value


def _raw() -> Any:
    """The ``raw`` field: the JSON the answer was parsed from, plain dicts and lists (left out of
    repr, == and hash)."""
    return field(default_factory=dict, repr=False, compare=False)


def _mapping() -> Any:
    """An optional field holding a JSON object (a plain dict): compared, but left out of the hash
    (a dict has none), so that every answer is hashable."""
    return field(default=None, hash=False)


@dataclass(frozen=True)
class Face:
    """A detected face: box (x1, y1, x2, y2), detector score, 5 keypoints; quality, pose,
    liveness score, attributes (gender, gender_score, age, emotion, emotion_scores) and embedding
    (with its ``recognizer_id``) when the server sent them."""

    bbox: tuple[float, ...]
    det_score: float
    keypoints: tuple[tuple[float, ...], ...]
    quality: float | None = None
    pose: Mapping[str, float] | None = _mapping()
    liveness: float | None = None
    attributes: Mapping[str, Any] | None = _mapping()
    embedding: tuple[float, ...] | None = field(default=None, repr=False)
    recognizer_id: str | None = None
    raw: dict[str, Any] = _raw()

    @classmethod
    def of(cls, data: dict[str, Any] | None) -> Face | None:
        return None if data is None else _parse(cls, data)


def _items(data: dict[str, Any], key: str, *, optional: bool = False) -> list[dict[str, Any]]:
    """The JSON objects of the list under ``key`` (``optional``: none when it is missing); anything
    else there is an answer of something else (``"results": 5`` was a TypeError traceback)."""
    items = data.get(key, []) if optional else data[key]
    if not isinstance(items, list) or not all(isinstance(item, dict) for item in items):
        raise _not_ours(f"'{key}' is not a list of objects")
    return items


def _faces(data: dict[str, Any]) -> tuple[Face, ...]:
    return tuple(_parse(Face, f) for f in _items(data, "faces", optional=True))


@dataclass(frozen=True)
class DetectResult:
    pack: str
    faces: tuple[Face, ...]
    raw: dict[str, Any] = _raw()


@dataclass(frozen=True)
class CompareResult:
    """A 1:1 verdict: ``match`` (and ``threshold``) are None when the server's pack is uncalibrated;
    ``faces_in_image_a`` / ``_b``: how many faces each photo held (the largest is compared)."""

    similarity: float
    match: bool | None
    threshold: float | None
    far: float | None
    match_at_far: float | None
    pack: str
    faces_in_image_a: int | None = None
    faces_in_image_b: int | None = None
    raw: dict[str, Any] = _raw()


@dataclass(frozen=True)
class LivenessResult:
    """The liveness of the photo's largest face; ``faces_in_image``: how many it held."""

    real: bool
    score: float
    probabilities: tuple[float, ...]
    face: Face | None
    faces_in_image: int | None = None
    raw: dict[str, Any] = _raw()


@dataclass(frozen=True)
class Collection:
    name: str
    pack_name: str
    pack_version: str
    recognizer_id: str
    embedding_size: int
    keep_crops: bool
    metadata: Mapping[str, Any] = field(hash=False)  # a dict has no hash: left out of it
    subjects: int
    faces: int
    created_at: str
    raw: dict[str, Any] = _raw()


@dataclass(frozen=True)
class Subject:
    external_id: str
    name: str | None
    metadata: Mapping[str, Any] = field(hash=False)  # a dict has no hash: left out of it
    faces: int
    created_at: str
    updated_at: str
    raw: dict[str, Any] = _raw()


@dataclass(frozen=True)
class SubjectPage:
    """One page of subjects; pass ``next`` back as ``after`` (None: the last page)."""

    subjects: tuple[Subject, ...]
    next: str | None
    raw: dict[str, Any] = _raw()


@dataclass(frozen=True)
class EnrolResult:
    """``faces_in_image``: how many faces the photo held (only the largest is enrolled unless
    ``all_faces``; None from a server that does not say)."""

    face_ids: tuple[int, ...]
    faces: tuple[Face, ...]
    rejected: int
    faces_in_image: int | None = None
    raw: dict[str, Any] = _raw()


@dataclass(frozen=True)
class Match:
    """A subject found by a search (one entry per subject however many of its faces matched)."""

    external_id: str
    name: str | None
    similarity: float
    best_similarity: float
    best_face_id: int
    matched_faces: int
    mean_similarity: float | None = None
    far_level: float | None = None
    metadata: Mapping[str, Any] = field(default_factory=dict, hash=False)
    raw: dict[str, Any] = _raw()


@dataclass(frozen=True)
class SearchResult:
    """The matches of one query face (``face`` is None for a search by embedding)."""

    face: Face | None
    matches: tuple[Match, ...]
    unknown: bool | None = None  # True: nobody enrolled reached the threshold; None: ranked, not decided
    raw: dict[str, Any] = _raw()


class SearchResults(list[SearchResult]):
    """What :meth:`FaceAtlasClient.search` answers: its results, one per query face (a list, as
    before), and what the server said of them all: ``cut``, the cut it decided at as it names it
    (``{"fpir": 0.001}``, ``{"far": ...}``, ``{"threshold": ...}``; ``{}`` when it ranked without
    deciding), ``faces_in_image`` (how many faces the photo held: only the largest was searched
    unless ``all_faces``) and ``raw``, the whole answer."""

    cut: dict[str, float]
    faces_in_image: int | None
    raw: dict[str, Any]

    def __init__(self, results: Iterable[SearchResult], data: dict[str, Any]) -> None:
        super().__init__(results)
        self.cut = {name: data[name] for name in ("threshold", "far", "fpir") if data.get(name) is not None}
        found = data.get("faces_in_image")
        self.faces_in_image = found if isinstance(found, int) and not isinstance(found, bool) else None
        self.raw = _plain(data)


@dataclass(frozen=True)
class Verification:
    """Is the image's largest face this subject? ``faces_in_image``: how many faces the photo held."""

    external_id: str
    match: bool
    similarity: float
    threshold: float
    best_similarity: float
    mean_similarity: float
    far_level: float | None
    face: Face | None
    faces_in_image: int | None = None
    raw: dict[str, Any] = _raw()


@dataclass(frozen=True)
class UsageRow:
    tenant: str
    day: str
    operation: str
    calls: int
    faces: int
    errors: int
    failed: int = 0  # calls that failed on the server (5xx): recorded, not billed
    raw: dict[str, Any] = _raw()


@dataclass(frozen=True)
class Usage:
    tenant: str
    rows: tuple[UsageRow, ...]
    raw: dict[str, Any] = _raw()


@dataclass(frozen=True)
class ApiKey:
    """One of the tenant's API keys as listed (never its secret): scopes, rate limit, revocation."""

    prefix: str
    name: str
    scopes: tuple[str, ...]
    rate_per_second: float
    burst: int
    created_at: str
    revoked: bool
    raw: dict[str, Any] = _raw()


@dataclass(frozen=True)
class IssuedKey:
    """A key just issued (created or rotated): ``key`` is the full secret, answered only this once
    (left out of repr, as ``raw`` is)."""

    key: str = field(repr=False)
    prefix: str
    scopes: tuple[str, ...]
    raw: dict[str, Any] = _raw()


@dataclass(frozen=True)
class AuditEvent:
    """One record of the tenant's audit trail: who (``key_id``) did what (``action``) to what (``target``)."""

    at: str
    action: str
    target: str
    key_id: int | None
    details: Mapping[str, Any] | None = _mapping()
    raw: dict[str, Any] = _raw()


@dataclass(frozen=True)
class VideoEvent:
    """An event of `faceatlas watch` stored by its database sink (watchlist hit, line crossing, ...)."""

    id: str
    type: str
    camera: str
    frame: int
    video_time: float
    wall_time: str
    track_id: int | None = None
    kind: str | None = None
    data: Mapping[str, Any] = field(default_factory=dict, hash=False)
    raw: dict[str, Any] = _raw()


@dataclass(frozen=True)
class MinuteCount:
    """A camera's counts of one class (``label``: the answer's ``class``) in one minute: objects
    seen, line crossings (``in:<line>``, ``out:<line>``), zone occupancy."""

    camera: str
    minute: str
    label: str
    counts: Mapping[str, float] = field(hash=False)
    raw: dict[str, Any] = _raw()


@dataclass(frozen=True)
class CameraCounts:
    """A camera's per-minute counts, oldest first; ``truncated``: more minutes in the range than the
    limit, ask again from ``next_from``."""

    camera: str
    counts: tuple[MinuteCount, ...]
    truncated: bool = False
    next_from: str | None = None
    raw: dict[str, Any] = _raw()


@dataclass(frozen=True)
class KycSession:
    """An identity verification session: its challenge, then its decision (``accepted``) and reasons."""

    id: str
    status: str
    accepted: bool | None
    challenge: tuple[str, ...]
    created_at: str
    expires_at: str
    decided_at: str | None = None
    reasons: tuple[str, ...] = ()
    details: Any = _mapping()
    raw: dict[str, Any] = _raw()


@dataclass(frozen=True)
class KycSessionPage:
    """One page of KYC sessions, newest first; pass ``next`` back as ``after`` (None: the last page)."""

    sessions: tuple[KycSession, ...]
    next: str | None
    raw: dict[str, Any] = _raw()


@dataclass(frozen=True)
class RetailProduct:
    """A product on sale in a store; price in minor units (cents) of the store's ``currency`` (the
    listing says it: None in the answer of a single product's write)."""

    sku: str
    name: str
    price_cents: int
    currency: str | None = None
    raw: dict[str, Any] = _raw()


@dataclass(frozen=True)
class RetailProductRemoval:
    """A product taken off sale; ``open_carts`` still hold it at the price picked."""

    sku: str
    deleted: bool
    open_carts: int
    raw: dict[str, Any] = _raw()


@dataclass(frozen=True)
class RetailMember:
    """A store member: consented purposes and how many face vectors the store holds (0 once
    withdrawn); ``faces_in_image``, in the answer of an enrolment or a new grant: how many faces
    the photo held (one: a photo of several people is refused, ``too_many_faces``; None elsewhere)."""

    id: str
    name: str
    enrolled_at: str
    purposes: tuple[str, ...]
    faces: int
    has_payment_method: bool
    faces_in_image: int | None = None
    raw: dict[str, Any] = _raw()


@dataclass(frozen=True)
class ConsentWithdrawal:
    """What withdrawing a member's consent did (``purposes``: what stays consented)."""

    member: str
    withdrawn: tuple[str, ...]
    purposes: tuple[str, ...]
    faces_deleted: int
    payment_method_removed: bool
    demographics_removed: bool
    raw: dict[str, Any] = _raw()


@dataclass(frozen=True)
class RetailErasure:
    """What erasing a member removed (faces, consents) and anonymised (visits, charges).
    ``member``: the erased member's id; None on a replay (a retry with the same Idempotency-Key),
    whose answer leaves the erased id out (it is not kept). It was a required field: a replay,
    which the server had answered correctly, raised ``unexpected_answer``."""

    member: str | None
    faces_deleted: int
    consents_deleted: int
    visits_anonymised: int
    charges_anonymised: int
    raw: dict[str, Any] = _raw()


@dataclass(frozen=True)
class RetailCartLine:
    """A cart's net quantity of a product at the price it was picked at."""

    sku: str
    quantity: int
    unit_price_cents: int
    raw: dict[str, Any] = _raw()


@dataclass(frozen=True)
class RetailCart:
    """A visit's cart: ``items`` (quantities summed) and ``total_cents``, line by line."""

    visit_id: int
    items: int
    total_cents: int
    lines: tuple[RetailCartLine, ...]
    raw: dict[str, Any] = _raw()


@dataclass(frozen=True)
class RetailPayment:
    """The outcome of face pay at a checkout: ``status`` charged, no_purchase, unpaid, refused or
    no_visit; ``repeated`` when the payment (its event) was handled already and nothing was charged again."""

    status: str
    visit_id: int | None
    member_id: str | None
    amount_cents: int
    charge_id: int | None
    alert: str | None
    repeated: bool
    raw: dict[str, Any] = _raw()


@dataclass(frozen=True)
class RetailRefund:
    refund_id: int
    charge_id: int
    raw: dict[str, Any] = _raw()


@dataclass(frozen=True)
class RetailAlert:
    """A staff alert of a store (e.g. an unpaid exit), until resolved."""

    id: int
    kind: str
    camera: str
    visit_id: int | None
    details: Mapping[str, Any] = field(hash=False)
    at: str
    resolved: bool
    raw: dict[str, Any] = _raw()


@dataclass(frozen=True)
class RetailAlertResolution:
    """An alert resolved; ``already_resolved``: it was before (nothing changed), ``resolved_at``
    the first resolution's time (None from a server that does not say)."""

    id: int
    resolved: bool
    already_resolved: bool = False
    resolved_at: str | None = None
    raw: dict[str, Any] = _raw()


@dataclass(frozen=True)
class RetailOccupancy:
    """The visits inside a store now (entered within ``window_hours`` and not left)."""

    store: str
    at: str
    inside: int
    members_inside: int
    window_hours: float
    raw: dict[str, Any] = _raw()


@dataclass(frozen=True)
class RetailReportRow:
    metric: str
    key: str
    value: float
    raw: dict[str, Any] = _raw()


@dataclass(frozen=True)
class RetailReport:
    """A store's analytics over the days ``first`` to ``last`` (the answer's ``from`` and ``to``):
    the ``summary`` (visits, conversion, ...) and the other metrics row by row."""

    store: str
    first: str
    last: str
    summary: Mapping[str, float] = field(hash=False)
    sections: tuple[RetailReportRow, ...] = ()
    raw: dict[str, Any] = _raw()


@dataclass(frozen=True)
class TenantSettings:
    """The tenant's settings: days a verification's reference face images are kept (0: none)."""

    tenant: str
    kyc_retention_days: int
    raw: dict[str, Any] = _raw()


@dataclass(frozen=True)
class AlbumScan:
    """What adding a photo to an album did: photos added (0: ``skipped``, the album had it), the
    ``failed`` ones (name, reason), faces placed with people, ``unsorted`` faces (kept out by the
    quality gate) and people new to the album."""

    photos: int
    skipped: int
    failed: tuple[tuple[str, str], ...]
    faces: int
    unsorted: int
    new_people: int
    raw: dict[str, Any] = _raw()


@dataclass(frozen=True)
class AlbumPerson:
    """A person of an album: id (``p12``), name (None until named), face count, cover face."""

    id: str
    name: str | None
    faces: int
    cover_face: int | None
    cover_source: str | None
    raw: dict[str, Any] = _raw()


@dataclass(frozen=True)
class AlbumFace:
    """A face of an album photo: box (x1, y1, x2, y2), quality, yaw; ``person`` None when unsorted."""

    id: int
    photo_id: int
    source: str
    bbox: tuple[float, ...]
    quality: float
    yaw: float
    person: str | None
    unsorted: bool
    raw: dict[str, Any] = _raw()


@dataclass(frozen=True)
class AlbumPhoto:
    """A photo of an album: where it came from (``upload``), its EXIF date (ISO 8601, None when it
    has none), when it was added."""

    id: int
    source: str
    taken_at: str | None
    added_at: str
    raw: dict[str, Any] = _raw()


@dataclass(frozen=True)
class AlbumRecluster:
    """What a re-cluster did: faces that changed person, people now, people removed."""

    moved: int
    people: int
    removed: int
    raw: dict[str, Any] = _raw()


@dataclass(frozen=True)
class AlbumPromotion:
    """An album person's faces enrolled as ``subject`` of a gallery collection (``faces``: those
    enrolled by this call; 0 when the subject held them all already)."""

    collection: str
    subject: str
    faces: int
    raw: dict[str, Any] = _raw()


@dataclass(frozen=True)
class AlbumErasure:
    """An album person erased: every face, vector, crop and constraint of theirs and the photos left
    with no face (``photos_deleted``). Copies promoted into a gallery collection are its own.
    ``person``: the erased person as the call named them; None on a replay (a retry with the same
    Idempotency-Key), whose answer leaves them out (they are not kept). It was a required field: a
    replay, which the server had answered correctly, raised ``unexpected_answer``."""

    person: str | None
    faces_deleted: int
    photos_deleted: int = 0
    raw: dict[str, Any] = _raw()


@dataclass(frozen=True)
class AlbumDeletion:
    """What deleting an album, one of its photos or one of its faces deleted: faces (with their
    vectors and crops), photos (the one deleted, or those left with no face) and people (every
    person of a deleted album, or those left with no face). ``raw`` names what was deleted
    (``album``, ``photo`` or ``face``)."""

    faces_deleted: int
    photos_deleted: int
    people_deleted: int
    raw: dict[str, Any] = _raw()


MAX_UPLOAD_BYTES = 64 * 1024 * 1024  # an image file sent at most (servers refuse far less: 15 MB by default)
MAX_ANSWER_BYTES = 256 * 1024 * 1024  # an answer read at most


def _too_large(what: object, size: int) -> FaceAtlasClientError:
    return FaceAtlasClientError(f"{what}: {size:,} bytes, above the {MAX_UPLOAD_BYTES:,} this client "
                                "sends (the server's limit is lower: 15 MB by default)", "payload_too_large")


def _image(name: str, image: ImageArg) -> tuple[str, tuple[str, bytes, str]]:
    """A multipart file part: the bytes of a bytes-like object (bytes, bytearray, memoryview) or
    of a binary file object (read from where it stands), or a regular file's bytes by its path (a
    device, a FIFO or a file above :data:`MAX_UPLOAD_BYTES` is refused before anything is read;
    bytes above it are refused before anything is sent: they were uploaded whole, for the server
    to refuse). Anything else (an array, a PIL image, a URL) is refused, saying what is accepted."""
    if isinstance(image, (bytes, bytearray, memoryview)):
        size = memoryview(image).nbytes
        if size > MAX_UPLOAD_BYTES:
            raise _too_large(f"the {name} bytes", size)
        return name, (name, bytes(image), "application/octet-stream")
    if callable(getattr(image, "read", None)):
        content = None if isinstance(image, io.TextIOBase) else image.read(MAX_UPLOAD_BYTES + 1)  # type: ignore[union-attr]
        if not isinstance(content, (bytes, bytearray)):
            raise FaceAtlasClientError(f"the {name} file object reads text, not bytes: "
                                       "open it in binary mode ('rb')", "invalid_argument")
        if len(content) > MAX_UPLOAD_BYTES:
            raise _too_large(f"the {name} file object", len(content))
        file_name = getattr(image, "name", None)
        return name, (Path(file_name).name if isinstance(file_name, str) and file_name else name,
                      bytes(content), "application/octet-stream")
    if not isinstance(image, (str, os.PathLike)):
        raise FaceAtlasClientError(f"the {name} is a {type(image).__name__}: give a file path, the image file's "
                                   "bytes (bytes, bytearray, memoryview) or a binary file object (e.g. "
                                   "open(path, 'rb'), io.BytesIO)", "invalid_argument")
    if isinstance(image, str) and re.match(r"(?i)https?://", image.strip()):
        raise FaceAtlasClientError(f"the {name} is a URL: this client sends image files (a path, bytes or a "
                                   "binary file object); fetch the image first", "invalid_argument")
    path = Path(image)
    info = path.stat()  # OSError (missing, unreadable) as Python says it; before open(), which waits on a FIFO
    if stat.S_ISDIR(info.st_mode):
        raise IsADirectoryError(errno.EISDIR, os.strerror(errno.EISDIR), str(path))
    if not stat.S_ISREG(info.st_mode):
        raise FaceAtlasClientError(f"{path}: not a regular file (an image file to send)", "invalid_argument")
    if info.st_size > MAX_UPLOAD_BYTES:
        raise _too_large(path, info.st_size)
    return name, (path.name, path.read_bytes(), "application/octet-stream")


def _header_value(value: str, what: str) -> str:
    """A header value as given (without surrounding whitespace, e.g. a CRLF file's), refused when
    it holds what no header may (the value itself is never repeated: it may be a secret)."""
    text = value.strip()
    if not text or not text.isascii() or not text.isprintable() or " " in text:
        raise FaceAtlasClientError(f"the {what} is empty or holds whitespace or non-ASCII characters "
                                   "(copy it again)", "invalid_argument")
    return text


def _once(idempotency_key: str | None) -> dict[str, str] | None:
    """The header of a write call that a retry with the same key repeats without acting twice."""
    if idempotency_key is None:
        return None
    return {"Idempotency-Key": _header_value(idempotency_key, "Idempotency-Key")}


def _retry_after(value: str | None) -> float | None:
    """Retry-After in seconds: a number, or an HTTP date (RFC 9110 allows both)."""
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        return max(0.0, parsedate_to_datetime(value).timestamp() - time.time())
    except (TypeError, ValueError, IndexError):
        return None


def _gist(body: bytes, limit: int = 160) -> str:
    """A short line of a body that is not the API's JSON: an HTML page's title (a proxy's "502 Bad
    Gateway"), or its text without tags, cut at ``limit`` characters."""
    text = body[:4096].decode("utf-8", "replace")
    title = re.search(r"(?is)<title[^>]*>(.*?)</title>", text)
    if title and title.group(1).strip():
        text = title.group(1)
    elif "<" in text:
        text = re.sub(r"(?s)<[^>]*>", " ", text)
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _error_of(response: httpx.Response, body: bytes) -> FaceAtlasApiError:
    """The server's error answer, whatever shape a proxy in between gave it."""
    try:
        error = json.loads(body)["error"]
        code, message = str(error["code"]), str(error["message"])
    except (ValueError, KeyError, TypeError):
        code, message = "http_error", _gist(body) or response.reason_phrase
    return FaceAtlasApiError(response.status_code, code, message, _retry_after(response.headers.get("retry-after")))


def _closed() -> FaceAtlasClientError:
    return FaceAtlasClientError("this client is closed (a call after close() or after its with block): make "
                                "a new FaceAtlasClient", "client_closed")


class _TimeLeft(dict):
    """The ``timeout`` extension of one call's request: httpx's per-phase timeouts (connect, pool,
    write, read), each the seconds left until the call's deadline when httpcore starts the phase
    (the connection, the request, the headers, the body), so that no phase waits past it."""

    PHASES = ("connect", "read", "write", "pool")

    def __init__(self, deadline: float) -> None:
        self._deadline = deadline
        super().__init__(dict.fromkeys(self.PHASES, self._left()))

    def _left(self) -> float:
        return max(self._deadline - time.monotonic(), 0.001)  # 0 would be a non-blocking socket, not a timeout

    def __getitem__(self, key: str) -> Any:
        return self._left() if key in self.PHASES else super().__getitem__(key)

    def get(self, key: str, default: Any = None) -> Any:
        return self._left() if key in self.PHASES else super().get(key, default)


def _late() -> httpx.ReadTimeout:
    return httpx.ReadTimeout("the whole call took longer than the client's timeout")


def _past(deadline: float) -> None:
    """A call past its deadline is a timeout, whatever came (e.g. over a transport that takes no timeouts)."""
    if time.monotonic() > deadline:
        raise _late()


def _send(http: httpx.Client, request: httpx.Request, deadline: float) -> httpx.Response:
    """``request`` sent and its answer's headers read, in a thread of its own waited on until
    ``deadline``: httpx's timeouts bound each read, so a server that sent its header lines a
    byte at a time within each read's timeout held the call for as long as it liked (a 204 came
    back a success long after the deadline). Past it, :func:`_late`; the thread lets go of the
    connection when the server is done or silent (its answer, if one comes, is closed unread)."""
    outcome: dict[str, Any] = {}
    lock = threading.Lock()
    done = threading.Event()

    def run() -> None:
        try:
            response = http.send(request, stream=True)
        except BaseException as exc:  # noqa: BLE001 (re-raised in the caller's thread)
            outcome["error"] = exc
            response = None
        with lock:
            outcome["response"] = response
            done.set()
            abandoned = outcome.get("abandoned", False)
        if abandoned and response is not None:
            response.close()

    threading.Thread(target=contextvars.copy_context().run, args=(run,), daemon=True,
                     name="faceatlas-client-call").start()
    try:
        done.wait(max(deadline - time.monotonic(), 0))
    finally:  # past the deadline, or interrupted (Ctrl-C)
        with lock:
            outcome["abandoned"] = not done.is_set()
    if outcome["abandoned"]:
        raise _late()
    if "error" in outcome:
        raise outcome["error"]
    return outcome["response"]


def _wire_error(exc: Exception, base_url: str, timeout: float) -> FaceAtlasTransportError:
    """No answer from ``base_url``, said with what to check (a proxy, http vs https)."""
    if isinstance(exc, httpx.TimeoutException):
        return FaceAtlasTransportError(f"no answer from {base_url} within {timeout:g} s (the client's timeout): "
                                       "the server is busy or unreachable", "timeout")
    text = str(exc) or type(exc).__name__
    hint = ""
    if "WRONG_VERSION_NUMBER" in text:
        hint = " (the server speaks plain http: use http://)"
    elif any(scheme in getproxies() for scheme in ("http", "https", "all")):  # what httpx takes from the environment
        hint = " (through the proxy of HTTP_PROXY/HTTPS_PROXY/ALL_PROXY: NO_PROXY=<host> bypasses it)"
    return FaceAtlasTransportError(f"cannot reach the server at {base_url}: {text}{hint}")


PARQUET = "application/vnd.apache.parquet"  # a collection export's media type


def _iso(moment: str | datetime | None) -> str | None:
    """A time as the API takes it: ISO 8601 (a naive datetime is UTC to the server)."""
    return moment.isoformat() if isinstance(moment, datetime) else moment


def _day(value: date | str) -> str:
    """A day as the API takes it: an ISO date; a datetime's day in UTC (a naive one is UTC)."""
    if isinstance(value, datetime):
        value = (value.astimezone(UTC) if value.tzinfo is not None else value).date()
    return value.isoformat() if isinstance(value, date) else value


def _days(start: date | str | None, end: date | str | None) -> dict[str, str]:
    """The ``from``/``to`` days of a report (ISO dates; a datetime is its day), those given."""
    return {k: _day(v) for k, v in (("from", start), ("to", end)) if v is not None}


def _cart(data: dict[str, Any]) -> RetailCart:
    return _parse(RetailCart, data, lines=tuple(_parse(RetailCartLine, line) for line in _items(data, "lines")))


def _search_options(k: int, fpir: float | None, far: float | None, threshold: float | None, rank_only: bool,
                    aggregate: str) -> dict[str, Any]:
    """The query of a search: ``k``, the cut given, ``rank_only`` and ``aggregate`` when not the
    server's defaults."""
    params: dict[str, Any] = {"k": k}
    if rank_only:
        params["rank_only"] = "true"
    params |= {name: v for name, v in (("far", far), ("fpir", fpir), ("threshold", threshold)) if v is not None}
    if aggregate != "best":
        params["aggregate"] = aggregate
    return params


def _search_results(data: dict[str, Any]) -> SearchResults:
    return SearchResults((_parse(SearchResult, result, face=Face.of(result.get("face")),
                                 matches=tuple(_parse(Match, m) for m in _items(result, "matches")))
                          for result in _items(data, "results")), data)


def _is(kind: str, expect: str) -> bool:
    """Is the answer's media type ``kind`` the one expected (``"image"``: any image type)?"""
    return kind.startswith("image/") if expect == "image" else kind == expect


class FaceAtlasClient:
    """Typed access to the ``/v1`` API; every method returns a frozen dataclass of the answer.
    A write method's ``idempotency_key``: a retry with the same key (after a timeout or a dropped
    connection) acts once and returns the first answer (``Idempotency-Key``, kept 24 h).

    ``http`` replaces the HTTP client (e.g. a ``fastapi.testclient.TestClient``, which is one)."""

    def __init__(
        self, base_url: str, api_key: str, *, timeout: float = 60.0, http: httpx.Client | None = None,
        max_answer_bytes: int = MAX_ANSWER_BYTES,
    ) -> None:
        """``timeout``: seconds for a whole call, from sending to the last byte of the answer."""
        if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or not 0 < timeout < math.inf:
            raise FaceAtlasClientError(f"the timeout is a number of seconds above 0, not {timeout!r}",
                                       "invalid_argument")
        self._owned = http is None
        self._timeout = timeout
        self._max_answer = max_answer_bytes
        self._auth = {"Authorization": f"Bearer {_header_value(api_key, 'API key')}"}
        if http is None:
            try:
                url = httpx.URL(base_url.rstrip("/"))
            except httpx.InvalidURL as exc:
                raise FaceAtlasClientError(f"invalid server URL (give http(s)://host[:port]): {exc}",
                                           "invalid_argument") from None
            if url.scheme not in ("http", "https") or not url.host:
                shown = str(url.copy_with(username=None, password=None))
                raise FaceAtlasClientError(f"invalid server URL {shown!r} (give http(s)://host[:port])",
                                           "invalid_argument")
            if url.userinfo:
                raise FaceAtlasClientError("the server URL holds a user and password: give the API key as "
                                           "api_key (FACEATLAS_API_KEY), not in the URL", "invalid_argument")
            if url.query or url.fragment or "?" in base_url or "#" in base_url:  # never echoed: it may hold a secret
                raise FaceAtlasClientError("the server URL holds a query string or a fragment ('?...', '#...'): give "
                                           "http(s)://host[:port] alone (parameters go with each call)",
                                           "invalid_argument")
            if url.path.rstrip("/").endswith("/v1"):
                raise FaceAtlasClientError(f"give the server URL without /v1 (the client adds it): "
                                           f"{str(url)[: -len(url.path)] or url}", "invalid_argument")
            try:
                http = httpx.Client(base_url=url, timeout=timeout)
            except ImportError as exc:  # e.g. ALL_PROXY=socks5://... without httpx[socks]
                raise FaceAtlasClientError(f"the proxy in the environment needs a package: {exc}",
                                           "invalid_argument") from None
        self._http = http
        self._base = str(http.base_url).rstrip("/")
        self._closed = False

    def close(self) -> None:
        """Close the client (its connections, when it made its own HTTP client): a call after this
        is :class:`FaceAtlasClientError` ``client_closed``."""
        self._closed = True
        if self._owned:
            self._http.close()

    def __enter__(self) -> FaceAtlasClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _call(self, method: str, path: str, extra_headers: dict[str, str] | None = None, *,
              expect: str = "json", sink: IO[bytes] | None = None, **kwargs: Any) -> Any:
        """One call: the answer's JSON (``expect="json"``) or bytes (``"image"``: of any image type;
        else of the media type ``expect`` names); an error answer is :class:`FaceAtlasApiError`, no
        answer within ``timeout`` in all (the request and the headers waited on until the deadline:
        :func:`_send`; each body read within the time left: :class:`_TimeLeft`)
        :class:`FaceAtlasTransportError` ``timeout``. With ``sink``, the bytes
        of a successful answer are written there as they come (none held, ``max_answer_bytes`` not
        applied) and their count is returned."""
        if self._closed or self._http.is_closed:
            raise _closed()
        deadline = time.monotonic() + self._timeout
        try:
            request = self._http.build_request(method, path, headers={**self._auth, **(extra_headers or {})},
                                               extensions={"timeout": _TimeLeft(deadline)}, **kwargs)
            response = _send(self._http, request, deadline)
            with contextlib.closing(response):
                _past(deadline)
                kind = response.headers.get("content-type", "").partition(";")[0].strip().lower()
                if sink is not None and 200 <= response.status_code < 300 and _is(kind, expect):
                    written = 0
                    for chunk in response.iter_bytes():
                        sink.write(chunk)
                        written += len(chunk)
                        _past(deadline)
                    _past(deadline)
                    return written
                body = bytearray()
                for chunk in response.iter_bytes():
                    body += chunk
                    if len(body) > self._max_answer:
                        raise FaceAtlasClientError(f"the answer is larger than {self._max_answer:,} bytes "
                                                   "(max_answer_bytes)", "answer_too_large")
                    _past(deadline)
                _past(deadline)  # an empty body (a 204) too
        except httpx.TransportError as exc:  # refused, reset, timed out, a proxy or TLS failure
            raise _wire_error(exc, self._base, self._timeout) from None
        except httpx.DecodingError as exc:  # e.g. a body that says gzip and is not: an answer, not the API's
            raise _not_ours(f"a body that does not decode as its Content-Encoding says: {exc}") from None
        except httpx.HTTPError as exc:  # any other of httpx's (TooManyRedirects, ...): an answer, not the API's
            raise _not_ours(f"{type(exc).__name__}: {exc}") from None
        except (httpx.InvalidURL, httpx.CookieConflict) as exc:  # what the request holds cannot be sent
            raise FaceAtlasClientError(f"the call cannot be sent: {exc}", "invalid_argument") from None
        except RuntimeError as exc:  # httpx's StreamError, or the HTTP client closed meanwhile (another thread)
            if self._http.is_closed:
                raise _closed() from None
            raise FaceAtlasClientError(f"the call cannot be sent: {exc}", "invalid_argument") from None
        if response.is_redirect:
            raise FaceAtlasClientError(f"the server redirected to {response.headers.get('location')!r}: give that "
                                       "URL as the server (http to https?)", "redirected")
        if response.status_code >= 400:
            raise _error_of(response, bytes(body))
        if response.status_code == 204:
            return None
        if expect != "json":  # bytes of one media type: JSON (or a proxy's page) is not the answer asked for
            if _is(kind, expect):
                return bytes(body)
            raise _not_ours(f"{kind or 'no media type'} where {expect} was expected, {len(body):,} bytes")
        if kind != "application/json":
            raise _not_ours(f"{kind or 'no media type'}, {len(body):,} bytes")
        try:
            answer = json.loads(body, object_hook=_Answer)
        except ValueError:
            raise _not_ours("JSON that does not parse") from None
        if not isinstance(answer, dict):  # every answer of the API is an object
            raise _not_ours(f"a JSON {type(answer).__name__}, not an object")
        return answer

    # -- faces ---------------------------------------------------------------------------------
    def detect(
        self, image: ImageArg, *, liveness: bool = False, embedding: bool = False, attributes: bool = False,
        max_faces: int | None = None,
    ) -> DetectResult:
        """The faces of ``image`` (the ``max_faces`` largest when given; the server's default: all),
        with a liveness score, their ``embedding`` (and its ``recognizer_id``, for
        :meth:`search_embedding`) and ``attributes`` (age, gender, emotion) on request."""
        params: dict[str, Any] = {"liveness": liveness, "embedding": embedding, "attributes": attributes}
        if max_faces is not None:
            params["max_faces"] = max_faces
        data = self._call("POST", "/v1/detect", files=dict([_image("image", image)]), params=params)
        return _parse(DetectResult, data, faces=_faces(data))

    def compare(self, image_a: ImageArg, image_b: ImageArg, *, far: float = DEFAULT_FAR) -> CompareResult:
        files = dict([_image("image_a", image_a), _image("image_b", image_b)])
        return _parse(CompareResult, self._call("POST", "/v1/compare", files=files, params={"far": far}))

    def liveness(self, image: ImageArg) -> LivenessResult:
        data = self._call("POST", "/v1/liveness", files=dict([_image("image", image)]))
        return _parse(LivenessResult, data, face=Face.of(data.get("face")))

    # -- galleries -------------------------------------------------------------------------------
    def create_collection(self, name: str, *, keep_crops: bool = False, metadata: dict | None = None,
                          idempotency_key: str | None = None) -> Collection:
        """A collection bound to the server's model pack (``keep_crops``: keep a source crop of each
        face; ``metadata``: a JSON object kept with it)."""
        body: dict[str, Any] = {"name": name, "keep_crops": keep_crops}
        if metadata is not None:
            body["metadata"] = metadata
        return _parse(Collection, self._call("POST", "/v1/collections", _once(idempotency_key), json=body))

    def list_collections(self) -> list[Collection]:
        return [_parse(Collection, c) for c in self._call("GET", "/v1/collections")["collections"]]

    def get_collection(self, name: str) -> Collection:
        return _parse(Collection, self._call("GET", f"/v1/collections/{_seg(name)}"))

    def delete_collection(self, name: str, *, idempotency_key: str | None = None) -> None:
        self._call("DELETE", f"/v1/collections/{_seg(name)}", _once(idempotency_key))

    def add_subject(
        self, collection: str, subject_id: str, *, name: str | None = None, metadata: dict | None = None,
        idempotency_key: str | None = None,
    ) -> Subject:
        body = {"id": subject_id, "name": name, "metadata": metadata or {}}
        path = f"/v1/collections/{_seg(collection)}/subjects"
        return _parse(Subject, self._call("POST", path, _once(idempotency_key),
                                          json=body))

    def get_subject(self, collection: str, subject_id: str) -> Subject:
        return _parse(Subject, self._call("GET", f"/v1/collections/{_seg(collection)}/subjects/{_seg(subject_id)}"))

    def list_subjects(self, collection: str, *, limit: int = 100, after: str | None = None) -> SubjectPage:
        params: dict[str, Any] = {"limit": limit}
        if after:
            params["after"] = after
        data = self._call("GET", f"/v1/collections/{_seg(collection)}/subjects", params=params)
        return _parse(SubjectPage, data, subjects=tuple(_parse(Subject, s) for s in _items(data, "subjects")),
                      next=data.get("next_cursor", data.get("next")))  # `next` alone: a server of before 2026-12

    def enrol(self, collection: str, subject_id: str, image: ImageArg, *, all_faces: bool = False,
              min_quality: float = 0.0, idempotency_key: str | None = None) -> EnrolResult:
        """Enrol the largest face of ``image`` (``all_faces``: every face of it) to the subject (made
        when new); a face of quality below ``min_quality`` (0 to 1) is not enrolled but counted in
        ``rejected`` (none reaching it: the server's 422 ``validation_error``). With
        ``idempotency_key``, a retry of this call (after a timeout or a dropped connection) enrols
        nothing more and returns the first result."""
        path = f"/v1/collections/{_seg(collection)}/subjects/{_seg(subject_id)}/faces"
        params: dict[str, Any] = {}
        if all_faces:
            params["all_faces"] = "true"
        if min_quality:
            params["min_quality"] = min_quality
        data = self._call(
            "POST", path, files=dict([_image("image", image)]), params=params,
            extra_headers=_once(idempotency_key),
        )
        return _parse(EnrolResult, data, faces=_faces(data))

    def delete_subject(self, collection: str, subject_id: str, *, idempotency_key: str | None = None) -> None:
        self._call("DELETE", f"/v1/collections/{_seg(collection)}/subjects/{_seg(subject_id)}", _once(idempotency_key))

    def search(self, collection: str, image: ImageArg, *, k: int = 5, fpir: float | None = None,
               far: float | None = None, threshold: float | None = None, rank_only: bool = False,
               aggregate: str = "best", all_faces: bool = False) -> SearchResults:
        """Who is the query face (``all_faces``: each face of ``image``; by default its largest), or
        nobody: the ``k`` most similar subjects that reach the cut (``unknown`` when none does):
        ``fpir`` (the share of strangers named, for the collection's size; the server's default 1e-3
        when no cut is given), a 1:1 ``far`` or a raw cosine ``threshold`` (-1 to 1); ``rank_only``
        ranks without deciding (strangers included). Two cuts at once are the server's
        ``validation_error``. ``aggregate``: a subject scores its best face (``"best"``) or its
        mean template (``"mean"``). The list answered is a :class:`SearchResults`, which also
        holds the cut decided at and how many faces the photo held."""
        params = _search_options(k, fpir, far, threshold, rank_only, aggregate)
        if all_faces:
            params["all_faces"] = "true"
        data = self._call(
            "POST", f"/v1/collections/{_seg(collection)}/search", files=dict([_image("image", image)]), params=params
        )
        return _search_results(data)

    def search_embedding(self, collection: str, vector: Any, recognizer_id: str, *, k: int = 5,
                         fpir: float | None = None, far: float | None = None, threshold: float | None = None,
                         rank_only: bool = False, aggregate: str = "best") -> SearchResult:
        """Who is this face, by its embedding (``vector``: numbers, e.g. a :class:`Face`'s
        ``embedding`` from :meth:`detect` with ``embedding=True``) in the space ``recognizer_id`` (the
        face's ``recognizer_id``): the cuts and ``aggregate`` as :meth:`search`. A vector of another
        space or size than the collection's is the server's 409 ``model_mismatch``. The one result's
        ``face`` is None."""
        values = vector.tolist() if callable(getattr(vector, "tolist", None)) else list(vector)  # numpy too
        try:  # what JSON cannot hold (NaN, infinity, an object) was a raw ValueError or TypeError of the encoder
            json.dumps(values, allow_nan=False)
        except (TypeError, ValueError):
            raise FaceAtlasClientError("the embedding holds what JSON cannot send (NaN, infinity or not a number): "
                                       "give finite numbers", "invalid_argument") from None
        params = _search_options(k, fpir, far, threshold, rank_only, aggregate)
        data = self._call("POST", f"/v1/collections/{_seg(collection)}/search", params=params,
                          json={"embedding": values, "recognizer_id": recognizer_id})
        results = _search_results(data)
        if len(results) != 1:
            raise _not_ours(f"{len(results)} results for one embedding")
        return results[0]

    def verify(self, collection: str, subject_id: str, image: ImageArg, *, far: float | None = None,
               threshold: float | None = None) -> Verification:
        """Is the largest face of ``image`` this subject? Decided at the 1:1 ``far`` (the server's
        default :data:`DEFAULT_FAR`) or at a raw cosine ``threshold`` (-1 to 1); both at once are the
        server's ``validation_error``."""
        params = {k: v for k, v in (("far", far), ("threshold", threshold)) if v is not None}
        data = self._call(
            "POST",
            f"/v1/collections/{_seg(collection)}/subjects/{_seg(subject_id)}/verify",
            files=dict([_image("image", image)]),
            params=params,
        )
        return _parse(Verification, data, face=Face.of(data.get("face")))

    # -- AR and identity verification -----------------------------------------------------------
    def ar_effects(self, image: ImageArg, effects: list[str], *, image_format: str = "jpeg") -> bytes:
        """The image with ``effects`` applied in order (glasses, hat, mask, smooth, slim, big-eyes,
        blur-background, green-background), encoded as ``image_format`` (jpeg or png)."""
        return self._call("POST", "/v1/ar/effects", files=dict([_image("image", image)]),
                          params={"effect": effects, "format": image_format}, expect="image")

    # -- galleries: subjects changed or merged, collections exported and imported ------------------
    def update_subject(self, collection: str, subject_id: str, *, name: str | None = None,
                       metadata: dict | None = None, idempotency_key: str | None = None) -> Subject:
        """Rename a subject (``name``) or add to its metadata (``metadata`` merged into it); what is
        not given stays."""
        body = {k: v for k, v in (("name", name), ("metadata", metadata)) if v is not None}
        path = f"/v1/collections/{_seg(collection)}/subjects/{_seg(subject_id)}"
        return _parse(Subject, self._call("PATCH", path, _once(idempotency_key), json=body))

    def merge_subjects(self, collection: str, subject_id: str, into: str, *,
                       idempotency_key: str | None = None) -> Subject:
        """Move every face of ``subject_id`` to ``into`` (one person enrolled twice) and delete
        ``subject_id``; returns ``into`` (its metadata wins)."""
        path = f"/v1/collections/{_seg(collection)}/subjects/{_seg(subject_id)}/merge"
        return _parse(Subject, self._call("POST", path, _once(idempotency_key), json={"into": into}))

    def export_collection(self, collection: str, *, crops: bool = False) -> bytes:
        """The collection as a Parquet file's bytes (subjects, embeddings with their pack identity;
        the stored face crops with ``crops``): :meth:`import_collection` restores it. For a large
        collection, :meth:`export_collection_to` writes it to a file without holding it."""
        return self._call("GET", f"/v1/collections/{_seg(collection)}/export", params={"crops": crops},
                          expect=PARQUET)

    def export_collection_to(self, collection: str, path: str | os.PathLike, *, crops: bool = False) -> Path:
        """Write the collection's Parquet export to ``path`` (a folder: ``<collection>.parquet`` in
        it) as it comes; returns the file written. A failed export leaves no file (nor half of one)."""
        target = Path(path)
        if target.is_dir():
            target = target / f"{collection}.parquet"
        handle, partial = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".part")
        try:
            with os.fdopen(handle, "wb") as out:
                self._call("GET", f"/v1/collections/{_seg(collection)}/export", params={"crops": crops},
                           expect=PARQUET, sink=out)
            os.replace(partial, target)
        except BaseException:
            Path(partial).unlink(missing_ok=True)
            raise
        return target

    def import_collection(self, export: ImageArg, *, name: str | None = None,
                          idempotency_key: str | None = None) -> Collection:
        """Create a collection from an export (a path, its bytes or a binary file object), named
        ``name`` or as exported; it keeps the exported pack identity (its own recognizer's space)."""
        params = {"name": name} if name is not None else None
        return _parse(Collection, self._call("POST", "/v1/collections/import", _once(idempotency_key),
                                             files=dict([_image("file", export)]), params=params))

    # -- video events and camera counts (stored by `faceatlas watch`) -------------------------------
    def list_events(self, *, camera: str | None = None, type: str | None = None,
                    since: str | datetime | None = None, limit: int = 100) -> list[VideoEvent]:
        """The tenant's newest events (at most ``limit``), of one ``camera`` or ``type`` if given,
        emitted at or after ``since`` (ISO 8601; without an offset: UTC). An event's
        ``data["snapshot"]``, when a frame was kept, is its address: :meth:`event_snapshot` reads it."""
        params: dict[str, Any] = {"limit": limit}
        params |= {k: v for k, v in (("camera", camera), ("type", type), ("since", _iso(since))) if v is not None}
        return [_parse(VideoEvent, e) for e in _items(self._call("GET", "/v1/events", params=params), "events")]

    def event_snapshot(self, event_id: str) -> bytes:
        """The JPEG frame kept with an event (cameras with ``snapshots:``); 404 ``not_found`` when none is kept."""
        return self._call("GET", f"/v1/events/{_seg(event_id)}/snapshot", expect="image")

    def camera_counts(self, camera: str, *, since: str | datetime | None = None,
                      until: str | datetime | None = None, label: str | None = None,
                      limit: int | None = None) -> CameraCounts:
        """A camera's per-minute counts per class (``label``: person, car, ...), oldest first, from
        ``since``'s minute on and before ``until``'s; when ``truncated``, ask again with ``since=next_from``."""
        params = {k: v for k, v in (("from", _iso(since)), ("to", _iso(until)), ("class", label),
                                    ("limit", limit)) if v is not None}
        data = self._call("GET", f"/v1/cameras/{_seg(camera)}/counts", params=params)
        counts = tuple(_parse(MinuteCount, c, label=c["class"]) for c in _items(data, "counts"))
        return _parse(CameraCounts, data, counts=counts)

    # -- retail: carts, face pay, refunds, alerts, occupancy, analytics ------------------------------
    def retail_cart(self, store: str, visit_id: int) -> RetailCart:
        path = f"/v1/retail/stores/{_seg(store)}/visits/{_seg(str(visit_id))}/cart"
        return _cart(self._call("GET", path))

    def retail_add_to_cart(self, store: str, visit_id: int, sku: str, quantity: int = 1, *,
                           idempotency_key: str | None = None) -> RetailCart:
        """Put ``quantity`` of ``sku`` into an open visit's cart (negative: put back); returns the cart."""
        path = f"/v1/retail/stores/{_seg(store)}/visits/{_seg(str(visit_id))}/cart"
        return _cart(self._call("POST", path, _once(idempotency_key), json={"sku": sku, "quantity": quantity}))

    def retail_pay(self, store: str, image: ImageArg, *, camera: str, event: str,
                   idempotency_key: str | None = None) -> RetailPayment:
        """Face pay at the checkout ``camera``: the face must be live and match a member who consented
        to face pay; their open visit's cart is charged once per ``event`` (the payment's id: a
        repeat answers ``repeated`` and charges nothing)."""
        path = f"/v1/retail/stores/{_seg(store)}/pay"
        return _parse(RetailPayment, self._call("POST", path, _once(idempotency_key), params={"camera": camera,
                                                "event": event}, files=dict([_image("image", image)])))

    def retail_refund(self, store: str, charge_id: int, *, amount_cents: int | None = None, reason: str = "",
                      key: str | None = None, idempotency_key: str | None = None) -> RetailRefund:
        """Refund a settled charge (``amount_cents``; default: what is left), once per ``key``."""
        body: dict[str, Any] = {"reason": reason} | {k: v for k, v in (("amount_cents", amount_cents),
                                                                        ("key", key)) if v is not None}
        path = f"/v1/retail/stores/{_seg(store)}/charges/{_seg(str(charge_id))}/refund"
        return _parse(RetailRefund, self._call("POST", path, _once(idempotency_key), json=body))

    def retail_alerts(self, store: str, *, open_only: bool = True) -> list[RetailAlert]:
        """The store's staff alerts, oldest first (``open_only=False``: resolved ones too)."""
        data = self._call("GET", f"/v1/retail/stores/{_seg(store)}/alerts", params={"open": open_only})
        return [_parse(RetailAlert, a) for a in _items(data, "alerts")]

    def retail_resolve_alert(self, store: str, alert_id: int, *,
                             idempotency_key: str | None = None) -> RetailAlertResolution:
        path = f"/v1/retail/stores/{_seg(store)}/alerts/{_seg(str(alert_id))}/resolve"
        return _parse(RetailAlertResolution, self._call("POST", path, _once(idempotency_key)))

    def retail_occupancy(self, store: str) -> RetailOccupancy:
        """Who is inside now: the open visits entered within ``window_hours``, members among them."""
        return _parse(RetailOccupancy, self._call("GET", f"/v1/retail/stores/{_seg(store)}/occupancy"))

    def retail_analytics(self, store: str, *, start: date | str | None = None,
                         end: date | str | None = None) -> RetailReport:
        """The store's analytics from ``start`` to ``end`` (days, inclusive; the server's default:
        the last 30 days, today included): visitors, conversion, dwell, zone heat, basket size, demographics."""
        data = self._call("GET", f"/v1/retail/stores/{_seg(store)}/analytics", params=_days(start, end))
        return _parse(RetailReport, data, first=data["from"], last=data["to"],
                      sections=tuple(_parse(RetailReportRow, r) for r in _items(data, "sections")))

    def retail_analytics_csv(self, store: str, *, start: date | str | None = None,
                             end: date | str | None = None) -> str:
        """:meth:`retail_analytics` as the server's CSV text: a ``metric,key,value`` header, then
        every row (the summary's included)."""
        params = {**_days(start, end), "format": "csv"}
        return self._call("GET", f"/v1/retail/stores/{_seg(store)}/analytics", params=params,
                          expect="text/csv").decode("utf-8")

    def retail_analytics_chart(self, store: str, chart: str = "visits_per_hour", *,
                               start: date | str | None = None, end: date | str | None = None) -> bytes:
        """One chart of the store's analytics as a PNG image's bytes."""
        return self._call("GET", f"/v1/retail/stores/{_seg(store)}/analytics",
                          params={**_days(start, end), "format": "png", "chart": chart}, expect="image")

    # -- account: API keys and the audit trail (admin key) -------------------------------------------
    def list_keys(self) -> list[ApiKey]:
        """The tenant's API keys (prefix, scopes, limits, revocation), never their secrets."""
        return [_parse(ApiKey, k) for k in _items(self._call("GET", "/v1/keys"), "keys")]

    def create_key(self, scopes: list[str], *, name: str = "", rate_per_second: float | None = None,
                   burst: int | None = None) -> IssuedKey:
        """A new key of the tenant (``scopes`` of admin, write, read, detect; the server's default
        limits unless given); its secret ``key`` is answered only this once."""
        body: dict[str, Any] = {"scopes": list(scopes), "name": name}
        body |= {k: v for k, v in (("rate_per_second", rate_per_second), ("burst", burst)) if v is not None}
        return _parse(IssuedKey, self._call("POST", "/v1/keys", json=body))

    def revoke_key(self, prefix: str, *, idempotency_key: str | None = None) -> None:
        """Revoke a key by its prefix (effective on its next call; a revoked key's revocation changes nothing)."""
        self._call("DELETE", f"/v1/keys/{_seg(prefix)}", _once(idempotency_key))

    def rotate_key(self, prefix: str) -> IssuedKey:
        """Revoke a key and issue its replacement, with the same scopes and limits."""
        return _parse(IssuedKey, self._call("POST", f"/v1/keys/{_seg(prefix)}/rotate"))

    def audit_log(self, *, limit: int = 100) -> list[AuditEvent]:
        """The tenant's audit trail, newest first."""
        return [_parse(AuditEvent, e) for e in _items(self._call("GET", "/v1/audit", params={"limit": limit}),
                                                      "events")]

    # -- identity verification ---------------------------------------------------------------------
    def kyc_session(self, *, retention_days: int | None = None, idempotency_key: str | None = None) -> KycSession:
        """A new verification session: its id, the challenge to perform (chosen by the server), its expiry."""
        body = None if retention_days is None else {"retention_days": retention_days}
        return _parse(KycSession, self._call("POST", "/v1/kyc/sessions", _once(idempotency_key), json=body))

    def kyc_submit(self, session_id: str, document: ImageArg, *, selfie: ImageArg | None = None,
                   frames: list[ImageArg] | None = None, fps: float | None = None,
                   idempotency_key: str | None = None) -> KycSession:
        """Decide the session on the ID document and the selfie: a video (``selfie``) or images (``frames``)."""
        files = [_image("document", document)]
        files += [_image("selfie", selfie)] if selfie is not None else [_image("frame", f) for f in frames or []]
        data = {"fps": str(fps)} if fps is not None else None
        path = f"/v1/kyc/sessions/{_seg(session_id)}/submit"
        return _parse(KycSession, self._call("POST", path, _once(idempotency_key), files=files, data=data))

    def kyc_get(self, session_id: str) -> KycSession:
        return _parse(KycSession, self._call("GET", f"/v1/kyc/sessions/{_seg(session_id)}"))

    def kyc_sessions(self, *, status: str | None = None, limit: int = 100,
                     after: str | None = None) -> KycSessionPage:
        """A page of the tenant's sessions, newest first; pass its ``next`` as ``after`` for the next."""
        params: dict[str, Any] = {"limit": limit} | ({"status": status} if status else {})
        if after:
            params["after"] = after
        data = self._call("GET", "/v1/kyc/sessions", params=params)
        return _parse(KycSessionPage, data, sessions=tuple(_parse(KycSession, s) for s in _items(data, "sessions")),
                      next=data.get("next_cursor"))

    # -- retail (the store's owner tenant) ----------------------------------------------------------
    def retail_products(self, store: str) -> list[RetailProduct]:
        """The products on sale in ``store``, by SKU."""
        path = f"/v1/retail/stores/{_seg(store)}/products"
        data = self._call("GET", path)
        currency = data.get("currency")
        return [_parse(RetailProduct, p, currency=currency) for p in _items(data, "products")]

    def retail_create_product(self, store: str, sku: str, name: str, price_cents: int, *,
                              idempotency_key: str | None = None) -> RetailProduct:
        """Put a product on sale (409 ``already_exists`` when the SKU is on sale already)."""
        body = {"sku": sku, "name": name, "price_cents": price_cents}
        path = f"/v1/retail/stores/{_seg(store)}/products"
        return _parse(RetailProduct, self._call("POST", path, _once(idempotency_key),
                                                json=body))

    def retail_update_product(self, store: str, sku: str, *, name: str | None = None,
                              price_cents: int | None = None, idempotency_key: str | None = None) -> RetailProduct:
        """Rename or reprice a product (carts keep the price their items were picked at)."""
        body = {k: v for k, v in (("name", name), ("price_cents", price_cents)) if v is not None}
        path = f"/v1/retail/stores/{_seg(store)}/products/{_seg(sku)}"
        return _parse(RetailProduct, self._call("PATCH", path, _once(idempotency_key), json=body))

    def retail_delete_product(self, store: str, sku: str, *,
                              idempotency_key: str | None = None) -> RetailProductRemoval:
        """Take a product off sale."""
        path = f"/v1/retail/stores/{_seg(store)}/products/{_seg(sku)}"
        return _parse(RetailProductRemoval, self._call("DELETE", path,
                                                       _once(idempotency_key)))

    def retail_members(self, store: str) -> list[RetailMember]:
        path = f"/v1/retail/stores/{_seg(store)}/members"
        return [_parse(RetailMember, m) for m in self._call("GET", path)["members"]]

    def retail_enrol_member(self, store: str, image: ImageArg, *, name: str, purposes: list[str],
                            granted_by: str | None = None, payment_ref: str | None = None,
                            idempotency_key: str | None = None) -> RetailMember:
        """Enrol a member from a face photo under the consent given (face_pay needs ``payment_ref``)."""
        data = {"name": name, "purposes": ",".join(purposes),  # granted_by: the server's default, the name
                **({"granted_by": granted_by} if granted_by else {}),
                **({"payment_ref": payment_ref} if payment_ref else {})}
        return _parse(RetailMember, self._call("POST", f"/v1/retail/stores/{_seg(store)}/members",
                                               _once(idempotency_key), files=dict([_image("image", image)]),
                                               data=data))

    def retail_withdraw_consent(self, store: str, member_id: str, purposes: list[str] | None = None, *,
                                idempotency_key: str | None = None) -> ConsentWithdrawal:
        """Withdraw the member's consent (``purposes``: only those): their faces go at once once no
        biometric purpose is left; the member and their history stay."""
        body: dict[str, Any] = {"consent": False} | ({"purposes": purposes} if purposes is not None else {})
        path = f"/v1/retail/stores/{_seg(store)}/members/{_seg(member_id)}"
        return _parse(ConsentWithdrawal, self._call("PATCH", path, _once(idempotency_key), json=body))

    def retail_grant_consent(self, store: str, member_id: str, image: ImageArg, *, purposes: list[str],
                             granted_by: str, payment_ref: str | None = None,
                             idempotency_key: str | None = None) -> RetailMember:
        """A new consent of a member, with a new face photo: while the member holds faces it must be
        theirs (matched 1:1 at the store's face pay FAR), else the server's 409 ``face_mismatch``."""
        data = {"purposes": ",".join(purposes), "granted_by": granted_by,
                **({"payment_ref": payment_ref} if payment_ref else {})}
        path = f"/v1/retail/stores/{_seg(store)}/members/{_seg(member_id)}/consent"
        return _parse(RetailMember, self._call("POST", path, _once(idempotency_key),
                                               files=dict([_image("image", image)]), data=data))

    def retail_erase_member(self, store: str, member_id: str, *, idempotency_key: str | None = None) -> RetailErasure:
        """Erase a member: faces, consents; visits and charges stay as anonymous counts. A retry
        with the same ``idempotency_key`` is answered without the member's id (``member`` None)."""
        answer = self._call("DELETE", f"/v1/retail/stores/{_seg(store)}/members/{_seg(member_id)}",
                            _once(idempotency_key))
        return _parse(RetailErasure, answer, member=answer.get("member"))  # None on a replay

    # -- account ---------------------------------------------------------------------------------
    def tenant_settings(self) -> TenantSettings:
        """The tenant's settings (admin key)."""
        return _parse(TenantSettings, self._call("GET", "/v1/settings"))

    def update_tenant_settings(self, *, kyc_retention_days: int | None = None,
                               idempotency_key: str | None = None) -> TenantSettings:
        """Change the tenant's settings (admin key); a shorter KYC retention deletes the images past it."""
        body = {} if kyc_retention_days is None else {"kyc_retention_days": kyc_retention_days}
        return _parse(TenantSettings, self._call("PATCH", "/v1/settings", _once(idempotency_key), json=body))

    def usage(self, *, start: date | str | None = None, end: date | str | None = None) -> Usage:
        """The tenant's calls, faces and errors per day (UTC) and operation, from ``start`` to ``end``
        (days, inclusive: a date, an ISO date or a datetime, whose UTC day counts; either open when not
        given: the server's default is every day)."""
        data = self._call("GET", "/v1/usage", params=_days(start, end))
        return _parse(Usage, data, rows=tuple(_parse(UsageRow, r) for r in _items(data, "rows")))

    def usage_csv(self, *, start: date | str | None = None, end: date | str | None = None) -> str:
        """:meth:`usage` as the server's CSV text (a header line, then tenant, day, operation, calls,
        faces, errors, failed per row)."""
        params = {**_days(start, end), "format": "csv"}
        return self._call("GET", "/v1/usage", params=params, expect="text/csv").decode("utf-8")

    # albums
    def albums(self) -> list[str]:
        """The names of the tenant's photo albums."""
        names = self._call("GET", "/v1/albums")["albums"]
        if not isinstance(names, list) or not all(isinstance(name, str) for name in names):
            raise _not_ours("'albums' is not a list of names")
        return list(names)

    def album_add_photo(self, album: str, image: ImageArg, *, keep_crops: bool | None = None,
                        idempotency_key: str | None = None) -> AlbumScan:
        """Add a photo to ``album`` (made by the first photo; ``keep_crops`` then: keep a crop of each
        face, see :meth:`album_face_crop`; None: the album's setting, none for a new album). Asked
        otherwise than the album was made it is 409 ``conflict`` and nothing is added (True of an
        album made without crops, False of one made with them). Its faces join people. A photo the
        album has is skipped."""
        path = f"/v1/albums/{_seg(album)}/photos"
        params = {} if keep_crops is None else {"keep_crops": keep_crops}
        return _parse(AlbumScan, self._call("POST", path, _once(idempotency_key), files=dict([_image("image", image)]),
                                            params=params))

    def album_people(self, album: str, *, min_faces: int = 1) -> list[AlbumPerson]:
        """The album's people with at least ``min_faces`` faces, most faces first."""
        data = self._call("GET", f"/v1/albums/{_seg(album)}/people", params={"min_faces": min_faces})
        return [_parse(AlbumPerson, p) for p in _items(data, "people")]

    def album_faces(self, album: str, person: str) -> list[AlbumFace]:
        """A person's faces (by id or name; ``unsorted``: the faces the quality gate kept out), best first."""
        data = self._call("GET", f"/v1/albums/{_seg(album)}/people/{_seg(person)}/faces")
        return [_parse(AlbumFace, f) for f in _items(data, "faces")]

    def album_timeline(self, album: str, person: str) -> list[AlbumPhoto]:
        """A person's photos by EXIF date (undated last, as added; ``unsorted``: the photos holding a
        face of that pool)."""
        data = self._call("GET", f"/v1/albums/{_seg(album)}/people/{_seg(person)}/timeline")
        return [_parse(AlbumPhoto, p) for p in _items(data, "photos")]

    def album_together(self, album: str, people: list[str]) -> list[AlbumPhoto]:
        """The photos in which every one of ``people`` (ids or names) appears, by EXIF date."""
        names = [people] if isinstance(people, str) else list(people)
        data = self._call("GET", f"/v1/albums/{_seg(album)}/together", params={"people": names})
        return [_parse(AlbumPhoto, p) for p in _items(data, "photos")]

    def album_face_crop(self, album: str, face_id: int) -> bytes:
        """The JPEG crop of a face (albums made with ``keep_crops``; others: 404 ``not_found``)."""
        return self._call("GET", f"/v1/albums/{_seg(album)}/faces/{_seg(str(face_id))}/crop", expect="image")

    def album_name_person(self, album: str, person: str, name: str, *,
                          idempotency_key: str | None = None) -> AlbumPerson:
        """Name a person (kept through scans and re-clusters); the name then refers to them too. A
        name holding ``/`` is 422 ``validation_error``, one another person has 409 ``already_exists``."""
        path = f"/v1/albums/{_seg(album)}/people/{_seg(person)}"
        return _parse(AlbumPerson, self._call("PATCH", path, _once(idempotency_key), json={"name": name}))

    def album_merge(self, album: str, person: str, absorb: str, *,
                    idempotency_key: str | None = None) -> AlbumPerson:
        """``absorb`` is ``person``: its faces join them (kept so through scans and re-clusters)."""
        path = f"/v1/albums/{_seg(album)}/people/{_seg(person)}/merge"
        return _parse(AlbumPerson, self._call("POST", path, _once(idempotency_key), json={"absorb": absorb}))

    def album_move_face(self, album: str, face_id: int, to: str, *,
                        idempotency_key: str | None = None) -> AlbumFace:
        """This face is person ``to`` (not the person it leaves)."""
        path = f"/v1/albums/{_seg(album)}/faces/{_seg(str(face_id))}/move"
        return _parse(AlbumFace, self._call("POST", path, _once(idempotency_key), json={"to": to}))

    def album_reject_face(self, album: str, face_id: int, *, idempotency_key: str | None = None) -> AlbumFace:
        """This face is not the person it is with: a person of its own, never put back."""
        path = f"/v1/albums/{_seg(album)}/faces/{_seg(str(face_id))}/reject"
        return _parse(AlbumFace, self._call("POST", path, _once(idempotency_key)))

    def album_split(self, album: str, face_ids: list[int], *, idempotency_key: str | None = None) -> AlbumPerson:
        """These faces are one new person."""
        return _parse(AlbumPerson, self._call("POST", f"/v1/albums/{_seg(album)}/split", _once(idempotency_key),
                                              json={"faces": list(face_ids)}))

    def album_recluster(self, album: str, *, idempotency_key: str | None = None) -> AlbumRecluster:
        """Cluster the whole album again, corrections and names kept."""
        return _parse(AlbumRecluster, self._call("POST", f"/v1/albums/{_seg(album)}/recluster",
                                                 _once(idempotency_key)))

    def album_erase_person(self, album: str, person: str, *, idempotency_key: str | None = None) -> AlbumErasure:
        """Erase a person: every face, vector, crop and constraint of theirs and the photos left with
        no face (copies promoted into a gallery collection are the collection's: delete them there).
        A retry with the same ``idempotency_key`` is answered without the person (``person`` None)."""
        path = f"/v1/albums/{_seg(album)}/people/{_seg(person)}"
        answer = self._call("DELETE", path, _once(idempotency_key))
        return _parse(AlbumErasure, answer, person=answer.get("person"))  # None on a replay

    def album_delete_face(self, album: str, face_id: int, *, idempotency_key: str | None = None) -> AlbumDeletion:
        """Delete one face (a person's or one of the unsorted pool), its photo when no face is left
        on it, its person when it was their last face."""
        path = f"/v1/albums/{_seg(album)}/faces/{_seg(str(face_id))}"
        return _parse(AlbumDeletion, self._call("DELETE", path, _once(idempotency_key)))

    def album_delete_photo(self, album: str, photo_id: int, *, idempotency_key: str | None = None) -> AlbumDeletion:
        """Delete a photo (``AlbumPhoto.id``, ``AlbumFace.photo_id``) and every face on it; uploaded
        again, it is added again."""
        path = f"/v1/albums/{_seg(album)}/photos/{_seg(str(photo_id))}"
        return _parse(AlbumDeletion, self._call("DELETE", path, _once(idempotency_key)))

    def album_delete(self, album: str, *, idempotency_key: str | None = None) -> AlbumDeletion:
        """Delete an album whole: its people, faces, vectors, crops and photos (copies promoted into a
        gallery collection are the collection's: delete them there)."""
        return _parse(AlbumDeletion, self._call("DELETE", f"/v1/albums/{_seg(album)}", _once(idempotency_key)))

    def album_promote(self, album: str, person: str, collection: str, subject: str, *,
                      idempotency_key: str | None = None) -> AlbumPromotion:
        """Enrol the person's faces as ``subject`` of the gallery ``collection`` (same pack); promoting
        again enrols only the faces the subject does not hold yet."""
        path = f"/v1/albums/{_seg(album)}/people/{_seg(person)}/promote"
        return _parse(AlbumPromotion, self._call("POST", path, _once(idempotency_key),
                                                 json={"collection": collection, "subject": subject}))
