"""What every console page shares: templates, the route class that turns errors into pages,
the session dependencies (the caller, CSRF) and rendering."""

from __future__ import annotations

import asyncio
import hashlib
import json
import re
import secrets
import time
from collections.abc import Awaitable, Callable, Coroutine
from pathlib import Path
from typing import Annotated, Any, TypeVar
from urllib.parse import quote

from fastapi import Depends, Form, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import RedirectResponse, Response
from fastapi.routing import APIRoute
from fastapi.templating import Jinja2Templates
from jinja2 import pass_context
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException

from faceatlas.errors import FaceAtlasError, IdempotencyInFlight, InvalidArgument, InvalidInput, NotFound
from faceatlas.gallery import ID_MAX_LENGTH, ID_PATTERN, NAME_MAX_LENGTH
from faceatlas.service.accounts import Principal
from faceatlas.service.console.sessions import COOKIE, ConsoleSessions, ConsoleUser, LoginRequired, check_csrf
from faceatlas.service.deps import Meter, get_shared, meter_call
from faceatlas.service.errors import HTTP_CODES, ID_RULE, client_message
from faceatlas.service.paths import CONSOLE_PREFIX
from faceatlas.service.shared_state import StoredAnswer

HERE = Path(__file__).parent
PREFIX = CONSOLE_PREFIX
# Scripts and styles only from the console's own static files; images also inline (data: URLs).
CSP = ("default-src 'self'; img-src 'self' data:; script-src 'self'; style-src 'self'; "
       "frame-ancestors 'none'; form-action 'self'; base-uri 'none'")


def far_words(far: float | None) -> str:
    """A FAR level in words: what share of strangers would score this high."""
    if far is None:
        return "unknown"
    return f"stronger than 1 in {round(1 / far):,} strangers (FAR {far:g})"


def verdict_words(match: bool | None, far: float | None, far_level: float | None) -> str:
    """A 1:1 verdict's confidence in words: the FAR level its similarity reaches
    (:func:`far_words`), or, for a pair under the threshold of the FAR decided on, that it is not
    the same person at that FAR (different people read "confidence: unknown")."""
    if match is not False or far is None:
        return far_words(far_level)
    verdict = f"not the same person at FAR {far:g}"
    if far_level is None:
        return f"{verdict}: more than 1 in {round(1 / far):,} strangers score this high"
    return f"{verdict}, though {far_words(far_level)}"


templates = Jinja2Templates(directory=HERE / "templates")


@pass_context
def _url_path(context: dict[str, Any], name: str, /, **path_params: Any) -> str:
    """``url_for`` in a template: the root-relative path of a route or static file, never
    ``http://host/...``. An absolute URL took its scheme and host from the request (its ``Host``
    header; plain ``http`` where TLS ends at a proxy), so behind the documented nginx the page
    asked for ``http://`` scripts that the browser blocked under the CSP: console.js, and with it
    every confirm dialog, never ran."""
    request: Request = context["request"]
    return request.url_for(name, **path_params).path


templates.env.globals["url_for"] = _url_path
templates.env.filters["far_words"] = far_words
templates.env.globals["verdict_words"] = verdict_words
# the server's limits, for the forms' maxlength and pattern (an input's pattern is anchored already)
templates.env.globals.update(id_max=ID_MAX_LENGTH, id_pattern=ID_PATTERN.removeprefix("^").removesuffix("$"),
                             name_max=NAME_MAX_LENGTH)


def seg(value: object) -> str:
    """``value`` as one path segment of a link: a store id or SKU may hold '#', '?', '%', spaces or
    '/' (Jinja's urlencode keeps '/'), and a segment of ``.`` or ``..`` (which a browser resolves
    away: Save on SKU ``..`` posted to the store's page) is sent as ``%2E`` / ``%2E%2E``, which the
    server reads back as the dots."""
    text = quote(str(value), safe="")
    return text.replace(".", "%2E") if text in (".", "..") else text


templates.env.filters["seg"] = seg


def label(key: str) -> str:
    """A data key as words: ``face_seen`` → "face seen"."""
    return str(key).replace("_", " ")


