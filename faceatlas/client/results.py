"""The answers: frozen, hashable dataclasses parsed from the JSON (each keeps it as ``raw``), and
the helpers that parse them."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar

from faceatlas.client.errors import _not_ours

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
    """The tenant's settings: days a verification's reference face images are kept (0: none); and
    the operator's ceilings, read-only: its monthly call quota, the most active keys and the most
    calls/s they may allow summed (None: no ceiling), and what its active keys hold of them (None
    from a server older than them)."""

    tenant: str
    kyc_retention_days: int
    monthly_quota: int | None = None
    max_keys: int | None = None
    active_keys: int | None = None
    max_key_rate: float | None = None
    key_rate: float | None = None
    raw: dict[str, Any] = _raw()


@dataclass(frozen=True)
class ItemFailure:
    """One input of many that failed, the others answered: its ``source`` (a path, or ``upload``),
    its ``error`` code (``invalid_image``, ``no_face``...; as :attr:`FaceAtlasApiError.code`) and a
    ``message`` for people: the API's ``{"source", "error", "message"}``."""

    source: str
    error: str
    message: str
    raw: dict[str, Any] = _raw()


def _failures(data: dict[str, Any], key: str) -> tuple[ItemFailure, ...]:
    """The :class:`ItemFailure` objects under ``key``; a server older than them answered pairs,
    ``["upload", "invalid_image: why"]``, read as the same (the code before the first ``": "``)."""
    items = data[key]
    if isinstance(items, list):  # an old server's pairs as the objects they stand for
        items = [_pair_failure(item) if isinstance(item, list) else item for item in items]
    return tuple(_parse(ItemFailure, item) for item in _items({key: items}, key))


def _pair_failure(pair: list[Any]) -> Any:
    """``[source, "code: why"]`` as ``{"source", "error", "message"}`` (anything else as it is)."""
    if len(pair) != 2 or not all(isinstance(value, str) for value in pair):
        return pair
    code, said, message = pair[1].partition(": ")
    return {"source": pair[0], "error": code if said else "", "message": message if said else pair[1]}


@dataclass(frozen=True)
class AlbumScan:
    """What adding a photo to an album did: photos added (0: ``skipped``, the album had it), the
    ``failed`` ones (each an :class:`ItemFailure`), faces placed with people, ``unsorted`` faces
    (kept out by the quality gate) and people new to the album."""

    photos: int
    skipped: int
    failed: tuple[ItemFailure, ...]
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


def _cart(data: dict[str, Any]) -> RetailCart:
    return _parse(RetailCart, data, lines=tuple(_parse(RetailCartLine, line) for line in _items(data, "lines")))


def _search_results(data: dict[str, Any]) -> SearchResults:
    return SearchResults((_parse(SearchResult, result, face=Face.of(result.get("face")),
                                 matches=tuple(_parse(Match, m) for m in _items(result, "matches")))
                          for result in _items(data, "results")), data)
