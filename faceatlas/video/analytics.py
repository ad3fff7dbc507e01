"""Traffic and crowd analytics of one camera, on tracked objects of every class: speeds on the
ground plane, dwell in zones (loitering, parking too long), queues, crowd density, wrong-way
crossings, and the per-minute counts (with an occupancy heatmap) that the `counts` events carry.

The ground plane comes from 4 image points and where they lie on the ground in metres (a
homography, ``cv2.getPerspectiveTransform``); speeds and densities need it, counts do not.
"""

from __future__ import annotations

import math
from collections import Counter, defaultdict, deque
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import cv2
import numpy as np
import supervision as sv

from faceatlas.errors import InvalidArgument
from faceatlas.video.events import EventType

HEATMAP_CELLS = (32, 18)
# How near the horizon a density zone's corner may come: a tenth of the calibration points' nearest
# distance to it (its ground there is 100x the area per pixel of the farthest calibration point)
HORIZON_MARGIN = 0.1  # columns, rows of the occupancy heatmap over the frame
Key = tuple[str, int]  # (track kind, track id)
Emitted = tuple[EventType, Key | None, dict[str, Any]]  # (event type, track, data)


@dataclass(frozen=True)
class GroundPlane:
    """4 image points (pixels) and the same points on the ground (metres, any right-angled frame).

    Error of a speed: the standard error of the slope of a straight-line fit of the ground
    positions over ``speed_window`` seconds (the jitter of the box's foot point), stated with
    every speed; the calibration's own error (points clicked a few pixels off, a ground that is
    not flat) comes on top and is the user's to measure (drive a known speed past the camera)."""

    image: Sequence[tuple[float, float]]
    world: Sequence[tuple[float, float]]
    speed_window: float = 1.0

    def __post_init__(self) -> None:
        if not isinstance(self.image, (list, tuple)) or not isinstance(self.world, (list, tuple)) \
                or len(self.image) != 4 or len(self.world) != 4:
            raise InvalidArgument("a ground-plane calibration has exactly 4 image and 4 world points")
        for name, points in (("image", self.image), ("world", self.world)):
            if not all(isinstance(p, (list, tuple)) and len(p) == 2 and all(
                    isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) for v in p)
                    for p in points):
                raise InvalidArgument(f"calibration: a {name} point is [x, y], two numbers, not "
                                      f"{str(list(points))[:80]}")
            # 3 points on one line (or 2 the same) tell the plane nothing in one direction: every
            # speed was 0.0, a zone's area 0 m² (a density of 9e13 per m²), or the homography singular
            triple = _collinear(np.asarray(points, np.float64))
            if triple is not None:
                first, second, third = triple
                raise InvalidArgument(f"calibration: {name} points {first}, {second} and {third} are on one line (or "
                                      "nearly): the 4 points are corners of an area on the ground, no 3 in a row")
        if isinstance(self.speed_window, bool) or not isinstance(self.speed_window, (int, float)) \
                or not 0 < self.speed_window < math.inf:  # 0 or -1 measured no speed; "1" failed mid-run
            raise InvalidArgument(f"calibration: speed_window is the seconds a speed is measured over, a number "
                                  f"above 0, not {self.speed_window!r}")
        matrix = cv2.getPerspectiveTransform(np.asarray(self.image, np.float32), np.asarray(self.world, np.float32))
        # the ground's horizon in the image (where the plane goes to infinity) must not pass between the
        # points: every point seen on the ground is on one side of it (else the points are listed in
        # another order in the image than on the ground)
        scale = matrix[2] @ np.vstack([np.asarray(self.image, np.float64).T, np.ones(4)])
        if not np.all(np.isfinite(matrix)) or not (np.all(scale > 1e-12) or np.all(scale < -1e-12)):
            raise InvalidArgument("calibration: the image and world points are not the same 4 corners in the same "
                                  "order (no view of a flat ground maps them onto each other)")


    def horizon_problem(self, polygon: Sequence[tuple[float, float]]) -> str | None:
        """Why ``polygon`` (image pixels) has no area on this ground, or None: a corner on the horizon
        (where the homography maps the ground to infinity, its ``w`` 0), beyond it (the sky: mapped
        back in front of the camera, mirrored) or within :data:`HORIZON_MARGIN` of the calibration
        points' nearest distance to it (a ground hundreds of metres away, magnified without bound).
        Such a zone's area was 322 m² for a whole frame and 835 m² for a part of it."""
        matrix = cv2.getPerspectiveTransform(np.asarray(self.image, np.float32), np.asarray(self.world, np.float32))
        horizon = matrix[2].astype(np.float64)  # a*x + b*y + c = 0 in the image
        side = 1.0 if float(horizon @ (*self.image[0], 1.0)) > 0 else -1.0
        nearest = min(side * float(horizon @ (x, y, 1.0)) for x, y in self.image)
        reach = [side * float(horizon @ (x, y, 1.0)) for x, y in polygon]
        worst = int(np.argmin(reach))
        if reach[worst] > HORIZON_MARGIN * nearest:
            return None
        a, b, c = horizon
        x, y = polygon[worst]
        where = (f"the image's y≈{-(a * x + c) / b:.0f} at x {x:g}" if abs(b) > 1e-9 * math.hypot(a, b)
                 else f"the image's x≈{-c / a:.0f}")
        said = "reaches beyond" if reach[worst] <= 0 else "comes within a tenth of the calibration's distance to"
        return (f"its corner [{x:g}, {y:g}] {said} the calibration's horizon ({where}, where the ground is "
                "infinitely far): its area in m² has no meaning; keep the zone on the ground below the horizon")


