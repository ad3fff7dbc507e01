"""Tenants beyond their accounts: the gallery space each one owns, deleting what is in it (a
subject, a collection, a retail store's member: the same use case whichever door asks, the API,
the console or the CLI) and deleting all of it."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from sqlalchemy import Engine, inspect, select
from sqlalchemy.orm import Session

from faceatlas.apps.albums import Erasure, erase_album, erase_owner, person_number
from faceatlas.apps.kyc import erase_tenant as erase_kyc
from faceatlas.apps.retail import ErasureReport, RetailStore, erase_stores
from faceatlas.errors import NotFound, StateUnavailable
from faceatlas.gallery import PAGE_MAX, Gallery, database_identity, service_space, space_owner
from faceatlas.service.accounts import Accounts, target_under
from faceatlas.service.db import AuditRecord
from faceatlas.service.idempotency import forget_answers, forget_collection, forget_path, forget_subjects
from faceatlas.service.paths import album_path, retail_member_path
from faceatlas.service.shared_state import AnswerStore, StoredAnswer
from faceatlas.video import erase_subject_events, erase_tenant_events, events_tenant

log = logging.getLogger(__name__)


def gallery_tenant(tenant_id: str) -> str:
    """The space of a service tenant in the gallery, KYC and albums: ``svc:<id>``
    (:func:`faceatlas.gallery.service_space`, where the naming lives: ``watch`` reads it too)."""
    return service_space(tenant_id)


def service_accounts(gallery: Gallery) -> Accounts | None:
    """The service's accounts on ``gallery``'s database (the normal setup: one
    ``FACEATLAS_DATABASE_URL``), or None when it holds no service tables (a gallery database
    that was never served): what the CLI's deletions erase from."""
    if not inspect(gallery.engine).has_table(AuditRecord.__tablename__):
        return None
    return Accounts(gallery.engine)


def subject_gone(gallery: Gallery) -> Callable[[str, str], bool]:
    """For ``Accounts.subject_gone`` (a server's): whether the subject an audit target names
    (``collection/subject``) is gone from the tenant's gallery space (the collection too)."""

    def gone(tenant_id: str, target: str) -> bool:
        collection, _, subject = target.partition("/")
        try:
            gallery.for_tenant(gallery_tenant(tenant_id)).get_subject(collection, subject)
        except NotFound:
            return True
        return False

    return gone


def operator_accounts(engine: Engine, redis_url: str | None) -> Accounts:
    """The accounts of the service database ``engine`` for a door that is no server (the CLI): a
    key it revokes or rotates, a quota it changes, a tenant it deletes is told to the servers
    sharing the Redis at ``redis_url`` (the settings' ``FACEATLAS_REDIS_URL``), whose cached key
    lookups are then read again at once rather than within ``FACEATLAS_KEY_CACHE_SECONDS``."""
    if redis_url is None:
        return Accounts(engine)
    from faceatlas.service.redis_state import keys_forgetter  # the redis client: an optional extra

    return Accounts(engine, keys_changed=keys_forgetter(redis_url, lambda: database_identity(engine)))


def deployment_answers(gallery: Gallery, redis_url: str | None) -> AnswerStore | None:
    """The stored ``Idempotency-Key`` answers of the servers of ``gallery``'s database that a door
    which is no server (the CLI) can replace after an erasure: those their Redis keeps, given its
    ``redis_url`` (the settings' ``FACEATLAS_REDIS_URL``); None without one: a server without Redis
    keeps them in its own memory, reachable only through its API (erase there, or restart it)."""
    if redis_url is None:
        return None
    from faceatlas.service.redis_state import RedisAnswers  # the redis client: an optional extra

    return RedisAnswers(redis_url, database_identity(gallery.engine))


@dataclass(frozen=True)
class SubjectErasure:
    """What deleting a gallery subject did: the faces deleted, the target the deletion is audited
    under, the stored answers replaced (None: none were given, or they could not be reached) and
    the stored video events deleted that named it."""

    faces: int
    target: str
    answers: int | None = None
    events: int = 0


