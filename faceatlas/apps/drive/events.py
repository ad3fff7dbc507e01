"""Driver-monitoring events and their JSON-lines sink."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from enum import IntEnum
from typing import Any


class Level(IntEnum):
    """How urgent an event is: info < warning < alert < critical."""

    INFO = 0
    WARNING = 1
    ALERT = 2
    CRITICAL = 3


@dataclass(frozen=True)
class DriveEvent:
    """One thing that happened: ``type`` (e.g. ``blink``, ``distraction``), its level, the time in
    seconds from the start of the source, the frame number and free-form details."""

    type: str
    level: Level
    t: float
    frame: int
    details: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready view (level as its lower-case name)."""
        return {
            "type": self.type,
            "level": self.level.name.lower(),
            "t": round(self.t, 3),
            "frame": self.frame,
            "details": self.details,
        }

    def to_json(self) -> str:
        return json.dumps(self.to_dict())