class ViewTransformer:
    """Image pixels -> metres on the ground (the homography of a :class:`GroundPlane`)."""

    def __init__(self, plane: GroundPlane) -> None:
        self.matrix = cv2.getPerspectiveTransform(np.asarray(plane.image, np.float32),
                                                  np.asarray(plane.world, np.float32))

    def transform(self, points: np.ndarray) -> np.ndarray:
        if len(points) == 0:
            return np.zeros((0, 2), np.float32)
        return cv2.perspectiveTransform(np.asarray(points, np.float32).reshape(-1, 1, 2), self.matrix).reshape(-1, 2)

    def area(self, polygon: Sequence[tuple[float, float]]) -> float:
        """Ground area (m²) of an image polygon."""
        return abs(_shoelace(self.transform(np.asarray(polygon, np.float32)).astype(np.float64)))


def _collinear(points: np.ndarray) -> tuple[int, int, int] | None:
    """The first 3 of ``points`` (numbered from 1) on one line, or nearly: the third within 1/1000
    of the longest side of the other two's line (a pixel in a 1280-pixel-wide frame); None if none."""
    count = len(points)
    for i in range(count):
        for j in range(i + 1, count):
            for k in range(j + 1, count):
                a, b, c = points[i], points[j], points[k]
                longest = max(np.hypot(*(b - a)), np.hypot(*(c - a)), np.hypot(*(c - b)))
                twice_area = abs((b[0] - a[0]) * (c[1] - a[1]) - (b[1] - a[1]) * (c[0] - a[0]))
                if longest == 0 or twice_area / longest < 1e-3 * longest:  # the height over the longest side
                    return i + 1, j + 1, k + 1
    return None


def _shoelace(points: np.ndarray) -> float:
    x, y = points[:, 0], points[:, 1]
    return 0.5 * float(np.dot(x, np.roll(y, -1)) - np.dot(y, np.roll(x, -1)))


class SpeedMeter:
    """Speeds (km/h, with their standard error) from the ground positions of each track."""

    def __init__(self, window: float = 1.0, min_points: int = 4) -> None:
        self.window = window
        self.min_points = min_points
        self._history: dict[Key, deque[tuple[float, float, float]]] = defaultdict(deque)

    def add(self, key: Key, time: float, point: np.ndarray) -> None:
        history = self._history[key]
        history.append((time, float(point[0]), float(point[1])))
        while history and time - history[0][0] > self.window:
            history.popleft()

    def speed(self, key: Key) -> tuple[float, float] | None:
        """(km/h, its standard error in km/h), or None with fewer than ``min_points`` (>= 4) positions."""
        history = self._history.get(key)
        if history is None or len(history) < self.min_points:
            return None
        points = np.asarray(history, np.float64)
        t = points[:, 0] - points[:, 0].mean()
        spread = float(t @ t)
        if points[-1, 0] - points[0, 0] <= 0 or spread <= 0:
            return None
        # least-squares slopes of x and y over time and their variances (what np.polyfit(t, ., 1,
        # cov=True) gives, in closed form: 4x cheaper, and this runs for every track every frame)
        centred = points[:, 1:] - points[:, 1:].mean(axis=0)
        vx, vy = (t @ centred) / spread
        residuals = centred - np.outer(t, (vx, vy))
        var_x, var_y = (residuals * residuals).sum(axis=0) / (len(t) - 2) / spread
        speed = math.hypot(vx, vy)
        # the speed's standard error from the slopes' variances (first-order propagation)
        error = math.sqrt(max(0.0, vx * vx * var_x + vy * vy * var_y)) / speed if speed else 0.0
        return speed * 3.6, error * 3.6

    def forget(self, key: Key) -> None:
        self._history.pop(key, None)


