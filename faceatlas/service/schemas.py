"""The JSON answers of the API as pydantic models (the OpenAPI ``response_model`` of each route).

Routes return the layers' ``to_dict()`` views; these models validate and document them. Keys a
view leaves out (a face's ``pose``, ``embedding``, ...) stay out: the routes answer with
``response_model_exclude_unset``.

The JSON request bodies of the routes derive from :class:`RequestBody`: a field they do not declare
is refused (422 ``validation_error``), never silently ignored.
"""

from __future__ import annotations

import re
from datetime import date, datetime
from typing import Annotated, Any

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field

from faceatlas.db import utc_text


class RequestBody(BaseModel):
    """The base of every JSON request body: an unknown field (a typo, a field no call can change) is
    refused with 422 ``validation_error`` instead of being dropped and answered 200."""

    model_config = ConfigDict(extra="forbid")


# The description of an integer field a body takes strictly (``Field(strict=True)``): JSON Schema
# counts 30.0 as an integer, so a client would send it; the field refuses it (422), as it refuses
# ``true`` (read as 1) and ``"30"``.
JSON_INTEGER = "a JSON integer; 30.0 is refused (as are true and \"30\")"


_ISO_DAY = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}\Z")


def _iso_day(value: object) -> object:
    """A day as its text is written: YYYY-MM-DD. Pydantic alone read a number as a Unix time
    (``?to=0`` was 1970-01-01, ``?to=86400.0`` 1970-01-02)."""
    if isinstance(value, date) or (isinstance(value, str) and _ISO_DAY.match(value)):
        return value
    raise ValueError("a day is written YYYY-MM-DD (ISO 8601), as 2026-12-05")


# A calendar day in a query (``from``, ``to``): YYYY-MM-DD only, else 422 ``validation_error``.
IsoDate = Annotated[date, BeforeValidator(_iso_day)]


def _utc_time(value: object) -> object:
    """A time as the API writes it: ISO 8601 in UTC with its offset, ``2026-12-07T18:52:40.791166+00:00``.
    The database keeps naive UTC times: written as they were, a client read them as its local time
    (JavaScript's ``new Date`` does), hours off east or west of UTC."""
    if isinstance(value, str):
        try:
            value = datetime.fromisoformat(value)
        except ValueError:
            return value  # not a time: kept as it is
    if isinstance(value, datetime):
        return utc_text(value)
    return value


# A time in an answer (a collection's created_at, an audit record's at): UTC, with its offset.
UtcTime = Annotated[str, BeforeValidator(_utc_time), Field(description="ISO 8601 time in UTC, with its offset "
                                                                       "(+00:00)")]


class ErrorDetail(BaseModel):
    code: str = Field(description="what went wrong, for programs: validation_error, not_found, quota_exceeded, ...")
    message: str = Field(description="what went wrong, for people")


class ErrorOut(BaseModel):
    """The body of every error answer (4xx and 5xx) of the API."""

    error: ErrorDetail


class ItemFailureOut(BaseModel):
    """One input of a call's many that failed while the others were answered (an album upload that
    did not decode): the object every door gives for it, the CLI's ``--json`` too."""

    # (Rejection.to_dict; it was a pair ["upload", "invalid_image: ..."], a tuple schema that
    # generated clients handle badly)

    source: str = Field(description="which input: the file path, or the upload's name (upload)")
    error: str = Field(description="its error code, as an error body's: invalid_image, no_face, low_quality, ...")
    message: str = Field(description="why, for people")


# -- faces ----------------------------------------------------------------------------------------


class AttributesOut(BaseModel):
    gender: str | None = Field(default=None, description="'female' or 'male'")
    gender_score: float | None = Field(default=None, description="probability of the stated gender")
    age: float | None = Field(default=None, description="estimated age in years (absent when the pack has no "
                                                        "age model)")
    emotion: str | None = Field(default=None, description="the most likely of the 7 emotion classes")
    emotion_scores: dict[str, float] | None = Field(default=None, description="probability per emotion")


class FaceOut(BaseModel):
    bbox: list[float] = Field(description="x1, y1, x2, y2 in pixels")
    det_score: float
    keypoints: list[list[float]] = Field(description="5 (x, y) landmarks")
    quality: float | None = None
    pose: dict[str, float] | None = Field(default=None, description="yaw, pitch, roll in degrees")
    liveness: float | None = Field(default=None, description="passive liveness score (on request)")
    attributes: AttributesOut | None = Field(default=None, description="age, gender, emotion (on request)")
    embedding: list[float] | None = Field(default=None, description="on request")
    recognizer_id: str | None = Field(default=None, description="the embedding's space (with the embedding)")


