"""Counting lines and occupancy zones on tracked boxes (supervision's LineZone; a zone tests its
polygon's corners, as supervision's PolygonZone does its mask, with no mask: see :class:`PolygonArea`)."""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import cv2
import numpy as np
import supervision as sv

from faceatlas.errors import InvalidArgument

ANCHORS = {"center": sv.Position.CENTER, "bottom_center": sv.Position.BOTTOM_CENTER}
# a coordinate's reach: past any frame (a line or zone there is a typo, or overflows)
MAX_PIXEL = 1e6
POINT = f"a point is [x, y] in pixels, two numbers from {-MAX_PIXEL:.0f} to {MAX_PIXEL:.0f}"


@dataclass(frozen=True)
class LineSpec:
    """A counting line from ``start`` to ``end`` (pixels). Crossing it is "in" or "out" by
    supervision's convention: "in" when moving from the line's right side to its left side,
    looking from ``start`` to ``end``. A track counts once it stays ``min_frames`` analyzed
    frames on the new side (no double counts from box jitter on the line). One line per lane
    counts lanes apart. ``expected`` ("in" or "out"): the lane's direction of travel; a
    crossing the other way is a ``wrong_way`` event."""

    start: tuple[float, float]
    end: tuple[float, float]
    name: str = "line"
    anchor: str = "center"
    min_frames: int = 2
    expected: str | None = None

    def __post_init__(self) -> None:
        _check_name("line", self.name)
        for end in (self.start, self.end):
            if not _is_point(end):
                raise InvalidArgument(f"line {self.name}: {POINT}, not {str(end)[:60]}")
        if isinstance(self.min_frames, bool) or not isinstance(self.min_frames, int) or self.min_frames < 1:
            raise InvalidArgument(f"line {self.name}: min_frames is a whole number of 1 or more, "
                                  f"not {self.min_frames!r}")
        if self.expected not in (None, "in", "out"):
            raise InvalidArgument(f"line {self.name}: expected is 'in' or 'out', got {self.expected!r}")
        if self.anchor not in ANCHORS:
            raise InvalidArgument(f"line {self.name}: anchor is one of {', '.join(ANCHORS)}")
        if tuple(self.start) == tuple(self.end):  # supervision's LineZone raises a bare ValueError on it
            raise InvalidArgument(f"line {self.name}: its start and end are the same point {tuple(self.start)}")

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
    """A polygon zone and crowd levels: ``levels`` maps a level name to the count where it starts.

    A count hovering at a level's edge must not flap the level: a new level is taken only once
    it held ``min_dwell`` seconds of video, and a level is left downwards only when the count
    falls more than ``hysteresis`` below the count where it starts.

    ``classes``: the object classes it counts (None: persons, or faces without a person
    detector). ``per_m2``: ``levels`` and ``hysteresis`` are people per m² (crowd density; needs
    the camera's ground-plane calibration). ``max_dwell``: a track inside longer than this (s) is a
    ``dwell_exceeded`` event (loitering, parking too long). ``queue_after``: the zone is a queue;
    its members are the tracks inside for at least this long (s), reported as ``queue``."""

    name: str
    polygon: Sequence[tuple[float, float]]
    levels: dict[str, float] = field(default_factory=dict)
    anchor: str = "bottom_center"
    report_every: float = 1.0
    min_dwell: float = 1.0
    hysteresis: float = 1
    classes: tuple[str, ...] | None = None
    per_m2: bool = False
    max_dwell: float | None = None
    queue_after: float | None = None

    def __post_init__(self) -> None:
        _check_name("zone", self.name)
        numbers = {"min_dwell": self.min_dwell, "hysteresis": self.hysteresis, "report_every": self.report_every,
                   "max_dwell": self.max_dwell, "queue_after": self.queue_after}
        for key, value in numbers.items():
            if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float))
                                      or not 0 <= value < math.inf):
                raise InvalidArgument(f"zone {self.name}: {key} is a number of 0 or more, not {value!r}")
        # a level of nan or -1 was taken: nan was never reached, -1 always (the zone never below it)
        if not isinstance(self.levels, dict) or not all(
                isinstance(k, str) and isinstance(v, (int, float)) and not isinstance(v, bool) and 0 <= v < math.inf
                for k, v in self.levels.items()):
            raise InvalidArgument(f"zone {self.name}: levels maps a level's name to the count where it starts, a "
                                  f"number of 0 or more, not {str(self.levels)[:60]}")
        if not isinstance(self.anchor, str) or self.anchor not in ANCHORS:  # 'top' was a KeyError as the run began
            raise InvalidArgument(f"zone {self.name}: anchor is one of {', '.join(ANCHORS)}, "
                                  f"not {str(self.anchor)[:40]!r}")
        if not isinstance(self.per_m2, bool):  # 'yes' was taken as true, then asked for a calibration
            raise InvalidArgument(f"zone {self.name}: per_m2 is true or false, not {self.per_m2!r}"[:200])
        if len(self.polygon) < 3:
            raise InvalidArgument(f"zone {self.name}: a polygon is at least 3 points [x, y] in pixels, "
                                  f"not {len(self.polygon)}")
        for number, point in enumerate(self.polygon, 1):  # a corner at 1e12 was "at least 3 points" too
            if not _is_point(point):
                raise InvalidArgument(f"zone {self.name}: polygon point {number}: {POINT}, not {str(point)[:60]}")
        points = [(float(p[0]), float(p[1])) for p in self.polygon]
        if _edges_cross(points):  # a bow-tie: supervision fills it as two triangles, or none when symmetric
            raise InvalidArgument(f"zone {self.name}: its edges cross: list the corners in order around the zone")
        xs, ys = [p[0] for p in points], [p[1] for p in points]
        if abs(sum(xs[i] * ys[i - 1] - xs[i - 1] * ys[i] for i in range(len(xs)))) < 1e-9:  # twice its area
            raise InvalidArgument(f"zone {self.name}: its polygon has no area (its points are on one line)")