class CountSeries:
    """Counts per minute and class: objects seen (new tracks), line crossings per line and
    direction, the most and the mean count in each zone, and an occupancy heatmap (foot points
    per cell per analyzed frame). Minutes are UTC, the run's start plus the video time."""

    def __init__(self, start: datetime | None = None) -> None:
        # a recording placed at its start: a run again replaces its minutes; its start tells it from
        # another recording (segment) of the camera whose minutes overlap
        self.recorded = start is not None
        self.start = start or datetime.now(UTC)
        self._minute: datetime | None = None
        self._counts: dict[str, Counter[str]] = defaultdict(Counter)
        self._zone_sums: dict[tuple[str, str], list[float]] = {}
        self._heat: dict[str, np.ndarray] = {}
        self._frame_size: tuple[int, int] = (0, 0)

    def minute_of(self, video_time: float) -> datetime:
        moment = (self.start + timedelta(seconds=video_time)).astimezone(UTC)
        return moment.replace(second=0, microsecond=0)

    def advance(self, video_time: float) -> dict[str, Any] | None:
        """The finished minute's ``counts`` data when ``video_time`` starts a new minute."""
        minute = self.minute_of(video_time)
        if self._minute is None:
            self._minute = minute
        if minute == self._minute:
            return None
        report = self.flush()
        self._minute = minute
        return report

    def count(self, label: str, measure: str, value: int = 1) -> None:
        self._counts[label][measure] += value

    def zone(self, zone: str, counts: dict[str, int], labels: Sequence[str]) -> None:
        for label in labels:
            sums = self._zone_sums.setdefault((zone, label), [0.0, 0.0, 0.0])  # sum, frames, max
            value = counts.get(label, 0)
            sums[0] += value
            sums[1] += 1
            sums[2] = max(sums[2], value)

    def heat(self, label: str, points: np.ndarray, frame_size: tuple[int, int]) -> None:
        self._frame_size = frame_size
        grid = self._heat.setdefault(label, np.zeros(HEATMAP_CELLS[::-1], np.int64))
        if len(points):
            cols = np.clip((points[:, 0] / max(1, frame_size[0]) * HEATMAP_CELLS[0]).astype(int), 0,
                           HEATMAP_CELLS[0] - 1)
            rows = np.clip((points[:, 1] / max(1, frame_size[1]) * HEATMAP_CELLS[1]).astype(int), 0,
                           HEATMAP_CELLS[1] - 1)
            np.add.at(grid, (rows, cols), 1)

    def flush(self) -> dict[str, Any] | None:
        """The current minute's data (None when nothing was observed), and a fresh minute."""
        if self._minute is None:
            return None
        classes: dict[str, dict[str, Any]] = {label: dict(counts) for label, counts in self._counts.items()}
        for (zone, label), (total, frames, most) in self._zone_sums.items():
            counts = classes.setdefault(label, {})
            counts[f"zone:{zone}:max"] = int(most)
            counts[f"zone:{zone}:mean"] = round(total / frames, 2) if frames else 0.0
        for label, grid in self._heat.items():
            classes.setdefault(label, {})["heatmap"] = grid.tolist()
        self._counts, self._zone_sums, self._heat = defaultdict(Counter), {}, {}
        if not classes:
            return None
        return {"minute": self._minute.strftime("%Y-%m-%dT%H:%M"), "frame_size": list(self._frame_size),
                "classes": classes,
                **({"recorded": True, "start": self.start.astimezone(UTC).isoformat()} if self.recorded else {})}


def anchors(detections: sv.Detections) -> np.ndarray:
    """The foot point (bottom centre) of every box: where an object stands on the ground."""
    if len(detections) == 0:
        return np.zeros((0, 2), np.float32)
    return detections.get_anchors_coordinates(sv.Position.BOTTOM_CENTER)