def words(value: Any) -> str:
    """``value`` in words: yes/no, numbers as written, lists joined (an empty one is "none"),
    mappings as "name: value" pairs, a nested list or mapping in brackets; None, and a mapping of
    None only, is "" (left out)."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, dict):
        pairs = [(label(key), inner, words(inner)) for key, inner in value.items()]
        return ", ".join(f"{name}: ({text})" if isinstance(inner, (dict, list, tuple)) else f"{name}: {text}"
                         for name, inner, text in pairs if text)
    if isinstance(value, (list, tuple)):
        items = [text for text in map(words, value) if text]
        return ("; " if any(isinstance(item, dict) for item in value) else ", ").join(items) or "none"
    return str(value)


templates.env.filters["words"] = words


def is_htmx(request: Request) -> bool:
    return request.headers.get("hx-request") == "true"


def redirect(request: Request, path: str) -> Response:
    """See ``path`` next: a 303 for a plain form post, ``HX-Redirect`` for htmx."""
    if is_htmx(request):
        return Response(status_code=204, headers={"HX-Redirect": path})
    return RedirectResponse(path, status_code=303)


class ConsoleRoute(APIRoute):
    """A console route: a missing, expired or revoked session leads to the login page; any other
    FaceAtlas error, and a form field or path value that breaks its rules (422), becomes a page (or
    an htmx fragment) with its code, message and status."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def handle(request: Request) -> Response:
            try:
                try:
                    response = await handler(request)
                except RequestValidationError as invalid:  # a form field or address out of its rules
                    await bill_refusal(request, self.endpoint)
                    raise InvalidArgument(form_message(invalid)) from None
                except InvalidArgument:  # a field the page refused before its gate (a name of two lines)
                    await bill_refusal(request, self.endpoint)
                    raise
                except HTTPException as refused:  # a form the parser refused (e.g. more than 1000 files)
                    raise _as_error(refused) from None
            except LoginRequired as exc:
                return redirect(request, f"{PREFIX}/login?reason={exc.reason}")
            except FaceAtlasError as exc:
                response = error_page(request, exc)
            return guarded(response)

        return handle

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if self.methods and "GET" in self.methods:  # HEAD of a page is its GET without the body (FastAPI adds no HEAD)
            self.methods.add("HEAD")


E = TypeVar("E", bound=Callable[..., Any])
METERED = "console_metered"


def metered(operation: str, scope: str) -> Callable[[E], E]:
    """Mark a console action billed as the ``/v1`` call ``operation`` (needing ``scope``): a form
    field or address it refuses (422) before its gate ran is billed as the API bills every 422
    (:func:`bill_refusal`). Put under the ``@router`` line."""

    def mark(endpoint: E) -> E:
        setattr(endpoint, METERED, (operation, scope))
        return endpoint

    return mark


async def bill_refusal(request: Request, endpoint: Callable[..., Any]) -> None:
    """A field of a :func:`metered` action refused before the action's gate ran: the gate now (its
    refusal, 403 or 429, is the answer, as the API refuses such a call first), so that the 422 is
    recorded and billed by the metering middleware as the API's is. A request without a session
    or without its CSRF token never gets here (refused first, and not billed)."""
    marked = getattr(endpoint, METERED, None)
    user = getattr(request.state, "console_user", None)
    if marked is None or user is None or getattr(request.state, "console_gated", False):
        return
    await gate(request, user.principal, *marked)


# a form field's label, as the console's forms name it (any other: its name in words)
FIELD_LABELS = {"name": "Name", "subject": "Subject id", "photos": "Photos", "photo": "Photo",
                "once": "the form's one-time token", "csrf": "the form's CSRF token"}


def form_message(invalid: RequestValidationError) -> str:
    """What a form field or address out of its rules says on a console page: the field's label and
    its rule in words ("Name: this field is required"), never the API's ``body.name: Field
    required`` (the API's own answers keep it: :func:`faceatlas.service.errors.validation_message`)."""
    said: list[str] = []
    for error in invalid.errors():
        names = [str(part) for part in error.get("loc") or () if part not in ("body", "path", "query", "form")]
        field = FIELD_LABELS.get(names[0], label(names[0])) if names else "the form"
        text = f"{field}: {_rule_words(error)}"
        if text not in said:
            said.append(text)
    return "; ".join(said) or "the form is not valid"


