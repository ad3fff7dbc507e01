"""Collections, subjects, enrolment, 1:N search and 1:1 verify-subject, scoped to the caller's tenant.

Every route works on the caller's tenant view of the gallery (``TenantGalleryDep``); writes are
audited by the ``audited(...)`` dependency they declare, but a subject's update, audited only when
it changed something."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path as FsPath
from typing import Annotated, Any, BinaryIO, Literal

from fastapi import APIRouter, Depends, Path, Query, Request
from fastapi.responses import Response, StreamingResponse
from pydantic import Field
from starlette.background import BackgroundTask
from starlette.concurrency import run_in_threadpool

from faceatlas.engine import DEFAULT_FAR, DEFAULT_FPIR, Cut, Embedding, NoFace
from faceatlas.errors import AlreadyExists, InvalidArgument, RateLimited
from faceatlas.gallery import (
    ID_MAX_LENGTH,
    ID_PATTERN,
    PAGE_MAX,
    SEARCH_K_MAX,
    CollectionInfo,
    Gallery,
    Identified,
    calibration_for,
    read_header,
)
from faceatlas.service.accounts import Principal
from faceatlas.service.deps import (
    UNPARSED_BODY,
    AccountsDep,
    AnalyzerDep,
    AuditEntry,
    CalibrationsDep,
    Meter,
    MeteredRoute,
    PoolDep,
    SettingsDep,
    TenantGalleryDep,
    audited,
    check_form,
    error_answers,
    get_shared,
    image_request_body,
    json_body,
    media_type,
    metered,
    read_images,
)
from faceatlas.service.idempotency import store_answer_at
from faceatlas.service.paths import COLLECTIONS_PATH, subjects_path
from faceatlas.service.schemas import (
    CollectionCreatedOut,
    CollectionList,
    CollectionOut,
    EnrolOut,
    RequestBody,
    SearchOut,
    SubjectOut,
    SubjectPage,
    VerifyOut,
)
from faceatlas.service.tenants import erase_gallery_collection, erase_gallery_subject

router = APIRouter(tags=["galleries"], route_class=MeteredRoute)
# The gallery's one rule for collection names and subject ids, in bodies and in URL paths alike.
Name = Annotated[str, Field(min_length=1, max_length=ID_MAX_LENGTH, pattern=ID_PATTERN)]
CollectionName = Annotated[str, Path(min_length=1, max_length=ID_MAX_LENGTH, pattern=ID_PATTERN)]
SubjectId = Annotated[str, Path(min_length=1, max_length=ID_MAX_LENGTH, pattern=ID_PATTERN)]
SUBJECT = "{collection}/{subject}"


class CollectionRequest(RequestBody):
    name: Name
    keep_crops: bool = Field(default=False, description="store a source crop of each face (enables re-embedding)")
    metadata: dict[str, Any] = Field(default_factory=dict)
    exist_ok: bool = Field(default=False, description=(
        "an \"ensure\" step: a collection of this name bound to the server's pack (the same embedding space) "
        "with the same keep_crops is answered 200 with \"existed\": true, nothing changed; one made otherwise "
        "is still 409 already_exists, naming what differs"))


class SubjectRequest(RequestBody):
    id: Name
    name: str | None = Field(default=None, max_length=300)
    metadata: dict[str, Any] = Field(default_factory=dict)


class MergeRequest(RequestBody):
    into: Name = Field(description="the subject that keeps every face (its metadata wins)")


class SubjectUpdate(RequestBody):
    name: str | None = Field(default=None, max_length=300)
    metadata: dict[str, Any] | None = None


# -- collections -----------------------------------------------------------------------------------


@router.get("/collections", response_model=CollectionList)
async def list_collections(
    meter: Annotated[Meter, Depends(metered("collections.list", "read"))], gallery: TenantGalleryDep
) -> dict[str, Any]:
    """The tenant's collections with their pack and sizes."""
    return {"collections": [c.to_dict() for c in await run_in_threadpool(gallery.list_collections)]}


