"""The web console at ``/console``: server-rendered pages (Jinja2 + htmx, no build step) over the
same gate and layer calls as the ``/v1`` API. See docs/architecture.md."""

from __future__ import annotations

from fastapi import APIRouter, FastAPI
from fastapi.responses import Response
from fastapi.staticfiles import StaticFiles

from faceatlas.errors import NotFound
from faceatlas.service.console import account, albums, auth, events, galleries, kyc, members, store, trial
from faceatlas.service.console.base import HERE, PREFIX, ConsoleRoute
from faceatlas.service.console.sessions import ConsoleSessions

__all__ = ["ConsoleSessions", "install"]


def install(app: FastAPI) -> None:
    """Mount the console's pages and static files on ``app``."""
    app.mount(f"{PREFIX}/static", StaticFiles(directory=HERE / "static"), name="console-static")
    router = APIRouter()
    for module in (auth, galleries, albums, store, members, kyc, trial, account, events):
        router.include_router(module.router)
    router.include_router(_unknown)  # last: any other console address is a page, not the API's JSON
    app.include_router(router, prefix=PREFIX, include_in_schema=False)


_unknown = APIRouter(route_class=ConsoleRoute)


@_unknown.api_route("/{rest:path}", methods=["GET", "POST"], include_in_schema=False)
def unknown_page(rest: str) -> Response:
    raise NotFound(f"there is no console page '/{rest[:80]}'")
