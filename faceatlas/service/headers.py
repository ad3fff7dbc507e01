"""The headers every answer of the service carries, as an ASGI middleware: no MIME sniffing, no
referrer sent on, no caching of the API's answers (faces, vectors, names, keys shown once), and
the framework's trailing-slash redirects made root-relative (Starlette's named
``http://<Host header>/...``: whatever host a request gave)."""

from __future__ import annotations

from urllib.parse import urlsplit

from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

ALWAYS = {"x-content-type-options": "nosniff", "referrer-policy": "no-referrer"}


class SecurityHeaders:
    """Add :data:`ALWAYS` to every answer and ``Cache-Control: no-store`` to the API's (under
    ``prefix``) that set none; a redirect to the request's own host names only the path."""

    def __init__(self, app: ASGIApp, prefix: str) -> None:
        self.app = app
        self.prefix = prefix

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        api = scope.get("path", "").startswith(self.prefix + "/")
        host = next((v.decode("latin-1") for k, v in scope.get("headers", []) if k == b"host"), "")

        async def send_guarded(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                for name, value in ALWAYS.items():
                    headers.setdefault(name, value)
                if api:
                    headers.setdefault("cache-control", "no-store")
                if message["status"] in (301, 302, 303, 307, 308) and "location" in headers:
                    headers["location"] = own_path(headers["location"], host)
            await send(message)

        await self.app(scope, receive, send_guarded)


def own_path(location: str, host: str) -> str:
    """``location`` without its scheme and host when it names ``host`` (the request's own): a
    redirect within the service stays on the host the client reached, whatever the Host header said."""
    parts = urlsplit(location)
    if not parts.scheme or not host or parts.netloc.lower() != host.lower():
        return location
    return (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
