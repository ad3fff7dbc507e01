"""Every error body is ``{"error": {"code", "message"}}``; the status and code come from the error
itself (:mod:`faceatlas.errors`), so the service holds no table of its own. An error whose message
is for the server's operator (a model file's path, the folders searched, a download URL, a setting)
answers its ``client_message`` instead, the message going to the server log (:func:`client_message`)."""

from __future__ import annotations

import logging
import sqlite3
import threading
from collections.abc import Mapping
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy import Engine, event
from sqlalchemy.engine import ExceptionContext
from sqlalchemy.exc import DBAPIError, OperationalError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Match

from faceatlas.db import database_address
from faceatlas.errors import DatabaseUnavailable, FaceAtlasError, InvalidArgument
from faceatlas.gallery import ID_MAX_LENGTH, ID_PATTERN

_log = logging.getLogger(__name__)

# what an id (a collection's name, a subject's id, an album's name) holds, in words
ID_RULE = f"1 to {ID_MAX_LENGTH} of A-Z, a-z, 0-9, '_', '.', '-' (not dots alone)"

# Starlette's own HTTP errors (unknown route, wrong method, body over the server's limit).
HTTP_CODES = {404: "not_found", 405: "method_not_allowed", 401: "unauthorized", 403: "forbidden",
               413: "payload_too_large"}


def error_response(code: str, message: str, status: int, retry_after: float | None = None,
                   headers: Mapping[str, str] | None = None) -> JSONResponse:
    """The error body; ``headers`` (an HTTP error's own: a 405's ``Allow``) are kept. A 401 says how
    to authenticate (``WWW-Authenticate: Bearer``, RFC 9110)."""
    answer = dict(headers or {})
    if retry_after is not None:  # at most a month
        answer["Retry-After"] = str(max(1, int(round(min(retry_after, 31 * 86400)))))
    if status == 401:
        answer.setdefault("WWW-Authenticate", "Bearer")
    return JSONResponse({"error": {"code": code, "message": message}}, status, answer or None)


class DatabaseOutage:
    """A database outage said in the server log once when it starts (the first call that fails on
    the database: cannot connect, the connection dropped, the disk full) and once when it ends (the
    next statement the database answers), as a Redis outage is; no traceback per call (each such
    call answers 503 ``database_unavailable``, and said nothing in the log at all). The database is
    named by its address, never its credentials."""

    def __init__(self, url: str) -> None:
        self.address = database_address(url)
        self._down = False
        self._lock = threading.Lock()

    @property
    def down(self) -> bool:
        return self._down

    def failed(self, exc: BaseException) -> None:
        """A call failed on the database (``exc``): logged if the database answered until now and
        ``exc`` is the database's own failure (:func:`database_fails`), not one statement's."""
        if not database_fails(exc):
            return
        with self._lock:
            if self._down:
                return
            self._down = True
        cause = getattr(exc, "orig", None) or exc  # the driver's own message, without the statement
        reason = (str(cause).strip().splitlines() or [type(cause).__name__])[0][:300]
        _log.warning("the database (%s) fails (%s): calls answer 503 database_unavailable until it is back",
                     self.address, reason)

    def answered(self) -> None:
        """The database answered a statement: the end of an outage is logged."""
        if not self._down:  # the usual case, without the lock
            return
        with self._lock:
            if not self._down:
                return
            self._down = False
        _log.warning("the database (%s) answers again", self.address)

    def watch(self, engine: Engine) -> None:
        """Follow ``engine``'s statements: one the database answered ends an outage, a failure
        reaching it (``OperationalError``: cannot connect, dropped, refused) starts one."""

        @event.listens_for(engine, "after_cursor_execute")
        def _answered(*_: Any) -> None:
            self.answered()

        @event.listens_for(engine, "handle_error")
        def _failed(context: ExceptionContext) -> None:
            if isinstance(context.sqlalchemy_exception, OperationalError) or context.is_disconnect:
                self.failed(context.original_exception)


def database_fails(exc: BaseException) -> bool:
    """Whether ``exc`` is the database itself failing (it cannot be reached, dropped the connection,
    shuts down, its disk is full), not one statement's failure while it answers: a lock or busy
    timeout (SQLite's "database is locked"), a deadlock, a serialization failure, a statement
    cancelled. Those were each logged as an outage begun and ended, a pair per contended call."""
    if isinstance(exc, DBAPIError) and exc.connection_invalidated:
        return True
    cause = getattr(exc, "orig", None) or exc
    state = getattr(cause, "sqlstate", None)
    if state:  # PostgreSQL: connection exception (08), shut down or restarting (57P), out of disk or memory (53)
        return str(state).startswith(("08", "57P", "53"))
    if isinstance(cause, sqlite3.Error):  # it answers locked or busy while another writes
        text = str(cause).lower()
        return any(words in text for words in ("unable to open", "disk i/o", "disk is full", "not a database"))
    return True  # a driver's failure without a state: the connection's (refused, timed out, closed)


