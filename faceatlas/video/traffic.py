"""The rules of one camera over its tracked objects (persons and vehicles, each with its voted
class): per-class line counts and wrong-way crossings, zone occupancy per class with dwell
(loitering, parking too long) and queues, speeds and ``speeding``, and the per-minute series.

:class:`CameraAnalytics` returns ``(event type, track, data)`` tuples; the pipeline emits them.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Sequence
from datetime import UTC
from typing import Any, cast

import numpy as np
import supervision as sv

from faceatlas.engine.detections import Detections
from faceatlas.engine.persons import COCO_CLASSES, VEHICLE_CLASSES
from faceatlas.errors import InvalidArgument
from faceatlas.video.analytics import CountSeries, Emitted, Key, SpeedMeter, ViewTransformer, anchors
from faceatlas.video.config import CameraConfig
from faceatlas.video.tracks import empty_detections
from faceatlas.video.zones import LineCounter, ZoneCounter


class CameraClasses:
    """Which labels of the detector are the camera's persons and vehicles (its ``aliases`` applied)."""

    def __init__(self, camera: CameraConfig) -> None:
        self.kinds: dict[int, str] = {}  # COCO class id -> "person" | "vehicle"
        for name in camera.classes:
            if name != "person" and name not in VEHICLE_CLASSES:
                raise InvalidArgument(f"camera {camera.name}: class {name!r} is not person or one of "
                                      f"{', '.join(VEHICLE_CLASSES)}")
            self.kinds[COCO_CLASSES.index(name)] = "person" if name == "person" else "vehicle"
        for source, target in camera.aliases.items():
            if source not in COCO_CLASSES or target not in camera.classes:
                raise InvalidArgument(f"camera {camera.name}: alias {source} -> {target} needs a COCO class and "
                                      "one of the camera's classes")
        self.aliases = {COCO_CLASSES.index(k): COCO_CLASSES.index(v) for k, v in camera.aliases.items()}
        self.vehicles = "vehicle" in self.kinds.values()

    def split(self, found: Detections) -> tuple[sv.Detections, sv.Detections]:
        """The detector's rows as the camera's persons and vehicles (``class_id`` aliased; other classes dropped)."""
        if len(found) == 0:
            return empty_detections("person"), empty_detections("vehicle")
        raw = found.class_id if found.class_id is not None else np.zeros(len(found), int)
        ids = np.asarray([self.aliases.get(int(c), int(c)) for c in raw], int)
        kinds = np.asarray([self.kinds.get(int(c), "") for c in ids], dtype=object)
        rows = found.to_supervision()
        rows.class_id = ids
        return cast(sv.Detections, rows[kinds == "person"]), cast(sv.Detections, rows[kinds == "vehicle"])


def labelled(detections: sv.Detections, kind: str, labels: Sequence[str]) -> sv.Detections:
    """``detections`` with the columns ``kind`` and ``label`` (the track's voted class)."""
    detections.data["kind"] = np.array([kind] * len(detections), dtype=object)
    detections.data["label"] = np.array(list(labels), dtype=object)
    return detections


def merged(parts: Sequence[sv.Detections]) -> sv.Detections:
    """The rows of every labelled part (an empty result keeps the columns)."""
    full = [p for p in parts if len(p)]
    if not full:
        empty = sv.Detections.empty()
        empty.tracker_id = np.zeros(0, int)
        return labelled(empty, "", [])
    return full[0] if len(full) == 1 else sv.Detections.merge(full)


def _keys(detections: sv.Detections) -> list[Key]:
    ids = detections.tracker_id if detections.tracker_id is not None else np.zeros(len(detections), int)
    kinds = detections.data.get("kind", [""] * len(detections))
    return [(str(kind), int(track_id)) for kind, track_id in zip(kinds, ids)]