def _check_name(kind: str, name: object) -> None:
    """A line's or zone's name is text: it keys its counts, events and stored series (a list there was
    an unhashable TypeError before the run, or mid-run after events were written)."""
    if not isinstance(name, str) or not 0 < len(name.strip()) <= 200 or len(name) > 200:
        raise InvalidArgument(f"a {kind}'s name is text of 1 to 200 characters, not {str(name)[:60]!r}")


def _edges_cross(points: list[tuple[float, float]]) -> bool:
    """Whether two edges of the closed polygon ``points`` that share no corner cross each other."""
    def side(a: tuple[float, float], b: tuple[float, float], c: tuple[float, float]) -> float:
        return (b[0] - a[0]) * (c[1] - a[1]) - (b[1] - a[1]) * (c[0] - a[0])

    edges = [(points[i], points[(i + 1) % len(points)]) for i in range(len(points))]
    for i, (a, b) in enumerate(edges):
        for j in range(i + 2, len(edges)):
            if i == 0 and j == len(edges) - 1:  # the first and last edges share the first corner
                continue
            c, d = edges[j]
            if side(a, b, c) * side(a, b, d) < 0 and side(c, d, a) * side(c, d, b) < 0:
                return True
    return False


def _is_point(point: object) -> bool:
    """Whether ``point`` is [x, y]: two finite numbers within any frame's reach (pixels, :data:`MAX_PIXEL`)."""
    return (isinstance(point, (tuple, list)) and len(point) == 2
            and all(isinstance(v, (int, float)) and not isinstance(v, bool) and abs(v) <= MAX_PIXEL for v in point))


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


class PolygonArea:
    """Which detections have their ``anchor`` inside ``polygon`` (or on its edge): supervision's
    PolygonZone, less its mask. That mask spans (0, 0) to the polygon's far corner whatever the
    frame: a zone drawn past the frame to (128000, 72000) allocated 8.6 GiB (a MemoryError); this
    keeps only the corners, whatever their reach. Like the mask, no point left of or above the
    frame's (0, 0) is inside."""

    def __init__(self, polygon: Sequence[tuple[float, float]], anchor: sv.Position) -> None:
        self.polygon = np.asarray(polygon, dtype=np.int64)  # the corners as the mask drew them (and annotate does)
        self._contour = self.polygon.astype(np.float32).reshape(-1, 1, 2)
        self.anchor = anchor

    def trigger(self, detections: sv.Detections) -> np.ndarray:
        if len(detections) == 0:
            return np.zeros(0, np.bool_)
        points = np.rint(detections.get_anchors_coordinates(self.anchor)).astype(np.int64)
        return np.array([x >= 0 and y >= 0 and cv2.pointPolygonTest(self._contour, (float(x), float(y)), False) >= 0
                         for x, y in points], dtype=np.bool_)


