"""`faceatlas album ...`: a photo library's faces grouped into people (scan, people, show, name,
merge, move, split, reject, recluster, timeline, together, erase, delete-face, delete-photo, delete).
``--json`` for machines."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape

from faceatlas.apps.albums import CHUNK, UNSORTED, Album, Erasure, album_pack, list_albums, list_photos, migrate
from faceatlas.cli.errors import (
    ANSWERS_IN_MEMORY,
    ANSWERS_UNREACHED,
    Output,
    WholeTable,
    emit_json,
    exit_for_failures,
    interrupted,
)
from faceatlas.cli.files import progress
from faceatlas.cli.options import database_option
from faceatlas.engine import FaceAnalyzer, default_pack_name
from faceatlas.errors import CommandLineError, NotFound
from faceatlas.gallery import Gallery, space_owner
from faceatlas.settings import ServiceSettings

app = typer.Typer(help="Photo albums: group a library's faces into people and correct them.", no_args_is_help=True)
console = Output()
err = Console(stderr=True)

AlbumOption = Annotated[str, typer.Option("--album", "-a", help="album name")]
DbOption = Annotated[str | None, typer.Option("--db", callback=database_option,
                                              help="database URL (default: FACEATLAS_DATABASE_URL or "
                                                   "~/.local/share/faceatlas)")]
PackOption = Annotated[str | None, typer.Option("--pack", "-p", help="model pack (default: the album's; for a "
                                                                     "new album FACEATLAS_PACK or the default pack)")]
JsonOption = Annotated[bool, typer.Option("--json", help="machine-readable JSON on stdout")]
TenantOption = Annotated[str, typer.Option("--tenant", help="tenant whose albums (and, to promote into, gallery "
                                                            "collections) to use; a service tenant's: svc:<id>")]


@contextmanager
def _album(name: str, db: str | None, pack: str | None, tenant: str, *, create: bool = False) -> Iterator[Album]:
    """The album ``name`` of ``tenant``; only a scan (``create``) makes a new one, else a missing
    album is not_found."""
    chosen = pack or album_pack(name, db, owner=tenant) or default_pack_name()
    with Album.open(name, FaceAnalyzer(chosen, announce_license=False), db, owner=tenant, create=create) as album:
        yield album


def _out(data: Any, as_json: bool, text: str) -> None:
    if as_json:
        emit_json(data, indent=2)
    else:
        console.print(text, soft_wrap=True)


@app.command()
def scan(folder: Annotated[Path, typer.Argument(file_okay=False, help="folder of photos")],
         album: AlbumOption = "default", db: DbOption = None, tenant: TenantOption = "default", pack: PackOption = None,
         as_json: JsonOption = False) -> None:
    """Add the photos under FOLDER (recursive; photos scanned before are skipped by content)."""
    seen = [0, 0]  # photos looked at, of

    def advance(done: int, total: int) -> None:
        seen[:] = [done, total]
        bar.update(task, completed=done, total=total)

    listing = list_photos(folder)  # a folder with no photo to add: its error, before an album is made or a bar drawn
    try:
        with _album(album, db, pack, tenant, create=True) as opened, progress(err, disable=as_json) as bar:
            task = bar.add_task("scanning", total=len(listing.paths))
            report = opened.scan(listing, on_progress=advance)
            for erased in report.erased:  # the photos overwritten at their paths went as delete-photo's do
                _erase_trail(opened, erased)
    except KeyboardInterrupt:
        interrupted(seen[0], seen[1], "photos", f"the photos added before the stop are kept (they are added "
                    f"{CHUNK} at a time); `album scan` again continues (photos scanned before are skipped)", as_json)
    _out(report.to_dict(), as_json,
         f"{report.photos} photos added, {report.skipped} skipped"
         + (f" ({report.moved} found at a new path)" if report.moved else "")
         + (f", {report.changed} photos changed (their earlier faces dropped)" if report.changed else "")
         + f", {len(report.failed)} failed; "
         f"{report.faces} faces placed, {report.unsorted} unsorted, {report.new_people} new people")
    if not as_json:
        for rejection in report.failed:  # the reasons were in --json only
            err.print(f"failed: {escape(rejection.source)}: {escape(rejection.reason)}")
    if report.left_out:  # iPhone photos were passed over without a word
        err.print(f"{len(report.left_out)} HEIC/HEIF photos left out (FaceAtlas does not decode them; convert them to "
                  f"JPEG first), e.g. {escape(report.left_out[0])}")
    exit_for_failures(len(report.failed), report.photos + report.skipped + len(report.failed))


@app.command()
def people(album: AlbumOption = "default", db: DbOption = None, tenant: TenantOption = "default",
           min_faces: Annotated[int, typer.Option("--min-faces", help="list only people with at least this many "
                                                  "faces (by default every person, one of one face just split off "
                                                  "too, as the API and the Python client list them)")] = 1,
           as_json: JsonOption = False) -> None:
    """People with at least --min-faces faces, most faces first, with their cover face."""
    with _album(album, db, None, tenant) as opened:
        found = opened.people(min_faces=min_faces)
    if as_json:
        _out([p.to_dict() for p in found], True, "")
        return
    table = WholeTable("person", "name", "faces", "cover face", "cover photo")
    for p in found:
        table.add_row(p.id, escape(p.name or ""), str(p.faces), str(p.cover_face), escape(p.cover_source or ""))
    console.print(table)


@app.command()
def show(person: str, album: AlbumOption = "default", db: DbOption = None, tenant: TenantOption = "default",
         sheet: Annotated[Path | None, typer.Option("--sheet", help="write a contact sheet PNG of the faces")] = None,
         as_json: JsonOption = False) -> None:
    """A person's faces (``unsorted``: the pool the quality gate keeps); --sheet draws them."""
    ref = None if person == UNSORTED else person
    drawn = None
    with _album(album, db, None, tenant) as opened:
        faces = opened.faces(ref)
        if sheet is not None:
            drawn = opened.contact_sheet(ref, sheet)
    if drawn is not None and drawn.unreadable:  # on stderr: --json keeps its list of faces
        err.print(f"warning: {len(drawn.unreadable)} photos could not be read (moved, deleted or changed since "
                  f"the scan? `album scan` their folder again); their faces are grey tiles on the sheet:",
                  soft_wrap=True)
        for source in drawn.unreadable:
            err.print(f"  missing: {escape(source)}", soft_wrap=True)
    if as_json:
        _out([f.to_dict() for f in faces], True, "")
        return
    table = WholeTable("face", "photo", "quality", "yaw")
    for f in faces:
        table.add_row(str(f.id), escape(f.source), f"{f.quality:.2f}", f"{f.yaw:.0f}")
    console.print(table)
    if drawn is not None:
        err.print(f"contact sheet: {escape(str(drawn.path))} ({drawn.faces} faces, {len(drawn.unreadable)} photos "
                  "unreadable)",
                  soft_wrap=True)
    elif sheet is not None:  # a blank 112x112 PNG was written, "(0 faces...)"
        err.print(f"no faces in {escape(person)}: no contact sheet written", soft_wrap=True)


