"""Albums: the tenant's photo albums, people with their face crops (albums made with crops kept),
the corrections by clicking (name, merge, split, move, not this person) and the erasures (a person,
a face, a photo, the whole album) once confirmed. The console reaches albums as the ``/v1/albums``
routes do (:func:`call_album`) and calls the same use cases; corrections become the album's
constraints, kept through later scans and re-clusters; an erasure forgets what the API's does
(audit trail, stored answers)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any

from fastapi import APIRouter, File, Form, Path, Request, UploadFile
from fastapi.responses import Response
from starlette.concurrency import run_in_threadpool

from faceatlas.apps.albums import UNSORTED, Album, PersonInfo, list_albums
from faceatlas.errors import IdempotencyInFlight, InvalidArgument, NotFound
from faceatlas.gallery import ID_MAX_LENGTH, ID_PATTERN, NAME_MAX_LENGTH
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
    redirect,
    render,
    seg,
)
from faceatlas.service.console.uploads import MAX_PHOTOS, audit, each_photo
from faceatlas.service.db import PERSON_REF_MAX_LENGTH
from faceatlas.service.deps import AccountsDep, AnalyzerDep, DbDep, GalleryDep, Meter, PoolDep, SettingsDep
from faceatlas.service.paths import album_path
from faceatlas.service.routes.albums import (
    FaceId,
    PhotoId,
    call_album,
    delete_whole_album,
    forget_album_erasure,
    scan_upload,
)
from faceatlas.service.tenants import gallery_tenant

router = APIRouter(route_class=ConsoleRoute)
AlbumName = Annotated[str, Path(min_length=1, max_length=ID_MAX_LENGTH, pattern=ID_PATTERN)]
PersonRef = Annotated[str, Path(min_length=1, max_length=PERSON_REF_MAX_LENGTH)]
PersonField = Annotated[str, Form(min_length=1, max_length=PERSON_REF_MAX_LENGTH)]
FaceIds = Annotated[list[int], Form(max_length=10_000)]
Back = Annotated[str, Form(max_length=PERSON_REF_MAX_LENGTH)]  # the person page a form was sent from


# The questions asked before a destructive action, in one place for the page's dialog (console.js,
# the form's data-confirm) and the page that asks first (:func:`base.ask_first`).
def person_label(person: PersonInfo) -> str:
    """How a question names a person: their name and id, or their id."""
    return f"“{person.name}” ({person.id})" if person.name else f"{person.id} (unnamed)"


def merge_question(absorb: str, into: str) -> str:
    """What merging ``absorb`` into ``into`` does (:meth:`Album.merge`), the name lost included (the
    page's dialog fills in the people chosen, as :func:`person_label` names them)."""
    return (f"Merge {absorb} into {into}? Every face of {absorb} joins {into}. The merged person keeps the name of "
            f"{into}, or takes that of {absorb} when {into} has none: where both are named, the name of {absorb} "
            "is lost. Undo the merge by splitting their faces again (a lost name is not restored).")


def _trail(keeps_ids: bool) -> str:
    return ("their ids stay in the audit trail (this server keeps subject ids)" if keeps_ids
            else "their ids and names are removed from the audit trail")


def erase_person_question(person: str, keeps_ids: bool) -> str:
    """What erasing ``person`` does (:meth:`Album.erase`; ``keeps_ids``: the server's
    ``audit_keeps_subject_ids``)."""
    return (f"Erase {person}? Every face of theirs is deleted with its vector, crop and corrections, and so are "
            f"the photos left with no face; {_trail(keeps_ids)}. Copies promoted into a gallery collection stay "
            "there. This cannot be undone.")


def delete_face_question(face: int) -> str:
    """What deleting one face does (:meth:`Album.delete_face`)."""
    return (f"Delete face {face}? Its vector, crop and corrections go, its photo too when no other face is on it, "
            "and its person when it was their last face. This cannot be undone.")


def delete_photo_question(photo: int) -> str:
    """What deleting one photo does (:meth:`Album.delete_photo`)."""
    return (f"Delete photo {photo} and every face on it (vectors, crops, corrections; a person left with no face "
            "goes too)? Added again, the photo is scanned again. This cannot be undone.")


def delete_album_question(album: str) -> str:
    """What deleting an album does (:func:`erase_album`)."""
    return (f"Delete album {album} with every person, face, crop and photo in it? Copies promoted into a gallery "
            "collection stay there. This cannot be undone.")


@router.get("/albums", include_in_schema=False)
async def albums(request: Request, user: UserDep, db: DbDep) -> Response:
    meter = await gate(request, user.principal, "albums.people", "read", billable=False)
    names = await run_in_threadpool(list_albums, db, gallery_tenant(meter.principal.tenant_id))
    return render(request, "albums.html", user, albums=names, can_write=user.principal.allows("write"),
                  max_photos=MAX_PHOTOS)


@router.post("/albums/photos", include_in_schema=False)
async def add_photos(request: Request, user: PostingUserDep, accounts: AccountsDep, analyzer: AnalyzerDep,
                     pool: PoolDep, gallery: GalleryDep, db: DbDep,
                     album: Annotated[str, Form(min_length=1, max_length=ID_MAX_LENGTH, pattern=ID_PATTERN)],
                     photos: Annotated[list[UploadFile], File()],
                     keep_crops: Annotated[bool | None, Form()] = None, once: Once = "") -> Response:
    """Add photos to an album (created when new, by its first photo that decodes): one metered
    ``albums.scan`` call per photo; audited when one was added. ``keep_crops`` (the box: ticked,
    true; unticked it sends nothing, the album's setting) as the API's upload takes it. A key
    without the write scope is refused before any photo (:func:`each_photo`): no audit line, no
    "no album" page. The form's one-time token ``once``: sent again (a double click), it adds
    nothing and bills nothing, and answers the first sending's outcomes (:func:`base.first_sending`;
    after a sending cut short, the photos it had not done: :func:`each_photo`)."""
    tenant = user.principal.tenant_id

    async def add_one(data: bytes, meter: Meter) -> dict[str, Any]:
        # refused before the album is made, as the API's upload is: a file that is no photo made an empty album
        report = await scan_upload(album, tenant, pool, analyzer, gallery, db, data, keep_crops=keep_crops)
        meter.faces = report.faces + report.unsorted
        if report.failed:  # the scan's report, shown as the other outcomes are
            failed = report.failed[0]
            return {"ok": False, "code": failed.code, "message": failed.message}
        return {"faces": meter.faces, "skipped": bool(report.skipped)}

    async def add_all() -> dict[str, Any]:
        done = await each_photo(request, user.principal, "albums.scan", "write", photos, add_one,
                                once=once, path=f"{album_path(album)}/photos")
        if any(outcome["ok"] and not outcome.get("sent_before") for outcome in done):
            await audit(accounts, user.principal, "album.scan", album, {"photos": len(done)})
        return {"outcomes": done, "unfinished": any(o.get("code") == IdempotencyInFlight.code for o in done)}

    sent = await first_sending(request, tenant, once, f"{album_path(album)}/photos", add_all)
    outcomes, sent_before = sent["outcomes"], sent.get("sent_before", False)
    skipped = max(0, len(photos) - MAX_PHOTOS)
    names = await run_in_threadpool(list_albums, db, gallery_tenant(tenant))
    if album not in names:  # no photo made it
        return render(request, "albums.html", user, 422, albums=names, can_write=True, max_photos=MAX_PHOTOS,
                      album=album, outcomes=outcomes, skipped=skipped)
    return await _album_page(request, user, analyzer, gallery, db, album, outcomes=outcomes, skipped=skipped,
                             sent_before=sent_before)


@router.get("/albums/{album}", include_in_schema=False)
async def album_page(request: Request, user: UserDep, analyzer: AnalyzerDep, gallery: GalleryDep, db: DbDep,
                     album: AlbumName) -> Response:
    await gate(request, user.principal, "albums.people", "read", billable=False)
    return await _album_page(request, user, analyzer, gallery, db, album)


async def _album_page(request: Request, user: Any, analyzer: Any, gallery: Any, db: Any, album: str,
                      **context: Any) -> Response:
    def read(a: Album) -> tuple[list[Any], int, bool]:
        return a.people(), len(a.faces(None)), a.keeps_crops

    await _existing(db, user, album)
    people, unsorted, crops = await call_album(album, user.principal.tenant_id, analyzer, gallery, db, read)
    return render(request, "album.html", user, album=album, people=people, unsorted=unsorted, crops=crops,
                  can_write=user.principal.allows("write"), person_label=person_label,
                  merge_question=merge_question("{absorb}", "{into}"),
                  delete_album_question=delete_album_question(album), **context)


@router.get("/albums/{album}/people/{person}", include_in_schema=False)
async def person_page(request: Request, user: UserDep, settings: SettingsDep, analyzer: AnalyzerDep,
                      gallery: GalleryDep, db: DbDep, album: AlbumName, person: PersonRef) -> Response:
    await gate(request, user.principal, "albums.people", "read", billable=False)

    def read(a: Album) -> tuple[Any, list[Any], list[Any], bool]:
        info = None if person == UNSORTED else a.person(person)
        return info, a.faces(None if info is None else info.id), a.people(), a.keeps_crops

    await _existing(db, user, album)
    info, faces, people, crops = await call_album(album, user.principal.tenant_id, analyzer, gallery, db, read)
    return render(request, "album_person.html", user, album=album, person=info, faces=faces, crops=crops,
                  others=[p for p in people if info is None or p.id != info.id],
                  can_write=user.principal.allows("write"), delete_face_question=delete_face_question,
                  delete_photo_question=delete_photo_question,
                  erase_question=erase_person_question(person_label(info), settings.audit_keeps_subject_ids)
                  if info is not None else None)


@router.get("/albums/{album}/faces/{face}", include_in_schema=False)
async def face_crop(request: Request, user: UserDep, analyzer: AnalyzerDep, gallery: GalleryDep, db: DbDep,
                    album: AlbumName, face: FaceId) -> Response:
    """A face's kept crop (albums made with crops kept)."""
    await gate(request, user.principal, "albums.people", "read", billable=False)
    await _existing(db, user, album)
    crop = await call_album(album, user.principal.tenant_id, analyzer, gallery, db, lambda a: a.face_crop(face))
    if crop is None:
        raise NotFound(f"album '{album}' keeps no face crops")
    return Response(crop, media_type="image/jpeg", headers={"Cache-Control": "private, no-store"})


@router.post("/albums/{album}/people/{person}/name", include_in_schema=False)
async def name_person(request: Request, user: PostingUserDep, accounts: AccountsDep, analyzer: AnalyzerDep,
                      gallery: GalleryDep, db: DbDep, album: AlbumName, person: PersonRef,
                      name: Annotated[str, Form(min_length=1, max_length=NAME_MAX_LENGTH)]) -> Response:
    info = await _correct(request, user, accounts, analyzer, gallery, db, album, "album.name",
                          lambda a: a.name_person(person, name), _person_id)
    return redirect(request, f"{PREFIX}/albums/{album}/people/{seg(info.id)}")


@router.post("/albums/{album}/merge", include_in_schema=False)
async def merge(request: Request, user: PostingUserDep, accounts: AccountsDep, analyzer: AnalyzerDep,
                gallery: GalleryDep, db: DbDep, album: AlbumName,
                absorb: PersonField, into: PersonField, confirmed: Confirmed = "") -> Response:
    """Every face of ``absorb`` joins ``into`` (the same person), once confirmed: the question
    names both and says when a name is lost."""
    async def question() -> str:
        await _existing(db, user, album)
        people = await call_album(album, user.principal.tenant_id, analyzer, gallery, db,
                                  lambda a: (a.person(absorb), a.person(into)), create=False)
        return merge_question(*map(person_label, people))

    if asked := await ask_first(request, user, confirmed, "write", question, f"{PREFIX}/albums/{seg(album)}"):
        return asked
    info = await _correct(request, user, accounts, analyzer, gallery, db, album, "album.merge",
                          lambda a: a.merge(into, absorb), _person_id)
    return redirect(request, f"{PREFIX}/albums/{album}/people/{seg(info.id)}")


@router.post("/albums/{album}/split", include_in_schema=False)
async def split(request: Request, user: PostingUserDep, accounts: AccountsDep, analyzer: AnalyzerDep,
                gallery: GalleryDep, db: DbDep, album: AlbumName, faces: FaceIds = []) -> Response:  # noqa: B006
    """The ticked faces are one new person."""
    info = await _correct(request, user, accounts, analyzer, gallery, db, album, "album.split",
                          lambda a: a.split(_ticked(faces)), lambda _: None)
    return redirect(request, f"{PREFIX}/albums/{album}/people/{seg(info.id)}")


@router.post("/albums/{album}/move", include_in_schema=False)
async def move(request: Request, user: PostingUserDep, accounts: AccountsDep, analyzer: AnalyzerDep,
               gallery: GalleryDep, db: DbDep, album: AlbumName,
               to: PersonField, faces: FaceIds = []) -> Response:  # noqa: B006
    """The ticked faces are person ``to``."""
    await _correct(request, user, accounts, analyzer, gallery, db, album, "album.move",
                   lambda a: [a.move(face, to) for face in _ticked(faces)], lambda moved: moved[0].person)
    return redirect(request, f"{PREFIX}/albums/{album}/people/{seg(to)}")


@router.post("/albums/{album}/faces/{face}/reject", include_in_schema=False)
async def reject(request: Request, user: PostingUserDep, accounts: AccountsDep, analyzer: AnalyzerDep,
                 gallery: GalleryDep, db: DbDep, album: AlbumName, face: FaceId, back: Back = UNSORTED) -> Response:
    """Not this person: the face leaves the person and never joins it again. Back to the person's
    page, or to the album's when it was their only face (the person is gone with it: their page
    was a 404 after a rejection that worked)."""
    _, there = await _correct(request, user, accounts, analyzer, gallery, db, album, "album.reject",
                              lambda a: (a.reject(face), _exists(a, back)), lambda _: str(face))
    return redirect(request, _back(album, back, there))


@router.post("/albums/{album}/people/{person}/erase", include_in_schema=False)
async def erase_person(request: Request, user: PostingUserDep, accounts: AccountsDep, settings: SettingsDep,
                       analyzer: AnalyzerDep, gallery: GalleryDep, db: DbDep, album: AlbumName, person: PersonRef,
                       confirmed: Confirmed = "") -> Response:
    """Erase a person (:meth:`Album.erase`, as ``DELETE /v1/albums/{album}/people/{person}``), once
    confirmed: every face, vector, crop and constraint of theirs, the photos left with no face,
    their ids and names in the audit trail (unless the server keeps them) and the stored answers
    of API calls on them."""
    async def question() -> str:
        await _existing(db, user, album)
        info = await call_album(album, user.principal.tenant_id, analyzer, gallery, db,
                                lambda a: a.person(person), create=False)
        return erase_person_question(person_label(info), settings.audit_keeps_subject_ids)

    if asked := await ask_first(request, user, confirmed, "write", question,
                                f"{PREFIX}/albums/{seg(album)}/people/{seg(person)}"):
        return asked
    tenant = await _erasing(request, user, db, album)
    erased = await call_album(album, tenant, analyzer, gallery, db, lambda a: a.erase(person), create=False)
    target = await forget_album_erasure(request, accounts, settings, tenant, album, erased, called=person,
                                        path=f"{album_path(album)}/people/{person}")
    await audit(accounts, user.principal, "album.erase", target)
    return redirect(request, f"{PREFIX}/albums/{seg(album)}")


@router.post("/albums/{album}/faces/{face}/delete", include_in_schema=False)
async def delete_face(request: Request, user: PostingUserDep, accounts: AccountsDep, settings: SettingsDep,
                      analyzer: AnalyzerDep, gallery: GalleryDep, db: DbDep, album: AlbumName, face: FaceId,
                      back: Back = UNSORTED, confirmed: Confirmed = "") -> Response:
    """Delete one face (:meth:`Album.delete_face`, as ``DELETE /v1/albums/{album}/faces/{face}``),
    once confirmed; back to the page it was on, or the album's when its person went with it."""
    return await _delete_part(request, user, accounts, settings, analyzer, gallery, db, album, back, confirmed,
                              delete_face_question(face), "faces", face, lambda a: a.delete_face(face))


@router.post("/albums/{album}/photos/{photo}/delete", include_in_schema=False)
async def delete_photo(request: Request, user: PostingUserDep, accounts: AccountsDep, settings: SettingsDep,
                       analyzer: AnalyzerDep, gallery: GalleryDep, db: DbDep, album: AlbumName, photo: PhotoId,
                       back: Back = UNSORTED, confirmed: Confirmed = "") -> Response:
    """Delete a photo and every face on it (:meth:`Album.delete_photo`, as ``DELETE
    /v1/albums/{album}/photos/{photo}``), once confirmed; back as :func:`delete_face`."""
    return await _delete_part(request, user, accounts, settings, analyzer, gallery, db, album, back, confirmed,
                              delete_photo_question(photo), "photos", photo, lambda a: a.delete_photo(photo))


@router.post("/albums/{album}/delete", include_in_schema=False)
async def delete_album(request: Request, user: PostingUserDep, accounts: AccountsDep, settings: SettingsDep,
                       gallery: GalleryDep, db: DbDep, album: AlbumName, confirmed: Confirmed = "") -> Response:
    """Delete the album whole (``erase_album``, as ``DELETE /v1/albums/{album}``), once confirmed."""
    if asked := await ask_first(request, user, confirmed, "write", delete_album_question(album),
                                f"{PREFIX}/albums/{seg(album)}"):
        return asked
    tenant = await _erasing(request, user, db, album)
    await delete_whole_album(request, accounts, settings, db, gallery, tenant, album)
    await audit(accounts, user.principal, "album.delete", album)
    return redirect(request, f"{PREFIX}/albums")


async def _delete_part(request: Request, user: Any, accounts: Any, settings: Any, analyzer: Any, gallery: Any,
                       db: Any, album: str, back: str, confirmed: str, question: str, kind: str, number: int,
                       delete: Callable[[Album], Any]) -> Response:
    """A face or a photo deleted (``kind``: "faces" or "photos", as its API path names it), once
    confirmed: gated as an erasure, the API's stored answers on it forgotten, audited
    (``album.delete_face``/``album.delete_photo``); back to the page it was on, or the album's when
    its person went with it."""
    if asked := await ask_first(request, user, confirmed, "write", question, _back(album, back, True)):
        return asked
    tenant = await _erasing(request, user, db, album)
    erased, there = await call_album(album, tenant, analyzer, gallery, db,
                                     lambda a: (delete(a), _exists(a, back)), create=False)
    await forget_album_erasure(request, accounts, settings, tenant, album, erased,
                               path=f"{album_path(album)}/{kind}/{number}")
    await audit(accounts, user.principal, f"album.delete_{kind[:-1]}", f"{album}/{number}")
    return redirect(request, _back(album, back, there))


async def _erasing(request: Request, user: Any, db: Any, album: str) -> str:
    """The gate of an erasure (the API's ``albums.erase``, write scope) on an existing album; the tenant."""
    meter = await gate(request, user.principal, "albums.erase", "write", billable=False)
    await _existing(db, user, album)
    return meter.principal.tenant_id


def _exists(album: Album, ref: str) -> bool:
    """Whether the page of person ``ref`` (or of the unsorted pool) is still there after a change."""
    if ref == UNSORTED:
        return True
    try:
        album.person(ref)
    except NotFound:
        return False
    return True


def _back(album: str, ref: str, there: bool) -> str:
    """The page to see after a change made from person ``ref``'s page: theirs while it is ``there``,
    else the album's."""
    return f"{PREFIX}/albums/{seg(album)}/people/{seg(ref)}" if there else f"{PREFIX}/albums/{seg(album)}"


async def _correct(request: Request, user: Any, accounts: Any, analyzer: Any, gallery: Any, db: Any, album: str,
                   action: str, use: Callable[[Album], Any], target: Callable[[Any], str | None]) -> Any:
    """A correction, audited as the API audits it: on ``album/<target of what it did>`` (a person's
    id, whatever reference the form gave, so that erasing the person finds the record; a face's
    id), or on the album (``target`` None)."""
    await gate(request, user.principal, "albums.correct", "write", billable=False)
    await _existing(db, user, album)
    done = await call_album(album, user.principal.tenant_id, analyzer, gallery, db, use)
    on = target(done)
    await audit(accounts, user.principal, action, album if on is None else f"{album}/{on}")
    return done


def _person_id(info: Any) -> str:
    return str(info.id)


async def _existing(db: Any, user: Any, album: str) -> None:
    """Pages and corrections never create an album (only adding photos does)."""
    if album not in await run_in_threadpool(list_albums, db, gallery_tenant(user.principal.tenant_id)):
        raise NotFound(f"no album '{album}'")


def _ticked(faces: list[int]) -> list[int]:
    if not faces:
        raise InvalidArgument("tick at least one face")
    return faces