class CameraAnalytics:
    """Everything a camera measures beyond the persons' line and zone counts of the pipeline."""

    def __init__(self, camera: CameraConfig, lines: Sequence[LineCounter]) -> None:
        self.camera = camera
        start = camera.start_time
        if start is not None and start.tzinfo is None:
            start = start.replace(tzinfo=UTC)
        plane = camera.calibration
        self.view = ViewTransformer(plane) if plane is not None else None
        self.speeds = SpeedMeter(plane.speed_window if plane is not None else 1.0)
        self.series = CountSeries(start)
        # vehicles cross the lines on their own LineZone (their tracker ids are their own)
        self.vehicle_lines = [LineCounter(line.spec) for line in lines]
        self.class_counts: dict[str, dict[str, dict[str, int]]] = {
            line.spec.name: defaultdict(lambda: {"in": 0, "out": 0}) for line in lines}
        # (zone, track) -> when the track entered the zone and when it was last seen inside: an entry
        # lasts while its track does (ByteTrack lists only the tracks matched in a frame; a track missed
        # now and then is still there), until the track is seen outside, ends (:meth:`forget`) or is
        # not seen for the camera's ``track_timeout`` (when the pipeline ends it)
        self._entered: dict[tuple[str, Key], float] = {}
        self._inside_at: dict[tuple[str, Key], float] = {}
        self._dwell_reported: set[tuple[str, Key]] = set()
        self._queues: dict[str, int] = {}
        self._speeding: set[Key] = set()
        self.top_speed: dict[Key, tuple[float, float]] = {}
        self._counted: dict[Key, str] = {}  # track -> the class it was counted (seen) as

    def area_of(self, polygon: Sequence[tuple[float, float]]) -> float | None:
        return self.view.area(polygon) if self.view is not None else None

    # -- every analyzed frame --------------------------------------------------------------------
    def observe(self, video_time: float, objects: sv.Detections, frame_size: tuple[int, int],
                confirmed: Sequence[tuple[Key, str]] = ()) -> list[Emitted]:
        """Positions, speeds and the heatmap of every tracked object; the finished minute's counts.
        ``confirmed``: the tracks that became objects in this frame, with their class now (``seen``
        in the minute of this frame)."""
        out: list[Emitted] = []
        due = self.series.advance(video_time)
        if due is not None:
            out.append(("counts", None, due))
        for key, label in confirmed:
            self.seen(key, label)
        points = anchors(objects)
        labels = np.asarray(objects.data.get("label", []), dtype=object)
        # heat under the class a track was counted as (its vote of the moment flips now and then: a car
        # voted a bus on 2-3 frames left a "bus" of heat alone, a class without counts); a track not
        # counted yet (a flicker before it is an object) leaves none
        counted = np.asarray([self._counted.get(key, "") for key in _keys(objects)], dtype=object)
        for label in set(counted.tolist()) - {""}:
            self.series.heat(str(label), points[counted == label], frame_size)
        if self.view is None or len(objects) == 0:
            return out
        limit = self.camera.speed_limit_kmh
        for key, label, point in zip(_keys(objects), labels, self.view.transform(points)):
            self.speeds.add(key, video_time, point)
            measured = self.speeds.speed(key)
            if measured is None:
                continue
            if measured[0] > self.top_speed.get(key, (-1.0, 0.0))[0]:
                self.top_speed[key] = measured
            if limit is not None and measured[0] > limit and key not in self._speeding:
                self._speeding.add(key)
                out.append(("speeding", key, {"class": str(label), "limit_kmh": limit, **_speed(measured)}))
        return out

    def seen(self, key: Key, label: str) -> None:
        """A track counted as an object of class ``label``: its heat is that class's from now on."""
        self._counted[key] = label
        self.series.count(label, "seen")

    def speed_of(self, key: Key) -> dict[str, float]:
        measured = self.speeds.speed(key)
        return _speed(measured) if measured is not None else {}

    # -- lines -----------------------------------------------------------------------------------
    def crossed(self, line: LineCounter, key: Key, label: str, direction: str) -> list[Emitted]:
        """Count a crossing for its class; a crossing against the line's ``expected`` direction is wrong-way."""
        counts = self.class_counts[line.spec.name][label]
        counts[direction] += 1
        self.series.count(label, f"{direction}:{line.spec.name}")
        expected = line.spec.expected
        if expected is not None and direction != expected:
            return [("wrong_way", key, {"line": line.spec.name, "direction": direction, "expected": expected,
                                        "class": label, **self.speed_of(key)})]
        return []

    def vehicle_crossings(self, vehicles: sv.Detections) -> list[tuple[LineCounter, Key, str, str]]:
        """(line, track, class, direction) of every vehicle crossing in this update."""
        labels = dict(zip(_keys(vehicles), vehicles.data.get("label", [])))
        found = []
        for line in self.vehicle_lines:
            for track_id, direction in line.update(vehicles):
                key = ("vehicle", track_id)
                found.append((line, key, str(labels.get(key, "vehicle")), direction))
        return found

    def line_counts(self) -> dict[str, dict[str, dict[str, int]]]:
        return {line: dict(per_class) for line, per_class in self.class_counts.items()}

    # -- zones -----------------------------------------------------------------------------------
    def zone(self, zone: ZoneCounter, objects: sv.Detections, video_time: float) -> list[Emitted]:
        """The zone's occupancy report (with counts per class and its queue) and dwell events.

        A track's dwell runs from its entry until it is seen outside the zone or ends; a frame whose
        tracker output lacks it (a missed detection) neither ends nor restarts it; the queue counts the
        tracks inside in this frame only (at most the zone's count)."""
        report = zone.update(objects, video_time)
        inside = zone.inside if len(zone.inside) == len(objects) else np.zeros(len(objects), np.bool_)
        keys, labels = _keys(objects), [str(v) for v in objects.data.get("label", [])]
        name, spec = zone.spec.name, zone.spec
        out: list[Emitted] = []
        outside = {(name, key) for key, is_inside in zip(keys, inside) if not is_inside}
        timeout = self.camera.track_timeout
        for entry in [e for e in self._entered if e[0] == name]:
            if entry in outside or video_time - self._inside_at[entry] > timeout:  # left, or the track is lost
                self._drop(entry)
        for key, label, is_inside in zip(keys, labels, inside):
            if not is_inside:
                continue
            entry = (name, key)
            self._inside_at[entry] = video_time
            since = self._entered.setdefault(entry, video_time)
            dwell = video_time - since
            if spec.max_dwell is not None and dwell > spec.max_dwell and entry not in self._dwell_reported:
                self._dwell_reported.add(entry)
                rule = "loitering" if label == "person" else "parked_too_long"
                out.append(("dwell_exceeded", key, {"zone": name, "class": label, "rule": rule,
                                                    "dwell": round(dwell, 2), "max_dwell": spec.max_dwell}))
        per_class = Counter(label for label, is_inside in zip(labels, inside) if is_inside)
        self.series.zone(name, per_class, sorted(set(labels) | set(spec.classes or ())))
        extra: dict[str, Any] = {"classes": dict(per_class)}
        if spec.queue_after is not None:
            # the tracks in the zone in this frame (those its count counts), inside long enough: a track the
            # tracker missed now, or one whose id switched, kept its old entry and was queued after it left
            # (queue 1 at count 0; 4 at count 3); its entry is kept, so it is queued again once seen again
            queue = sum(video_time - self._entered[(name, key)] >= spec.queue_after
                        for key, is_inside in zip(keys, inside) if is_inside)
            extra["queue"] = queue
            if report is None and queue != self._queues.get(name, 0):
                report = zone.report_now(video_time)  # with this frame's count, never one from before
            self._queues[name] = queue
        if report is not None:
            out.append(("zone_occupancy", None, {**report, **extra}))
        return out

    # -- ends ------------------------------------------------------------------------------------
    def _drop(self, entry: tuple[str, Key]) -> None:
        del self._entered[entry]
        del self._inside_at[entry]
        self._dwell_reported.discard(entry)

    def forget(self, key: Key) -> dict[str, float]:
        """The track's top speed, and its state dropped (its zone entries too: the track ended)."""
        for entry in [e for e in self._entered if e[1] == key]:
            self._drop(entry)
        self.speeds.forget(key)
        self._counted.pop(key, None)
        self._speeding.discard(key)
        top = self.top_speed.pop(key, None)
        return {f"max_{k}": v for k, v in _speed(top).items()} if top is not None else {}

    def flush(self) -> list[Emitted]:
        due = self.series.flush()
        return [("counts", None, due)] if due is not None else []


def _speed(measured: tuple[float, float]) -> dict[str, float]:
    return {"speed_kmh": round(measured[0], 1), "speed_error_kmh": round(measured[1], 1)}