@app.command()
def name(person: str, new_name: str, album: AlbumOption = "default", db: DbOption = None,
         tenant: TenantOption = "default",
         as_json: JsonOption = False) -> None:
    """Name a person."""
    with _album(album, db, None, tenant) as opened:
        info = opened.name_person(person, new_name)
    _out(info.to_dict(), as_json, f"{info.id} is {escape(info.name or '')}")


@app.command()
def merge(keep: str, absorb: str, album: AlbumOption = "default", db: DbOption = None, tenant: TenantOption = "default",
          as_json: JsonOption = False) -> None:
    """ABSORB is the same person as KEEP (kept through scans and re-clusters)."""
    with _album(album, db, None, tenant) as opened:
        info = opened.merge(keep, absorb)
    _out(info.to_dict(), as_json, f"{info.id}: {info.faces} faces")


@app.command()
def move(face: int, person: str, album: AlbumOption = "default", db: DbOption = None, tenant: TenantOption = "default",
         as_json: JsonOption = False) -> None:
    """FACE is PERSON."""
    with _album(album, db, None, tenant) as opened:
        moved = opened.move(face, person)
    _out(moved.to_dict(), as_json, f"face {moved.id} -> {moved.person}")


@app.command()
def split(faces: list[int], album: AlbumOption = "default", db: DbOption = None,
          tenant: TenantOption = "default", as_json: JsonOption = False) -> None:
    """FACES are one new person, not the person they were with."""
    with _album(album, db, None, tenant) as opened:
        info = opened.split(faces)
    _out(info.to_dict(), as_json, f"new person {info.id}: {info.faces} faces")


@app.command()
def reject(face: int, album: AlbumOption = "default", db: DbOption = None,
           tenant: TenantOption = "default", as_json: JsonOption = False) -> None:
    """FACE is not the person it is with (never put back)."""
    with _album(album, db, None, tenant) as opened:
        moved = opened.reject(face)
    _out(moved.to_dict(), as_json, f"face {moved.id} -> {moved.person}")


