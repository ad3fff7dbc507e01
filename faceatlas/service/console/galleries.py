"""Galleries: collections, subjects (thumbnails from stored crops), enrolment by upload, merge,
delete and search by photo. Each action passes the API's gate (:func:`base.gate`: scope, rate,
quota, usage) and calls the gallery as the ``/v1`` routes do."""

from __future__ import annotations

from functools import partial
from typing import Annotated, Any

from fastapi import APIRouter, File, Form, Path, Query, Request, UploadFile
from fastapi.responses import Response
from starlette.concurrency import run_in_threadpool

from faceatlas.engine import Cut
from faceatlas.errors import Forbidden, IdempotencyInFlight, NotFound
from faceatlas.gallery import ID_MAX_LENGTH, ID_PATTERN, NAME_MAX_LENGTH, check_text
from faceatlas.service.console.base import (
    PREFIX,
    Confirmed,
    ConsoleRoute,
    Once,
    PostingUserDep,
    UserDep,
    ask_first,
    first_sending,
    gate,
    is_htmx,
    metered,
    redirect,
    render,
)
from faceatlas.service.console.uploads import MAX_PHOTOS, audit, each_photo
from faceatlas.service.deps import (
    AccountsDep,
    AnalyzerDep,
    Meter,
    PoolDep,
    SettingsDep,
    charge_pixels,
    tenant_gallery,
)
from faceatlas.service.paths import subjects_path
from faceatlas.service.tenants import erase_gallery_collection, erase_gallery_subject

router = APIRouter(route_class=ConsoleRoute)
SUBJECTS_PAGE = 100  # subjects a collection page lists (each with a thumbnail query)
Name = Annotated[str, Path(min_length=1, max_length=ID_MAX_LENGTH, pattern=ID_PATTERN)]
FormName = Annotated[str, Form(min_length=1, max_length=ID_MAX_LENGTH, pattern=ID_PATTERN)]


# The questions asked before a destructive action, in one place for the page's dialog (console.js,
# the form's data-confirm) and the page that asks first (:func:`base.ask_first`): the dialog said
# that a deleted subject's id left the audit trail where the server keeps it.
def delete_subject_question(subject: str, keeps_ids: bool) -> str:
    """What deleting ``subject`` does (``keeps_ids``: the server's ``audit_keeps_subject_ids``)."""
    trail = "stays in the audit trail (this server keeps subject ids)" if keeps_ids else \
        "is removed from the audit trail"
    return (f"Delete {subject}? Every face, vector and crop of this subject is erased, and its id {trail}. "
            "This cannot be undone.")


def erasure_note(keeps_ids: bool) -> str:
    """What a subject's deletion erases, as the collection page states it under its subjects."""
    trail = ("keeps its id in the audit trail (this server keeps subject ids)" if keeps_ids
             else "replaces its id in the audit trail by “[erased]”")
    return ("Erasure: deleting a subject removes its faces, vectors, stored crops and index entries at once, "
            f"and {trail}. Exports made earlier are copies outside the gallery.")


def merge_question(absorb: str, into: str) -> str:
    """What merging ``absorb`` into ``into`` does (the page's dialog fills in the chosen subjects)."""
    return f"Merge subject {absorb} into {into}? Its faces move and it is deleted: this cannot be undone."


def delete_collection_question(collection: str) -> str:
    """What deleting ``collection`` does."""
    return f"Delete collection {collection} with every subject, face, vector and crop in it? This cannot be undone."


@router.get("/galleries", include_in_schema=False)
@metered("collections.list", "read")
async def collections(request: Request, user: UserDep) -> Response:
    await gate(request, user.principal, "collections.list", "read")
    gallery = tenant_gallery(request, user.principal)
    items = await run_in_threadpool(gallery.list_collections)
    return render(request, "galleries.html", user, collections=items, can_write=user.principal.allows("write"))


@router.post("/galleries", include_in_schema=False)
@metered("collections.create", "write")
async def create_collection(
    request: Request, user: PostingUserDep, analyzer: AnalyzerDep, accounts: AccountsDep,
    name: FormName, keep_crops: Annotated[bool, Form()] = False,
) -> Response:
    await gate(request, user.principal, "collections.create", "write")
    gallery = tenant_gallery(request, user.principal)
    await run_in_threadpool(lambda: gallery.create_collection(name, analyzer, keep_crops=keep_crops))
    await audit(accounts, user.principal, "collection.create", name)
    return redirect(request, f"{PREFIX}/galleries/{name}")


