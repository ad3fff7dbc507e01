"""Video events stored by ``faceatlas watch``: a filtered list, and a live feed (server-sent events)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from functools import partial
from typing import Annotated, Any

from fastapi import APIRouter, Path, Query, Request
from fastapi.responses import Response, StreamingResponse
from starlette.concurrency import run_in_threadpool

from faceatlas.service.console.base import ConsoleRoute, UserDep, gate, get_sessions, render, words
from faceatlas.service.console.draw import events_per_minute
from faceatlas.service.console.sessions import COOKIE, LoginRequired
from faceatlas.service.deps import DbDep
from faceatlas.service.routes.events import tenant_event
from faceatlas.video import EVENT_TYPES, Event, event_snapshot, list_events

router = APIRouter(route_class=ConsoleRoute)
POLL_SECONDS = 2.0
SNAPSHOTS = "/console/events"  # an event's kept frame is shown from {SNAPSHOTS}/{id}/snapshot, never by its path
Filter = Annotated[str | None, Query(max_length=200)]


def _blank(value: str | None) -> str | None:
    return value or None


def shown(event: Event) -> dict[str, Any]:
    """``event`` as its tenant reads it, with its ``details`` in words ("subject: obama, score:
    0.62"), as the store's alerts and the KYC audit say theirs, not JSON; the kept frame
    (``data.snapshot``) is the row's picture, not words."""
    out = tenant_event(event, SNAPSHOTS)
    out["details"] = words({key: value for key, value in out["data"].items() if key != "snapshot"})
    return out


@router.get("/events", include_in_schema=False)
async def events(request: Request, user: UserDep, db: DbDep, camera: Filter = None, type: Filter = None) -> Response:
    meter = await gate(request, user.principal, "events.list", "read", billable=False)
    rows = await run_in_threadpool(lambda: list_events(db, meter.principal.tenant_id, camera=_blank(camera),
                                                       type=_blank(type), limit=200))
    return render(request, "events.html", user, events=[shown(e) for e in rows], types=EVENT_TYPES,
                  camera=camera or "", type=type or "", chart=events_per_minute(rows))


@router.get("/events/stream", include_in_schema=False)
async def stream(request: Request, user: UserDep, db: DbDep, camera: Filter = None, type: Filter = None,
                 since: Filter = None) -> Response:
    """New events as they are stored (server-sent events, one ``data:`` line of JSON each). The
    session is checked again at every poll: a revoked key's feed ends."""
    meter = await gate(request, user.principal, "events.stream", "read", billable=False)
    since = _blank(since)  # the page of a tenant without events (or a filter matching none) sends since=
    poll = partial(list_events, db, meter.principal.tenant_id, camera=_blank(camera), type=_blank(type), limit=100)
    # the first poll before the answer starts: a filter out of its rules (type=bogus, since=yesterday)
    # is an error page, not a stream broken after its start that the browser reconnects to for ever
    first = await run_in_threadpool(poll, since=since)
    sessions = get_sessions(request)
    session_id = request.cookies.get(COOKIE)

    async def feed() -> AsyncIterator[str]:
        rows, last = first, since
        seen = {e.id for e in rows if e.wall_time == since}  # the page shows the events at ``since`` already
        while True:
            for event in reversed([e for e in rows if e.id not in seen]):
                yield f"data: {json.dumps(shown(event))}\n\n"
            if rows:
                last = rows[0].wall_time
                seen = {e.id for e in rows if e.wall_time == last}
            await asyncio.sleep(POLL_SECONDS)
            if await request.is_disconnected():
                return
            try:
                await run_in_threadpool(sessions.user, session_id)
            except LoginRequired:  # logged out, expired or revoked: the feed ends
                yield "event: end\ndata: {}\n\n"
                return
            rows = await run_in_threadpool(poll, since=last)

    return StreamingResponse(feed(), media_type="text/event-stream", headers={"Cache-Control": "no-store"})


@router.get("/events/{event_id}/snapshot", include_in_schema=False)
async def snapshot(request: Request, user: UserDep, db: DbDep,
                   event_id: Annotated[str, Path(max_length=32)]) -> Response:
    meter = await gate(request, user.principal, "events.snapshot", "read", billable=False)
    image = await run_in_threadpool(event_snapshot, db, meter.principal.tenant_id, event_id)
    return Response(image, media_type="image/jpeg", headers={"Cache-Control": "private, no-store"})
