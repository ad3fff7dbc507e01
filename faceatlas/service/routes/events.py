"""Video events and per-minute counts stored by `faceatlas watch` (database sink), for the caller's tenant."""

from __future__ import annotations

from typing import Annotated, Any
from urllib.parse import quote

from fastapi import APIRouter, Depends, Path, Query
from fastapi.responses import Response
from starlette.concurrency import run_in_threadpool

from faceatlas.gallery import PAGE_MAX
from faceatlas.service.deps import DbDep, Meter, looks_nothing_up, metered
from faceatlas.service.schemas import CountList, ErrorOut, EventList
from faceatlas.video import COUNT_PAGE_MINUTES, COUNTED_CLASSES, Event, EventType, event_snapshot
from faceatlas.video import list_counts as stored_counts
from faceatlas.video import list_events as stored_events

router = APIRouter(tags=["video"])


def tenant_event(event: Event, snapshots: str = "/v1/events") -> dict[str, Any]:
    """``event`` as its tenant reads it: ``data.snapshot``, where the pipeline stored the kept
    frame's absolute file path on the server (the operator's filesystem), is the frame's address,
    ``{snapshots}/{id}/snapshot`` (the snapshot route still finds the file by the stored path)."""
    out = event.to_dict()
    if "snapshot" in event.data:
        kept = event.data["snapshot"]
        out["data"] = {**event.data, "snapshot": f"{snapshots}/{quote(event.id, safe='')}/snapshot" if kept else None}
    return out


@router.get("/events", response_model=EventList)
async def list_events(
    db: DbDep,
    meter: Annotated[Meter, Depends(metered("events.list", "read", billable=False))],
    camera: Annotated[str | None, Query(max_length=200)] = None,
    type: Annotated[EventType | None, Query(description="the events of this type only")] = None,
    since: Annotated[str | None, Query(description="ISO 8601 (with an offset, or UTC without one); events emitted "
                                                   "at or after it")] = None,
    limit: Annotated[int, Query(ge=1, le=PAGE_MAX)] = 100,
) -> dict:
    """The tenant's newest video events (watchlist hits, identifications, line crossings, ...);
    `data.snapshot`, when a frame was kept, is its address (`/v1/events/{id}/snapshot`)."""
    events = await run_in_threadpool(
        stored_events, db, meter.principal.tenant_id, camera=camera, type=type, since=since, limit=limit
    )
    return {"events": [tenant_event(event) for event in events]}


@router.get("/events/{event_id}/snapshot", response_class=Response,
            responses={200: {"content": {"image/jpeg": {}}},
                       404: {"model": ErrorOut, "description": "no snapshot kept"}})
async def snapshot(
    db: DbDep,
    meter: Annotated[Meter, Depends(metered("events.snapshot", "read", billable=False))],
    event_id: Annotated[str, Path(max_length=32)],
) -> Response:
    """The frame kept with an event (cameras with `snapshots:` in cams.yaml), faces blurred unless listed."""
    image = await run_in_threadpool(event_snapshot, db, meter.principal.tenant_id, event_id)
    return Response(image, media_type="image/jpeg", headers={"Cache-Control": "private, no-store"})


def _counted_classes(schema: dict[str, Any]) -> None:
    """The ``class`` parameter's schema: the layer's classes as the string's enum (the layer's check
    answers an unknown one, naming it and some known ones, as the CLI's)."""
    for option in schema.get("anyOf", []):
        if option.get("type") == "string":
            option["enum"] = sorted(COUNTED_CLASSES)


@router.get("/cameras/{camera}/counts", response_model=CountList)
@looks_nothing_up  # a camera with no counts (yet) is an empty answer
async def camera_counts(
    db: DbDep,
    meter: Annotated[Meter, Depends(metered("counts.list", "read", billable=False))],
    camera: Annotated[str, Path(max_length=200)],
    since: Annotated[str | None, Query(alias="from", max_length=64,
                                       description="ISO 8601 (no offset: UTC); minutes from its minute on")] = None,
    until: Annotated[str | None, Query(alias="to", max_length=64,
                                       description="ISO 8601 (no offset: UTC); minutes before its minute")] = None,
    label: Annotated[str | None, Query(alias="class", max_length=32, json_schema_extra=_counted_classes,
                                       description="face or a COCO class: person, car, bus, ...")] = None,
    limit: Annotated[int, Query(ge=1, le=10_000, description="at most this many minutes")] = COUNT_PAGE_MINUTES,
) -> dict:
    """A camera's per-minute counts per class (objects seen, line crossings, zone occupancy), oldest first;
    `truncated` when the range holds more minutes than `limit` (ask again from `next_from`)."""
    page = await run_in_threadpool(stored_counts, db, meter.principal.tenant_id, camera, since=since, until=until,
                                   label=label, limit=limit)
    return {"camera": camera, "counts": [row.to_dict() for row in page.rows], "truncated": page.truncated,
            "next_from": page.next_from}