class DetectOut(BaseModel):
    pack: str
    faces: list[FaceOut]


class CompareOut(BaseModel):
    similarity: float
    match: bool | None = Field(description="None when the pack is not calibrated")
    threshold: float | None
    far: float | None
    match_at_far: float | None
    pack: str
    faces_in_image_a: int = Field(description="how many faces image_a holds: its largest is compared")
    faces_in_image_b: int = Field(description="how many faces image_b holds: its largest is compared")


class LivenessOut(BaseModel):
    real: bool
    score: float
    probabilities: list[float]
    face: FaceOut
    faces_in_image: int | None = Field(default=None, description="how many faces the photo holds: the check is "
                                                                "of the largest (a group photo says so here)")


# -- galleries -------------------------------------------------------------------------------------


class CollectionOut(BaseModel):
    name: str
    pack_name: str
    pack_version: str
    recognizer_id: str
    embedding_size: int
    keep_crops: bool
    metadata: dict[str, Any]
    subjects: int
    faces: int
    created_at: UtcTime


class CollectionCreatedOut(CollectionOut):
    existed: bool | None = Field(default=None, description="given exist_ok only: whether it was there already")


class CollectionList(BaseModel):
    collections: list[CollectionOut]


class SubjectOut(BaseModel):
    external_id: str
    name: str | None
    metadata: dict[str, Any]
    faces: int
    created_at: UtcTime
    updated_at: UtcTime


class SubjectPage(BaseModel):
    subjects: list[SubjectOut]
    next_cursor: str | None = Field(description="pass back as ``after`` for the next page; None on the last "
                                                "(as the KYC sessions' list names it)")
    next: str | None = Field(description="the same as ``next_cursor``: its name before the lists shared one",
                             deprecated=True)


class EnrolOut(BaseModel):
    face_ids: list[int]
    faces: list[FaceOut]
    rejected: int = Field(description="faces under min_quality")
    faces_in_image: int | None = Field(default=None, description="how many faces the photo holds: only the largest "
                                                                "is enrolled unless all_faces (a group photo says "
                                                                "so here)")


class MatchOut(BaseModel):
    external_id: str
    name: str | None
    similarity: float
    best_similarity: float
    best_face_id: int
    matched_faces: int
    mean_similarity: float | None = None
    far_level: float | None = None
    metadata: dict[str, Any] = Field(default_factory=dict)


class SearchResultOut(BaseModel):
    face: FaceOut | None = Field(description="the query face; None for a search by embedding")
    matches: list[MatchOut]
    unknown: bool | None = Field(default=None, description="true: no enrolled subject reached the threshold "
                                                           "(a stranger); null: ranked without a decision (rank_only)")


class SearchOut(BaseModel):
    results: list[SearchResultOut]
    fpir: float | None = Field(default=None, description="the false positive identification rate the matches "
                                                         "were cut at (the default cut)")
    far: float | None = Field(default=None, description="the 1:1 false-accept rate the matches were cut at")
    threshold: float | None = Field(default=None, description="the raw cosine cut-off, when one was given")
    faces_in_image: int | None = Field(default=None, description="how many faces the query photo holds: only the "
                                                                "largest is searched unless all_faces (none for a "
                                                                "search by embedding)")


class VerifyOut(BaseModel):
    external_id: str
    match: bool
    similarity: float
    threshold: float
    best_similarity: float
    mean_similarity: float
    far_level: float | None
    face: FaceOut
    faces_in_image: int | None = Field(default=None, description="how many faces the photo holds: its largest is "
                                                                  "verified")


# -- video and retail ------------------------------------------------------------------------------


class EventOut(BaseModel):
    type: str
    camera: str
    frame: int
    video_time: float
    track_id: int | None
    kind: str | None
    data: dict[str, Any]
    id: str
    wall_time: str


class EventList(BaseModel):
    events: list[EventOut]


class MinuteCountOut(BaseModel):
    camera: str
    minute: str
    class_: str = Field(alias="class")
    counts: dict[str, float | int]

    model_config = ConfigDict(populate_by_name=True, serialize_by_alias=True)