@router.post("/collections", status_code=201, response_model=CollectionCreatedOut, response_model_exclude_none=True,
             responses={200: {"model": CollectionCreatedOut, "description": "it was there already (exist_ok)"},
                        409: {"description": "already_exists: a collection of this name (made otherwise, with "
                                             "exist_ok)"}})
async def create_collection(
    body: CollectionRequest,
    meter: Annotated[Meter, Depends(metered("collections.create", "write", idempotent=True))],
    gallery: TenantGalleryDep,
    analyzer: AnalyzerDep,
    audit: Annotated[AuditEntry, audited("collection.create", "")],
    response: Response,
) -> dict[str, Any]:
    """A collection bound to the server's model pack (its embeddings never mix with another's)."""
    audit.target = body.name
    try:
        info = await run_in_threadpool(
            lambda: gallery.create_collection(body.name, analyzer, keep_crops=body.keep_crops, metadata=body.metadata)
        )
    except AlreadyExists:
        if not body.exist_ok:
            raise
        held = await run_in_threadpool(lambda: gallery.existing_collection(body.name, analyzer,
                                                                           keep_crops=body.keep_crops))
        audit.skip = True  # nothing changed: nothing to record
        response.status_code = 200
        return {**held.to_dict(), "existed": True}
    return {**info.to_dict(), **({"existed": False} if body.exist_ok else {})}


@router.get("/collections/{collection}", response_model=CollectionOut)
async def get_collection(
    collection: CollectionName,
    meter: Annotated[Meter, Depends(metered("collections.get", "read"))],
    gallery: TenantGalleryDep,
) -> dict[str, Any]:
    return (await run_in_threadpool(gallery.get_collection, collection)).to_dict()


# a 204 is a bare Response: the default JSONResponse sent content-type: application/json with no body
@router.delete("/collections/{collection}", status_code=204, response_class=Response,
               dependencies=[audited("collection.delete")])
async def delete_collection(
    collection: CollectionName,
    meter: Annotated[Meter, Depends(metered("collections.delete", "write", idempotent=True))],
    gallery: TenantGalleryDep,
    accounts: AccountsDep,
    settings: SettingsDep,
    request: Request,
) -> None:
    """Delete a collection with every subject, face, vector and crop in it, the stored answers
    of calls on them (Idempotency-Key), and (unless the server keeps them) its subjects' ids in the
    audit trail."""
    await run_in_threadpool(lambda: erase_gallery_collection(gallery, accounts, collection,
                                                             keep_ids=settings.audit_keeps_subject_ids,
                                                             answers=request.app.state.shared))
    store_answer_at(request, COLLECTIONS_PATH)  # its stored answer names it no more either


EXPORT_RETRY_S = 5  # the Retry-After of an export refused while the tenant's others are under way
EXPORTS = "exports"  # the kind of a tenant's places in the shared state that its exports take
EXPORTS_HELD = ("rate_limited: the tenant has FACEATLAS_MAX_EXPORTS_PER_TENANT collection exports being built or "
                "downloaded already (in every process of the server, with Redis)")


def _export_place(request: Request, principal: Principal) -> Callable[[], None]:
    """A place among the tenant's exports under way in every process of the deployment (the shared
    state's: FACEATLAS_MAX_EXPORTS_PER_TENANT, each holds a copy of its collection in TMPDIR until its
    download ends, and downloads held unread kept 100 copies at once), or a 429 with Retry-After: the
    tenant's own limit, as its rate's. The shared state unreachable: 503, never an export unbounded."""
    limit = request.app.state.settings.max_exports_per_tenant
    release = get_shared(request).take_slot(EXPORTS, principal.tenant_id, limit)
    if release is None:
        request.app.state.metrics.rejected.labels("rate_limited").inc()
        raise RateLimited(f"this tenant has {limit} collection exports being built or downloaded "
                          "already, the most at once: retry once one is done", retry_after=EXPORT_RETRY_S)
    return release


@router.get("/collections/{collection}/export", response_class=StreamingResponse,
            responses={200: {"content": {"application/vnd.apache.parquet": {}}}})
