"""``Idempotency-Key`` of the API's write calls: one mechanism for every route that changes state.

A route opts in with ``metered(..., idempotent=True)`` (the one gate of every route: auth, scope,
rate, quota) on a router whose ``route_class`` is :class:`IdempotentRoute`. With the header set:

- the gate, once the call passed authentication, its scope and the rate limit, and before the
  quota, fingerprints the call (method, path, sorted query, media type and body: a multipart
  body's field names and contents, a JSON body with sorted keys) and claims the key in the shared
  state (Redis across processes, else this process's memory), per tenant;
- the key unknown: the call is counted against the quota (a quota used up refuses it and frees
  the key) and runs; :class:`IdempotentRoute` stores its answer (status, body, media type) when
  it succeeded (2xx), or releases the key when it failed (an error answer is not kept: the call
  changed nothing, a retry runs again, with the same or a corrected body); an answer stored is
  that of a call answered and billed: the metering middleware never turns a write that succeeded
  into a 503 when its usage row cannot be written (the row waits; see ``meter_calls``), so a
  replay never stands for a call the bill lacks (the answer is stored after the usage row is
  written: :func:`conclude`);
- the key answered already for the same fingerprint: the stored answer comes back, byte for byte,
  with ``Idempotent-Replayed: true``; the route never runs, the replay is neither recorded nor
  billed nor counted against the quota (answered even once the quota is used up; it still spends
  the key's rate), and nothing is audited;
- the key claimed for another call (another method, path, query or body): 422
  ``idempotency_key_reused``; the same call still running: 409 ``idempotency_in_flight``
  (neither is billed), with ``Retry-After``. A claim is held as long as its call runs; the
  claims of a process killed mid-call free within a few seconds (see ``SharedState``).

Why a gate dependency plus a route class, not a middleware: the key belongs to the caller's
tenant, known only once the key is authenticated (a middleware runs before that, and would
replay answers to revoked keys or keys without the route's scope); and the route class sees the
route's finished ``Response`` (its bytes) without wrapping the ASGI ``send``.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Callable, Coroutine, Iterable
from contextlib import suppress
from dataclasses import dataclass
from hashlib import sha256
from typing import Any
from urllib.parse import parse_qsl, urlencode

from fastapi import Request, Response
from fastapi.routing import APIRoute
from starlette.concurrency import run_in_threadpool
from starlette.responses import StreamingResponse

from faceatlas.errors import InvalidArgument, StateUnavailable
from faceatlas.service.paths import COLLECTIONS_PATH, collection_path, subjects_path
from faceatlas.service.shared_state import AnswerStore, SharedState, StoredAnswer

log = logging.getLogger(__name__)
HEADER = "Idempotency-Key"
REPLAYED = "Idempotent-Replayed"
_NAME = re.compile(rb'(?:^|[;\s])name="([^"]*)"', re.IGNORECASE)


@dataclass(frozen=True)
class Claim:
    """A key this call claimed: its answer is stored (or the key released) once the route ran."""

    shared: SharedState
    scope: str
    key: str
    fingerprint: str


class Replay(Exception):
    """Raised by the gate when the key answered already; :class:`IdempotentRoute` sends ``answer``."""

    def __init__(self, answer: StoredAnswer) -> None:
        super().__init__("replayed")
        self.answer = answer


async def fingerprint(request: Request) -> str:
    """What makes two calls with one key the same call: method, path, query (sorted), media type
    and body: a multipart body's fields (names and contents, in order; not the boundary, the file
    names or the parts' media types, which clients choose), a JSON body with sorted keys."""
    body = await request.body()  # Starlette keeps it: the route's own form()/json() reads it again
    media, _, params = request.headers.get("content-type", "").partition(";")
    media = media.strip().lower()
    if media.startswith("multipart/"):
        boundary = next((value.strip().strip('"') for name, _, value in
                         (param.strip().partition("=") for param in params.split(";"))
                         if name.lower() == "boundary"), "")
        if boundary:
            body = b"".join(_field_digest(name, content) for name, content in _fields(body, boundary.encode()))
    elif media == "application/json":
        with suppress(ValueError, RecursionError):  # else the route refuses it; the raw bytes name it
            body = json.dumps(json.loads(body), sort_keys=True, separators=(",", ":")).encode()
    query = urlencode(sorted(parse_qsl(request.url.query, keep_blank_values=True)))
    digest = sha256("\0".join((request.method, request.url.path, query, media, "")).encode())
    digest.update(body)
    return digest.hexdigest()