class CountList(BaseModel):
    camera: str
    counts: list[MinuteCountOut]
    truncated: bool = False  # more minutes in the range than the limit: ask again from next_from
    next_from: str | None = None


class ReportRow(BaseModel):
    metric: str
    key: str
    value: float | int


class RetailReportOut(BaseModel):
    model_config = ConfigDict(populate_by_name=True)

    store: str
    first: str = Field(alias="from")
    last: str = Field(alias="to")
    summary: dict[str, float | int]
    sections: list[ReportRow]


class RetailProductOut(BaseModel):
    sku: str
    name: str
    price_cents: int = Field(description="price in minor units (cents)")


class RetailProductList(BaseModel):
    currency: str
    products: list[RetailProductOut]


class RetailProductRemovedOut(BaseModel):
    sku: str
    deleted: bool
    open_carts: int = Field(description="open visits whose cart still holds the product (at the price picked)")


class RetailMemberOut(BaseModel):
    id: str
    name: str
    enrolled_at: UtcTime
    purposes: list[str] = Field(description="the purposes of the member's active consent")
    faces: int = Field(description="face vectors held in the store's gallery (0 once consent is withdrawn)")
    has_payment_method: bool


class RetailEnrolOut(RetailMemberOut):
    faces_in_image: int | None = Field(default=None, description="how many faces the photo held: one (a photo "
                                                                "of several people is refused, too_many_faces: "
                                                                "a consent is one person's)")


class RetailWithdrawalOut(BaseModel):
    member: str
    withdrawn: list[str] = Field(description="the purposes withdrawn by this call")
    purposes: list[str] = Field(description="the purposes still consented")
    faces_deleted: int = Field(description="face vectors removed from the store's gallery")
    payment_method_removed: bool
    demographics_removed: bool


class RetailErasureOut(BaseModel):
    member: str | None = Field(default=None, description="the erased member's id; a replay of the call "
                                                         "(Idempotency-Key) omits it: the id is not kept")
    faces_deleted: int = Field(description="face vectors removed from the store's gallery")
    consents_deleted: int
    visits_anonymised: int = Field(description="visits kept as anonymous counts (no member, no track id)")
    charges_anonymised: int = Field(description="charges kept without the member")


class RetailCartLineOut(BaseModel):
    sku: str
    quantity: int = Field(description="net quantity at this price")
    unit_price_cents: int = Field(description="the price when picked (a price change starts a new line)")


class RetailCartOut(BaseModel):
    visit_id: int
    items: int = Field(description="the number of items (net quantities summed)")
    total_cents: int
    lines: list[RetailCartLineOut]


class RetailExitOut(BaseModel):
    status: str = Field(description="charged, no_purchase, unpaid, refused (liveness or no member match) or no_visit")
    visit_id: int | None
    member_id: str | None
    amount_cents: int
    charge_id: int | None
    alert: str | None = Field(description="the staff alert raised, if any")
    repeated: bool = Field(description="the payment (its event) had been handled already: nothing charged again")


class RetailRefundOut(BaseModel):
    refund_id: int
    charge_id: int


class RetailAlertOut(BaseModel):
    id: int
    kind: str
    camera: str
    visit_id: int | None
    details: dict[str, Any]
    at: UtcTime
    resolved: bool


class RetailAlertList(BaseModel):
    alerts: list[RetailAlertOut] = Field(description="oldest first")


class RetailAlertResolvedOut(BaseModel):
    id: int
    resolved: bool
    already_resolved: bool = Field(default=False, description="it was resolved before: nothing changed")
    resolved_at: UtcTime | None = Field(default=None, description="when it was resolved (the first time)")


class RetailOccupancyOut(BaseModel):
    store: str
    at: UtcTime
    inside: int = Field(description="open visits entered within window_hours")
    members_inside: int
    window_hours: float


# -- albums ----------------------------------------------------------------------------------------


class AlbumListOut(BaseModel):
    albums: list[str]


class AlbumScanOut(BaseModel):
    photos: int
    skipped: int
    failed: list[ItemFailureOut] = Field(description="the photos that did not decode, each with why")
    faces: int
    unsorted: int
    new_people: int


class AlbumPersonOut(BaseModel):
    id: str
    name: str | None
    faces: int
    cover_face: int | None
    cover_source: str | None


class AlbumPeopleOut(BaseModel):
    people: list[AlbumPersonOut]


