"""The per-camera pipeline: decode -> detect faces and persons every ``stride``-th frame ->
track (ByteTrack) -> keep each face track's best faces -> recognise from several frames -> events.

One :class:`VideoPipeline` per camera; :func:`run_cameras` runs several in threads of one
process, sharing the models and the event sinks.
"""

from __future__ import annotations

import hashlib
import logging
import signal
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

import cv2
import numpy as np
import supervision as sv

from faceatlas.engine import Detections, Embedding, Face, FaceAnalyzer
from faceatlas.engine.persons import COCO_CLASSES, ObjectDetector
from faceatlas.errors import CamerasFailed, FaceAtlasError, InvalidInput
from faceatlas.video.annotate import FrameAnnotator, VideoWriter, blur_faces, blur_plates, output_video_failed
from faceatlas.video.config import CameraConfig
from faceatlas.video.events import Event, EventType
from faceatlas.video.identity import IdentityMatcher, IdentityVote
from faceatlas.video.shots import ShotCutDetector
from faceatlas.video.sinks import EventBus
from faceatlas.video.sources import Frame, SourceStats, VideoSource
from faceatlas.video.tracks import FaceSample, Track, byte_tracker
from faceatlas.video.tracks import box_list as _box
from faceatlas.video.tracks import empty_detections as _empty
from faceatlas.video.tracks import track_ids as _track_ids
from faceatlas.video.traffic import CameraAnalytics, CameraClasses, labelled, merged
from faceatlas.video.zones import LineCounter, ZoneCounter

log = logging.getLogger(__name__)
MIN_HITS = 3  # analyzed frames a track needs to count as an object seen (in the minute it reaches them)


@dataclass
class PipelineStats:
    """What one camera did: frames seen and analyzed, source counters, wall time."""

    camera: str
    frames: int = 0
    analyzed: int = 0
    embedded: int = 0
    seconds: float = 0.0
    source: SourceStats = field(default_factory=SourceStats)
    line_counts: dict[str, dict[str, int]] = field(default_factory=dict)
    class_counts: dict[str, dict[str, dict[str, int]]] = field(default_factory=dict)  # line -> class -> in/out
    interrupted: bool = False  # a file's camera stopped (Ctrl-C, SIGTERM) before the file's end
    snapshots_failed: int = 0  # snapshots that could not be written (their events name none)

    @property
    def fps(self) -> float:
        return self.frames / self.seconds if self.seconds else 0.0

    def crossings(self) -> dict[str, dict[str, int]]:
        """Per line, its crossings in and out of every class: ``line_counts`` are the persons' line
        alone (a summary said "aisle crossings: in 0, out 0" above "aisle car: in 2, out 2")."""
        totals = {line: dict(counts) for line, counts in self.line_counts.items()}
        for line, per_class in self.class_counts.items():
            if per_class:
                totals[line] = {direction: sum(counts.get(direction, 0) for counts in per_class.values())
                                for direction in ("in", "out")}
        return totals

    def to_dict(self) -> dict[str, Any]:
        return {"camera": self.camera, "frames": self.frames, "analyzed": self.analyzed, "embedded": self.embedded,
                "seconds": round(self.seconds, 2), "fps": round(self.fps, 1), "source": vars(self.source),
                "line_counts": self.line_counts, "class_counts": self.class_counts,
                **({"interrupted": True} if self.interrupted else {}),
                **({"snapshots_failed": self.snapshots_failed} if self.snapshots_failed else {})}