def client_message(exc: FaceAtlasError) -> str:
    """What the client is told of ``exc``: its message, or, for one meant for the server's operator
    (``client_message``: a corrupt model file named with its path and sha256 and what to do, a
    missing one with the folders searched and its download URL), that generic text, the message
    written to the server log. Every answer of an error goes through here (the error handler,
    the console's per-photo outcomes)."""
    if exc.client_message is None:
        return str(exc)
    _log.error("%s (answered as %s: %s)", exc, exc.code, exc.client_message)
    return exc.client_message


def validation_message(exc: RequestValidationError, content_type: str | None = None) -> str:
    """What a request's failed validation says: each field's location and the rule it broke (an
    id's pattern in words: the regular expression told a person nothing). ``content_type``: the
    request's (an API call's; "" when it has none): a body that is not a JSON object where the
    route takes one says so, and the media type it came as (a form, curl's ``-d`` without ``-H
    'content-type: application/json'``, was "Input should be a valid dictionary ...")."""
    errors = exc.errors()
    body = next((e for e in errors if _not_a_json_object(e)), None)
    if content_type is not None and body is not None:
        media = content_type.partition(";")[0].strip().lower()
        if media != "application/json":
            came = f"Content-Type {media}" if media else "no Content-Type"
            return f"the body must be a JSON object sent as Content-Type: application/json (it came with {came})"
        if body["type"] == "json_invalid":
            at = body["loc"][1] if len(body["loc"]) > 1 else None
            return "the JSON body does not parse" + (f" (at character {at})" if isinstance(at, int) else "")
        return "the body must be a JSON object ({...}) holding the call's fields"
    details = "; ".join(f"{'.'.join(str(p) for p in e['loc'])}: {_rule(e)}" for e in errors)
    return details or "invalid request"


def _not_a_json_object(error: Any) -> bool:
    """The whole body is missing, does not parse, or is not an object (a list, a form's bytes)."""
    loc = tuple(error.get("loc") or ())
    return (loc == ("body",) and error.get("type") in ("model_attributes_type", "dict_type", "missing")) or (
        loc[:1] == ("body",) and error.get("type") == "json_invalid")


def _rule(error: Any) -> str:
    if error.get("type") == "string_pattern_mismatch" and (error.get("ctx") or {}).get("pattern") == ID_PATTERN:
        return f"use {ID_RULE}"
    return str(error["msg"])


def install_error_handlers(app: FastAPI) -> None:
    """Map FaceAtlas errors, HTTP errors, request validation errors and, last, any other exception
    (500 ``internal``) to the JSON body."""

    @app.exception_handler(FaceAtlasError)
    async def _error(_: Request, exc: FaceAtlasError) -> JSONResponse:
        return error_response(exc.code, client_message(exc), exc.status, exc.retry_after)

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError) -> JSONResponse:
        message = validation_message(exc, request.headers.get("content-type", ""))
        return error_response(InvalidArgument.code, message, InvalidArgument.status)

    @app.exception_handler(OperationalError)
    async def _database_down(request: Request, exc: OperationalError) -> JSONResponse:
        # the database cannot be reached (or dropped the connection, or stayed locked): the transaction
        # rolled back; the metering does not wait on it again for this call's usage row (kept in memory)
        request.state.database_failed = True
        outage = getattr(request.app.state, "database_outage", None)
        if outage is not None:  # said once an outage (the app's other engines fail here too)
            outage.failed(exc)
        failure = DatabaseUnavailable("the database is unavailable; nothing was written", retry_after=1.0)
        return error_response(failure.code, str(failure), failure.status, failure.retry_after)

    @app.exception_handler(Exception)
    async def _internal(_: Request, exc: Exception) -> JSONResponse:
        # Anything else is a bug: the documented shape, no details (the server log has the traceback).
        return error_response("internal", "internal server error", 500)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        # its headers stay (they were dropped): a 405 names the methods the path takes (Allow, RFC 9110)
        headers = dict(exc.headers or {})
        if exc.status_code == 405:
            headers["Allow"] = ", ".join(allowed_methods(app, request)) or headers.get("Allow", "")
        return error_response(HTTP_CODES.get(exc.status_code, "bad_request"), str(exc.detail), exc.status_code,
                              headers=headers)


_METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS")


def allowed_methods(app: FastAPI, request: Request) -> list[str]:
    """The methods some route takes at ``request``'s path: every route's, not only the first one's
    that matched the path (Starlette's Allow of ``PUT /v1/collections`` said GET, not GET, POST)."""
    allowed = []
    for method in _METHODS:
        scope = {"type": "http", "path": request.scope["path"], "root_path": request.scope.get("root_path", ""),
                 "method": method, "headers": [], "query_string": b""}
        if any(route.matches(dict(scope))[0] == Match.FULL for route in app.router.routes):
            allowed.append(method)
    return allowed
