"""Photo albums of the caller's tenant: scan by upload, people, faces, a person's timeline,
photos of people together, and the corrections (name, merge, move, split, reject), re-cluster
and erasure. An album lives in the gallery tenant ``app:albums:svc:<tenant>:<album>``, so no
other tenant and no gallery route reaches it."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from functools import partial
from typing import Annotated, Any, TypeVar

from fastapi import APIRouter, Depends, Path, Query, Request
from fastapi.responses import Response
from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool

from faceatlas.apps.albums import Album, PersonInfo, list_albums
from faceatlas.engine import decode_image
from faceatlas.errors import NotFound
from faceatlas.gallery import ID_MAX_LENGTH, ID_PATTERN, ROW_ID_MAX
from faceatlas.service.db import PERSON_REF_MAX_LENGTH
from faceatlas.service.deps import (
    AccountsDep,
    AnalyzerDep,
    AuditEntry,
    DbDep,
    GalleryDep,
    Meter,
    SettingsDep,
    TenantGalleryDep,
    audited,
    image_request_body,
    metered,
    read_images,
)
from faceatlas.service.idempotency import IdempotentRoute, forget_erased
from faceatlas.service.schemas import (
    AlbumEraseOut,
    AlbumFaceOut,
    AlbumFacesOut,
    AlbumListOut,
    AlbumPeopleOut,
    AlbumPersonOut,
    AlbumPromoteOut,
    AlbumReclusterOut,
    AlbumScanOut,
    RequestBody,
)
from faceatlas.service.shared_state import StoredAnswer
from faceatlas.service.tenants import gallery_tenant

router = APIRouter(tags=["albums"], route_class=IdempotentRoute)
AlbumName = Annotated[str, Path(min_length=1, max_length=ID_MAX_LENGTH, pattern=ID_PATTERN)]
PersonRef = Annotated[str, Path(min_length=1, max_length=PERSON_REF_MAX_LENGTH)]
FaceId = Annotated[int, Path(ge=1, le=ROW_ID_MAX)]
T = TypeVar("T")
# a JPEG checked at its smallest draft scale (1/8), every byte still read: 12.7 ms for a 1.6 MP photo of
# 774 kB, against 38.7 ms decoded whole (the scan's analysis of it costs several times that)
CHECK_PIXELS = 256 * 256


class NameRequest(RequestBody):
    name: str = Field(min_length=1, max_length=400)


class MergeRequest(RequestBody):
    absorb: str = Field(min_length=1, max_length=400, description="the person whose faces join this one")


class MoveRequest(RequestBody):
    to: str = Field(min_length=1, max_length=400, description="the person the face is")


class PromoteRequest(RequestBody):
    collection: str = Field(min_length=1, max_length=ID_MAX_LENGTH, pattern=ID_PATTERN)
    subject: str = Field(min_length=1, max_length=ID_MAX_LENGTH, pattern=ID_PATTERN)


class SplitRequest(RequestBody):
    faces: list[Annotated[int, Field(ge=1, le=ROW_ID_MAX)]] = Field(min_length=1, max_length=10_000)


class AlbumPhotoOut(BaseModel):
    id: int
    source: str = Field(description="where the photo came from (``upload`` for the API's uploads)")
    taken_at: str | None = Field(description="its EXIF date (ISO 8601), null when it has none")
    added_at: str


class AlbumPhotosOut(BaseModel):
    photos: list[AlbumPhotoOut] = Field(description="by EXIF date, undated last (by when they were added)")


@contextmanager
def _opened(album: str, tenant: str, analyzer: Any, gallery: Any, db: Any, keep_crops: bool,
            create: bool) -> Iterator[Album]:
    opened = Album.attach(album, analyzer, gallery, db, owner=gallery_tenant(tenant),
                          migrated=True, keep_crops=keep_crops, create=create)  # create_app migrated
    try:
        yield opened
    finally:
        opened.close()


async def call_album(album: str, tenant: str, analyzer: Any, gallery: Any, db: Any, use: Callable[[Album], T],
                     *, keep_crops: bool = False, create: bool = True) -> T:
    """``use`` on the tenant's album, in a worker thread; the API's album routes and the console's
    albums page both reach albums through it. ``create``: make the album when new (to add photos,
    keeping face crops if ``keep_crops``), else a missing album is :class:`NotFound` (404)."""
    def run() -> T:
        with _opened(album, tenant, analyzer, gallery, db, keep_crops, create) as opened:
            return use(opened)
    return await run_in_threadpool(run)


async def _call(album: str, meter: Meter, analyzer: Any, gallery: Any, db: Any, use: Callable[[Album], T]) -> T:
    """``use`` on an existing album of the caller's tenant (reads and corrections never create one)."""
    return await call_album(album, meter.principal.tenant_id, analyzer, gallery, db, use, create=False)