def _rule_words(error: Any) -> str:
    kind, ctx = error.get("type"), error.get("ctx") or {}
    if kind == "missing" or (kind == "string_too_short" and ctx.get("min_length") == 1):
        return "this field is required"
    if kind == "string_too_short":
        return f"at least {ctx.get('min_length')} characters"
    if kind == "string_too_long":
        return f"at most {ctx.get('max_length')} characters"
    if kind == "too_long":
        return f"at most {ctx.get('max_length')} given"
    if kind in ("int_parsing", "int_from_float", "int_type"):
        return "must be a whole number"
    if kind == "string_pattern_mismatch":
        return f"use {ID_RULE}" if ctx.get("pattern") == ID_PATTERN else "holds characters this field does not take"
    if kind == "literal_error":
        return f"must be one of {ctx.get('expected')}"
    message = str(error.get("msg") or "not valid")
    return message[:1].lower() + message[1:]


# The one-time token of a form that adds something (an enrolment): a second sending of the same
# form (a double click, a reload of its answer) gets the first one's outcome, and is neither done
# nor billed again, as an API call with an Idempotency-Key. A form sent without one (a script of
# its own) runs each time, as an API call without the header.
Once = Annotated[str, Form(max_length=64, pattern=r"^(?:[A-Za-z0-9_\-]{16,64})?$")]
FIRST_WAIT = 300.0  # seconds a second sending waits for the first one's outcome (a batch of photos)


def once_token() -> str:
    """A form's own one-time token (a page calls ``once()`` once per form)."""
    return secrets.token_urlsafe(16)


templates.env.globals["once"] = once_token


async def first_sending(request: Request, tenant_id: str, once: str, path: str,
                        run: Callable[[], Awaitable[dict[str, Any]]]) -> dict[str, Any]:
    """The outcome ``run`` gives (JSON-able) the first time a form with one-time token ``once`` is
    sent; a second sending runs nothing and gets that outcome with ``sent_before`` set (it waits
    while the first still runs: a browser without scripts sends a double-clicked form twice at
    once). Kept in the tenant's stored answers as the API's ``Idempotency-Key`` answers are, under
    ``path`` (the matching API call's), so that an erasure of what it names replaces it: a second
    sending is then :class:`NotFound`. A first sending that fails (an error page), or whose outcome
    says ``unfinished`` (work an earlier sending, cut short, still held), frees the token."""
    if not once:
        return await run()
    # the call a token belongs to, without blanks (the shared state keeps "status call media path")
    call = hashlib.sha256(f"console\0{request.url.path}".encode()).hexdigest()
    shared, key = get_shared(request), f"console:{once}"
    waited_until = time.monotonic() + FIRST_WAIT
    while True:
        try:
            first = await run_in_threadpool(shared.begin_idempotent, tenant_id, key, call)
            break
        except IdempotencyInFlight:
            if time.monotonic() > waited_until:
                raise IdempotencyInFlight("this form is still being sent: see its outcome in a moment",
                                          retry_after=5.0) from None
            await asyncio.sleep(0.2)
    if first is not None:
        if first.status != 200:  # its outcome named what an erasure removed since
            raise NotFound("this form was sent before, and what it added was erased since")
        return {**json.loads(first.body), "sent_before": True}
    try:
        outcome = await run()
    except asyncio.CancelledError:
        shared.abandon(tenant_id, key)
        raise
    except BaseException:
        await run_in_threadpool(shared.finish_idempotent, tenant_id, key, None, call)
        raise
    if outcome.get("unfinished"):  # some of its work is an earlier, dead sending's still: a new one ends it
        await run_in_threadpool(shared.finish_idempotent, tenant_id, key, None, call)
        return outcome
    answer = StoredAnswer(200, json.dumps(outcome).encode(), "application/json", path)
    await run_in_threadpool(shared.finish_idempotent, tenant_id, key, answer, call)
    return outcome


def guarded(response: Response) -> Response:
    """``response`` with the console's headers: its CSP, no caching, no framing."""
    response.headers.setdefault("Content-Security-Policy", CSP)
    response.headers.setdefault("Cache-Control", "no-store")
    response.headers.setdefault("X-Frame-Options", "DENY")
    return response


def error_page(request: Request, exc: FaceAtlasError) -> Response:
    """The page (an htmx fragment for htmx) of an error: its code, message and status."""
    template = "_error.html" if is_htmx(request) else "error.html"
    response = templates.TemplateResponse(
        request, template, {"error": exc, "message": client_message(exc),
                            "user": getattr(request.state, "console_user", None)},
        status_code=exc.status)
    if exc.retry_after is not None:  # as the API says it (a 429 page gave no hint of when)
        response.headers["Retry-After"] = str(max(1, round(exc.retry_after)))
    return response