async def export_collection(
    collection: CollectionName,
    meter: Annotated[Meter, Depends(metered("collections.export", "write", hold=_export_place,
                                                   held=EXPORTS_HELD))],
    gallery: TenantGalleryDep,
    audit: Annotated[AuditEntry, audited("collection.export")],
    crops: Annotated[bool, Query(description="include the stored face crops (images of faces)")] = False,
) -> StreamingResponse:
    """The collection as a Parquet file (subjects, embeddings with their pack identity, crops
    when asked): ``POST /collections/import`` of the same file restores it. An export is a copy
    outside the gallery: a later erasure cannot reach it. A tenant has at most
    FACEATLAS_MAX_EXPORTS_PER_TENANT (2) exports being built or downloaded at once, across every
    process of the server (they agree through Redis): another is 429 ``rate_limited`` with
    Retry-After, neither billed nor counted."""
    folder = tempfile.mkdtemp(prefix="faceatlas-export-")
    path = FsPath(folder) / f"{collection}.parquet"
    try:
        audit.details["faces"] = await run_in_threadpool(lambda: gallery.export(collection, path, with_crops=crops))
        file = path.open("rb")
    except BaseException:
        meter.release()  # in the loop, never blocking it (SharedState.take_slot: freed from another thread)
        raise
    finally:  # removed before a byte is sent: the open file is streamed, its data gone once closed (a task
        # run after the answer was not run for an answer cut short, a server stopped: the copy stayed in TMPDIR)
        shutil.rmtree(folder, ignore_errors=True)

    def done() -> None:
        file.close()
        meter.release()

    return StreamingResponse(_chunks(file, meter), media_type="application/vnd.apache.parquet", headers={
        "Content-Disposition": f'attachment; filename="{path.name}"',  # a collection name needs no quoting
        "Content-Length": str(os.fstat(file.fileno()).st_size)}, background=BackgroundTask(done))


def _chunks(file: BinaryIO, meter: Meter, size: int = 64 * 1024) -> Iterator[bytes]:
    """``file`` read in ``size`` chunks, closed at the end or when the answer stops, and the export's
    place among its tenant's freed with it (``meter`` is held until then)."""
    try:
        with file:
            while chunk := file.read(size):
                yield chunk
    finally:
        meter.release()


@router.post("/collections/import", status_code=201, response_model=CollectionOut, openapi_extra={
    "requestBody": {"required": True, "content": {"multipart/form-data": {"schema": {
        "type": "object", "required": ["file"], "additionalProperties": False,
        "properties": {"file": {"type": "string", "format": "binary",
                                "description": "a collection export (GET /collections/{collection}/export)"}}}}}},
    "responses": error_answers("bad_request: a file that is not a FaceAtlas collection export, or one of a format "
                               "this version does not read", UNPARSED_BODY,
                               too_large="payload_too_large: a body over the size limit", media_types=None)})
async def import_collection(
    request: Request,
    meter: Annotated[Meter, Depends(metered("collections.import", "write", idempotent=True))],
    gallery: TenantGalleryDep,
    audit: Annotated[AuditEntry, audited("collection.import", "")],
    name: Annotated[str | None, Query(min_length=1, max_length=ID_MAX_LENGTH, pattern=ID_PATTERN,
                                      description="the new collection's name (default: the exported one)")] = None,
) -> dict[str, Any]:
    """Create a collection from an export (multipart field ``file``), keeping its pack identity."""
    form = await request.form()
    check_form(form, ("file",))
    upload = form.get("file")
    if upload is None or isinstance(upload, str):
        raise InvalidArgument("multipart field 'file' (a Parquet export) is required")
    with tempfile.TemporaryDirectory(prefix="faceatlas-import-") as folder:
        path = FsPath(folder) / "import.parquet"
        path.write_bytes(await upload.read())
        info = await run_in_threadpool(lambda: _import(gallery, path, name))
    audit.target = info.name
    return info.to_dict()


def _import(gallery: Gallery, path: FsPath, name: str | None) -> CollectionInfo:
    target = name or read_header(path)["collection"]
    gallery.import_(path, name=target)
    return gallery.get_collection(target)


# -- subjects ----------------------------------------------------------------------------------------


