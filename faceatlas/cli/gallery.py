"""`faceatlas gallery ...`: collections of known faces (create, enrol, search, list, delete,
export, import, reembed). Human output by default, ``--json`` for machines."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any, NoReturn

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import Progress
from rich.table import Table
from sqlalchemy.engine import Engine
from sqlalchemy.exc import DBAPIError

from faceatlas.cli.errors import (
    ANSWERS_IN_MEMORY,
    ANSWERS_UNREACHED,
    Output,
    WholeTable,
    emit_json,
    exit_status,
    fail,
    interrupted,
    print_error,
)
from faceatlas.cli.files import folder_images, image_source, progress
from faceatlas.cli.options import database_option
from faceatlas.db import create_database_engine, default_database_url, normalize_url, one_reason, sqlite_path
from faceatlas.engine import (
    DEFAULT_FPIR,
    Cut,
    FaceAnalyzer,
    FaceAtlasError,
    default_pack_name,
    images_in,
    is_hidden,
    must_exist,
)
from faceatlas.errors import (
    AlreadyExists,
    CommandLineError,
    Conflict,
    DatabaseUnavailable,
    InvalidArgument,
    InvalidInput,
    NotFound,
)
from faceatlas.gallery import (
    PAGE_MAX,
    SEARCH_K_MAX,
    Gallery,
    Rejection,
    check_gallery_space,
    check_id,
    check_limit,
    check_min_quality,
    check_text,
    read_header,
    rejection_error,
    space_owner,
)
from faceatlas.settings import ServiceSettings

app = typer.Typer(help="Face galleries: enrol known people and identify faces against them.", no_args_is_help=True)
console = Output()
err = Console(stderr=True)

DbOption = Annotated[str | None, typer.Option("--db", callback=database_option,
                                              help="database URL or SQLite file (default: "
                                                   "FACEATLAS_DATABASE_URL or ~/.local/share/faceatlas)")]
TenantOption = Annotated[str, typer.Option("--tenant", help="tenant whose collections to use")]
JsonOption = Annotated[bool, typer.Option("--json", help="machine-readable JSON on stdout")]
PackOption = Annotated[str | None, typer.Option("--pack", "-p", help="model pack (default: the collection's; "
                                                                     "for create FACEATLAS_PACK or yunet-frfeature)")]


def _fail(exc: FaceAtlasError, as_json: bool) -> NoReturn:
    fail(exc, as_json)  # exit 2 (1: no_face), as every command


@contextmanager
def _gallery(db: str | None, tenant: str, as_json: bool, *, create: bool = False) -> Iterator[Gallery]:
    try:
        check_gallery_space(tenant)  # an album's or a store's space is changed through its app only
        gallery = Gallery.open(db, tenant=tenant, create=create)
    except FaceAtlasError as exc:
        _fail(exc, as_json)
    except (DBAPIError, OSError) as exc:  # a database that cannot be reached or used, said in one line; a bug is
        cause = getattr(exc, "orig", None) or exc  # its traceback (it was database_unavailable)
        _fail(DatabaseUnavailable(f"cannot open the gallery database: {one_reason(cause)}"), as_json)
    try:
        yield gallery
    except FaceAtlasError as exc:  # a ValueError of a bug was validation_error; the layers say InvalidArgument
        _fail(exc, as_json)
    finally:
        gallery.close()


def _emit(payload: Any, as_json: bool, human: str | Table) -> None:
    if as_json:
        emit_json(payload, indent=2)
    else:
        console.print(human)


def _progress() -> Progress:
    return progress(err)


@app.command()
def create(name: str, pack: PackOption = None, keep_crops: Annotated[bool, typer.Option(
        "--keep-crops", help="store a source crop of each face (allows reembed; stores face images)")] = False,
        exist_ok: Annotated[bool, typer.Option("--exist-ok", help="a collection of that name with the same pack "
                                                                  "and --keep-crops is no error: said, exit 0")]
        = False,
        db: DbOption = None, tenant: TenantOption = "default", as_json: JsonOption = False) -> None:
    """Create a collection bound to a model pack (and the database, the first time)."""
    with _gallery(db, tenant, as_json, create=True) as gallery:
        chosen, existed = pack or default_pack_name(), False
        try:
            info = gallery.create_collection(name, chosen, keep_crops=keep_crops)
        except AlreadyExists:
            if not exist_ok:
                raise
            info, existed = gallery.existing_collection(name, chosen, keep_crops=keep_crops), True  # or AlreadyExists
        done = "collection [bold]{}[/bold] exists" if existed else "created collection [bold]{}[/bold]"
        _emit({**info.to_dict(), **({"existed": existed} if exist_ok else {})}, as_json,
              f"{done.format(escape(info.name))} (pack {escape(info.pack_name)})")


@app.command()
def enrol(collection: str, path: Annotated[Path, typer.Argument(help="an image, a folder of images (with "
                                                                     "--subject) or a folder of person folders")],
          subject: Annotated[str | None, typer.Option("--subject", "-s", help="external id of the person")] = None,
          name: Annotated[str | None, typer.Option("--name", help="display name of the subject (with --subject): a "
                                                                  "new subject gets it, an existing one is renamed")]
          = None,
          all_faces: Annotated[bool, typer.Option("--all-faces", help="enrol every face, not the largest")] = False,
          min_quality: Annotated[float, typer.Option("--min-quality", help="quality gate, 0..1")] = 0.0,
          again: Annotated[bool, typer.Option("--again", help="enrol photos already enrolled to their subject "
                                                              "again (by default a run again skips them)")] = False,
          pack: PackOption = None, db: DbOption = None, tenant: TenantOption = "default",
          as_json: JsonOption = False) -> None:
    """Enrol faces. A folder of per-person folders (root/<Name>/<img>.jpg, like LFW) enrols everyone.
    A photo enrolled to its subject before (same file path) is skipped, so a stopped run can be run again."""
    if name is not None and subject is None:
        _fail(InvalidArgument("--name names one subject: give --subject too"), as_json)
    try:  # every argument before the progress bar (a blank --subject was refused under "enrolling 0/11")
        check_min_quality(min_quality)
        check_text(name)
        people = _people(path, subject)
    except FaceAtlasError as exc:
        _fail(exc, as_json)
    with _gallery(db, tenant, as_json) as gallery:
        held = gallery.get_collection(collection)  # an unknown collection is not_found before any model or bar
        analyzer = FaceAnalyzer(pack or held.pack_name)
        summary: dict[str, Any] = {"added": 0, "rejected": [], "subjects": 0, "skipped": 0, "renamed": []}
        rejected: list[Rejection] = []
        total, done = sum(len(images) for images in people.values()), 0
        try:
            with _progress() as progress:
                task = progress.add_task("enrolling", total=total)
                for person, images in people.items():
                    report = gallery.enrol_images(collection, person, [os.path.abspath(i) for i in images], analyzer,
                                                  all_faces=all_faces, min_quality=min_quality, name=name,
                                                  once=not again)
                    summary["added"] += len(report.added)
                    summary["skipped"] += len(report.skipped)
                    summary["subjects"] += bool(report.added)
                    summary["renamed"] += [person] if report.renamed else []
                    summary["rejected"] += [r.to_dict() for r in report.rejected]
                    rejected += report.rejected
                    progress.advance(task, len(images))
                    done += len(images)
        except KeyboardInterrupt:
            interrupted(done, total, "photos", "the faces enrolled before the stop are kept; the same command again "
                        "continues (photos enrolled before are skipped)", as_json, summary)
        skipped = (f"; {summary['skipped']} photos skipped (enrolled to their subject before; --again enrols "
                   "them again)") if summary["skipped"] else ""
        renamed = "".join(f"; renamed {escape(person)} to {escape(repr(name))}" for person in summary["renamed"])
        if as_json or summary["added"] or not rejected:
            _emit(summary, as_json, f"enrolled {summary['added']} faces of {summary['subjects']} subjects; "
                                    f"{len(rejected)} rejected{skipped}{renamed}")
        if rejected:
            if not as_json:
                for rejection in rejected:
                    err.print(f"[red]rejected[/red] {escape(rejection.source)}: {escape(rejection.reason)}",
                              soft_wrap=True)
                if not summary["added"]:  # nothing at all: the run failed, in one line after the reasons
                    print_error(rejection_error(rejected, f"nothing enrolled: {len(rejected)} of {len(rejected)} "
                                                          f"{'image' if len(rejected) == 1 else 'images'} rejected"))
            # 1: some enrolled, some rejected, or none had a face to enrol (no_face); 2: a failure
            raise typer.Exit(1 if summary["added"] else max(exit_status(r.code) for r in rejected))


def _people(path: Path, subject: str | None) -> dict[str, list[Path]]:
    """The images to enrol per subject: ``path`` (an image or a flat folder) for ``subject``, else
    each person folder of ``path`` for its name. A missing path, or a folder without images, is
    :class:`InvalidInput`; a subject id that no subject can have (``--subject "  "``) is
    :class:`InvalidArgument`."""
    must_exist(path)
    if subject is not None:
        check_id(subject)
        return {subject: folder_images(path) if path.is_dir() else [path]}
    if not path.is_dir():
        raise InvalidArgument("give --subject for a single image or a flat folder")
    people = {p.name: images_in(p) for p in sorted(path.iterdir()) if p.is_dir() and not is_hidden(p.name)}
    for person in people:  # every folder's name, before anyone is enrolled (one was refused midway)
        check_id(person, f"subject id (the folder {path / person})")
    if not any(people.values()):
        raise InvalidInput(f"{path}: no person folders with images ({path}/<name>/<photo>); "
                           "give --subject to enrol a flat folder as one person")
    return people


@app.command()
def search(collection: str, image: Annotated[Path, typer.Argument(help="the photo (- : standard input)")],
           k: Annotated[int, typer.Option("-k", help=f"subjects to return (1 to {SEARCH_K_MAX})")] = 5,
           threshold: Annotated[float | None, typer.Option(help="raw cosine similarity threshold (instead of --fpir)")]
           = None,
           fpir: Annotated[float | None, typer.Option(help="false positive identification rate: the share of people "
                                                           "not enrolled that a search names, for the collection's "
                                                           f"size [default: {DEFAULT_FPIR:g}]")] = None,
           far: Annotated[float | None, typer.Option(help="1:1 false-accept rate per comparison (instead of --fpir)")]
           = None,
           rank_only: Annotated[bool, typer.Option("--rank-only", help="rank without deciding: strangers get "
                                                                       "their nearest subjects")] = False,
           aggregate: Annotated[str, typer.Option(help="subject score: best or mean")] = "best",
           all_faces: Annotated[bool, typer.Option("--all-faces", help="search every face of the image")] = False,
           pack: PackOption = None, db: DbOption = None, tenant: TenantOption = "default",
           as_json: JsonOption = False) -> None:
    """Identify the face(s) of an image against a collection: who, or unknown (at --fpir 1e-3 by default:
    at most 1 search in 1,000 by someone not enrolled names anyone, whatever the collection's size)."""
    cut = Cut.given(threshold=threshold, far=far, fpir=fpir, rank_only=rank_only)
    with _gallery(db, tenant, as_json) as gallery:
        held = gallery.get_collection(collection)  # an unknown collection is not_found before any model or bar
        analyzer = FaceAnalyzer(pack or held.pack_name)
        results, found = gallery.search_image(collection, image_source(image), analyzer, all_faces=all_faces, k=k,
                                              **cut.search_options(), aggregate=aggregate)
        payload = {"results": [r.to_dict() for r in results], **cut.stated(),
                   "faces_in_image": found}  # the API's answer: the results, their cut, the count
        which = f"; the largest of {found} faces" if found > len(results) else ""
        table = WholeTable("face", "rank", "subject", "name", "similarity", "faces matched",
                      title=f"search ({cut.describe()}{which})")
        for number, result in enumerate(results):
            if result.unknown:
                table.add_row(str(number), "", "unknown", "no enrolled subject reached the threshold", "", "")
            for rank, match in enumerate(result.matches, 1):
                table.add_row(str(number), str(rank), escape(match.external_id), escape(match.name or ""),
                              f"{match.similarity:.3f}", str(match.matched_faces))
        _emit(payload, as_json, table)


@app.command("list")
def list_(collection: Annotated[str | None, typer.Argument(help="list this collection's subjects")] = None,
          limit: Annotated[int, typer.Option(help=f"subjects per page, 1 to {PAGE_MAX}")] = 50,
          after: Annotated[str | None, typer.Option(help="cursor from the previous page")] = None,
          db: DbOption = None, tenant: TenantOption = "default", as_json: JsonOption = False) -> None:
    """List collections, or the subjects of one collection (paginated)."""
    try:
        check_limit(limit)  # before the database is opened (9223372036854775807 was an OverflowError)
    except FaceAtlasError as exc:
        _fail(exc, as_json)
    with _gallery(db, tenant, as_json) as gallery:
        if collection is None:
            infos = gallery.list_collections()
            table = WholeTable("collection", "pack", "subjects", "faces", "keeps crops")
            for info in infos:
                table.add_row(escape(info.name), escape(info.pack_name), str(info.subjects), str(info.faces),
                              str(info.keep_crops))
            _emit([i.to_dict() for i in infos], as_json, table)
            return
        page = gallery.list_subjects(collection, limit=limit, after=after)
        table = WholeTable("subject", "name", "faces", caption=f"next page: --after {page.next_cursor}"
                      if page.next_cursor else None)
        for subject in page.items:
            table.add_row(escape(subject.external_id), escape(subject.name or ""), str(subject.faces))
        _emit({"items": [s.to_dict() for s in page.items], "next_cursor": page.next_cursor}, as_json, table)


@app.command()
def rename(collection: str, subject: Annotated[str, typer.Argument(help="the subject's external id")],
           new_id: Annotated[str | None, typer.Argument(help="its new external id")] = None,
           name: Annotated[str | None, typer.Option("--name", help="its new display name")] = None,
           db: DbOption = None, tenant: TenantOption = "default", as_json: JsonOption = False) -> None:
    """Rename a subject: a new external id, a new display name (--name), or both."""
    if new_id is None and name is None:
        _fail(InvalidArgument("give NEW_ID, --name or both"), as_json)
    with _gallery(db, tenant, as_json) as gallery:
        info = gallery.update_subject(collection, subject, name=name, new_external_id=new_id)
        _emit(info.to_dict(), as_json, f"subject '{escape(subject)}' is now '{escape(info.external_id)}' "
                                       f"({escape(info.name or 'no name')})")


@app.command()
def merge(collection: str, source: Annotated[str, typer.Argument(help="the subject to absorb (deleted)")],
          into: Annotated[str, typer.Argument(help="the subject that keeps every face")],
          db: DbOption = None, tenant: TenantOption = "default", as_json: JsonOption = False) -> None:
    """Merge two subjects (one person enrolled twice): SOURCE's faces move to INTO, SOURCE is deleted."""
    with _gallery(db, tenant, as_json) as gallery:
        info = gallery.merge_subjects(collection, keep=into, absorb=source)
        _emit(info.to_dict(), as_json,
              f"merged '{escape(source)}' into '{escape(info.external_id)}' ({info.faces} faces)")


@app.command()
def delete(collection: str, subject: Annotated[str | None, typer.Option(
        "--subject", "-s", help="delete only this subject")] = None,
        yes: Annotated[bool, typer.Option("--yes", "-y", help="do not ask for confirmation")] = False,
        db: DbOption = None, tenant: TenantOption = "default", as_json: JsonOption = False,
        events_db: Annotated[str | None, typer.Option(
            "--events-db", callback=database_option,
            help="another database of video events to erase them in (a cams.yaml `database:`); the gallery's "
                 "and the default one (FACEATLAS_DATABASE_URL, where `watch` stores them) are always "
                 "searched")] = None,
        missing_ok: Annotated[bool, typer.Option("--missing-ok", help="a subject or collection that is not there "
                                                                      "is no error: said, exit 0")] = False) -> None:
    """Delete a subject (all its faces) or a whole collection, and the video events that name them
    with their snapshot files (in the gallery's database, the default database where `watch` stores
    them, and --events-db); in a service tenant's
    space (``--tenant svc:<id>``), its subjects' ids in that tenant's audit trail too (unless
    FACEATLAS_AUDIT_KEEPS_SUBJECT_IDS) and the servers' stored Idempotency-Key answers that name
    them where Redis keeps them (FACEATLAS_REDIS_URL), as the API's delete does."""
    if subject is not None:  # -s "" (an unset variable) deleted the whole collection
        try:
            check_id(subject)
        except FaceAtlasError as exc:
            _fail(exc, as_json)
    given = _events_engine(events_db, as_json) if events_db is not None else None
    default = _default_events_engine(db)
    events = [engine for engine in (default, given) if engine is not None]
    target = f"subject '{subject}' of '{collection}'" if subject is not None else f"collection '{collection}'"

    def missing() -> None:
        _emit({"deleted": target, "faces": 0, "missing": True}, as_json,
              f"{escape(target)} is not there: nothing deleted")

    if missing_ok:  # no gallery database (a SQLite file that is not there) holds nothing to delete either
        try:
            Gallery.open(db, tenant=tenant, create=False).close()
        except NotFound:
            return missing()
        except (FaceAtlasError, DBAPIError, OSError):
            pass  # said as every command says it, below
    with _gallery(db, tenant, as_json) as gallery:  # what is not there is an error before any question
        try:
            held = (gallery.get_subject(collection, subject) if subject is not None
                    else gallery.get_collection(collection)).faces
        except NotFound:
            if not missing_ok:
                raise
            return missing()
        if not yes and as_json:  # nothing to ask in: it deleted without a question
            raise CommandLineError(f"--json cannot ask before deleting {target}: give --yes")
        if not yes:  # declined: "Aborted.", exit 1 (README's exit statuses), as `admin tenant delete`
            typer.confirm(f"delete {target} and its {held} faces?", abort=True, err=True)
        # the API's use case (the service's, imported when it runs: the other commands do not pay for it)
        from faceatlas.service.tenants import (
            deployment_answers,
            erase_gallery_collection,
            erase_gallery_subject,
            service_accounts,
        )

        settings = ServiceSettings.from_env()
        keep_ids = settings.audit_keeps_subject_ids
        accounts = service_accounts(gallery)  # None: a gallery database that was never served
        served = accounts is not None and space_owner(gallery.tenant) is not None
        answers = deployment_answers(gallery, settings.redis_url) if served else None
        try:
            if subject is not None:
                erased = erase_gallery_subject(gallery, accounts, collection, subject, keep_ids=keep_ids,
                                               answers=answers, events=[gallery.engine, *events])
                faces, replaced = erased.faces, erased.answers
            else:
                faces = gallery.get_collection(collection).faces or 0
                replaced = erase_gallery_collection(gallery, accounts, collection, keep_ids=keep_ids,
                                                    answers=answers, events=[gallery.engine, *events])
        finally:
            for engine in events:
                engine.dispose()
        _emit({"deleted": target, "faces": faces, **({"missing": False} if missing_ok else {})}, as_json,
              f"deleted {escape(target)} ({faces} faces)")
        if served and answers is None:
            err.print(ANSWERS_IN_MEMORY)
        elif served and replaced is None:
            err.print(ANSWERS_UNREACHED)


def _default_events_engine(gallery_url: str | None) -> Engine | None:
    """The default database (where `watch` stores events without a cams.yaml `database:`) when it is
    not the gallery's and is there (an SQLite file that exists, or a server that answers): the
    events of a gallery given with --db are there, not in the gallery's database."""
    default = normalize_url(default_database_url())
    if gallery_url is None or normalize_url(gallery_url) == default:
        return None
    path = sqlite_path(default)
    if path is not None and not Path(path).is_file():
        return None
    try:
        engine = create_database_engine(default)
        with engine.connect():
            return engine
    except Exception as exc:  # noqa: BLE001 - unreachable: said, and the delete goes on without it
        err.print(f"warning: the default database could not be searched for video events naming what is deleted: "
                  f"{one_reason(getattr(exc, 'orig', None) or exc)}")
        return None


def _events_engine(url: str, as_json: bool) -> Engine:
    """An engine on the events database ``url`` that answers (an SQLite file that is not there holds no
    events: a typo would have erased nothing without a word)."""
    try:
        path = sqlite_path(normalize_url(url))
        if path is not None and not Path(path).is_file():
            raise InvalidArgument(f"--events-db: no database file at {path}")
        engine = create_database_engine(url)
        with engine.connect():
            return engine
    except FaceAtlasError as exc:
        _fail(exc, as_json)
    except (DBAPIError, OSError) as exc:  # a database that cannot be reached or used; a bug is its traceback
        _fail(DatabaseUnavailable(f"cannot open the events database: {one_reason(getattr(exc, 'orig', None) or exc)}"),
              as_json)


@app.command()
def export(collection: str, path: Path,
           without_crops: Annotated[bool, typer.Option("--without-crops", help="leave face crops out")] = False,
           db: DbOption = None, tenant: TenantOption = "default", as_json: JsonOption = False) -> None:
    """Export a collection (ids, metadata, embeddings, pack identity) to a Parquet file: PATH ends in
    .parquet (an earlier export there is replaced; no other file is)."""
    with _gallery(db, tenant, as_json) as gallery:
        faces = gallery.export(collection, path, with_crops=not without_crops)
        _emit({"collection": collection, "path": str(path), "faces": faces}, as_json,
              f"exported {faces} faces of '{escape(collection)}' to {escape(str(path))}")


@app.command("import")
def import_(path: Path, name: Annotated[str | None, typer.Option(help="collection name (default: as exported)")]
            = None, db: DbOption = None, tenant: TenantOption = "default", as_json: JsonOption = False) -> None:
    """Import a collection from a Parquet export (creating the database the first time)."""
    try:  # the file before the database: a missing or wrong file made the database (and its folder)
        read_header(path)
    except FaceAtlasError as exc:
        _fail(exc, as_json)
    with _gallery(db, tenant, as_json, create=True) as gallery:
        faces = gallery.import_(path, name=name)
        _emit({"path": str(path), "faces": faces}, as_json, f"imported {faces} faces from {escape(str(path))}")


@app.command()
def reembed(collection: str, pack: Annotated[str, typer.Option("--pack", "-p", help="the new model pack")],
            drop_unmigratable: Annotated[bool, typer.Option(
                "--drop-unmigratable", help="delete faces without a stored crop instead of refusing")] = False,
            db: DbOption = None, tenant: TenantOption = "default", as_json: JsonOption = False) -> None:
    """Migrate a collection to another pack from its stored source crops."""
    with _gallery(db, tenant, as_json) as gallery:
        report = gallery.reembed(collection, FaceAnalyzer(pack), drop_unmigratable=drop_unmigratable)
    if not report.applied:  # a refusal, said as every command says one (it was a plain line on stdout)
        _fail(Conflict(f"not migrated: {len(report.unmigratable)} faces have no stored crop, {len(report.failed)} "
                       "crops show no face (--drop-unmigratable deletes them and migrates the rest)"), as_json)
    _emit({"applied": report.applied, "migrated": report.migrated, "unmigratable": report.unmigratable,
           "failed": report.failed}, as_json, f"migrated {report.migrated} faces to {escape(pack)}")
