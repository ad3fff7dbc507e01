"""Video events: one small JSON-serialisable record per thing that happened on a camera."""

from __future__ import annotations

import json
import uuid
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

EventType = Literal[
    "track_started",
    "identified",
    "unknown_person",
    "identity_lost",
    "watchlist_hit",
    "line_crossed",
    "zone_occupancy",
    "track_ended",
    "wrong_way",
    "dwell_exceeded",
    "speeding",
    "counts",
]
EVENT_TYPES: tuple[str, ...] = EventType.__args__  # type: ignore[attr-defined]


@dataclass(frozen=True)
class Event:
    """Something that happened on ``camera``.

    ``frame`` and ``video_time`` (seconds) locate it in the stream; ``wall_time`` is when it was
    emitted (UTC, ISO 8601). ``track_id`` names the track it is about (``kind`` "face", "person" or
    "vehicle"; ``data["class"]`` is its class voted over the track), if any. ``data`` holds the
    type's own fields (see docs/video.md). ``id`` is unique and serves as the idempotency key of
    deliveries.
    """

    type: EventType
    camera: str
    frame: int
    video_time: float
    track_id: int | None = None
    kind: str | None = None
    data: dict[str, Any] = field(default_factory=dict)
    id: str = field(default_factory=lambda: uuid.uuid4().hex)
    wall_time: str = field(default_factory=lambda: datetime.now(UTC).isoformat(timespec="milliseconds"))

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict."""
        out = asdict(self)
        out["video_time"] = round(self.video_time, 3)
        return out

    def to_json(self) -> str:
        """One line of JSON."""
        return json.dumps(self.to_dict(), separators=(",", ":"), sort_keys=True)

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> Event:
        """The event serialised by :meth:`to_dict`."""
        return cls(**raw)