def _fields(body: bytes, boundary: bytes) -> list[tuple[bytes, bytes]]:
    """The (name, content) of each part of a multipart body (a malformed one: what parses of it)."""
    fields = []
    for part in body.split(b"--" + boundary)[1:]:
        if part.startswith(b"--"):  # the closing delimiter
            break
        head, found, content = part.partition(b"\r\n\r\n")
        if found:
            name = _NAME.search(head)
            fields.append((name.group(1) if name else b"", content.removesuffix(b"\r\n")))
    return fields


def _field_digest(name: bytes, content: bytes) -> bytes:
    return sha256(name).digest() + sha256(content).digest()


async def claim(request: Request, shared: SharedState, tenant_id: str, key: str) -> None:
    """Claim ``key`` for this call of ``tenant_id``'s, before the call is counted against the
    quota (a replay or a refusal here is neither recorded nor counted): raises :class:`Replay`
    when the key answered already, or the refusal (:class:`IdempotencyInFlight`,
    :class:`IdempotencyKeyReused`); a header given more than once is :class:`InvalidArgument` (the
    first key was claimed, silently, and a retry sending them in another order ran again)."""
    if len(request.headers.getlist(HEADER)) > 1:
        raise InvalidArgument(f"{HEADER} given more than once: send one key")
    call = await fingerprint(request)
    stored = await run_in_threadpool(shared.begin_idempotent, tenant_id, key, call)
    if stored is not None:
        raise Replay(stored)
    request.state.idempotency = Claim(shared, tenant_id, key, call)


async def _finish(request: Request, response: Response | None) -> None:
    """Store the answer of the call's claimed key (a success), or release the key (else)."""
    claimed: Claim | None = getattr(request.state, "idempotency", None)
    if claimed is None:
        return
    request.state.idempotency = None
    answer = None
    if response is not None and 200 <= response.status_code < 300 and not isinstance(response, StreamingResponse):
        path = getattr(request.state, "answer_path", None) or request.url.path
        body = _without(bytes(response.body), getattr(request.state, "answer_drops", ()))
        answer = StoredAnswer(response.status_code, body, response.media_type or "", path)
    try:
        await run_in_threadpool(claimed.shared.finish_idempotent, claimed.scope, claimed.key, answer,
                                claimed.fingerprint)
    except StateUnavailable:  # the call is done and answered: its answer goes; the claim expires by itself
        log.warning("the answer of Idempotency-Key %r could not be stored", claimed.key, exc_info=True)


def store_answer_at(request: Request, path: str, *, drop: tuple[str, ...] = ()) -> None:
    """Keep this call's answer (when its ``Idempotency-Key`` stores one) under ``path`` rather than
    its own path: an erasure's, whose path names what it erased (``.../subjects/<id>``). A retry of
    it is answered all the same (a replay is found by its key and call, never by the stored path,
    which only an erasure's matching reads); ``path``, its parent, keeps it among what a
    collection's erasure replaces. ``drop``: the fields of its JSON answer that name what it erased
    (a member's id, a person's reference), left out of the stored answer: a retry is answered
    the counts without them."""
    request.state.answer_path = path
    request.state.answer_drops = drop


def _without(body: bytes, fields: tuple[str, ...]) -> bytes:
    """``body``, a JSON object, without ``fields`` (as it is when there are none or it is no object)."""
    value = _json_object(body) if fields else None
    if value is None:
        return body
    return json.dumps({k: v for k, v in value.items() if k not in fields}).encode()


ERASED = json.dumps({"error": {"code": "not_found", "message": "what this call made or changed was erased "
                                                              "since; its answer is no longer kept"}}).encode()