@router.get("/albums", response_model=AlbumListOut)
async def albums(db: DbDep, meter: Annotated[Meter, Depends(metered("albums.people", "read", billable=False))],
                 ) -> dict[str, Any]:
    """The tenant's albums."""
    names = await run_in_threadpool(list_albums, db, gallery_tenant(meter.principal.tenant_id))
    return {"albums": names}


@router.post("/albums/{album}/photos", response_model=AlbumScanOut, openapi_extra=image_request_body("image"))
async def add_photo(album: AlbumName, request: Request, analyzer: AnalyzerDep, gallery: GalleryDep, db: DbDep,
                    meter: Annotated[Meter, Depends(metered("albums.scan", "write", idempotent=True))],
                    audit: Annotated[AuditEntry, audited("album.scan", "{album}")],
                    keep_crops: bool = False) -> dict[str, Any]:
    """Add an uploaded photo (skipped when the album has it already): its faces join people.
    ``keep_crops`` (when this creates the album): keep a crop of each face, served at
    ``/albums/{album}/faces/{face}/crop`` and shown by the console, erased with the person; asked
    of an album created without crops it is 409 ``conflict`` (crops cannot be turned on later)."""
    images, _ = await read_images(request, "image")
    # a photo that does not decode (a truncated file) is refused before the album is made: the scan
    # would list it as failed and answer 200, billed, with a new empty album
    await run_in_threadpool(lambda: decode_image(images["image"], max_pixels=analyzer.max_pixels,
                                                 work_pixels=CHECK_PIXELS))
    report = await call_album(album, meter.principal.tenant_id, analyzer, gallery, db,
                              lambda a: a.add_photos([("upload", images["image"])], total=1), keep_crops=keep_crops,
                              create=True)
    meter.faces = report.faces + report.unsorted
    audit.details["faces"] = meter.faces
    return report.to_dict()


@router.get("/albums/{album}/people", response_model=AlbumPeopleOut)
async def list_people(album: AlbumName, analyzer: AnalyzerDep, gallery: GalleryDep, db: DbDep,
                      meter: Annotated[Meter, Depends(metered("albums.people", "read", billable=False))],
                      min_faces: Annotated[int, Query(ge=1)] = 1) -> dict[str, Any]:
    """People with at least ``min_faces`` faces, most first, each with a cover face."""
    people = await _call(album, meter, analyzer, gallery, db, lambda a: a.people(min_faces=min_faces))
    return {"people": [p.to_dict() for p in people]}


@router.get("/albums/{album}/people/{person}/faces", response_model=AlbumFacesOut)
async def person_faces(album: AlbumName, person: PersonRef, analyzer: AnalyzerDep,
                       gallery: GalleryDep, db: DbDep,
                       meter: Annotated[Meter, Depends(metered("albums.people", "read", billable=False))],
                       ) -> dict[str, Any]:
    """A person's faces (``unsorted``: the pool of faces the quality gate kept out)."""
    faces = await _call(album, meter, analyzer, gallery, db,
                        lambda a: a.faces(None if person == "unsorted" else person))
    return {"faces": [f.to_dict() for f in faces]}


@router.get("/albums/{album}/people/{person}/timeline", response_model=AlbumPhotosOut)
async def person_timeline(album: AlbumName, person: PersonRef, analyzer: AnalyzerDep, gallery: GalleryDep, db: DbDep,
                          meter: Annotated[Meter, Depends(metered("albums.people", "read", billable=False))],
                          ) -> dict[str, Any]:
    """A person's photos by EXIF date (``unsorted``: the photos holding a face of that pool)."""
    photos = await _call(album, meter, analyzer, gallery, db,
                         lambda a: a.timeline(None if person == "unsorted" else person))
    return {"photos": [p.to_dict() for p in photos]}