@router.get("/galleries/{collection}", include_in_schema=False)
@metered("subjects.list", "read")
async def collection_page(request: Request, user: UserDep, settings: SettingsDep, collection: Name,
                          after: Annotated[str | None, Query(max_length=400)] = None) -> Response:
    """The collection's subjects, :data:`SUBJECTS_PAGE` a page in id order (``after``: the page's
    cursor; subjects past the 500th could not be reached, merged or deleted here)."""
    await gate(request, user.principal, "subjects.list", "read")
    gallery = tenant_gallery(request, user.principal)

    def load() -> tuple[Any, list[Any], dict[str, int], str | None]:
        info = gallery.get_collection(collection)
        page = gallery.list_subjects(collection, limit=SUBJECTS_PAGE, after=after)
        subjects = page.items
        thumbs: dict[str, int] = {}
        if info.keep_crops:
            for subject in subjects:
                faces = gallery.list_faces(collection, subject=subject.external_id, limit=1).items
                if faces:
                    thumbs[subject.external_id] = faces[0].id
        return info, subjects, thumbs, page.next_cursor

    info, subjects, thumbs, next_cursor = await run_in_threadpool(load)
    keeps_ids = settings.audit_keeps_subject_ids
    return render(request, "collection.html", user, info=info, subjects=subjects, thumbs=thumbs,
                  can_write=user.principal.allows("write"), next_cursor=next_cursor, paged=after is not None,
                  delete_question=partial(delete_subject_question, keeps_ids=keeps_ids),
                  erasure_note=erasure_note(keeps_ids), merge_question=merge_question("{absorb}", "{into}"),
                  delete_collection_question=delete_collection_question(info.name))


@router.get("/galleries/{collection}/faces/{face_id}", include_in_schema=False)
async def face_thumbnail(request: Request, user: UserDep, collection: Name, face_id: int) -> Response:
    """A stored face crop (only when the collection keeps crops)."""
    await gate(request, user.principal, "faces.crop", "read", billable=False)
    gallery = tenant_gallery(request, user.principal)
    crop = await run_in_threadpool(gallery.face_crop, collection, face_id)
    if crop is None:
        raise NotFound(f"collection '{collection}' keeps no face crops")
    return Response(crop, media_type="image/jpeg", headers={"Cache-Control": "private, no-store"})


@router.post("/galleries/{collection}/enrol", include_in_schema=False)
@metered("enrol", "write")
async def enrol(
    request: Request, user: PostingUserDep, accounts: AccountsDep, pool: PoolDep, collection: Name,
    subject: FormName, photos: Annotated[list[UploadFile], File()],
    name: Annotated[str, Form(max_length=NAME_MAX_LENGTH)] = "", once: Once = "",
) -> Response:
    """Enrol the largest face of each photo to ``subject`` (created when new), as the API's enrol
    does without ``all_faces``: one metered ``enrol`` call per photo, as the API bills it; each
    photo's outcome is reported, with how many faces it held (a photo of two people said "enrolled
    1 face", and the subject mixed the two without a word; a key without the write scope: 403
    before any photo, as an album's upload answers). The form's one-time token ``once``: sent
    again (a double click on Enrol enrolled each photo twice, and billed it twice), the form
    enrols nothing and answers the first sending's outcomes (:func:`base.first_sending`)."""
    check_text(name, "name")  # refused before any photo is analysed and billed, as the subject id is
    principal = user.principal
    if not principal.allows("write"):  # before a second sending's outcome is shown, too
        raise Forbidden("this key lacks the 'write' scope")
    gallery = tenant_gallery(request, principal)
    info = await run_in_threadpool(lambda: gallery.get_collection(collection, counts=False))

    async def enrol_one(data: bytes, meter: Meter) -> dict[str, Any]:
        largest = await pool.largest_face(data, keep_crops=info.keep_crops, tenant=user.principal.tenant_id)
        meter.faces = len(largest.faces)
        report = await run_in_threadpool(partial(gallery.enrol_faces, collection, subject, largest.faces,
                                                 crops=largest.crops, source="console", name=name.strip() or None))
        if report.created_subject:  # as the API's enrol audits it
            await audit(accounts, principal, "subject.create", f"{collection}/{subject}", {"by": "enrol"})
        if report.renamed:  # as the API's PATCH of the subject audits a change
            await audit(accounts, principal, "subject.update", f"{collection}/{subject}")
        await audit(accounts, principal, "face.enrol", f"{collection}/{subject}", {"faces": len(report.added)})
        return {"faces": len(report.added), "found": largest.found}

    async def enrol_all() -> dict[str, Any]:
        outcomes = await each_photo(request, principal, "enrol", "write", photos, enrol_one, ok_status=201,
                                    once=once, path=f"{subjects_path(collection)}/{subject}/faces")
        return {"outcomes": outcomes, "skipped": max(0, len(photos) - MAX_PHOTOS),
                "unfinished": any(o.get("code") == IdempotencyInFlight.code for o in outcomes)}

    done = await first_sending(request, principal.tenant_id, once, f"{subjects_path(collection)}/{subject}/faces",
                               enrol_all)
    context: dict[str, Any] = {"info": info, "subject": subject, "outcomes": done["outcomes"],
                               "skipped": done["skipped"], "sent_before": done.get("sent_before", False)}
    if is_htmx(request):
        return render(request, "_enrol.html", user, next_once=True, **context)  # the form's next token
    return render(request, "enrolled.html", user, **context)