@app.command()
def recluster(album: AlbumOption = "default", db: DbOption = None,
              tenant: TenantOption = "default", as_json: JsonOption = False) -> None:
    """Cluster the whole album again (corrections kept)."""
    with _album(album, db, None, tenant) as opened:
        report = opened.recluster()
    _out(report.to_dict(), as_json, f"{report.moved} faces moved; {report.people} people")


@app.command()
def timeline(person: str, album: AlbumOption = "default", db: DbOption = None,
             tenant: TenantOption = "default", as_json: JsonOption = False) -> None:
    """A person's photos by EXIF date (``unsorted``: the photos holding a face of that pool)."""
    with _album(album, db, None, tenant) as opened:
        photos = opened.timeline(None if person == UNSORTED else person)
    _out([p.to_dict() for p in photos], as_json,
         "\n".join(f"{p.taken_at or '(no date)'}  {escape(p.source)}" for p in photos)
         or f"no photo holds a face of {escape(person)}")  # was an empty line


@app.command()
def together(people: list[str], album: AlbumOption = "default", db: DbOption = None, tenant: TenantOption = "default",
             as_json: JsonOption = False) -> None:
    """Photos in which all of PEOPLE appear."""
    with _album(album, db, None, tenant) as opened:
        photos = opened.together(people)
    _out([p.to_dict() for p in photos], as_json,
         "\n".join(f"{p.taken_at or '(no date)'}  {escape(p.source)}" for p in photos)
         or f"no photo holds all of {escape(', '.join(people))}")  # was an empty line


YesOption = Annotated[bool, typer.Option("--yes", "-y", help="do not ask for confirmation")]
PROMOTED = "copies promoted into a gallery collection (`album promote`) are its own: delete them there"


def _ask(what: str, yes: bool, as_json: bool) -> None:
    """Ask before deleting ``what`` (a plain prompt: no markup to escape); declined: "Aborted.",
    exit 1, as `gallery delete` and `admin tenant delete`. ``--json`` has nothing to ask in: it
    erased without a question, so it needs ``--yes``."""
    if not yes and as_json:
        raise CommandLineError(f"--json cannot ask before deleting {what}: give --yes")
    if not yes:
        typer.confirm(f"delete {what}?", abort=True, err=True)


def _erased(erased: Erasure) -> str:
    return (f"{erased.faces_deleted} faces, {erased.photos_deleted} photos left with no face and "
            f"{erased.people_deleted} people left with no face deleted")


def _erase_trail(opened: Album, erased: Erasure, called: str | None = None) -> str | None:
    """In a service tenant's album (``--tenant svc:<id>``), what the erasure removed leaves that
    tenant's audit trail too (unless FACEATLAS_AUDIT_KEEPS_SUBJECT_IDS) and the servers' stored
    Idempotency-Key answers that name it where Redis keeps them (FACEATLAS_REDIS_URL), as the API's
    delete does. Returns what to say of those answers when they were out of reach (:func:`_said`)."""
    # the API's use case (the service's, imported when it runs, as `delete`)
    from faceatlas.service.tenants import deployment_answers, erase_album_trail, service_accounts

    settings = ServiceSettings.from_env()
    accounts = service_accounts(opened.gallery)  # None: a database that was never served
    served = accounts is not None and space_owner(opened.owner) is not None
    answers = deployment_answers(opened.gallery, settings.redis_url) if served else None
    done = erase_album_trail(accounts, opened.owner, opened.name, erased, called=called,
                             keep_ids=settings.audit_keeps_subject_ids, answers=answers)
    return _answers_note(served, answers is not None, done.answers)


def _answers_note(served: bool, given: bool, replaced: int | None) -> str | None:
    """What to say of the servers' stored answers after an erasure in a service tenant's album
    (``served``), as `gallery delete` says it: out of reach without Redis (``given``: it was set),
    or Redis unreachable (``replaced`` None); else nothing."""
    if served and not given:
        return ANSWERS_IN_MEMORY
    if served and replaced is None:
        return ANSWERS_UNREACHED
    return None


def _said(note: str | None) -> None:
    if note is not None:
        err.print(note)