def erase_gallery_subject(gallery: Gallery, accounts: Accounts | None, collection: str, subject: str, *,
                          keep_ids: bool, answers: AnswerStore | None = None,
                          events: Sequence[Engine] = ()) -> SubjectErasure:
    """Delete ``subject`` of ``collection`` in ``gallery``'s tenant space and every trace of it: its
    faces, vectors, crops and index entries, the video events of the space's tenant
    (:func:`faceatlas.video.events_tenant`) that name it or an id merged into it with their snapshot
    files (:func:`faceatlas.video.erase_subject_events`, in each database of ``events``, by default
    the gallery's: where the API keeps them), and, when the space is a service tenant's, with
    ``accounts`` its id in that tenant's audit trail (unless ``keep_ids``:
    :meth:`Accounts.erase_subject`), and with ``answers`` (the server's shared state, or the Redis
    its servers share) the tenant's stored ``Idempotency-Key`` answers that name it or an id merged
    into it (:func:`idempotency.forget_subjects`; unreachable: logged, they expire with their keys).
    The audited target is ``collection/[erased]``, or ``collection/subject`` when the id is kept."""
    owner = space_owner(gallery.tenant)
    ids = merged_ids(accounts, owner, collection, subject) if accounts is not None and owner is not None \
        else {subject}  # read before the trail forgets them
    gallery.get_subject(collection, subject)  # NotFound before anything is touched
    # the events first: a run cut short after them finds the subject still there and finishes the job
    erased_events = sum(erase_subject_events(engine, events_tenant(gallery.tenant), ids)
                        for engine in (events or (gallery.engine,)))
    faces = gallery.delete_subject(collection, subject)
    target = f"{collection}/{subject}"
    if accounts is not None and owner is not None:
        target = accounts.erase_subject(owner, target, keep_ids=keep_ids)
    replaced = None
    if answers is not None and owner is not None:
        try:
            replaced = forget_subjects(answers, owner, collection, ids)
        except StateUnavailable:
            log.warning("the stored answers of calls on the erased subject of %r could not be replaced now; they "
                        "expire with their keys", collection)
    return SubjectErasure(faces, target, replaced, erased_events)


@dataclass(frozen=True)
class MemberErasure:
    """What erasing a retail store's member did: the layer's report, the target the erasure is
    audited under and the stored answers replaced (None: none were given, or unreachable)."""

    report: ErasureReport
    target: str
    answers: int | None = None


def erase_retail_member(store: RetailStore, accounts: Accounts, tenant_id: str, member_id: str, *,
                        keep_ids: bool, answers: AnswerStore | None = None) -> MemberErasure:
    """Erase the member ``member_id`` of ``store`` (the service tenant ``tenant_id``'s) and every
    trace of them: :meth:`MemberRegistry.erase` (faces, vectors, consents; visits and charges kept
    as anonymous counts), their id in the tenant's audit trail (unless ``keep_ids``:
    :meth:`Accounts.erase_subject`) and, with ``answers`` (the server's shared state), the tenant's
    stored ``Idempotency-Key`` answers of calls on them and of their enrolment
    (:func:`idempotency.forget_path`; unreachable: logged, they expire with their keys). The
    audited target is ``store/[erased]``, or ``store/member`` when the id is kept. The API's
    ``DELETE`` keeps its own answer (:func:`idempotency.store_answer_at`) as its door does."""
    report = store.members.erase(member_id)
    store_id = store.config.id
    target = accounts.erase_subject(tenant_id, f"{store_id}/{member_id}", keep_ids=keep_ids)
    replaced = None
    if answers is not None:
        path = retail_member_path(store_id, member_id)
        try:
            replaced = forget_path(answers, tenant_id, path, created=("id", member_id))
        except StateUnavailable:
            log.warning("the stored answers of calls on the erased %s could not be replaced now; they expire with "
                        "their keys", path)
    return MemberErasure(report, target, replaced)


def merged_ids(accounts: Accounts, tenant_id: str, collection: str, subject: str) -> set[str]:
    """``subject`` and the ids merged into it in ``collection``, transitively (the same person's
    earlier ids), as the tenant's audit trail records its merges (``subject.merge`` of
    ``collection/<absorbed>`` with ``into``): what :meth:`Accounts.erase_subject` erases with it."""
    with Session(accounts.engine) as session:
        merges = session.execute(select(AuditRecord.target, AuditRecord.details).where(
            AuditRecord.tenant_id == tenant_id, AuditRecord.action == "subject.merge",
            target_under(f"{collection}/"))).all()
    ids, grown = {subject}, True
    while grown:
        merged = {source.split("/", 1)[1] for source, details in merges if (details or {}).get("into") in ids}
        grown = not merged <= ids
        ids |= merged
    return ids


def collection_ids(gallery: Gallery, collection: str) -> set[str]:
    """The ids of every subject of ``collection`` (:class:`NotFound` when there is no such collection)."""
    ids: set[str] = set()
    after = None
    while True:
        page = gallery.list_subjects(collection, limit=PAGE_MAX, after=after)
        ids.update(subject.external_id for subject in page.items)
        if (after := page.next_cursor) is None:
            return ids


def merged_into(accounts: Accounts, tenant_id: str, collection: str) -> set[str]:
    """The ids that the tenant's audit trail records as merged into another subject of ``collection``."""
    with Session(accounts.engine) as session:
        sources = session.scalars(select(AuditRecord.target).where(
            AuditRecord.tenant_id == tenant_id, AuditRecord.action == "subject.merge",
            target_under(f"{collection}/"))).all()
    return {source.split("/", 1)[1] for source in sources if "/" in source}