class VideoPipeline:
    """Turns the frames of one camera into events on ``bus``.

    ``matcher`` None turns recognition off (tracks, counts and zones still work); ``persons``
    None turns person detection off (lines and zones then count face tracks). ``persons`` may be
    an :class:`~faceatlas.engine.persons.ObjectDetector` of more classes: the camera's vehicle
    ``classes`` are then tracked too (kind "vehicle"), each track's class voted over the track.
    """

    def __init__(
        self,
        camera: CameraConfig,
        analyzer: FaceAnalyzer | None,
        bus: EventBus,
        *,
        persons: ObjectDetector | None = None,
        matcher: IdentityMatcher | None = None,
        on_frame: Callable[[str, int, int | None], None] | None = None,
    ) -> None:
        self.camera = camera
        self.on_frame = on_frame  # (camera name, frame index, frame count if known) after each frame
        self.analyzer = analyzer if camera.faces else None
        self.persons = persons if camera.persons else None
        self.matcher = matcher
        self.bus = bus
        self.stats = PipelineStats(camera.name)
        self.lines = [LineCounter(spec) for spec in camera.lines]
        self.analytics = CameraAnalytics(camera, self.lines)
        self.zones = [ZoneCounter(spec, self.analytics.area_of(spec.polygon)) for spec in camera.zones]
        self.tracks: dict[tuple[str, int], Track] = {}
        self._trackers: dict[str, sv.ByteTrack] = {}
        self._classes = CameraClasses(camera)  # which detector labels are this camera's persons and vehicles
        self._shown: dict[str, sv.Detections] = {k: _empty(k) for k in ("face", "person", "vehicle")}
        self._detected = _empty("face")  # every face of the last analysis, tracked or not yet
        self._last_id: dict[str, int] = {}  # the highest track id so far: a new tracker's ids follow it
        self._id_base: dict[str, int] = {}
        self._cuts = ShotCutDetector(camera.scene_cut) if camera.scene_cut is not None else None
        self._since_analysis = 0
        self._confirmed: list[tuple[str, int]] = []  # tracks that became objects this frame (the counts' seen)
        self._watchlist = set(camera.watchlist)
        self._annotator = FrameAnnotator() if camera.output else None
        self._writer: VideoWriter | None = None
        self._stop = threading.Event()
        self._source: VideoSource | None = None  # the source being run (stop() stops it too)
        self._last_time = 0.0
        self._last_index = 0
        self._person_worker = ThreadPoolExecutor(1, thread_name_prefix=f"persons-{camera.name}")

    # -- running --------------------------------------------------------------------------------
    def run(self, source: VideoSource | None = None) -> PipelineStats:
        """Process ``source`` (default: the camera's) until it ends or :meth:`stop` is called."""
        source = source or VideoSource(self.camera.source, realtime=self.camera.realtime)
        self._source = source
        if self._stop.is_set():  # stopped before it started
            source.stop()
        started = time.perf_counter()
        try:
            for frame in source:
                if self._stop.is_set():
                    self.stats.interrupted = not source.live
                    break
                self.process(frame, source.fps)
                if self.on_frame is not None:
                    self.on_frame(self.camera.name, frame.index, source.frames)
        finally:
            source.close()
            self.finish()
            self.stats.seconds = time.perf_counter() - started
            self.stats.source = source.stats
        return self.stats

    def stop(self) -> None:
        """Ask :meth:`run` to end after the current frame (tracks are then ended and flushed), or at
        once when its live source has no frame to give (a camera reconnecting: it waited out the
        backoff, up to 30 s, and the interrupted run closed the sinks under the camera)."""
        self._stop.set()
        if self._source is not None:
            self._source.stop()

    def process(self, frame: Frame, fps: float) -> None:
        """One frame: analyzed when it is a ``stride``-th frame or the first of a new shot (tracks of
        the shot before end there), written to the output video if any."""
        stride = max(1, self.camera.stride)
        cut = self._cuts is not None and self._cuts.is_cut(frame.image)
        if cut:
            self._new_shot(frame)
        analyse = cut or self.stats.frames == 0 or self._since_analysis >= stride
        if self.stats.frames == 0:
            self._check_geometry(frame.image.shape[1], frame.image.shape[0])
        self._since_analysis = 1 if analyse else self._since_analysis + 1
        self.stats.frames += 1
        self._last_time, self._last_index = frame.time, frame.index
        if analyse:
            self.stats.analyzed += 1
            self._analyze(frame, (fps or 25.0) / stride)
        if self.camera.output is not None:
            self._write_output(frame, fps)

    def _check_geometry(self, width: int, height: int) -> None:
        """A warning for each line or zone wholly outside the first frame (pixels of another
        resolution?): it would count nothing, and the run said only "in 0, out 0"."""
        frame = (0, 0, width, height)
        for line in self.camera.lines:
            inside, _, _ = cv2.clipLine(frame, tuple(map(round, line.start)), tuple(map(round, line.end)))
            if not inside:
                log.warning("camera %s: line %s is outside the %dx%d frame: it will count nothing (its points "
                            "are pixels of this video)", self.camera.name, line.name, width, height)
        for zone in self.camera.zones:
            xs, ys = [p[0] for p in zone.polygon], [p[1] for p in zone.polygon]
            if max(xs) <= 0 or max(ys) <= 0 or min(xs) >= width or min(ys) >= height:
                log.warning("camera %s: zone %s is outside the %dx%d frame: it will count nothing (its points "
                            "are pixels of this video)", self.camera.name, zone.name, width, height)

    def finish(self) -> None:
        """End every open track (``track_ended``) and close the output video."""
        for key in list(self.tracks):
            self._end(key, self._last_time, self._last_index)
        self.stats.line_counts = {line.spec.name: line.counts for line in self.lines}
        self.stats.class_counts = self.analytics.line_counts()
        for kind, _, data in self.analytics.flush():
            self.bus.emit(Event(kind, self.camera.name, self._last_index, self._last_time, None, None, data))
        self._person_worker.shutdown(wait=True)
        if self._writer is not None:
            try:
                self._writer.close()
            except OSError as exc:  # its last frames or its index could not be written (a full disk)
                raise output_video_failed(exc, self.camera.name) from exc

    def _new_shot(self, frame: Frame) -> None:
        """A cut: every track ends (``reason`` "scene_cut"); tracking starts afresh with new ids."""
        log.debug("camera %s: scene cut at frame %d", self.camera.name, frame.index)
        for key in list(self.tracks):
            self._end(key, frame.time, frame.index, reason="scene_cut")
        self._trackers.clear()
        self._shown = {k: _empty(k) for k in ("face", "person", "vehicle")}
        self._detected = _empty("face")

    # -- analysis -------------------------------------------------------------------------------
    def _analyze(self, frame: Frame, detection_fps: float) -> None:
        # persons are detected in a second thread while the faces are analyzed: the two small
        # models use the cores better side by side than one after the other (measured: 33 vs 39 ms)
        persons = self._person_worker.submit(self.persons.detect, frame.image) if self.persons else None
        faces: list[Face] = []
        if self.analyzer is not None:
            faces = self.analyzer.analyze(frame.image, embed=False, with_crop=self.matcher is not None)
        self._detected = _face_detections(faces)
        face_dets = self._track("face", frame, self._detected, detection_fps)
        vehicle_dets = _empty("vehicle")
        if persons is not None:
            people, vehicles = self._classes.split(persons.result())
            person_dets = self._track("person", frame, people, detection_fps)
            self._link(face_dets, person_dets)
            if self._classes.vehicles:
                vehicle_dets = self._track("vehicle", frame, vehicles, detection_fps)
        else:
            person_dets = face_dets
        counted = "person" if self.persons is not None else "face"
        if self.matcher is not None:
            self._collect_samples(frame, face_dets, faces)
            self._recognize(frame)
        objects = merged([person_dets, vehicle_dets])
        height, width = frame.image.shape[:2]
        # a new minute starts here; the tracks confirmed are seen in the minute of the frame that confirmed
        # them, with the class voted so far
        confirmed = [(key, self.tracks[key].label) for key in self._confirmed]
        rules = self.analytics.observe(frame.time, objects, (width, height), confirmed)
        self._confirmed.clear()
        for line in self.lines:
            for track_id, direction in line.update(person_dets):
                key = (counted, track_id)
                label = self.tracks[key].label if key in self.tracks else counted
                rules += self.analytics.crossed(line, key, label, direction)
                self._emit("line_crossed", frame, key, {"line": line.spec.name, "direction": direction,
                                                        **line.counts, "class": label, **self.analytics.speed_of(key)})
        for line, key, label, direction in self.analytics.vehicle_crossings(vehicle_dets):
            rules += self.analytics.crossed(line, key, label, direction)
            counts = self.analytics.class_counts[line.spec.name][label]
            self._emit("line_crossed", frame, key, {"line": line.spec.name, "direction": direction, **counts,
                                                    "class": label, **self.analytics.speed_of(key)})
        for zone in self.zones:
            classes = zone.spec.classes
            members = person_dets if classes is None else \
                cast(sv.Detections, objects[np.isin(objects.data.get("label", []), list(classes))])
            rules += self.analytics.zone(zone, members, frame.time)
        for kind, rule_key, data in rules:
            if rule_key is not None and rule_key in self.tracks:
                data = {**data, "box": _box(self.tracks[rule_key].box)}
            self._emit(kind, frame, rule_key, data, snapshot=kind in ("wrong_way", "dwell_exceeded", "speeding"))
        self._expire(frame)

    def _track(self, kind: str, frame: Frame, detections: sv.Detections, detection_fps: float) -> sv.Detections:
        if kind not in self._trackers:
            self._trackers[kind] = byte_tracker(detection_fps, self.camera.track_timeout)
            self._id_base[kind] = self._last_id.get(kind, 0)
        tracked = self._trackers[kind].update_with_detections(detections)
        if len(tracked):
            tracked.tracker_id = _track_ids(tracked) + self._id_base[kind]
            self._last_id[kind] = max(self._last_id.get(kind, 0), int(tracked.tracker_id.max()))
        for track_id, box in zip(_track_ids(tracked), tracked.xyxy):
            key = (kind, int(track_id))
            track = self.tracks.get(key)
            if track is None:
                settings = self.camera.recognition
                track = Track(int(track_id), kind, frame.index, frame.time, frame.time, box, keep=settings.samples,
                              vote=IdentityVote(settings.min_evidence, settings.min_agree))
                self.tracks[key] = track
                self._emit("track_started", frame, key, {"box": _box(box)})
            track.last_time, track.box = frame.time, box
            track.hits += 1
            if track.hits == MIN_HITS:  # now an object (not a flicker): counted as seen in this minute
                self._confirmed.append(key)
        if kind != "face" and len(tracked) and tracked.class_id is not None and tracked.confidence is not None:
            for track_id, class_id, score in zip(_track_ids(tracked), tracked.class_id, tracked.confidence):
                votes = self.tracks[(kind, int(track_id))].classes
                name = COCO_CLASSES[int(class_id)]
                votes[name] = votes.get(name, 0.0) + float(score)
        labels = [self.tracks[(kind, int(t))].label for t in _track_ids(tracked)]
        self._shown[kind] = labelled(tracked, kind, labels)
        return tracked

    def _link(self, faces: sv.Detections, persons: sv.Detections) -> None:
        """Remember which person track holds each face (its centre inside the person box)."""
        if len(faces) == 0 or len(persons) == 0:
            return
        centres = faces.get_anchors_coordinates(sv.Position.CENTER)
        for face_id, (cx, cy) in zip(_track_ids(faces), centres):
            inside = ((persons.xyxy[:, 0] <= cx) & (cx <= persons.xyxy[:, 2])
                      & (persons.xyxy[:, 1] <= cy) & (cy <= persons.xyxy[:, 3]))
            if inside.any():
                person_id = int(_track_ids(persons)[np.argmax(inside)])
                self.tracks[("face", int(face_id))].linked = person_id
                self.tracks[("person", person_id)].linked = int(face_id)

    def _collect_samples(self, frame: Frame, tracked: sv.Detections, faces: list[Face]) -> None:
        for track_id, index in zip(_track_ids(tracked), tracked.data.get("face", [])):
            face = faces[int(index)]
            if face.crop is not None and (face.quality or 0.0) >= self.camera.recognition.min_quality:
                self.tracks[("face", int(track_id))].add_sample(FaceSample(face.quality or 0.0, frame.index, face.crop,
                                                                             time=frame.time))

    def _recognize(self, frame: Frame) -> None:
        """Embed, in one batch, the faces due on every track; then update each track's vote."""
        settings = self.camera.recognition
        jobs = [(track, sample) for track in self.tracks.values() if track.kind == "face"
                for sample in track.due_for_recognition(settings.min_evidence, settings.improve_margin,
                                                        settings.recheck_s)]
        if not jobs or self.analyzer is None or self.matcher is None:
            return
        vectors = self.analyzer.embed_aligned(np.stack([sample.crop for _, sample in jobs]))
        self.stats.embedded += len(jobs)
        space = self.analyzer.pack.recognizer_id
        for (track, sample), vector in zip(jobs, vectors):
            track.record(sample, self.matcher.match(Embedding(vector, space)))
        for track in {id(t): t for t, _ in jobs}.values():
            self._decide(track, frame)

    def _decide(self, track: Track, frame: Frame) -> None:
        before = track.identity.external_id if track.identity else None
        identity = track.vote.decide()
        key = ("face", track.id)
        agreeing = [m for m in track.vote.evidence if m and identity and m.external_id == identity.external_id]
        evidence = {"evidence": len(track.vote.evidence), "agreeing": len(agreeing)}
        if identity is not None and identity.external_id != before:
            data = {**identity.to_dict(), **evidence, "previous": before}
            self._emit("identified", frame, key, data, snapshot=True)
            if identity.external_id in self._watchlist:
                self._emit("watchlist_hit", frame, key, data, snapshot=True)
        elif identity is None and before is not None:  # re-checks no longer find the named person
            self._emit("identity_lost", frame, key, {**evidence, "previous": before})
        elif identity is None and track.vote.decided and not track.unknown_reported:
            track.unknown_reported = True
            self._emit("unknown_person", frame, key, evidence, snapshot=True)

    def _expire(self, frame: Frame) -> None:
        for key, track in list(self.tracks.items()):
            if frame.time - track.last_time > self.camera.track_timeout:
                self._end(key, frame.time, frame.index)

    def _end(self, key: tuple[str, int], video_time: float, frame_index: int, *, reason: str | None = None) -> None:
        track = self.tracks.pop(key)
        data: dict[str, Any] = {"dwell": round(track.dwell, 3), "first_frame": track.first_frame,
                                "last_time": round(track.last_time, 3), "class": track.label,
                                **self.analytics.forget(key)}
        if reason is not None:
            data["reason"] = reason
        if track.identity is not None:
            data["subject"] = track.identity.external_id
        self.bus.emit(Event("track_ended", self.camera.name, frame_index, video_time, track.id, track.kind, data))

    # -- events and output ----------------------------------------------------------------------
    def _emit(self, kind: EventType, frame: Frame, key: tuple[str, int] | None, data: dict[str, Any],
              *, snapshot: bool = False) -> None:
        track = self.tracks.get(key) if key else None
        if track is not None and track.linked is not None:
            other = self.tracks.get(("person" if track.kind == "face" else "face", track.linked))
            data = {**data, "linked_track": track.linked}
            if other is not None and other.identity is not None and "subject" not in data:
                data["subject"] = other.identity.external_id
        event_id = uuid.uuid4().hex  # named first: the event's snapshot file is named by it
        if snapshot and self.camera.snapshots is not None:
            kept = self._snapshot(frame, kind, key, event_id)
            if kept is not None:  # an event points at a file only when it was written
                data = {**data, "snapshot": str(kept)}
        self.bus.emit(Event(kind, self.camera.name, frame.index, frame.time, key[1] if key else None,
                            key[0] if key else None, data, event_id))

    def _private(self, image: np.ndarray) -> np.ndarray:
        """``image`` with every face of the last analysis blurred, when asked for (the default), except
        the faces whose track is identified as a watchlist subject (a face not yet tracked is blurred
        too), and the lower part of every vehicle box (plates) unless ``blur_plates`` is off."""
        if self.camera.blur_unlisted:
            tracked = self._shown["face"]
            listed = {int(i) for t, i in zip(_track_ids(tracked), tracked.data.get("face", []))
                      if self._listed(int(t))}
            keep = np.array([i in listed for i in range(len(self._detected))], dtype=np.bool_)
            image = blur_faces(image, self._detected, keep)
        if self.camera.blur_plates and len(self._shown["vehicle"]):
            image = blur_plates(image.copy(), self._shown["vehicle"], self.camera.plate_share)
        return image

    def _listed(self, face_track: int) -> bool:
        track = self.tracks.get(("face", face_track))
        return track is not None and track.identity is not None and track.identity.external_id in self._watchlist

    def _snapshot(self, frame: Frame, kind: str, key: tuple[str, int] | None, event_id: str) -> Path | None:
        """The frame (made private) written as a JPEG in the snapshots folder, a file of the event
        ``event_id`` alone: its path, or None when it could not be written (a warning says why; the
        stats count it): an event pointed at a file that did not exist."""
        folder = Path(self.camera.snapshots or ".")
        path = folder / snapshot_name(self.camera.name, frame.index, key[1] if key else 0, kind, event_id)
        try:
            folder.mkdir(parents=True, exist_ok=True)
            written = cv2.imwrite(str(path), self._private(frame.image))
            reason = "the JPEG encoder wrote nothing"
        except (OSError, cv2.error) as exc:
            written, reason = False, str(exc).strip().splitlines()[-1] if str(exc).strip() else type(exc).__name__
        if written:
            return path
        self.stats.snapshots_failed += 1
        log.warning("camera %s: snapshot %s could not be written (%s): the %s event has no snapshot",
                    self.camera.name, path, reason, kind)
        return None

    def _labels(self, kind: str) -> list[str]:
        labels = []
        for track_id in _track_ids(self._shown[kind]):
            track = self.tracks.get((kind, int(track_id)))
            name = track.identity.name or track.identity.external_id if track and track.identity else None
            if kind == "face" and track is not None and name is None and track.unknown_reported:
                name = "unknown"
            if kind == "vehicle" and track is not None:
                name = track.label
            labels.append(f"#{track_id} {name}" if name else f"#{track_id}")
        return labels

    def _write_output(self, frame: Frame, fps: float) -> None:
        if self._writer is None:
            self._writer = VideoWriter(Path(self.camera.output or "out.mp4"), fps)
        assert self._annotator is not None
        objects = merged([self._shown["person"], self._shown["vehicle"]])
        # a camera without persons shows its lines' vehicle counts
        lines = self.analytics.vehicle_lines if "person" not in self.camera.classes else self.lines
        image = self._annotator.draw(self._private(frame.image), self._shown["face"], self._labels("face"),
                                     objects, self._labels("person") + self._labels("vehicle"), lines, self.zones)
        try:
            self._writer.write(image)
        except OSError as exc:  # it did not open, the disk is full: this output, not the source, is the problem
            raise output_video_failed(exc, self.camera.name) from exc