def http_error_page(request: Request, refused: HTTPException) -> Response:
    """An HTTP error raised outside a console route (a method no page takes, a static file that is
    not there) as the console's error page, the error's own headers (a 405's ``Allow``) kept."""
    headers = dict(refused.headers or {})
    if refused.status_code == 404:
        refused = HTTPException(404, f"there is no console page or file '{request.url.path[:80]}'")
    elif refused.status_code == 405:
        refused = HTTPException(405, f"this address takes {headers.get('Allow') or 'no method'}, not {request.method}")
    error = _as_error(refused)
    error.code = HTTP_CODES.get(refused.status_code, error.code)
    response = guarded(error_page(request, error))
    response.headers.update(headers)
    return response


def _as_error(refused: HTTPException) -> FaceAtlasError:
    """An HTTP error of the framework (before the page ran) as the console's error page shows it."""
    detail = str(refused.detail)
    if "Too many files" in detail:
        detail = "too many files in one upload: send at most 1000 at a time (each page reads the first 20)"
    error = InvalidInput(detail[:300])
    error.status = refused.status_code
    return error


def get_sessions(request: Request) -> ConsoleSessions:
    return request.app.state.console_sessions


SessionsDep = Annotated[ConsoleSessions, Depends(get_sessions)]


async def console_user(request: Request, sessions: SessionsDep) -> ConsoleUser:
    """The logged-in caller (its key re-authenticated now), or :class:`LoginRequired`."""
    user = await run_in_threadpool(sessions.user, request.cookies.get(COOKIE))
    request.state.console_user = user
    return user


UserDep = Annotated[ConsoleUser, Depends(console_user)]


async def posting_user(request: Request, user: UserDep) -> ConsoleUser:
    """The caller of a state-changing request, which must carry the session's CSRF token (else 403)."""
    await check_csrf(request, user.csrf)
    return user


PostingUserDep = Annotated[ConsoleUser, Depends(posting_user)]


async def gate(request: Request, principal: Principal, operation: str, scope: str, *,
               billable: bool = True) -> Meter:
    """The API's gate (:func:`faceatlas.service.deps.meter_call`: scope, rate, quota) for one
    console action, run off the event loop as the API's dependencies are (it may wait on Redis or
    the database). A POST is taken for a call that changes state (the console's forms)."""
    request.state.console_gated = True  # a refusal after this is not billed again (bill_refusal)
    meter = await run_in_threadpool(meter_call, request, principal, operation, scope, billable=billable)
    meter.changes_state = request.method == "POST"
    return meter


CONFIRMED = "yes"
# a destructive form's confirmation: console.js sets it once the browser's confirm dialog is accepted
Confirmed = Annotated[str, Form(max_length=10)]


async def ask_first(request: Request, user: ConsoleUser, confirmed: str, scope: str,
                    question: str | Callable[[], Awaitable[str]], back: str) -> Response | None:
    """None when a destructive form was confirmed (``confirmed`` is :data:`CONFIRMED`), or when the
    key lacks ``scope`` (the gate refuses it); else a page that asks ``question`` first (given, or
    read when asked: a question that names what the layer holds), with a button that sends the
    same form confirmed and a way ``back``. The dialog is console.js's: where it did not run
    (blocked, or scripts off), one click on Delete erased a subject."""
    if confirmed == CONFIRMED or not user.principal.allows(scope):
        return None
    if not isinstance(question, str):
        question = await question()
    form = await request.form()
    fields = [(name, value) for name, value in form.multi_items() if name != "confirmed" and isinstance(value, str)]
    action = "/".join(seg(part) for part in request.scope["path"].split("/"))  # this address, as a link names it
    return render(request, "confirm.html", user, question=question, asked=asked(question), action=action,
                  fields=fields, back=back)


# a question's first sentence: up to its first "?", one inside a quoted name (“Who? Me”) left in it
_ASKED = re.compile(r"(?:[^“?]|“[^”]*”)*\?")


def asked(question: str) -> str:
    """What ``question`` asks, without the consequences it goes on to state ("Delete subject kit?"):
    the title and heading of the page that asks it."""
    first = _ASKED.match(question)
    return first.group(0) if first else question


def render(request: Request, template: str, user: ConsoleUser | None, status_code: int = 200,
           **context: Any) -> Response:
    """A page (or, for htmx, a fragment template) with the caller in its context."""
    return templates.TemplateResponse(request, template, {"user": user, **context}, status_code=status_code)