@router.get("/albums/{album}/together", response_model=AlbumPhotosOut)
async def photos_together(album: AlbumName, analyzer: AnalyzerDep, gallery: GalleryDep, db: DbDep,
                          meter: Annotated[Meter, Depends(metered("albums.people", "read", billable=False))],
                          people: Annotated[list[Annotated[str, Field(min_length=1, max_length=400)]],
                                            Query(min_length=1, max_length=20)],
                          ) -> dict[str, Any]:
    """The photos in which every one of ``people`` (``?people=A&people=B``, ids or names) appears, by EXIF date."""
    photos = await _call(album, meter, analyzer, gallery, db, lambda a: a.together(people))
    return {"photos": [p.to_dict() for p in photos]}


@router.get("/albums/{album}/faces/{face}/crop", response_class=Response,
            responses={200: {"content": {"image/jpeg": {}}}, 404: {"description": "unknown face, or no crops kept"}})
async def face_crop(album: AlbumName, face: FaceId, analyzer: AnalyzerDep, gallery: GalleryDep, db: DbDep,
                    meter: Annotated[Meter, Depends(metered("albums.people", "read", billable=False))]) -> Response:
    """The kept crop of a face (albums made with ``keep_crops``)."""
    crop = await _call(album, meter, analyzer, gallery, db, lambda a: a.face_crop(face))
    if crop is None:
        raise NotFound(f"album '{album}' keeps no face crops")
    return Response(crop, media_type="image/jpeg", headers={"Cache-Control": "private, no-store"})


@router.patch("/albums/{album}/people/{person}", response_model=AlbumPersonOut)
async def name_person(album: AlbumName, person: PersonRef, body: NameRequest, analyzer: AnalyzerDep,
                      gallery: GalleryDep, db: DbDep,
                      meter: Annotated[Meter, Depends(metered("albums.correct", "write", billable=False,
                                                              idempotent=True))],
                      audit: Annotated[AuditEntry, audited("album.name", "{album}/{person}")]) -> dict[str, Any]:
    """Name a person."""
    info = await _call(album, meter, analyzer, gallery, db, lambda a: a.name_person(person, body.name))
    return info.to_dict()


@router.post("/albums/{album}/people/{person}/merge", response_model=AlbumPersonOut)
async def merge_people(album: AlbumName, person: PersonRef, body: MergeRequest, analyzer: AnalyzerDep,
                       gallery: GalleryDep, db: DbDep,
                       meter: Annotated[Meter, Depends(metered("albums.correct", "write", billable=False,
                                                               idempotent=True))],
                       audit: Annotated[AuditEntry, audited("album.merge", "{album}/{person}")]) -> dict[str, Any]:
    """``absorb`` is this person (kept through scans and re-clusters)."""
    info = await _call(album, meter, analyzer, gallery, db, lambda a: a.merge(person, body.absorb))
    return info.to_dict()


@router.post("/albums/{album}/faces/{face}/move", response_model=AlbumFaceOut)
async def move_face(album: AlbumName, face: FaceId, body: MoveRequest, analyzer: AnalyzerDep,
                    gallery: GalleryDep, db: DbDep,
                    meter: Annotated[Meter, Depends(metered("albums.correct", "write", billable=False,
                                                            idempotent=True))],
                    audit: Annotated[AuditEntry, audited("album.move", "{album}/{face}")]) -> dict[str, Any]:
    """This face is person ``to``."""
    moved = await _call(album, meter, analyzer, gallery, db, lambda a: a.move(face, body.to))
    return moved.to_dict()


@router.post("/albums/{album}/faces/{face}/reject", response_model=AlbumFaceOut)
async def reject_face(album: AlbumName, face: FaceId, analyzer: AnalyzerDep, gallery: GalleryDep,
                      db: DbDep, meter: Annotated[Meter, Depends(metered("albums.correct", "write", billable=False,
                                                                         idempotent=True))],
                      audit: Annotated[AuditEntry, audited("album.reject", "{album}/{face}")]) -> dict[str, Any]:
    """This face is not the person it is with (never put back)."""
    moved = await _call(album, meter, analyzer, gallery, db, lambda a: a.reject(face))
    return moved.to_dict()