NAME_MAX_BYTES = 255  # a file name's limit on Linux, macOS and Windows file systems


def snapshot_name(camera: str, frame_index: int, track_id: int, event_type: str, event_id: str) -> str:
    """``<camera>_<frame>_<track>_<event type>_<event id>.jpg``: one file per event (named without
    the event's id, a second run of the camera, another tenant's run into the same folder among
    them, wrote over the first's pictures, and erasing one tenant deleted a file another tenant's
    event still showed); within :data:`NAME_MAX_BYTES` bytes (UTF-8): a long camera name is cut at
    a character and told apart by a short hash of the whole name (a camera of 120 'Ü', 240 bytes,
    was allowed, and every snapshot of it failed to be written)."""
    rest = f"_{frame_index:07d}_{track_id}_{event_type}_{event_id}.jpg"
    name = camera + rest
    if len(name.encode("utf-8")) <= NAME_MAX_BYTES:
        return name
    digest = "~" + hashlib.sha256(camera.encode("utf-8")).hexdigest()[:8]
    room = NAME_MAX_BYTES - len((digest + rest).encode("utf-8"))
    cut = camera.encode("utf-8")[:max(0, room)].decode("utf-8", errors="ignore")
    return cut + digest + rest


def run_cameras(pipelines: list[VideoPipeline]) -> list[PipelineStats]:
    """Run each pipeline in its own thread until all sources end; Ctrl-C (or SIGTERM turned into
    KeyboardInterrupt) stops them all, ending their tracks so that every event is flushed. A camera
    that fails (:func:`camera_failure`) does not stop the others: once every camera has ended,
    :class:`~faceatlas.errors.CamerasFailed` is raised with each failed camera's error and the
    stats of those that ended (the first failure was raised alone, the others' stats lost)."""
    results: dict[int, PipelineStats] = {}
    failures: dict[int, FaceAtlasError] = {}
    # Each camera's end is waited for on an Event, not Thread.join: a KeyboardInterrupt that lands
    # inside join() marks a thread that is still running as stopped (CPython 3.11, gh-90882), so a
    # later join() returned at once and the process went on (closing the sinks, exiting) while the
    # camera was still ending its tracks ("terminate called without an active exception").
    ended = [threading.Event() for _ in pipelines]

    def run_one(index: int, pipeline: VideoPipeline) -> None:
        try:
            results[index] = pipeline.run()
        except Exception as exc:  # noqa: BLE001 - handed to the caller once every camera has ended
            failures[index] = camera_failure(exc, pipeline.camera.name)
            log.error("camera %s failed after %d frames: %s", pipeline.camera.name, pipeline.stats.frames,
                      failures[index])
        finally:
            ended[index].set()

    threads = [threading.Thread(target=run_one, args=(i, p), name=p.camera.name, daemon=True)
               for i, p in enumerate(pipelines)]
    for thread in threads:
        thread.start()
    try:
        while not all(done.is_set() for done in ended):
            for done in ended:
                done.wait(0.2)
    except KeyboardInterrupt:
        with interrupts_held("the cameras end their tracks and close their videos"):  # a second Ctrl-C
            log.info("stopping %d camera(s)", len(pipelines))
            for pipeline in pipelines:
                pipeline.stop()
            deadline = time.monotonic() + 30
            for done in ended:
                done.wait(max(0.0, deadline - time.monotonic()))
    stats = [results[i] for i in sorted(results)]
    if failures:  # a source that cannot be read, a collection gone: the caller reports it beside the others' stats
        raise CamerasFailed({pipelines[i].camera.name: failures[i] for i in sorted(failures)}, stats)
    return stats


