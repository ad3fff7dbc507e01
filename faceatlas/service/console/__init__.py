"""The web console at ``/console``: server-rendered pages (Jinja2 + htmx, no build step) over the
same gate and layer calls as the ``/v1`` API. See docs/architecture.md."""

from __future__ import annotations

from fastapi import APIRouter, FastAPI
from fastapi.staticfiles import StaticFiles

from faceatlas.service.console import account, albums, auth, events, galleries, kyc, store, trial
from faceatlas.service.console.base import HERE, PREFIX
from faceatlas.service.console.sessions import ConsoleSessions

__all__ = ["ConsoleSessions", "install"]


def install(app: FastAPI) -> None:
    """Mount the console's pages and static files on ``app``."""
    router = APIRouter()
    for module in (auth, galleries, albums, store, kyc, trial, account, events):
        router.include_router(module.router)
    app.include_router(router, prefix=PREFIX, include_in_schema=False)
    app.mount(f"{PREFIX}/static", StaticFiles(directory=HERE / "static"), name="console-static")
