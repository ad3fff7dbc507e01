"""ASGI middlewares on what a request may carry: the upload limit, enforced while the body
streams in, no NUL character in the URL (no database stores one in text), and no '/' inside a
path segment of the API (``%2F``: no id holds one)."""

from __future__ import annotations

import html
import json

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from faceatlas.service.errors import ID_RULE, error_response
from faceatlas.service.paths import is_console_path


def _console_page(code: str, message: str, page: bytes) -> bytes:
    """An error as the web console's error pages show it (``page``: b"page", or an htmx b"fragment"),
    for an answer given before any console route runs."""
    body = (f'<div class="error" role="alert"><strong>{code}</strong>: {html.escape(message)}</div>'
            + ('' if page == b"fragment" else '<p><a href="/console/">Back to the console</a></p>')).encode()
    if page == b"fragment":
        return body
    return (b'<!doctype html><html lang="en"><head><meta charset="utf-8"><title>Refused</title>'
            b'<link rel="stylesheet" href="/console/static/console.css"></head><body><main><h1>Refused</h1>'
            + body + b"</main></body></html>")


def _console_kind(scope: Scope) -> bytes | None:
    """b"page" or b"fragment" (htmx) for a request to the web console, None for the API's."""
    if not is_console_path(scope.get("path", "")):
        return None
    return b"fragment" if b"hx-request" in dict(scope.get("headers", [])) else b"page"


class UploadLimit:
    """Answer 413 as soon as a request body passes ``max_bytes`` (declared or streamed)."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = dict(scope.get("headers", []))
        declared = headers.get(b"content-length")
        page = _console_kind(scope)
        if declared is not None and declared.isdigit() and int(declared) > self.max_bytes:
            await self._reject(send, page)
            return
        received = 0
        started = rejected = False

        async def limited_receive() -> Message:
            nonlocal received, rejected
            if rejected:
                return {"type": "http.disconnect"}
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    rejected = True
                    if not started:
                        await self._reject(send, page)
                    return {"type": "http.disconnect"}  # the app stops reading; its answer is dropped
            return message

        async def guarded_send(message: Message) -> None:
            nonlocal started
            if rejected:
                return
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, limited_receive, guarded_send)
        except Exception:
            if not rejected:
                raise

    async def _reject(self, send: Send, page: bytes | None = None) -> None:
        """413: the API's JSON error, or for the web console (``page``: b"page" or an htmx b"fragment")
        the same words for a person, as its error pages show them."""
        if page:
            body = _console_page("payload_too_large", f"this upload is more than the {self.max_bytes / 1e6:.1f} MB "
                                 "the server takes at once: send fewer or smaller photos", page)
            kind = b"text/html; charset=utf-8"
        else:
            body = json.dumps({"error": {"code": "payload_too_large",
                                         "message": f"the request body exceeds {self.max_bytes} bytes"}},
                              separators=(",", ":")).encode()  # as every other error body (JSONResponse)
            kind = b"application/json"
        await send(
            {
                "type": "http.response.start",
                "status": 413,
                "headers": [(b"content-type", kind), (b"connection", b"close")],
            }
        )
        await send({"type": "http.response.body", "body": body})


class RefuseNul:
    """Answer 400 to a request whose path or query string holds a NUL character (``%00``):
    PostgreSQL refuses NUL in text, so it must never reach a lookup of an id or a filter."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and ("\x00" in scope.get("path", "") or b"%00" in scope.get("query_string", b"")):
            message = "the URL holds a NUL character"
            page = _console_kind(scope)  # the web console's error page, not the API's JSON
            if page is not None:
                body, kind = _console_page("bad_request", message, page), b"text/html; charset=utf-8"
            else:
                body = json.dumps({"error": {"code": "bad_request", "message": message}}).encode()
                kind = b"application/json"
            headers = [(b"content-type", kind), (b"content-length", str(len(body)).encode())]
            await send({"type": "http.response.start", "status": 400, "headers": headers})
            await send({"type": "http.response.body", "body": body})
            return
        await self.app(scope, receive, send)


class RefuseEncodedSlash:
    """Answer 422 ``validation_error`` to an API request whose path holds ``%2F`` (a '/' inside a
    segment: an id such as ``a/b``, percent-encoded by its client). The path is decoded before
    routing, so such an id split into two segments: a bare 404 "Not Found", or another route
    than the one called (a subject ``x/verify`` enrolled to would have been a verify). No id
    holds '/': the answer says which characters one holds."""

    def __init__(self, app: ASGIApp, prefix: str) -> None:
        self.app = app
        self.prefix = prefix

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope.get("path", "").startswith(self.prefix + "/"):
            raw = (scope.get("raw_path") or b"").split(b"?", 1)[0]
            if b"%2f" in raw.lower():
                answer = error_response("validation_error", "an id in the URL holds '/' (sent as %2F), which no id "
                                        f"holds: a collection name or subject id is {ID_RULE}; an album "
                                        "person's name holds no '/' either", 422)
                await answer(scope, receive, send)
                return
        await self.app(scope, receive, send)