def erase_gallery_collection(gallery: Gallery, accounts: Accounts | None, collection: str, *,
                             keep_ids: bool, answers: AnswerStore | None = None,
                             events: Sequence[Engine] = ()) -> int | None:
    """Delete ``collection`` of ``gallery``'s tenant space with every subject, face, vector and crop
    in it, the video events that name its subjects (or ids merged into them) with their snapshot
    files (as :func:`erase_gallery_subject`, in each of ``events``, by default the gallery's database), and,
    when the space is a service tenant's, with ``accounts`` its subjects' ids in that
    tenant's audit trail (unless ``keep_ids``: :meth:`Accounts.erase_collection`), with ``answers``
    the tenant's stored ``Idempotency-Key`` answers of calls on it (:func:`idempotency.forget_collection`).
    Returns how many answers were replaced (None: none given, or they could not be reached)."""
    owner = space_owner(gallery.tenant)
    ids = collection_ids(gallery, collection)  # NotFound before anything is touched
    if accounts is not None and owner is not None:
        ids |= merged_into(accounts, owner, collection)
    for engine in events or (gallery.engine,):
        erase_subject_events(engine, events_tenant(gallery.tenant), ids)
    gallery.delete_collection(collection)
    if accounts is not None and owner is not None:
        accounts.erase_collection(owner, collection, keep_ids=keep_ids)
    if answers is None or owner is None:
        return None
    try:
        return forget_collection(answers, owner, collection)
    except StateUnavailable:
        log.warning("the stored answers of calls on the erased collection %r could not be replaced now; they "
                    "expire with their keys", collection)
        return None


@dataclass(frozen=True)
class AlbumErasure:
    """What an erasure in an album (a person, a face, a photo) or of a whole album did: what it
    removed (:class:`apps.albums.Erasure`), the target the erasure of a person is audited under
    (None where no audit trail names it) and the stored answers replaced (None: none were given,
    or they could not be reached)."""

    erased: Erasure
    target: str | None = None
    answers: int | None = None


def erase_space_album(engine: Engine, gallery: Gallery, accounts: Accounts | None, owner: str, album: str, *,
                      keep_ids: bool, answers: AnswerStore | None = None) -> AlbumErasure:
    """Delete the album ``album`` of the space ``owner`` whole (:func:`apps.albums.erase_album`)
    and, when the space is a service tenant's, with ``accounts`` the ids of what was in it in that
    tenant's audit trail (unless ``keep_ids``: :meth:`Accounts.erase_album`) and with ``answers``
    (the Redis the servers share: the CLI's) the tenant's stored ``Idempotency-Key`` answers of
    every call on it (unreachable: logged, they expire with their keys): the API's, the console's
    and the CLI's delete of an album (a server replaces its own answers with its request:
    ``idempotency.forget_erased``)."""
    erased = erase_album(engine, gallery, owner, album)
    tenant = space_owner(owner)
    if accounts is not None and tenant is not None:
        accounts.erase_album(tenant, album, keep_ids=keep_ids)
    replaced = None
    if answers is not None and tenant is not None:
        try:
            replaced = forget_path(answers, tenant, album_path(album))
        except StateUnavailable:
            log.warning("the stored answers of calls on the erased album %r could not be replaced now; they "
                        "expire with their keys", album)
    return AlbumErasure(erased, answers=replaced)


def erase_album_trail(accounts: Accounts | None, owner: str, album: str, erased: Erasure, *,
                      called: str | None = None, keep_ids: bool,
                      answers: AnswerStore | None = None) -> AlbumErasure:
    """After an erasure in the album ``album`` of the space ``owner`` (a person, a face, a photo):
    when the space is a service tenant's, with ``accounts`` the ids and names of the people it
    removed (and ``called``, the reference the erasure was asked by) and its faces leave that
    tenant's audit trail (unless ``keep_ids``: :meth:`Accounts.erase_album_person`), and with
    ``answers`` (the Redis the servers share: the CLI's) the tenant's stored ``Idempotency-Key``
    answers that name them (:func:`album_answer_names`; unreachable: logged, they expire with their
    keys; a server replaces its own with its request: ``idempotency.forget_erased``). Returns what
    was erased with the target the erasure of a person is audited under (None where no audit trail
    names it) and the answers replaced."""
    tenant = space_owner(owner)
    if tenant is None:
        return AlbumErasure(erased)
    target = None
    if accounts is not None:
        target = str(accounts.erase_album_person(tenant, album, erased.people + erased.ids, [called, *erased.names],
                                                 erased.face_ids, keep_ids=keep_ids))
    replaced = None
    if answers is not None:
        try:
            replaced = forget_answers(answers, tenant, album_answer_names(erased, album, called), album_path(album))
        except StateUnavailable:
            log.warning("the stored answers of calls on what was erased in the album %r could not be replaced now; "
                        "they expire with their keys", album)
    return AlbumErasure(erased, target, replaced)