async def forget_erased(request: Request, tenant_id: str, created: tuple[str, str] | None = None, *,
                        also: Callable[[StoredAnswer], bool] | None = None, path: str | None = None,
                        drop: tuple[str, ...] = ()) -> None:
    """After an erasure (a subject, a collection, a member, an album's person), the tenant's stored
    answers of calls on what was erased name it no more: those whose path is the erased thing's
    path (this DELETE's) or under it (its enrolments, renames), and with ``created`` (a field and
    a value) the call that created it (a POST to the parent path answering that field with that
    value), are replaced by a ``404 not_found`` naming nothing. A retry with such a key is still
    answered, not run again (it would enrol the erased person anew); a replay had given back the
    erased subject's name and metadata for a day. If the shared state cannot be reached, they
    expire with their keys (``FACEATLAS_IDEMPOTENCY_SECONDS``). ``also``: other stored answers
    that name it (what is named several ways: an album's person, by id, number or name). ``path``:
    the erased thing's API path, where another door (the console) erased it (default: this request's).
    The 404 is kept under the parent path, and so is this call's own answer when it is the erasure's
    DELETE (:func:`store_answer_at`, without the fields ``drop`` of its answer that name it):
    neither names what was erased."""
    erased = path or request.url.path
    if erased == request.url.path:
        store_answer_at(request, erased.rsplit("/", 1)[0], drop=drop)
    shared: SharedState = request.app.state.shared
    try:
        await run_in_threadpool(forget_path, shared, tenant_id, erased, created, also=also)
    except StateUnavailable:
        log.warning("the stored answers of calls on the erased %s could not be replaced now; they expire with "
                    "their keys", erased)


def forget_path(answers: AnswerStore, tenant_id: str, erased: str, created: tuple[str, str] | None = None, *,
                also: Callable[[StoredAnswer], bool] | None = None) -> int:
    """What :func:`forget_erased` replaces, given the erased thing's API path ``erased``, with no
    request (any door, after an erasure): the tenant's stored answers of calls on it or under it,
    the call that ``created`` it and those ``also`` names, each by a ``404 not_found`` kept under
    its parent path. Raises :class:`StateUnavailable`; returns how many were replaced."""
    parent = erased.rsplit("/", 1)[0]

    def names_it(answer: StoredAnswer) -> bool:
        if answer.path == erased or answer.path.startswith(erased + "/") or (also is not None and also(answer)):
            return True
        if created is None or answer.path != parent:
            return False
        try:
            return json.loads(answer.body).get(created[0]) == created[1]
        except (ValueError, AttributeError):
            return False

    return answers.replace_answers(tenant_id, names_it, _placeholder(parent))


def forget_answers(answers: AnswerStore, tenant_id: str, names: Callable[[StoredAnswer], bool], parent: str) -> int:
    """The tenant's stored answers that ``names`` (what an erasure removed, matched as the layer
    that erased it knows it: an album's people by id, number or name), each replaced by a ``404
    not_found`` kept under ``parent`` (a path that names nothing erased). Raises
    :class:`StateUnavailable`; returns how many were replaced."""
    return answers.replace_answers(tenant_id, names, _placeholder(parent))


def _placeholder(path: str) -> StoredAnswer:
    """The ``404 not_found`` that replaces a stored answer naming what was erased, kept under
    ``path`` (what a later erasure matches it by: a path that names nothing erased)."""
    return StoredAnswer(404, ERASED, "application/json", path)


def _json_object(body: bytes) -> dict[str, Any] | None:
    try:
        value = json.loads(body)
    except (ValueError, RecursionError):
        return None
    return value if isinstance(value, dict) else None


