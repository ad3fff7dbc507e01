"""The plain events the retail app consumes, and the adapter from :mod:`faceatlas.video` events.

A shopper is seen as a face (``image`` in BGR/path/bytes, or an ``embedding``) and/or an
anonymous ``track`` id that the tracking layer keeps across the store's cameras, and/or the
``subject`` the video layer already recognised (a member id, at the visit FPIR). ``id`` is the
event's idempotency key: a retried event with the same id has no second effect.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol

from faceatlas.apps.retail.config import StoreConfig
from faceatlas.engine import Embedding
from faceatlas.errors import NotFound


def _new_id() -> str:
    return uuid.uuid4().hex


@dataclass(frozen=True)
class Sighting:
    """Someone seen by ``camera`` at ``at`` (naive UTC)."""

    camera: str
    at: datetime
    image: Any = field(default=None, repr=False)
    embedding: Embedding | None = field(default=None, repr=False)
    track: str | None = None
    id: str = field(default_factory=_new_id)
    subject: str | None = None


@dataclass(frozen=True)
class Entry(Sighting):
    """A shopper walked in through an entrance."""


@dataclass(frozen=True)
class ZoneVisit(Sighting):
    """A shopper was seen in the zone of a zone camera."""


@dataclass(frozen=True)
class Exit(Sighting):
    """A shopper walked out: the visit closes and, when it has a cart, face pay runs."""


@dataclass(frozen=True)
class Pick:
    """A shelf sensor (or a scan at the shelf) put ``quantity`` of ``sku`` into the cart of the
    shopper identified by ``track`` (or by the face in ``image``)."""

    camera: str
    at: datetime
    sku: str
    quantity: int = 1
    image: Any = field(default=None, repr=False)
    track: str | None = None
    id: str = field(default_factory=_new_id)


RetailEvent = Entry | ZoneVisit | Exit | Pick


class VideoEvent(Protocol):
    """The fields of :class:`faceatlas.video.events.Event` this adapter reads."""

    @property
    def type(self) -> str: ...
    @property
    def camera(self) -> str: ...
    @property
    def track_id(self) -> int | None: ...
    @property
    def data(self) -> dict[str, Any]: ...
    @property
    def id(self) -> str: ...
    @property
    def wall_time(self) -> str: ...


def from_video_event(event: VideoEvent, store: StoreConfig, *, image: Any = None) -> Entry | Exit | ZoneVisit | None:
    """The retail event of one video event, or None when it means nothing to the store.

    ``line_crossed`` "in" on an entrance (or door) camera is an :class:`Entry`, "out" on an exit
    (or door) camera an :class:`Exit`; ``track_started``/``identified`` on a zone camera is a
    :class:`ZoneVisit`. ``image`` is the face snapshot of the event, if the pipeline kept one; the
    event's ``subject`` (a member the video layer recognised) is kept. The track id is prefixed
    with the camera so ids of different cameras never collide.
    """
    try:
        role = store.camera(event.camera).role
    except NotFound:
        return None
    at = datetime.fromisoformat(event.wall_time).astimezone(UTC).replace(tzinfo=None)
    track = f"{event.camera}:{event.track_id}" if event.track_id is not None else None
    common = {"camera": event.camera, "at": at, "image": image, "track": track, "id": event.id,
              "subject": event.data.get("subject")}
    direction = event.data.get("direction")
    if event.type == "line_crossed" and role in ("entrance", "door") and direction == "in":
        return Entry(**common)
    if event.type == "line_crossed" and role in ("exit", "door") and direction == "out":
        return Exit(**common)
    if event.type in ("track_started", "identified") and role == "zone":
        return ZoneVisit(**common)
    return None
