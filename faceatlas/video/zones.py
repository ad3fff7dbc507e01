"""Counting lines and occupancy zones on tracked boxes (supervision's LineZone and PolygonZone)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import supervision as sv

from faceatlas.errors import InvalidArgument

ANCHORS = {"center": sv.Position.CENTER, "bottom_center": sv.Position.BOTTOM_CENTER}


@dataclass(frozen=True)
class LineSpec:
    """A counting line from ``start`` to ``end`` (pixels). Crossing it is "in" or "out" by
    supervision's convention: "in" when moving from the line's right side to its left side,
    looking from ``start`` to ``end``. A track counts once it stays ``min_frames`` analyzed
    frames on the new side (no double counts from box jitter on the line)."""

    start: tuple[float, float]
    end: tuple[float, float]
    name: str = "line"
    anchor: str = "center"
    min_frames: int = 2

    @classmethod
    def parse(cls, text: str, name: str = "line") -> LineSpec:
        """``"x1,y1,x2,y2"`` as typed on the command line."""
        try:
            values = [float(v) for v in text.split(",")]
        except ValueError:
            values = []
        if len(values) != 4:
            raise InvalidArgument(f"a line is x1,y1,x2,y2, got {text!r}")
        return cls((values[0], values[1]), (values[2], values[3]), name)


@dataclass(frozen=True)
class ZoneSpec:
    """A polygon zone and crowd levels: ``levels`` maps a level name to the count where it starts."""

    name: str
    polygon: Sequence[tuple[float, float]]
    levels: dict[str, int] = field(default_factory=dict)
    anchor: str = "bottom_center"
    report_every: float = 1.0


class LineCounter:
    """Counts tracks crossing one line."""

    def __init__(self, spec: LineSpec) -> None:
        self.spec = spec
        self.zone = sv.LineZone(
            start=sv.Point(*spec.start),
            end=sv.Point(*spec.end),
            triggering_anchors=(ANCHORS[spec.anchor],),
            minimum_crossing_threshold=spec.min_frames,
        )

    def update(self, detections: sv.Detections) -> list[tuple[int, str]]:
        """``(tracker_id, "in" | "out")`` for each crossing in this update."""
        if len(detections) == 0:
            return []
        crossed_in, crossed_out = self.zone.trigger(detections)
        ids = detections.tracker_id
        if ids is None:  # not tracked: nothing can cross
            return []
        return [(int(t), "in") for t in ids[crossed_in]] + [(int(t), "out") for t in ids[crossed_out]]

    @property
    def counts(self) -> dict[str, int]:
        return {"in": self.zone.in_count, "out": self.zone.out_count}


class ZoneCounter:
    """Counts tracks inside one polygon; reports when the crowd level changes, or the count
    differs from the last report and ``report_every`` seconds of video have passed since it."""

    def __init__(self, spec: ZoneSpec) -> None:
        self.spec = spec
        self.zone = sv.PolygonZone(np.asarray(spec.polygon, dtype=np.int64), triggering_anchors=(ANCHORS[spec.anchor],))
        self.count = 0
        self.level: str | None = None
        self._reported_at = -np.inf

    def level_of(self, count: int) -> str | None:
        """The highest crowd level ``count`` reaches (None below all of them)."""
        reached = [(start, name) for name, start in self.spec.levels.items() if count >= start]
        return max(reached)[1] if reached else None

    def update(self, detections: sv.Detections, video_time: float) -> dict[str, Any] | None:
        """The occupancy report due now, if any."""
        count = int(self.zone.trigger(detections).sum()) if len(detections) else 0
        level = self.level_of(count)
        due = level != self.level or (count != self.count and video_time - self._reported_at >= self.spec.report_every)
        if not due:
            return None
        self.count, self.level, self._reported_at = count, level, video_time
        return {"zone": self.spec.name, "count": count, "level": level}
