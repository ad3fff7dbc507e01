"""Video events stored by `faceatlas watch` (database sink), listed for the caller's tenant."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request
from sqlalchemy import select
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool

from faceatlas.service.deps import Meter, metered
from faceatlas.video.events import EVENT_TYPES
from faceatlas.video.store import EventRow

router = APIRouter(tags=["video"])


@router.get("/events")
async def list_events(
    request: Request,
    meter: Annotated[Meter, Depends(metered("events.list", "read", billable=False))],
    camera: Annotated[str | None, Query(max_length=200)] = None,
    type: Annotated[str | None, Query(description=f"one of {', '.join(EVENT_TYPES)}")] = None,
    since: Annotated[str | None, Query(description="ISO 8601 UTC; events emitted at or after it")] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> dict:
    """The tenant's newest video events (watchlist hits, identifications, line crossings, ...)."""
    query = select(EventRow).where(EventRow.tenant == meter.principal.tenant_id)
    if camera is not None:
        query = query.where(EventRow.camera == camera)
    if type is not None:
        query = query.where(EventRow.type == type)
    if since is not None:
        query = query.where(EventRow.wall_time >= since)
    query = query.order_by(EventRow.wall_time.desc()).limit(limit)

    def fetch() -> list[dict]:
        with Session(request.app.state.db) as session:
            return [row.to_event().to_dict() for row in session.scalars(query)]

    return {"events": await run_in_threadpool(fetch)}