@router.post(
    "/collections/{collection}/subjects",
    status_code=201,
    response_model=SubjectOut,
)
async def add_subject(
    collection: CollectionName,
    body: SubjectRequest,
    meter: Annotated[Meter, Depends(metered("subjects.create", "write", idempotent=True))],
    gallery: TenantGalleryDep,
    audit: Annotated[AuditEntry, audited("subject.create")],
) -> dict[str, Any]:
    info = await run_in_threadpool(
        lambda: gallery.add_subject(collection, body.id, name=body.name, metadata=body.metadata)
    )
    audit.target = f"{collection}/{body.id}"
    return info.to_dict()


@router.get("/collections/{collection}/subjects", response_model=SubjectPage)
async def list_subjects(
    collection: CollectionName,
    meter: Annotated[Meter, Depends(metered("subjects.list", "read"))],
    gallery: TenantGalleryDep,
    limit: Annotated[int, Query(ge=1, le=PAGE_MAX)] = 100,
    after: Annotated[str | None, Query(pattern=r"^\d+$")] = None,
) -> dict[str, Any]:
    """Subjects page by page: pass ``next_cursor`` back as ``after`` (``next``, the same, is deprecated)."""
    page = await run_in_threadpool(lambda: gallery.list_subjects(collection, limit=limit, after=after))
    return {"subjects": [s.to_dict() for s in page.items], "next_cursor": page.next_cursor, "next": page.next_cursor}


@router.get("/collections/{collection}/subjects/{subject}", response_model=SubjectOut)
async def get_subject(
    collection: CollectionName,
    subject: SubjectId,
    meter: Annotated[Meter, Depends(metered("subjects.get", "read"))],
    gallery: TenantGalleryDep,
) -> dict[str, Any]:
    return (await run_in_threadpool(gallery.get_subject, collection, subject)).to_dict()


@router.patch("/collections/{collection}/subjects/{subject}", response_model=SubjectOut)
async def update_subject(
    collection: CollectionName,
    subject: SubjectId,
    body: SubjectUpdate,
    meter: Annotated[Meter, Depends(metered("subjects.update", "write", idempotent=True))],
    gallery: TenantGalleryDep,
    accounts: AccountsDep,
) -> dict[str, Any]:
    """Change a subject's name or metadata (merged); audited when something changed (``{}`` or
    the same name again writes no audit record)."""
    change = await run_in_threadpool(
        lambda: gallery.change_subject(collection, subject, name=body.name, metadata=body.metadata)
    )
    if change.changed:  # audited as `audited` does (a replay never runs this), only when it changed something
        await run_in_threadpool(accounts.audit_committed, "subject.update", f"{collection}/{subject}",
                                meter.principal.tenant_id, meter.principal.key_id)
    return change.subject.to_dict()


@router.delete("/collections/{collection}/subjects/{subject}", status_code=204, response_class=Response)
async def delete_subject(
    collection: CollectionName,
    subject: SubjectId,
    meter: Annotated[Meter, Depends(metered("subjects.delete", "write", idempotent=True))],
    gallery: TenantGalleryDep,
    audit: Annotated[AuditEntry, audited("subject.delete", SUBJECT)],
    accounts: AccountsDep,
    settings: SettingsDep,
    request: Request,
) -> None:
    """Delete a subject and every trace of it: faces, vectors, crops, index entries, the stored
    answers of calls on it or naming it or an id merged into it (Idempotency-Key), and (unless the
    server keeps them) its id and those merged into it in the audit trail."""
    erased = await run_in_threadpool(lambda: erase_gallery_subject(
        gallery, accounts, collection, subject, keep_ids=settings.audit_keeps_subject_ids,
        answers=request.app.state.shared))
    audit.details["faces"], audit.target = erased.faces, erased.target
    store_answer_at(request, subjects_path(collection))  # its stored answer names it no more either