def camera_failure(exc: Exception, camera: str) -> FaceAtlasError:
    """What ended the camera ``camera`` as an error of the tree: a :class:`FaceAtlasError` as it is
    (an output that could not be written, a collection removed), an ``OSError`` as the source that
    could not be read (:class:`InvalidInput`), anything else as a fault (logged with its traceback)."""
    if isinstance(exc, FaceAtlasError):
        return exc
    if isinstance(exc, OSError):
        error: FaceAtlasError = InvalidInput(f"cannot read video source: {exc}")
    else:
        log.error("camera %s: %s", camera, type(exc).__name__, exc_info=exc)
        error = FaceAtlasError(f"{type(exc).__name__}: {exc}")
    error.__cause__ = exc
    return error


@contextmanager
def interrupts_held(what: str) -> Iterator[None]:
    """Ctrl-C (SIGINT) and SIGTERM within the block are logged ("already stopping: ``what``"), not
    raised: the block closes what a stopped run wrote (tracks ended, events flushed, a video's
    index written), and a second Ctrl-C there ended the process with none of it (no summary, an
    unreadable MP4). Each wait in it is bounded (the cameras' 30 s, the sinks' own timeouts).
    Outside the main thread (where no signal is delivered) it does nothing."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def hold(number: int, _frame: object) -> None:
        log.warning("already stopping: %s first (%s ignored)", what, signal.Signals(number).name)

    held = (signal.SIGINT, signal.SIGTERM)
    previous = [signal.getsignal(number) for number in held]
    for number in held:
        signal.signal(number, hold)
    try:
        yield
    finally:
        for number, handler in zip(held, previous):
            signal.signal(number, handler if handler is not None else signal.SIG_DFL)


def _face_detections(faces: list[Face]) -> sv.Detections:
    if not faces:
        return _empty("face")
    found = Detections(np.stack([f.bbox for f in faces]), np.array([f.det_score for f in faces]))
    return found.to_supervision(face=np.arange(len(faces)))