def forget_subjects(answers: AnswerStore, tenant_id: str, collection: str, subjects: Iterable[str]) -> int:
    """After ``subjects`` of the gallery collection ``collection`` were erased (a subject deleted,
    with the ids merged into it: the same person's earlier ids), every stored answer of the tenant
    that names one of them is replaced by a ``404 not_found`` naming nothing, kept under the
    collection's subjects path: the answer of a call on one of them (its path is theirs or under
    it: a rename, an enrolment, a delete, the merge that absorbed it), an answer within the
    collection that is one of their records (``external_id``, whatever the call: its create, a
    merge into it), and an album person's promotion to one of them. The ids a stored merge into one
    of them absorbed (its path names them) are erased with them, as the audit trail erases them
    (their create answers hold their names). A retry with such a key is still answered, never run
    again. Raises :class:`StateUnavailable` when the answers cannot be reached. Returns how many
    were replaced."""
    ids = set(subjects)
    under = subjects_path(collection) + "/"
    within = collection_path(collection)

    def names_one(answer: StoredAnswer) -> bool:
        called = answer.path[len(under):].split("/") if answer.path.startswith(under) else []
        if called and called[0] in ids:  # a call on one of them
            return True
        body = _json_object(answer.body)
        if body is None:
            return False
        if body.get("collection") == collection and body.get("subject") in ids:  # an album person promoted
            return True
        if not (answer.path == within or answer.path.startswith(within + "/")) or body.get("external_id") not in ids:
            return False
        if len(called) == 2 and called[1] == "merge":  # a merge into one of them: what it absorbed goes too
            ids.add(called[0])
        return True

    replaced, known = 0, 0
    while known != len(ids):  # again while a merge named one more (an answer of it may have passed)
        known = len(ids)
        replaced += answers.replace_answers(tenant_id, names_one, _placeholder(subjects_path(collection)))
    return replaced


COLLECTION_CREATES = (COLLECTIONS_PATH, f"{COLLECTIONS_PATH}/import")  # the calls that create a collection


def forget_collection(answers: AnswerStore, tenant_id: str, collection: str) -> int:
    """After the gallery collection ``collection`` was deleted with its subjects, every stored
    answer of the tenant that names it is replaced by a ``404 not_found`` naming nothing, as
    :func:`forget_subjects` does: the answer of a call on it (its path, or one under it), of the
    call that created it (``POST /v1/collections`` or ``.../import``, kept under its own path:
    the collection is the answer's ``name``, its metadata with it), and of an album person's
    promotion to one of its subjects. Raises :class:`StateUnavailable`; returns how many."""
    within = collection_path(collection)

    def names_it(answer: StoredAnswer) -> bool:
        body = _json_object(answer.body)
        if answer.path in COLLECTION_CREATES:  # a create: the collection it made is its answer's name
            return body is not None and body.get("name") == collection  # (not every import of one named "import")
        if answer.path == within or answer.path.startswith(within + "/"):
            return True
        return body is not None and body.get("collection") == collection and "subject" in body

    return answers.replace_answers(tenant_id, names_it, _placeholder(COLLECTIONS_PATH))


class IdempotentRoute(APIRoute):
    """A route that sends a replayed answer and stores (or releases) the key its call claimed."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def route(request: Request) -> Response:
            try:
                response = await handler(request)
            except Replay as replay:  # answered here, so the dependencies exit as after a success:
                request.state.replayed = True  # the audit (`audited`) reads this and writes nothing
                answer = replay.answer
                return Response(answer.body, answer.status, headers={REPLAYED: "true"},
                                media_type=answer.media_type or None)
            except Exception:
                await _finish(request, None)
                raise
            except BaseException:  # cancelled: no await now; the claim frees as a dead process's does
                claimed: Claim | None = getattr(request.state, "idempotency", None)
                if claimed is not None:
                    claimed.shared.abandon(claimed.scope, claimed.key)
                raise
            request.state.idempotent_response = response  # stored once billed: see :func:`conclude`
            return response

        return route


async def conclude(request: Request, sent: Response | None) -> None:
    """Store the answer of the call's claimed key, or release it, once the call's usage row is
    written (the metering middleware calls it last): the route's answer when it is what was
    ``sent`` (the same status: not replaced by a 503), else nothing. An answer was stored before
    the row: a process killed between the two left a replay that the bill lacked (an enrol replayed
    201 to its retry, billed nowhere)."""
    response: Response | None = getattr(request.state, "idempotent_response", None)
    request.state.idempotent_response = None
    same = response is not None and sent is not None and sent.status_code == response.status_code
    await _finish(request, response if same else None)