class AlbumFaceOut(BaseModel):
    id: int
    photo_id: int
    source: str
    bbox: list[float]
    quality: float
    yaw: float
    person: str | None
    unsorted: bool


class AlbumFacesOut(BaseModel):
    faces: list[AlbumFaceOut]


class AlbumReclusterOut(BaseModel):
    moved: int
    people: int
    removed: int


class AlbumPromoteOut(BaseModel):
    collection: str
    subject: str
    faces: int
    person: str = Field(description="the album person promoted, by id")


class AlbumEraseOut(BaseModel):
    person: str | None = Field(default=None, description="the erased person, as the call named them; a replay "
                                                         "of the call (Idempotency-Key) omits it: it is not kept")
    faces_deleted: int
    photos_deleted: int = Field(description="photos left with no face, deleted with them")


class AlbumRemovalOut(BaseModel):
    faces_deleted: int
    photos_deleted: int = Field(description="photos left with no face (or the photo deleted)")
    people_deleted: int = Field(description="people left with no face (or every person of the album)")


class AlbumFaceDeleteOut(AlbumRemovalOut):
    face: int


class AlbumPhotoDeleteOut(AlbumRemovalOut):
    photo: int


class AlbumDeleteOut(AlbumRemovalOut):
    album: str


# -- account ---------------------------------------------------------------------------------------


class UsageRow(BaseModel):
    tenant: str
    day: str
    operation: str
    calls: int = Field(description="billed calls: answered with a status below 500")
    faces: int = Field(description="faces in the billed calls")
    errors: int = Field(description="billed calls answered with a client error (4xx)")
    failed: int = Field(description="calls that failed on the server (5xx): recorded, not billed")


class UsageOut(BaseModel):
    tenant: str
    rows: list[UsageRow]


class KeyOut(BaseModel):
    prefix: str
    name: str
    scopes: list[str]
    rate_per_second: float
    burst: int
    created_at: UtcTime
    revoked: bool


class KeyList(BaseModel):
    keys: list[KeyOut]


class IssuedKeyOut(BaseModel):
    key: str = Field(description="the full key, shown only this once")
    prefix: str
    scopes: list[str]


class AuditEventOut(BaseModel):
    at: UtcTime
    action: str
    target: str
    key_id: int | None
    details: dict[str, Any] | None


class AuditList(BaseModel):
    events: list[AuditEventOut]


class TenantSettingsOut(BaseModel):
    tenant: str
    kyc_retention_days: int = Field(description="days a verification's reference face images (document crop, "
                                    "best selfie frame) are kept after its decision; 0: none is written")
    # the operator's ceilings (faceatlas admin tenant update, the server's settings): read-only here
    monthly_quota: int | None = Field(description="calls a month the tenant may make (the operator's: its own, "
                                      "else the server's FACEATLAS_DEFAULT_MONTHLY_QUOTA); null: no quota; "
                                      "read-only")
    max_keys: int | None = Field(description="most active (unrevoked) API keys the tenant may hold "
                                 "(FACEATLAS_MAX_KEYS_PER_TENANT); null: no ceiling; read-only")
    active_keys: int = Field(description="the tenant's active (unrevoked) API keys")
    max_key_rate: float | None = Field(description="most calls/s its active keys may allow summed (the operator's "
                                       "--max-rate for the tenant, else FACEATLAS_MAX_KEY_RATE_PER_TENANT); "
                                       "null: no ceiling; read-only")
    key_rate: float = Field(description="calls/s its active keys allow, summed (rate_per_second)")


class KycSessionOut(BaseModel):
    id: str
    status: str = Field(description="pending, processing, accepted, rejected or expired")
    accepted: bool | None = Field(description="the decision (None until decided)")
    challenge: list[str] = Field(description="the actions to do in this order: blink, turn_left, turn_right, "
                                 "look_up, open_mouth (left/right are the person's own)")
    created_at: UtcTime
    expires_at: UtcTime
    decided_at: UtcTime | None
    reasons: list[str] = Field(description="refusal codes: replay, selfie_is_document, document_no_face, "
                               "selfie_no_face, multiple_faces, low_quality, challenge_failed, liveness_failed, "
                               "face_mismatch")
    details: dict[str, Any] = Field(description="the audit: scores, thresholds, model versions, timings")



class KycSessionList(BaseModel):
    sessions: list[KycSessionOut]
    next_cursor: str | None = None