def album_answer_names(erased: Erasure, album: str, called: str | None = None) -> Callable[[StoredAnswer], bool]:
    """Whether a stored answer of a call on the album ``album`` names what ``erased`` removed: a
    call on one of its people by any reference (an id that held their faces, ``p12``, ``P12`` or
    ``12``, a name, or ``called``, the reference the erasure was asked by; a request's path holds
    ``?``, ``#`` and ``\\`` percent-encoded) or on one of its faces, or an answer that is one of
    those people (a rename, merge, split, promotion) or one of its faces (a move, a rejection), or
    that puts a face with one of them."""
    within = album_path(album) + "/"
    numbers = {int(ref[1:]) for ref in erased.people + erased.ids}
    names = {*erased.names, *([called.strip()] if called is not None and person_number(called) is None else [])}
    people = {f"p{n}" for n in numbers}

    def names_it(answer: StoredAnswer) -> bool:
        if not answer.path.startswith(within):
            return False
        rest = answer.path[len(within):].split("/")
        if len(rest) > 1 and rest[0] in ("people", "faces"):
            text = rest[1].replace("%3F", "?").replace("%23", "#").replace("%5C", "\\").strip()
            if rest[0] == "faces":
                if text.isascii() and text.isdigit() and int(text) in erased.face_ids:
                    return True
            else:
                number = person_number(text)
                if (number in numbers) if number is not None else (text in names):
                    return True
        try:
            body = json.loads(answer.body)
        except ValueError:
            return False
        if not isinstance(body, dict):
            return False
        if body.get("id") in people or body.get("person") in people:
            return True
        return "photo_id" in body and body.get("id") in erased.face_ids  # an answer that is an erased face

    return names_it


@dataclass(frozen=True)
class TenantDeletion:
    """What deleting a tenant deleted: its gallery collections, albums, verification sessions,
    retail stores and stored video events."""

    collections: int
    albums: int
    kyc_sessions: int = 0
    stores: int = 0
    events: int = 0


def delete_tenant(accounts: Accounts, gallery: Gallery, tenant_id: str,
                  redis_url: str | None = None) -> TenantDeletion:
    """Delete a tenant and everything it owns, biometric data first and the account last:

    0. its keys are revoked, so that they add nothing while the rest goes (not covered: a request
       let in before; servers sharing Redis drop their cached lookups when ``accounts`` was made
       with ``keys_changed``, as the server's and ``operator_accounts``' are);
    1. its gallery collections (faces, vectors, crops, index files) and its gallery space's row;
    2. its verification sessions with their kept reference images and selfie fingerprints;
    3. its albums (their gallery spaces ``app:albums:svc:<id>:<album>`` with their rows, which name
       the albums, and the album tables);
    4. its retail stores (members' faces, vectors and records; only money records stay, see
       ``apps.retail.erase_stores``);
    5. its stored video events and counts with their snapshot files;
    6. with ``redis_url`` (the service's ``FACEATLAS_REDIS_URL``), the answers of its calls that
       Redis keeps for retries (``Idempotency-Key``), which name its subjects (a single server
       keeps them in its memory, out of reach once the keys are revoked, until they expire);
    7. its keys, its audit trail (which names its subjects) and its account, in one transaction.

    Each step finds what is left by the tenant's id and the account goes last, so a run cut short
    can be run again and finishes the job; once the account is gone the tenant is :class:`NotFound`.
    Its usage rows stay (the bill), as does the audit record of the deletion; its id is kept among
    the deleted tenants' and never given to a new tenant (which would inherit the bill, and the
    state a running server keeps per tenant id: quota counts, stored answers). No gallery space of
    the tenant is made on the way (a run again made ``svc:<id>`` anew). Returns how many of each
    were deleted (a run again counts only what the run before left)."""
    accounts.get_tenant(tenant_id)  # NotFound before anything is touched
    accounts.revoke_tenant_keys(tenant_id)
    collections = gallery.delete_tenant_space(gallery_tenant(tenant_id))
    engine = accounts.engine
    sessions = erase_kyc(engine, gallery_tenant(tenant_id), migrated=False)
    albums = erase_owner(engine, gallery, gallery_tenant(tenant_id), migrated=False)
    stores = erase_stores(engine, gallery, tenant_id, migrated=False)
    events = erase_tenant_events(engine, tenant_id)
    gallery.flush()
    if redis_url is not None:
        from faceatlas.service.redis_state import forget_scope  # the redis client: an optional extra

        forget_scope(redis_url, database_identity(accounts.engine), tenant_id)
    accounts.delete_tenant(tenant_id)
    return TenantDeletion(collections, albums, sessions, stores, events)
