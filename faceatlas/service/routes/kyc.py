"""Remote identity verification: a session with a server-chosen challenge, one submission of the
ID document image and a selfie video (or frames), one audited decision; only the tenant's own."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Body, Depends, Path, Query, Request
from pydantic import Field
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException

from faceatlas.apps.kyc import STATUSES
from faceatlas.errors import InvalidArgument, UnsupportedMediaType
from faceatlas.gallery import PAGE_MAX
from faceatlas.service.accounts import MAX_RETENTION_DAYS
from faceatlas.service.deps import (
    UNDECODABLE_IMAGE,
    UNPARSED_BODY,
    AccountsDep,
    KycDep,
    Meter,
    MeteredRoute,
    PoolDep,
    charge_pixels,
    check_form,
    error_answers,
    media_type,
    metered,
    unmeter,
)
from faceatlas.service.schemas import JSON_INTEGER, KycSessionList, KycSessionOut, RequestBody
from faceatlas.service.tenants import gallery_tenant

router = APIRouter(tags=["kyc"], route_class=MeteredRoute)
Status = Literal[STATUSES]  # type: ignore[valid-type]
SessionId = Annotated[str, Path(min_length=32, max_length=32, pattern="^[0-9a-f]{32}$")]
MAX_FRAMES = 300


class SessionRequest(RequestBody):
    # strict: true was read as 1 day and 0.0 as 0, as PATCH /v1/settings refuses them
    retention_days: int | None = Field(default=None, ge=0, le=MAX_RETENTION_DAYS, strict=True,
                                       description="days the reference face images are kept: at most the "
                                       "tenant's setting (PATCH /v1/settings, 0 unless its admin set more), "
                                       f"which is the default; {JSON_INTEGER}")


@router.post("/kyc/sessions", status_code=201, response_model=KycSessionOut)
async def create_session(
    meter: Annotated[Meter, Depends(metered("kyc.session", "detect", billable=False, idempotent=True))],
    kyc: KycDep,
    accounts: AccountsDep,
    options: Annotated[SessionRequest | None, Body()] = None,
) -> dict[str, Any]:
    """A new session: its id, the challenge to perform (random, chosen here) and its expiry."""
    tenant_id = meter.principal.tenant_id

    def create() -> Any:
        allowed = accounts.get_tenant(tenant_id).kyc_retention_days
        asked = None if options is None else options.retention_days
        if asked is not None and asked > allowed:
            raise InvalidArgument(f"retention_days {asked} is more than the tenant keeps ({allowed} days; "
                                  "its admin sets it with PATCH /v1/settings)")
        return kyc.create(gallery_tenant(tenant_id), None, retention_days=allowed if asked is None else asked)

    info = await run_in_threadpool(create)
    return info.to_dict()


@router.post(
    "/kyc/sessions/{session_id}/submit",
    response_model=KycSessionOut,
    openapi_extra={"requestBody": {"required": True, "content": {"multipart/form-data": {"schema": {
        "type": "object", "required": ["document"], "additionalProperties": False,
        "properties": {"document": {"type": "string", "format": "binary"},
                       "selfie": {"type": "string", "format": "binary", "description": "a video (mp4, webm, mov)"},
                       "frame": {"type": "array", "items": {"type": "string", "format": "binary"},
                                 "maxItems": MAX_FRAMES,
                                 "description": f"or the selfie as images, in order (at most {MAX_FRAMES})"},
                       "fps": {"type": "number", "description": "the frames' rate (default 10)"}}}}}},
                   "responses": error_answers(f"{UNDECODABLE_IMAGE} (the document, a frame, or the selfie video)",
                                              "bad_request: no selfie (video or frames) given", UNPARSED_BODY)},
)
async def submit_session(
    session_id: SessionId,
    request: Request,
    meter: Annotated[Meter, Depends(metered("kyc.verify", "detect", idempotent=True))],
    kyc: KycDep,
    pool: PoolDep,
) -> dict[str, Any]:
    """Decide the session (once: a decided session answers its decision again, neither billed nor
    counted: no work is done; it was billed each time, even for an empty document)."""
    if media_type(request) != "multipart/form-data":
        raise UnsupportedMediaType("send the document and the selfie as multipart/form-data")
    try:  # the document and MAX_FRAMES frames (or a video): 301 frames were taken (max_files was + 2)
        form = await request.form(max_files=MAX_FRAMES + 1)
    except StarletteHTTPException as exc:
        if "Too many files" not in str(exc.detail):
            raise
        raise InvalidArgument(f"too many files: a submission is the document and at most {MAX_FRAMES} frames "
                              "(or one selfie video)") from exc
    check_form(form, ("document", "selfie", "frame", "fps"), repeated=("frame",))
    if len(form.getlist("frame")) > MAX_FRAMES:
        raise InvalidArgument(f"too many files: a submission is the document and at most {MAX_FRAMES} frames "
                              "(or one selfie video)")
    document = form.get("document")
    if document is None or isinstance(document, str):
        raise InvalidArgument("multipart field 'document' (the ID document image) is required")
    selfie = form.get("selfie")
    if isinstance(selfie, str) or any(isinstance(part, str) for part in form.getlist("frame")):
        raise InvalidArgument("'selfie' (a video) and 'frame' (images) are files, not text fields")
    frames = [part for part in form.getlist("frame") if not isinstance(part, str)]
    if (selfie is None) == (not frames):
        raise InvalidArgument("give the selfie as one video ('selfie') or as images ('frame', repeated)")
    fps_field = form.get("fps")
    try:
        fps = float(fps_field) if isinstance(fps_field, str) and fps_field else None
    except ValueError as exc:
        raise InvalidArgument("fps must be a number") from exc
    before = await run_in_threadpool(kyc.get, gallery_tenant(meter.principal.tenant_id), session_id)
    if before.decided:  # a well-formed request, answered by the decision
        await run_in_threadpool(unmeter, request, meter)
        return before.to_dict()
    document_bytes = await document.read()
    frame_bytes = [await part.read() for part in frames]
    video = None if selfie is None or isinstance(selfie, str) else await selfie.read()
    charge_pixels(request, [document_bytes, *frame_bytes])  # every image's pixels, as on every route
    info = await pool.run(lambda: kyc.submit(gallery_tenant(meter.principal.tenant_id), session_id, document_bytes,
                                             video=video, frames=frame_bytes or None, fps=fps),
                      tenant=meter.principal.tenant_id)
    if info.decided_before:  # another submission decided it while this one waited: no work was done
        await run_in_threadpool(unmeter, request, meter)
        return info.to_dict()
    meter.faces = 1 if info.accepted else 0
    return info.to_dict()


@router.get("/kyc/sessions/{session_id}", response_model=KycSessionOut)
async def get_session(
    session_id: SessionId,
    meter: Annotated[Meter, Depends(metered("kyc.session", "detect", billable=False))],
    kyc: KycDep,
) -> dict[str, Any]:
    """The session, its decision and its audit."""
    info = await run_in_threadpool(kyc.get, gallery_tenant(meter.principal.tenant_id), session_id)
    return info.to_dict()


@router.get("/kyc/sessions", response_model=KycSessionList)
async def list_sessions(
    meter: Annotated[Meter, Depends(metered("kyc.session", "read", billable=False))],
    kyc: KycDep,
    status: Status | None = None,
    limit: Annotated[int, Query(ge=1, le=PAGE_MAX)] = 100,
    after: Annotated[str | None, Query(max_length=100, description="a previous page's next_cursor")] = None,
) -> dict[str, Any]:
    """The tenant's sessions, newest first, with their decisions and reasons (for review), a page
    of ``limit`` (``next_cursor``: pass it as ``after`` for the next, older page; null on the
    last): the ``read`` scope, as every listing of stored data (a kiosk's ``detect`` key reads the
    sessions it made, by their ids)."""
    tenant = gallery_tenant(meter.principal.tenant_id)
    page = await run_in_threadpool(lambda: kyc.list(tenant, status=status, limit=limit, after=after))
    return {"sessions": [info.to_dict() for info in page.items], "next_cursor": page.next_cursor}