@router.post("/albums/{album}/split", response_model=AlbumPersonOut)
async def split_faces(album: AlbumName, body: SplitRequest, analyzer: AnalyzerDep,
                      gallery: GalleryDep, db: DbDep,
                      meter: Annotated[Meter, Depends(metered("albums.correct", "write", billable=False,
                                                              idempotent=True))],
                      audit: Annotated[AuditEntry, audited("album.split", "{album}")]) -> dict[str, Any]:
    """These faces are one new person."""
    info = await _call(album, meter, analyzer, gallery, db, lambda a: a.split(body.faces))
    return info.to_dict()


@router.post("/albums/{album}/recluster", response_model=AlbumReclusterOut)
async def recluster(album: AlbumName, analyzer: AnalyzerDep, gallery: GalleryDep, db: DbDep,
                    meter: Annotated[Meter, Depends(metered("albums.recluster", "write", idempotent=True))],
                    audit: Annotated[AuditEntry, audited("album.recluster", "{album}")]) -> dict[str, Any]:
    """Cluster the whole album again, corrections kept."""
    report = await _call(album, meter, analyzer, gallery, db, lambda a: a.recluster())
    return report.to_dict()


@router.delete("/albums/{album}/people/{person}", response_model=AlbumEraseOut)
async def erase_person(album: AlbumName, person: PersonRef, analyzer: AnalyzerDep,
                       gallery: GalleryDep, db: DbDep,
                       meter: Annotated[Meter, Depends(metered("albums.erase", "write", billable=False,
                                                               idempotent=True))],
                       audit: Annotated[AuditEntry, audited("album.erase", "{album}/{person}")],
                       accounts: AccountsDep, settings: SettingsDep, request: Request) -> dict[str, Any]:
    """Erase a person: every face, vector and constraint of theirs, the stored answers of calls
    on them or naming them (Idempotency-Key; by id, number or name), and (unless the server keeps them) their name and
    id in the audit trail."""

    def erase(opened: Album) -> tuple[PersonInfo, int]:
        found = opened.person(person)
        return found, opened.erase(person)

    found, removed = await _call(album, meter, analyzer, gallery, db, erase)
    audit.target = await run_in_threadpool(lambda: accounts.erase_album_person(
        meter.principal.tenant_id, album, [person, found.id, found.name], keep_ids=settings.audit_keeps_subject_ids))
    # the answers of calls on them by another reference (renamed by id, erased by name: the rename
    # kept the name) or naming them (a face moved to them, a merge, a split) go too
    album_path = request.url.path.rsplit("/", 2)[0]  # /v1/albums/{album}
    await forget_erased(request, meter.principal.tenant_id, also=partial(_names, found, album_path))
    return {"person": person, "faces_deleted": removed}


def _names(found: PersonInfo, album_path: str, answer: StoredAnswer) -> bool:
    """Whether a stored answer of a call on the album at ``album_path`` names the person ``found``:
    a call on them by any reference (``p12``, ``12``, their name; a request's path holds ``?``, ``#``
    and ``\\`` percent-encoded), or an answer that is them (a rename, merge, split) or a face of
    theirs (a move, a rejection)."""
    if not answer.path.startswith(album_path + "/"):
        return False
    rest = answer.path[len(album_path) + 1:].split("/")
    if len(rest) > 1 and rest[0] == "people":
        text = rest[1].replace("%3F", "?").replace("%23", "#").replace("%5C", "\\").strip()
        number = text[1:] if text[:1] == "p" else text
        if (int(number) == int(found.id[1:]) if number.isascii() and number.isdigit()
                else found.name is not None and text == found.name):
            return True
    try:
        body = json.loads(answer.body)
    except ValueError:
        return False
    return isinstance(body, dict) and found.id in (body.get("id"), body.get("person"))


@router.post("/albums/{album}/people/{person}/promote", response_model=AlbumPromoteOut)
async def promote_person(album: AlbumName, person: PersonRef, body: PromoteRequest, analyzer: AnalyzerDep,
                         gallery: GalleryDep, tenant_gallery: TenantGalleryDep, db: DbDep,
                         meter: Annotated[Meter, Depends(metered("albums.promote", "write", idempotent=True))],
                         audit: Annotated[AuditEntry, audited("album.promote", "{album}/{person}")]) -> dict[str, Any]:
    """Enrol the person's faces as ``subject`` of one of the tenant's gallery collections (same pack)."""
    added = await _call(album, meter, analyzer, gallery, db,
                        lambda a: a.promote(person, tenant_gallery, body.collection, body.subject))
    return {"collection": body.collection, "subject": body.subject, "faces": added}