class ZoneCounter:
    """Counts tracks inside one polygon; reports when the crowd level changes (after the
    spec's hysteresis and minimum dwell), or the count differs from the last report and
    ``report_every`` seconds of video have passed since it."""

    def __init__(self, spec: ZoneSpec, area_m2: float | None = None) -> None:
        if spec.per_m2 and not area_m2:
            raise InvalidArgument(f"zone {spec.name}: levels per m² need the camera's ground-plane calibration")
        self.spec = spec
        self.area_m2 = area_m2
        self.zone = PolygonArea(spec.polygon, ANCHORS[spec.anchor])
        self.count = 0
        self.inside = np.zeros(0, np.bool_)  # the last update's detections inside the zone
        self.level: str | None = None
        self._reported_at = -np.inf
        # (video time, level asked for) since the last level change, back to the window of min_dwell
        self._asked: deque[tuple[float, str | None]] = deque()

    def level_of(self, count: float) -> str | None:
        """The highest crowd level ``count`` (a density with ``per_m2``) reaches (None below all of them)."""
        reached = [(start, name) for name, start in self.spec.levels.items() if count >= start]
        return max(reached)[1] if reached else None

    def _start(self, level: str | None) -> float:
        return -np.inf if level is None else self.spec.levels[level]

    def _candidate(self, count: float) -> str | None:
        """The level ``count`` asks for: the current one while the count stays within the hysteresis below it."""
        level = self.level_of(count)
        current = self._start(self.level)
        if self._start(level) < current and count >= current - self.spec.hysteresis:
            return self.level
        return level

    def _held(self, candidate: str | None, video_time: float) -> bool:
        """Move to the level every count of the last ``min_dwell`` seconds asked for (at least, going
        up; at most, going down), if any; True when the level changed."""
        asked = self._asked
        asked.append((video_time, candidate))
        window_start = video_time - self.spec.min_dwell
        while len(asked) > 1 and asked[1][0] <= window_start:
            asked.popleft()
        if asked[0][0] > window_start:  # not watched for min_dwell yet
            return False
        current = self._start(self.level)
        lowest = min((c for _, c in asked), key=self._start)
        highest = max((c for _, c in asked), key=self._start)
        if self._start(lowest) > current:
            self.level = lowest
        elif self._start(highest) < current:
            self.level = highest
        else:
            return False
        asked.clear()
        asked.append((video_time, candidate))
        return True

    def update(self, detections: sv.Detections, video_time: float) -> dict[str, Any] | None:
        """The occupancy report due now, if any."""
        self.inside = self.zone.trigger(detections) if len(detections) else np.zeros(0, np.bool_)
        count = int(self.inside.sum())
        value = count / self.area_m2 if self.spec.per_m2 and self.area_m2 else count
        changed = self._held(self._candidate(value), video_time)
        if not changed and (count == self.count or video_time - self._reported_at < self.spec.report_every):
            return None
        self.count, self._reported_at = count, video_time
        return self.report()

    def report_now(self, video_time: float) -> dict[str, Any]:
        """A report out of turn (its queue changed), with the count of the last update: the count of
        the last report was one of up to ``report_every`` seconds before, below a queue of now."""
        self.count, self._reported_at = int(self.inside.sum()), video_time
        return self.report()

    def report(self) -> dict[str, Any]:
        """The zone's count and level now (with its density and area when calibrated)."""
        report: dict[str, Any] = {"zone": self.spec.name, "count": self.count, "level": self.level}
        if self.area_m2:
            report.update(density=round(self.count / self.area_m2, 3), area_m2=round(self.area_m2, 2))
        return report