@router.post("/galleries/{collection}/search", include_in_schema=False)
@metered("search", "read")
async def search(request: Request, user: PostingUserDep, pool: PoolDep, collection: Name,
                 photo: Annotated[UploadFile, File()]) -> Response:
    """1:N: who is this, or nobody, at the API's default cut (:meth:`Gallery.identify` with
    ``Cut.given()``: FPIR 1e-3 for the collection's size; it cut at the 1:1 FAR 1e-4, which names
    ever more strangers as the collection grows); matches with similarity and FAR level, and the cut
    stated as the API states it. The largest face of the photo is searched, as the API's search does
    without ``all_faces``, and the answer says so when the photo holds several."""
    meter = await gate(request, user.principal, "search", "read")
    data = await photo.read()
    charge_pixels(request, [data])
    largest = await pool.largest_face(data, tenant=user.principal.tenant_id)
    gallery = tenant_gallery(request, user.principal)
    decision = Cut.given()  # the API's search without options
    meter.faces = len(largest.faces)  # analysed: billed whatever the search answers (as the API's)
    [result] = await run_in_threadpool(lambda: gallery.identify_faces(  # no face: NoFace
        collection, largest.faces, cut=decision, k=5, calibration=pool.analyzer.calibration))
    context: dict[str, Any] = {"collection": collection, "matches": result.matches, "cut": decision.stated(),
                               "found": largest.found}
    return render(request, "_search.html" if is_htmx(request) else "searched.html", user, **context)


@router.post("/galleries/{collection}/merge", include_in_schema=False)
@metered("subjects.merge", "write")
async def merge(request: Request, user: PostingUserDep, accounts: AccountsDep, collection: Name,
                absorb: FormName, into: FormName, confirmed: Confirmed = "") -> Response:
    """Move every face of ``absorb`` to ``into`` and delete ``absorb``, once confirmed."""
    if asked := await ask_first(request, user, confirmed, "write", merge_question(absorb, into),
                                f"{PREFIX}/galleries/{collection}"):
        return asked
    await gate(request, user.principal, "subjects.merge", "write")
    gallery = tenant_gallery(request, user.principal)
    await run_in_threadpool(lambda: gallery.merge_subjects(collection, into, absorb))
    await audit(accounts, user.principal, "subject.merge", f"{collection}/{absorb}", {"into": into})
    return redirect(request, f"{PREFIX}/galleries/{collection}")


@router.post("/galleries/{collection}/subjects/{subject}/delete", include_in_schema=False)
@metered("subjects.delete", "write")
async def delete_subject(request: Request, user: PostingUserDep, accounts: AccountsDep, settings: SettingsDep,
                         collection: Name, subject: Name, confirmed: Confirmed = "") -> Response:
    """Delete a subject and every trace of it (faces, vectors, crops, index entries, its id in the audit
    trail), once confirmed."""
    question = delete_subject_question(subject, settings.audit_keeps_subject_ids)
    if asked := await ask_first(request, user, confirmed, "write", question, f"{PREFIX}/galleries/{collection}"):
        return asked
    await gate(request, user.principal, "subjects.delete", "write")
    principal = user.principal
    gallery = tenant_gallery(request, principal)
    # the API's stored answers that name it name it no more, as the API's delete leaves them
    erased = await run_in_threadpool(lambda: erase_gallery_subject(
        gallery, accounts, collection, subject, keep_ids=settings.audit_keeps_subject_ids,
        answers=request.app.state.shared))
    await audit(accounts, principal, "subject.delete", erased.target, {"faces": erased.faces})
    return redirect(request, f"{PREFIX}/galleries/{collection}")


@router.post("/galleries/{collection}/delete", include_in_schema=False)
@metered("collections.delete", "write")
async def delete_collection(request: Request, user: PostingUserDep, accounts: AccountsDep, settings: SettingsDep,
                            collection: Name, confirmed: Confirmed = "") -> Response:
    """Delete a collection with every subject, face, vector and crop in it and (unless the server keeps
    them) its subjects' ids in the audit trail, once confirmed."""
    if asked := await ask_first(request, user, confirmed, "write", delete_collection_question(collection),
                                f"{PREFIX}/galleries/{collection}"):
        return asked
    await gate(request, user.principal, "collections.delete", "write")
    gallery = tenant_gallery(request, user.principal)
    await run_in_threadpool(lambda: erase_gallery_collection(gallery, accounts, collection,
                                                             keep_ids=settings.audit_keeps_subject_ids,
                                                             answers=request.app.state.shared))
    await audit(accounts, user.principal, "collection.delete", collection)
    return redirect(request, f"{PREFIX}/galleries")