@app.command()
def erase(person: str, album: AlbumOption = "default", db: DbOption = None,
          tenant: TenantOption = "default", yes: YesOption = False,
          as_json: JsonOption = False) -> None:
    """Erase a person: every face, vector, crop and constraint of theirs and the photos left with no
    face (copies promoted into a gallery collection are its own: delete them there)."""
    with _album(album, db, None, tenant) as opened:  # an unknown person is an error before any question
        info = opened.person(person)
        shown = f"{info.id} ({info.name})" if info.name else info.id  # a plain prompt: no markup to escape
        if not yes and as_json:  # nothing to ask in: it erased without a question
            raise CommandLineError(f"--json cannot ask before erasing {shown}: give --yes")
        if not yes:  # declined: "Aborted.", exit 1, as `gallery delete` and `admin tenant delete`
            typer.confirm(f"erase {shown} and their {info.faces} faces?", abort=True, err=True)
        erased = opened.erase(person)
        note = _erase_trail(opened, erased, person)
    _out({"person": person, "faces_deleted": erased.faces_deleted, "photos_deleted": erased.photos_deleted},
         as_json, f"{erased.faces_deleted} faces erased, {erased.photos_deleted} photos left with no face deleted")
    _said(note)
    if not as_json:
        err.print(PROMOTED)


@app.command("delete-face")
def delete_face(face: int, album: AlbumOption = "default", db: DbOption = None,
                tenant: TenantOption = "default", yes: YesOption = False,
                as_json: JsonOption = False) -> None:
    """Delete one FACE (a person's or one of the unsorted pool), its photo when no face is left on
    it, its person when it was their last face."""
    with _album(album, db, None, tenant) as opened:  # an unknown face is an error before any question
        found = opened.face(face)
        _ask(f"face {found.id} ({found.person or UNSORTED})", yes, as_json)
        erased = opened.delete_face(face)
        note = _erase_trail(opened, erased)
    _out({"face": face, **erased.to_dict()}, as_json, _erased(erased))
    _said(note)


@app.command("delete-photo")
def delete_photo(photo: int, album: AlbumOption = "default", db: DbOption = None,
                 tenant: TenantOption = "default", yes: YesOption = False,
                 as_json: JsonOption = False) -> None:
    """Delete a PHOTO (by id, as `album timeline --json` gives it) and every face on it; scanned again
    when found again."""
    with _album(album, db, None, tenant) as opened:
        found = opened.photo(photo)
        _ask(f"photo {found.id} ({found.source}) and every face on it", yes, as_json)
        erased = opened.delete_photo(photo)
        note = _erase_trail(opened, erased)
    _out({"photo": photo, **erased.to_dict()}, as_json, _erased(erased))
    _said(note)


@app.command()
def delete(name: Annotated[str, typer.Argument(help="the album to delete")], db: DbOption = None,
           tenant: TenantOption = "default",
           yes: YesOption = False, as_json: JsonOption = False) -> None:
    """Delete the album NAME whole: its people, faces, vectors, crops, photos and gallery space (an
    album of any pack; copies promoted into a gallery collection are its own: delete them there)."""
    with Gallery.open(db, create=False) as gallery:  # a missing database is an error, and none is made
        migrate(gallery.engine)  # the album tables, on a database no album was made in yet
        if name not in list_albums(gallery.engine, tenant):  # an error before any question
            raise NotFound(f"no album '{name}'")
        _ask(f"album '{name}' with every person, face and photo of it", yes, as_json)
        # the API's use case (the service's, imported when it runs: the other commands do not pay for it)
        from faceatlas.service.tenants import deployment_answers, erase_space_album, service_accounts

        settings = ServiceSettings.from_env()
        accounts = service_accounts(gallery)  # None: a database that was never served
        served = accounts is not None and space_owner(tenant) is not None
        answers = deployment_answers(gallery, settings.redis_url) if served else None
        done = erase_space_album(gallery.engine, gallery, accounts, tenant, name,
                                 keep_ids=settings.audit_keeps_subject_ids, answers=answers)
        erased = done.erased
    _out({"album": name, **erased.to_dict()}, as_json,
         f"album {escape(name)} deleted: {erased.people_deleted} people, {erased.faces_deleted} faces, "
         f"{erased.photos_deleted} photos")
    _said(_answers_note(served, answers is not None, done.answers))
    if not as_json:
        err.print(PROMOTED)


@app.command()
def promote(person: str, collection: str, subject: str, album: AlbumOption = "default", db: DbOption = None,
            tenant: TenantOption = "default",
            as_json: JsonOption = False) -> None:
    """Enrol PERSON's faces as SUBJECT of a gallery COLLECTION (of the album's pack) of the same tenant."""
    with _album(album, db, None, tenant) as opened, Gallery.open(db, tenant=tenant) as gallery:
        added = opened.promote(person, gallery, collection, subject)
    _out({"person": person, "collection": collection, "subject": subject, "faces": added}, as_json,
         f"{added} faces enrolled as {escape(subject)} in {escape(collection)}")
