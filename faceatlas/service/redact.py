"""An ASGI middleware that takes secrets out of the query string before anything sees or logs it.

API keys belong in the ``Authorization`` header; a client that puts one in the URL is refused
(no header: 401), but the server's access log writes the URL of every request. This middleware
replaces such values in the request's own scope (the dict the server logs from) with
``REDACTED``, so no log line holds the key.

A whole key pasted into the path where its prefix belongs (``DELETE /v1/keys/fa_<prefix>_<secret>``)
is as easy a mistake: once the app has routed the call (the route takes the key by its prefix), the
path the server logs is cut to ``fa_<prefix>_[redacted]`` (:func:`redact_path`).

The ids that name a person in a path (a subject's id, often their name; an album's person; a
store's member; a KYC session's, which names one person's identity check) are personal data that no
deletion reaches once a log line holds them: the path the
server logs has them replaced by their parameter's name (``/v1/collections/staff/subjects/{subject}``,
:func:`redact_people`), whether a route took the call or not (a 404, a redirect, a refusal); so
have the query parameters that name people (``/v1/albums/fam/together?people={people}``)."""

from __future__ import annotations

import re
from urllib.parse import unquote_plus

from starlette.types import ASGIApp, Message, Receive, Scope, Send

REDACTED = b"REDACTED"
# Query parameters that carry credentials by name, and any value shaped like a FaceAtlas key.
_SECRET_NAMES = {"api_key", "apikey", "api-key", "key", "token", "access_token", "authorization", "x-api-key",
                 "metrics_token"}
_KEY_SHAPE = re.compile(r"fa_[0-9a-fA-F]+_")
# A path segment holding a whole key: its prefix is kept (it names the key), its secret is not.
_KEY_IN_PATH = re.compile(r"(fa_[0-9a-fA-F]+_)[^/?#]+")
PATH_REDACTED = "[redacted]"


def redact_path(path: str) -> str:
    """``path`` with the secret of every key-shaped segment replaced: ``fa_<prefix>_[redacted]``."""
    return _KEY_IN_PATH.sub(lambda m: m.group(1) + PATH_REDACTED, path)


# The path parameters whose values name a person, logged as ``{name}``; in a path no route took (a
# 404, a redirect, a call refused before routing), the segment after one of these names.
PERSONAL_PARAMETERS = ("subject", "person", "member_id", "session_id")
_PERSONAL_AFTER = {"subjects": "{subject}", "subject": "{subject}", "people": "{person}", "person": "{person}",
                   "members": "{member_id}", "member": "{member_id}", "sessions": "{session_id}"}


def redact_people(path: str, template: str | None = None) -> str:
    """``path`` (as sent or percent-encoded) with each segment that names a person replaced by
    ``{name}``: the segments at the :data:`PERSONAL_PARAMETERS` of ``template`` (the route's path,
    ``/v1/collections/{collection}/subjects/{subject}``), or without one that fits, each segment
    after ``subjects``, ``people``, ``members`` or ``sessions``."""
    segments = path.split("/")
    shape = template.split("/") if template is not None else []
    if len(shape) == len(segments):
        return "/".join(mark if mark.strip("{}") in PERSONAL_PARAMETERS and mark.startswith("{") else part
                        for part, mark in zip(segments, shape, strict=True))
    return "/".join(_PERSONAL_AFTER[segments[i - 1]] if i and part and segments[i - 1] in _PERSONAL_AFTER else part
                    for i, part in enumerate(segments))


# The query parameters whose values name people (an album's ``together?people=Aunt%20Mary``), logged
# as ``{name}``: replaced once the route has read them, as the path's are.
PERSONAL_QUERY = ("people", "person", "subject", "member_id")


def redact_people_query(query: bytes) -> bytes:
    """``query`` with the value of each :data:`PERSONAL_QUERY` parameter replaced by ``{name}``."""
    parts = []
    for part in query.split(b"&"):
        name, sep, _ = part.partition(b"=")
        label = unquote_plus(name.decode("latin-1")).lower()
        parts.append(name + b"={" + label.encode() + b"}" if sep and label in PERSONAL_QUERY else part)
    return b"&".join(parts)


def loggable_path(scope: Scope) -> str:
    """The path of the call ``scope`` as a log line may hold it: no person's id, no key's secret."""
    return redact_path(redact_people(scope.get("path", ""), _template(scope)))


def _template(scope: Scope) -> str | None:
    route = scope.get("route")
    template = getattr(route, "path_format", None)
    return template if isinstance(template, str) else None


def _redact_path_bytes(path: bytes) -> bytes:
    return redact_path(path.decode("latin-1")).encode("latin-1")


def redact_query(query: bytes) -> bytes:
    """``query`` with the value of every credential parameter (by name or by shape) replaced."""
    parts = []
    for part in query.split(b"&"):
        name, sep, value = part.partition(b"=")
        decoded = unquote_plus(part.decode("latin-1"))
        if sep and (unquote_plus(name.decode("latin-1")).lower() in _SECRET_NAMES or _KEY_SHAPE.search(decoded)):
            part = name + b"=" + REDACTED
        elif _KEY_SHAPE.search(decoded):  # a bare key without a name
            part = REDACTED
        parts.append(part)
    return b"&".join(parts)


def holds_credential(query: bytes) -> bool:
    """Whether ``query`` gives a credential (a parameter named like one, a value shaped like a
    FaceAtlas key), before or after :func:`redact_query`: the 401 of a call without a key header
    says that a key in the URL is refused, not only that a key is required."""
    for part in query.split(b"&"):
        name, sep, value = part.partition(b"=")
        decoded = unquote_plus(part.decode("latin-1"))
        if (sep and unquote_plus(name.decode("latin-1")).lower() in _SECRET_NAMES) or _KEY_SHAPE.search(decoded):
            return True
        if (value if sep else part) == REDACTED:  # what the middleware left of one
            return True
    return False


def _redact_scope_path(scope: Scope) -> None:
    template = _template(scope)
    scope["path"] = redact_people(scope.get("path", ""), template)
    if scope.get("raw_path"):
        scope["raw_path"] = redact_people(scope["raw_path"].decode("latin-1"), template).encode("latin-1")
    if scope.get("query_string"):
        scope["query_string"] = redact_people_query(scope["query_string"])
    if _KEY_SHAPE.search(scope.get("path", "")):
        scope["path"] = redact_path(scope["path"])
    if scope.get("raw_path") and _KEY_SHAPE.search(scope["raw_path"].decode("latin-1")):
        scope["raw_path"] = _redact_path_bytes(scope["raw_path"])


class RedactQuerySecrets:
    """Redact credentials in the query string of every HTTP request, in place, and keys and the ids
    of people in its path once the answer starts (the route has read its parameters by then; the server's access
    log is written at the answer's start, from this very dict)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        if scope.get("query_string"):
            # In place: the server's access log reads this very dict after the answer.
            scope["query_string"] = redact_query(scope["query_string"])

        async def redacting_send(message: Message) -> None:
            if message["type"] == "http.response.start":
                _redact_scope_path(scope)
            await send(message)

        try:
            await self.app(scope, receive, redacting_send)
        finally:  # no answer started (the server answers 500 itself and logs the path): redacted too
            _redact_scope_path(scope)