@router.post("/collections/{collection}/subjects/{subject}/merge", response_model=SubjectOut)
async def merge_subject(
    collection: CollectionName,
    subject: SubjectId,
    body: MergeRequest,
    meter: Annotated[Meter, Depends(metered("subjects.merge", "write", idempotent=True))],
    gallery: TenantGalleryDep,
    audit: Annotated[AuditEntry, audited("subject.merge", SUBJECT)],
) -> dict[str, Any]:
    """Move every face of ``subject`` to ``into`` and delete ``subject`` (one person enrolled twice)."""
    audit.details["into"] = body.into
    return (await run_in_threadpool(lambda: gallery.merge_subjects(collection, body.into, subject))).to_dict()


@router.post(
    "/collections/{collection}/subjects/{subject}/faces",
    status_code=201,
    response_model=EnrolOut,
    response_model_exclude_unset=True,
    openapi_extra=image_request_body("image"),
)
async def enrol(
    collection: CollectionName,
    subject: SubjectId,
    request: Request,
    meter: Annotated[Meter, Depends(metered("enrol", "write", idempotent=True))],
    gallery: TenantGalleryDep,
    pool: PoolDep,
    audit: Annotated[AuditEntry, audited("face.enrol", SUBJECT)],
    accounts: AccountsDep,
    all_faces: Annotated[bool, Query(description="enrol every face, not only the largest")] = False,
    min_quality: Annotated[float, Query(ge=0, le=1)] = 0.0,
) -> dict[str, Any]:
    """Enrol the face(s) of an image to a subject (created when new). With an ``Idempotency-Key``
    header, a retry with the same key enrols nothing more and answers the first answer again."""
    info = await run_in_threadpool(lambda: gallery.get_collection(collection, counts=False))  # 404 before the image
    images, _ = await read_images(request, "image")
    if all_faces:
        faces, crops = await pool.faces_and_crops(images["image"], keep_crops=info.keep_crops,
                                                  tenant=meter.principal.tenant_id)
        found = len(faces)
    else:
        largest = await pool.largest_face(images["image"], keep_crops=info.keep_crops, tenant=meter.principal.tenant_id)
        faces, crops, found = largest.faces, largest.crops, largest.found
    meter.faces = len(faces)
    report = await run_in_threadpool(
        lambda: gallery.enrol_faces(collection, subject, faces, crops=crops, min_quality=min_quality)
    )
    if report.created_subject:  # audited as POST /subjects audits it: the trail says the subject was made
        await run_in_threadpool(accounts.audit_committed, "subject.create", f"{collection}/{subject}",
                                meter.principal.tenant_id, meter.principal.key_id, {"by": "enrol"})
    audit.details["faces"] = len(report.added)
    return {"face_ids": report.added, "faces": [f.to_dict() for f in report.faces], "rejected": len(report.rejected),
            "faces_in_image": found}


# -- search and verify -------------------------------------------------------------------------------


