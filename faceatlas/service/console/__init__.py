"""The web console at ``/console``: server-rendered pages (Jinja2 + htmx, no build step) over the
same gate and layer calls as the ``/v1`` API. See docs/architecture.md."""

from __future__ import annotations

import inspect

from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from starlette.exceptions import HTTPException

from faceatlas.errors import NotFound
from faceatlas.service.console import account, albums, auth, events, galleries, kyc, members, store, trial
from faceatlas.service.console.base import HERE, PREFIX, ConsoleRoute, http_error_page
from faceatlas.service.console.sessions import ConsoleSessions
from faceatlas.service.errors import allowed_methods
from faceatlas.service.paths import is_console_path

__all__ = ["ConsoleSessions", "install"]


def install(app: FastAPI) -> None:
    """Mount the console's pages and static files on ``app``."""
    app.add_api_route(PREFIX, _to_home, methods=["GET", "HEAD"], include_in_schema=False)
    app.mount(f"{PREFIX}/static", StaticFiles(directory=HERE / "static"), name="console-static")
    router = APIRouter()
    for module in (auth, galleries, albums, store, members, kyc, trial, account, events):
        router.include_router(module.router)
    router.include_router(_unknown)  # last: any other console address is a page, not the API's JSON
    app.include_router(router, prefix=PREFIX, include_in_schema=False)
    api_answer = app.exception_handlers[HTTPException]

    async def http_error(request: Request, exc: Exception) -> Response:
        """Under ``/console`` an HTTP error of the framework (a method no page takes, a static file
        that is not there) is the console's error page, not the API's JSON; elsewhere the API's."""
        if not isinstance(exc, HTTPException) or not is_console_path(request.url.path):
            answer = api_answer(request, exc)
            return await answer if inspect.isawaitable(answer) else answer
        if exc.status_code == 405:
            exc.headers = {**(exc.headers or {}), "Allow": ", ".join(allowed_methods(app, request))}
        return http_error_page(request, exc)

    app.add_exception_handler(HTTPException, http_error)


def _to_home(request: Request) -> Response:
    """``/console`` to ``/console/`` by a root-relative ``Location``: Starlette's own slash redirect
    named ``http://<Host header>/console/``, any host a request gave, and plain ``http`` where TLS
    ends at a proxy (see ``base._url_path``)."""
    query = request.url.query
    return RedirectResponse(f"{PREFIX}/" + (f"?{query}" if query else ""), status_code=307)


_unknown = APIRouter(route_class=ConsoleRoute)


@_unknown.api_route("/{rest:path}", methods=["GET", "POST"], include_in_schema=False)
def unknown_page(rest: str) -> Response:
    raise NotFound(f"there is no console page '/{rest[:80]}'")
