"""Photo albums of the caller's tenant: scan by upload, people, faces, a person's timeline,
photos of people together, and the corrections (name, merge, move, split, reject), re-cluster
and erasure (of a person, a face, a photo, the whole album). An album lives in the gallery tenant
``app:albums:svc:<tenant>:<album>``, so no other tenant and no gallery route reaches it. The audit
trail names an album's person by their id (``album/p12``), however the call named them, so an
erasure finds every record on them."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Annotated, Any, TypeVar

from fastapi import APIRouter, Depends, Path, Query, Request
from fastapi.responses import Response
from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool

from faceatlas.apps.albums import PHOTO_ID_MAX, Album, Erasure, ScanReport, list_albums
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
    MeteredRoute,
    PoolDep,
    SettingsDep,
    TenantGalleryDep,
    audited,
    image_request_body,
    metered,
    read_images,
)
from faceatlas.service.idempotency import forget_erased
from faceatlas.service.inference import InferencePool
from faceatlas.service.paths import album_path
from faceatlas.service.schemas import (
    AlbumDeleteOut,
    AlbumEraseOut,
    AlbumFaceDeleteOut,
    AlbumFaceOut,
    AlbumFacesOut,
    AlbumListOut,
    AlbumPeopleOut,
    AlbumPersonOut,
    AlbumPhotoDeleteOut,
    AlbumPromoteOut,
    AlbumReclusterOut,
    AlbumScanOut,
    ErrorOut,
    RequestBody,
    UtcTime,
)
from faceatlas.service.tenants import album_answer_names, erase_album_trail, erase_space_album, gallery_tenant

router = APIRouter(tags=["albums"], route_class=MeteredRoute)
AlbumName = Annotated[str, Path(min_length=1, max_length=ID_MAX_LENGTH, pattern=ID_PATTERN)]
PersonRef = Annotated[str, Path(min_length=1, max_length=PERSON_REF_MAX_LENGTH)]
FaceId = Annotated[int, Path(ge=1, le=ROW_ID_MAX)]
PhotoId = Annotated[int, Path(ge=1, le=PHOTO_ID_MAX)]
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
    added_at: UtcTime


class AlbumPhotosOut(BaseModel):
    photos: list[AlbumPhotoOut] = Field(description="by EXIF date, undated last (by when they were added)")


@contextmanager
def _opened(album: str, tenant: str, analyzer: Any, gallery: Any, db: Any, keep_crops: bool | None,
            create: bool) -> Iterator[Album]:
    opened = Album.attach(album, analyzer, gallery, db, owner=gallery_tenant(tenant),
                          migrated=True, keep_crops=keep_crops, create=create)  # create_app migrated
    try:
        yield opened
    finally:
        opened.close()


async def call_album(album: str, tenant: str, analyzer: Any, gallery: Any, db: Any, use: Callable[[Album], T],
                     *, keep_crops: bool | None = None, create: bool = True) -> T:
    """``use`` on the tenant's album, in a worker thread; the API's album routes and the console's
    albums page both reach albums through it. ``create``: make the album when new (to add photos,
    keeping face crops if ``keep_crops``; None: the album's setting), else a missing album is
    :class:`NotFound` (404)."""
    def run() -> T:
        with _opened(album, tenant, analyzer, gallery, db, keep_crops, create) as opened:
            return use(opened)
    return await run_in_threadpool(run)


async def scan_upload(album: str, tenant: str, pool: InferencePool, analyzer: Any, gallery: Any, db: Any,
                      data: bytes, *, keep_crops: bool | None) -> ScanReport:
    """Add the uploaded photo ``data`` to the tenant's album (made when new), the API's upload and the
    console's: one job of the tenant's in the inference pool (:class:`InferencePool`), as a detect is,
    so a tenant's uploads wait their turn, within its share of the queue (503 ``overloaded`` beyond it);
    they ran in the threads every call needs for its key check and its bill, as many at once as sent."""
    def run() -> ScanReport:
        # a photo that does not decode (a truncated file) is refused before the album is made: the scan
        # would list it as failed and answer 200, billed, with a new empty album
        decode_image(data, max_pixels=analyzer.max_pixels, work_pixels=CHECK_PIXELS)
        with _opened(album, tenant, analyzer, gallery, db, keep_crops, True) as opened:
            return opened.add_photos([("upload", data)], total=1)
    report: ScanReport = await pool.run(run, tenant=tenant)
    return report


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
async def add_photo(album: AlbumName, request: Request, analyzer: AnalyzerDep, pool: PoolDep, gallery: GalleryDep,
                    db: DbDep,
                    meter: Annotated[Meter, Depends(metered("albums.scan", "write", idempotent=True))],
                    audit: Annotated[AuditEntry, audited("album.scan", "{album}")],
                    keep_crops: bool | None = None) -> dict[str, Any]:
    """Add an uploaded photo (skipped when the album has it already): its faces join people.
    ``keep_crops`` (when this creates the album): keep a crop of each face, served at
    ``/albums/{album}/faces/{face}/crop`` and shown by the console, erased with the person; left
    out, the album's setting (none for a new album). Asked otherwise than the album was made it is
    409 ``conflict`` and nothing is added: ``true`` of an album created without crops (crops cannot
    be turned on later), ``false`` of one created with them (it keeps a crop of every face).

    The answer is `album scan --json`'s report less what has no meaning for an upload: ``moved`` and
    ``changed`` count photos found at a new path or other content found at a known path, and an
    upload has no path (its source is ``upload``: the same photo uploaded again is skipped, other
    content is another photo), so both would be 0 for ever; ``left_out`` lists the HEIC/HEIF photos a
    folder holds, and an upload is one photo, a HEIC one refused (400 ``invalid_image``) before
    anything is added."""
    images, _ = await read_images(request, "image")
    report = await scan_upload(album, meter.principal.tenant_id, pool, analyzer, gallery, db, images["image"],
                               keep_crops=keep_crops)
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
            responses={200: {"content": {"image/jpeg": {}}},
                       404: {"model": ErrorOut, "description": "unknown face, or no crops kept"}})
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
    audit.target = f"{album}/{info.id}"  # the person's id, whichever reference named them (an erasure finds it)
    return info.to_dict()


@router.post("/albums/{album}/people/{person}/merge", response_model=AlbumPersonOut)
async def merge_people(album: AlbumName, person: PersonRef, body: MergeRequest, analyzer: AnalyzerDep,
                       gallery: GalleryDep, db: DbDep,
                       meter: Annotated[Meter, Depends(metered("albums.correct", "write", billable=False,
                                                               idempotent=True))],
                       audit: Annotated[AuditEntry, audited("album.merge", "{album}/{person}")]) -> dict[str, Any]:
    """``absorb`` is this person (kept through scans and re-clusters)."""
    info = await _call(album, meter, analyzer, gallery, db, lambda a: a.merge(person, body.absorb))
    audit.target = f"{album}/{info.id}"
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
    """Erase a person: every face, vector, crop and constraint of theirs, the photos left with no
    face (added again, such a photo is scanned again), the stored answers of calls on them or
    naming them (Idempotency-Key; by any id that held their faces, merged ones included, or name)
    and (unless the server keeps them) their ids and names in the audit trail. Copies promoted
    into a gallery collection are that collection's subject: erase them there."""
    erased = await _call(album, meter, analyzer, gallery, db, lambda a: a.erase(person))
    audit.target = await forget_album_erasure(request, accounts, settings, meter.principal.tenant_id, album, erased,
                                              called=person, drop=("person",))
    return {"person": person, "faces_deleted": erased.faces_deleted, "photos_deleted": erased.photos_deleted}


@router.delete("/albums/{album}/faces/{face}", response_model=AlbumFaceDeleteOut)
async def delete_face(album: AlbumName, face: FaceId, analyzer: AnalyzerDep, gallery: GalleryDep, db: DbDep,
                      meter: Annotated[Meter, Depends(metered("albums.erase", "write", billable=False,
                                                              idempotent=True))],
                      audit: Annotated[AuditEntry, audited("album.delete_face", "{album}/{face}")],
                      accounts: AccountsDep, settings: SettingsDep, request: Request) -> dict[str, Any]:
    """Delete one face (a person's or one of the unsorted pool): its vector, crop and constraints,
    its photo when no face is left on it, its person when it was their last face (erased as a
    person is, with what named them)."""
    erased = await _call(album, meter, analyzer, gallery, db, lambda a: a.delete_face(face))
    await forget_album_erasure(request, accounts, settings, meter.principal.tenant_id, album, erased)
    return {"face": face, **erased.to_dict()}


@router.delete("/albums/{album}/photos/{photo}", response_model=AlbumPhotoDeleteOut)
async def delete_photo(album: AlbumName, photo: PhotoId, analyzer: AnalyzerDep, gallery: GalleryDep, db: DbDep,
                       meter: Annotated[Meter, Depends(metered("albums.erase", "write", billable=False,
                                                               idempotent=True))],
                       audit: Annotated[AuditEntry, audited("album.delete_photo", "{album}/{photo}")],
                       accounts: AccountsDep, settings: SettingsDep, request: Request) -> dict[str, Any]:
    """Delete a photo (its row: hash, source, date) and every face on it, as deleting each face
    does; added again, it is scanned again."""
    erased = await _call(album, meter, analyzer, gallery, db, lambda a: a.delete_photo(photo))
    await forget_album_erasure(request, accounts, settings, meter.principal.tenant_id, album, erased)
    return {"photo": photo, **erased.to_dict()}


@router.delete("/albums/{album}", response_model=AlbumDeleteOut)
async def delete_album(album: AlbumName, gallery: GalleryDep, db: DbDep,
                       meter: Annotated[Meter, Depends(metered("albums.erase", "write", billable=False,
                                                               idempotent=True))],
                       audit: Annotated[AuditEntry, audited("album.delete", "{album}")],
                       accounts: AccountsDep, settings: SettingsDep, request: Request) -> dict[str, Any]:
    """Delete an album whole: its people, faces, vectors, crops, photos and gallery space, the
    stored answers of every call on it (Idempotency-Key) and (unless the server keeps them) the ids
    of what was in it in the audit trail; the album's own records keep its name. An album of any
    pack is deleted (the server's need not be its). Copies promoted into a gallery collection are
    that collection's subjects: erase them there."""
    return await delete_whole_album(request, accounts, settings, db, gallery, meter.principal.tenant_id, album)


async def delete_whole_album(request: Request, accounts: Any, settings: Any, db: Any, gallery: Any, tenant: str,
                             album: str) -> dict[str, Any]:
    """``erase_space_album`` of the tenant's ``album`` and what the doors keep of it: the ids of what was
    in it in the audit trail (unless the server keeps them) and the stored answers of every call
    under ``/v1/albums/{album}``; the API's DELETE and the console's delete call it. Returns the
    counts, as the API answers them."""
    erased = await run_in_threadpool(lambda: erase_space_album(db, gallery, accounts, gallery_tenant(tenant), album,
                                                               keep_ids=settings.audit_keeps_subject_ids).erased)
    await forget_erased(request, tenant, path=album_path(album))  # every answer of a call under it
    return {"album": album, **erased.to_dict()}


async def forget_album_erasure(request: Request, accounts: Any, settings: Any, tenant: str, album: str,
                               erased: Erasure, *, called: str | None = None, path: str | None = None,
                               drop: tuple[str, ...] = ()) -> str:
    """After an erasure in ``album`` (a person, a face, a photo): its people's ids and names and
    its faces leave the tenant's audit trail (unless the server keeps ids) and the stored answers
    of calls on them or naming them are forgotten (a rename by another reference, a merge, a split,
    a move, a rejection). ``path``: the API path of what was erased where the console erased it
    (default: this request's); ``drop``: the fields of this call's answer that name the erased (left
    out of its stored answer). Returns the target the erasure of a person is audited under."""
    target = await run_in_threadpool(lambda: erase_album_trail(accounts, gallery_tenant(tenant), album, erased,
                                                               called=called,
                                                               keep_ids=settings.audit_keeps_subject_ids).target)
    await forget_erased(request, tenant, also=album_answer_names(erased, album), path=path, drop=drop)
    return target if target is not None else album


@router.post("/albums/{album}/people/{person}/promote", response_model=AlbumPromoteOut)
async def promote_person(album: AlbumName, person: PersonRef, body: PromoteRequest, analyzer: AnalyzerDep,
                         gallery: GalleryDep, tenant_gallery: TenantGalleryDep, db: DbDep,
                         meter: Annotated[Meter, Depends(metered("albums.promote", "write", idempotent=True))],
                         audit: Annotated[AuditEntry, audited("album.promote", "{album}/{person}")]) -> dict[str, Any]:
    """Enrol the person's faces as ``subject`` of one of the tenant's gallery collections (same pack).
    The subject is the collection's own copy: erasing the album's person (or the album) leaves it,
    to be erased in the collection."""

    def promote(opened: Album) -> tuple[str, int]:
        return opened.person(person).id, opened.promote(person, tenant_gallery, body.collection, body.subject)

    pid, added = await _call(album, meter, analyzer, gallery, db, promote)
    audit.target = f"{album}/{pid}"
    return {"collection": body.collection, "subject": body.subject, "faces": added, "person": pid}