@router.post(
    "/collections/{collection}/search",
    response_model=SearchOut,
    response_model_exclude_unset=True,
    openapi_extra=image_request_body("image", instead={
        "embedding": {"type": "array", "items": {"type": "number"}},
        "recognizer_id": {"type": "string", "description": "the embedding's space (as /detect returns it)"},
    }),
)
async def search(
    collection: CollectionName,
    request: Request,
    meter: Annotated[Meter, Depends(metered("search", "read"))],
    gallery: TenantGalleryDep,
    pool: PoolDep,
    calibrations: CalibrationsDep,
    k: Annotated[int, Query(ge=1, le=SEARCH_K_MAX)] = 5,
    fpir: Annotated[float | None, Query(gt=0, lt=1, description="cut at this false positive identification rate: "
                                                                "the share of searches by people not enrolled "
                                                                "that name anyone, for the collection's current "
                                                                f"size (default {DEFAULT_FPIR:g})")] = None,
    far: Annotated[float | None, Query(gt=0, lt=1, description="cut at this 1:1 false-accept rate per comparison "
                                                               "(instead of fpir)")] = None,
    threshold: Annotated[float | None, Query(ge=-1, le=1, description="raw cosine cut-off (instead of fpir)")] = None,
    rank_only: Annotated[bool, Query(description="rank without deciding: strangers get their nearest subjects")]
    = False,
    aggregate: Annotated[Literal["best", "mean"], Query()] = "best",
    all_faces: Annotated[bool, Query()] = False,
) -> dict[str, Any]:
    """1:N: who is this, or nobody. The subjects most similar to the query face(s) (image) or to an
    ``embedding`` with its ``recognizer_id`` that reach the cut (``fpir``, default 1e-3, for the
    collection's size; or a 1:1 ``far``, or a raw ``threshold``); ``unknown`` is true when none does.
    An embedding of another space than the collection's is ``model_mismatch``."""
    # one cut of threshold, far and fpir; rank_only drops the default fpir and goes with none of them
    decision = Cut.given(threshold=threshold, far=far, fpir=fpir, rank_only=rank_only)
    options: dict[str, Any] = {"cut": decision, "k": k, "aggregate": aggregate}  # Gallery.identify, as the console
    cut = decision.stated()
    # a collection that is not there is 404 before the body is read or any face analysed (as the CLI's search)
    info = await run_in_threadpool(lambda: gallery.get_collection(collection, counts=False))
    body = await json_body(request) if media_type(request) == "application/json" else {}
    if isinstance(body, dict) and "embedding" in body:
        unknown = sorted(set(body) - {"embedding", "recognizer_id"})
        if unknown:  # refused as read_images refuses them, never silently ignored (an image too)
            raise InvalidArgument(f"unknown field(s) {', '.join(map(repr, unknown))}: a search by embedding "
                                  "takes 'embedding' and 'recognizer_id'")
        vector = Embedding.parse(body["embedding"], body.get("recognizer_id"))

        def identify() -> list[Identified]:
            # the collection's calibration from the files parsed already: it was read from disk per search
            calibration = calibration_for(info, gallery.settings, calibrations)
            return gallery.identify_faces(collection, [vector], calibration=calibration, **options)

        identified = await run_in_threadpool(identify)
        meter.faces = 1
        return {"results": [r.to_dict() for r in identified], **cut}
    decision.check(pool.analyzer.calibration)  # a far the pack has no threshold for: refused before any face
    images, _ = await read_images(request, "image")
    if all_faces:
        faces = await pool.analyze(images["image"], tenant=meter.principal.tenant_id)
        found = len(faces)
    else:
        largest = await pool.largest_face(images["image"], tenant=meter.principal.tenant_id)
        faces, found = largest.faces, largest.found
    meter.faces = len(faces)
    results = await run_in_threadpool(lambda: gallery.identify_faces(
        collection, faces, calibration=pool.analyzer.calibration, **options))
    return {"results": [r.to_dict() for r in results], **cut, "faces_in_image": found}


@router.post(
    "/collections/{collection}/subjects/{subject}/verify",
    response_model=VerifyOut,
    response_model_exclude_unset=True,
    openapi_extra=image_request_body("image"),
)
async def verify(
    collection: CollectionName,
    subject: SubjectId,
    request: Request,
    meter: Annotated[Meter, Depends(metered("verify", "read"))],
    gallery: TenantGalleryDep,
    pool: PoolDep,
    far: Annotated[float | None, Query(gt=0, lt=1, description=f"1:1 false-accept rate (default {DEFAULT_FAR:g})")]
    = None,
    threshold: Annotated[float | None, Query(ge=-1, le=1, description="raw cosine cut-off (instead of far)")] = None,
) -> dict[str, Any]:
    """1:1 against an enrolled subject: is the largest face of the image this subject?"""
    # one of them; neither: the default far; a far the pack has no threshold for is refused before any face
    cut = Cut.verifying(threshold=threshold, far=far).check(pool.analyzer.calibration)
    # a collection or subject that is not there is 404 before the image is read or any face analysed
    await run_in_threadpool(gallery.get_subject, collection, subject)
    images, _ = await read_images(request, "image")
    largest = await pool.largest_face(images["image"], tenant=meter.principal.tenant_id)
    faces = largest.faces
    if not faces:
        raise NoFace("no face found in the image")
    meter.faces = 1
    calibration = pool.analyzer.calibration
    verdict = await run_in_threadpool(
        lambda: gallery.verify(collection, subject, faces[0], cut=cut, calibration=calibration)
    )
    return {**verdict.to_dict(), "face": faces[0].to_dict(), "faces_in_image": largest.found}

