"""`retail run`: the store's cameras drive the store.

Each camera of the store config that names a ``source`` runs the video layer's pipeline
(:class:`faceatlas.video.VideoPipeline`, ByteTrack tracks, line crossings, identities voted over
a track at the visit FPIR) in its own thread, until its source ends (files) or the run is stopped
(Ctrl-C / SIGTERM); a live source that drops is reopened with backoff by
:class:`faceatlas.video.VideoSource`. Every video event goes to the :class:`RetailStore` (through
:func:`from_video_event`) and to the store's sinks (JSONL, webhook, MQTT), which receive a
member's id only when the member consented to visit recognition
(:meth:`MemberRegistry.shares_identity`): for anyone else the subject is taken out of the event,
and an ``identified`` event of theirs is not sent (see :meth:`StoreRun.outgoing`).

- door line "in" (entrance/door camera): a visit opens, named when the face is recognised (at
  the crossing or later on the same track); the face's estimated age band and gender are added
  to the hour's aggregate counts (nothing per visitor);
- door line "out" (exit/door camera): the visit of the track closes (the oldest open anonymous
  visit when the track is not known: a person who left on another track) and face pay runs on
  its cart, with liveness, when the camera sees faces;
- a member identified by a checkout camera: face pay of their open visit's cart, with
  liveness; a stranger there is an alert;
- zone camera tracks: a zone visit of the matching visit, and the track's dwell in the zone.

Staff alerts (spoof, unidentified shopper leaving with items, stranger at the checkout) are
stored and also sent to the sinks as ``retail_alert`` events.
"""

from __future__ import annotations

import logging
import threading
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np

from faceatlas.apps.retail.config import Camera, StoreConfig
from faceatlas.apps.retail.events import Entry, Exit, ZoneVisit, from_video_event
from faceatlas.apps.retail.payments import PaymentBackend
from faceatlas.apps.retail.store import COLLECTION, ExitOutcome, RetailStore
from faceatlas.engine import FaceAnalyzer, PersonDetector, get_pack
from faceatlas.errors import CamerasFailed, FaceAtlasError, InvalidInput
from faceatlas.gallery import check_index_dir
from faceatlas.video import (
    CameraConfig,
    Event,
    EventBus,
    Frame,
    GalleryMatcher,
    MqttConfig,
    PipelineStats,
    VideoPipeline,
    WatchConfig,
    WebhookConfig,
    build_sinks,
    check_camera_source,
    check_run_outputs,
    checked_settings,
    interrupts_held,
    is_live,
    prepare_outputs,
    run_cameras,
)

log = logging.getLogger(__name__)
ALERT_EVENT = "retail_alert"
SERVED_WINDOW_S = 10.0
IDENTITY_FIELDS = ("subject", "name", "similarity", "far_level")  # what an event says of whom a track is
# Face pay at a checkout camera is tried on the identified track's frames this far apart, this
# many times at most: one frame's face may miss the strict pay FAR that the next one passes.
PAY_RETRY_S = 0.5
PAY_ATTEMPTS = 8


@dataclass
class StoreRunReport:
    """What a run did: per-camera video statistics (of the cameras that ran to their end), retail
    actions, alerts raised, video events by type, and the cameras that failed, each with its error
    (the others ran on: their actions and events stand)."""

    cameras: list[PipelineStats]
    started: datetime | None = None  # naive UTC: a file's video time 0
    entries: int = 0
    inferred_entries: int = 0
    exits: int = 0
    zone_tracks: int = 0
    outcomes: list[ExitOutcome] = field(default_factory=list)
    alerts: dict[str, int] = field(default_factory=dict)
    events: dict[str, int] = field(default_factory=dict)
    errors: int = 0
    undelivered: dict[str, int] = field(default_factory=dict)  # per sink, events it could not deliver (> 0)
    failed: dict[str, FaceAtlasError] = field(default_factory=dict)  # camera id -> what ended it

    @property
    def charged(self) -> int:
        return sum(1 for o in self.outcomes if o.status == "charged" and not o.repeated)

    @property
    def interrupted(self) -> list[str]:
        """The cameras stopped (Ctrl-C, SIGTERM) before their file's end."""
        return [stats.camera for stats in self.cameras if stats.interrupted]

    @property
    def exit_status(self) -> int:
        """The status `retail run` exits with, as `watch`: 130 when a file's camera was stopped before
        its end; when cameras failed, 2 if every one did, else 1 (the others' results stand, as a
        command over many inputs exits); 1 when a sink could not deliver some events (the run
        stands, a consumer missed some), else 0 (both used to end in 0, a stop after 55 of 1,501
        frames said nowhere)."""
        if self.interrupted:
            return 130
        if self.failed:
            return 1 if self.cameras else 2
        return 1 if self.undelivered else 0


def camera_config(camera: Camera) -> CameraConfig:
    """The video layer's settings of one store camera (it must name a source)."""
    if camera.source is None:
        raise InvalidInput(f"camera '{camera.id}' has no video source")
    return camera.video_config(str(camera.source))


@dataclass
class _Payment:
    """Face pay attempts on one identified checkout track."""

    subject: str | None
    event_id: str
    attempts: int = 0
    tried_at: float = float("-inf")


class _StorePipeline(VideoPipeline):
    """A pipeline that keeps the frame being analysed: the store needs its pixels for face pay
    and attributes at the moment of an event."""

    frame: Frame | None = None
    after_frame: Callable[[_StorePipeline], None] | None = None

    @property
    def counted(self) -> str:
        """The kind of track the lines count: persons when detected, else faces."""
        return "person" if self.persons is not None else "face"

    @property
    def last_time(self) -> float:
        return self.frame.time if self.frame is not None else 0.0

    def process(self, frame: Frame, fps: float) -> None:
        self.frame = frame
        super().process(frame, fps)
        if self.after_frame is not None:
            self.after_frame(self)


class _StoreBus(EventBus):
    """Delivers each video event to the sinks as ``outgoing`` makes it (None: not sent, only
    counted), then as it is to the store (outside the sinks' lock, so the store's alerts can go
    to the same sinks)."""

    def __init__(self, sinks: list[Any], handle: Callable[[Event], None],
                 outgoing: Callable[[Event], Event | None]) -> None:
        super().__init__(sinks)
        self._handle = handle
        self._outgoing = outgoing

    def emit(self, event: Event) -> None:
        sent = self._outgoing(event)
        if sent is not None:
            super().emit(sent)
        else:
            with self._lock:
                self.counts[event.type] += 1
        if event.type != ALERT_EVENT:
            self._handle(event)


class StoreRun:
    """One run of the store's cameras over an open :class:`RetailStore`."""

    def __init__(self, store: RetailStore, *, persons: PersonDetector | None = None,
                 on_frame: Callable[[str, int, int | None], None] | None = None,
                 window_hours: float | None = None,
                 cameras: tuple[list[Camera], list[CameraConfig]] | None = None) -> None:
        self.store = store
        self.config = store.config
        # ``cameras``: what :func:`run_cameras_of` gave for this config (run_store checked them already)
        self.cameras, self._settings = run_cameras_of(self.config) if cameras is None else cameras
        self.persons = persons
        self.on_frame = on_frame
        # the open visits an exit may close: those not yet abandoned (privacy.max_visit_hours)
        self.window = timedelta(hours=self.config.privacy.max_visit_hours if window_hours is None else window_hours)
        self._lock = threading.Lock()
        self._started = datetime.now(UTC).replace(tzinfo=None)
        self.report = StoreRunReport([], self._started)
        self._pipelines: dict[str, _StorePipeline] = {}
        self._served: dict[str, list[float]] = {}  # video times of members identified per checkout camera
        self._strangers: dict[tuple[str, int | None], tuple[Event, datetime]] = {}
        self._paying: dict[tuple[str, int], _Payment] = {}  # checkout face tracks of members not yet paid

    def run(self) -> StoreRunReport:
        """Run every camera until the files end or Ctrl-C; the sinks are flushed whatever ends it."""
        analyzer = self.store.analyzer
        matcher = GalleryMatcher(self.store.gallery, COLLECTION, fpir=self.config.recognition.visit_fpir,
                                 calibration=analyzer.calibration)
        prepare_outputs(self._settings)
        bus = _StoreBus(build_sinks(self._watch_config()), self._handle, self.outgoing)
        self._pipelines = {c.id: _StorePipeline(settings, analyzer, bus, persons=self.persons, matcher=matcher,
                                                on_frame=self.on_frame) for c, settings in zip(self.cameras,
                                                                                               self._settings)}
        for camera in self.cameras:
            if camera.role == "checkout":
                self._pipelines[camera.id].after_frame = self._retry_payments
        try:
            try:
                self.report.cameras = run_cameras(list(self._pipelines.values()))
            except CamerasFailed as exc:  # the others ran: their stats are reported beside each failure
                self.report.cameras, self.report.failed = exc.stats, exc.failures
            with self._lock:
                self._flush_strangers(None, float("inf"))
        except OSError as exc:
            raise InvalidInput(f"cannot read video source: {exc}") from exc
        finally:
            with interrupts_held("the sinks deliver their events"):
                bus.close()
            self.report.events = dict(sorted(bus.counts.items()))
            self.report.undelivered = {sink: count for sink, count in bus.undelivered().items() if count}
        return self.report

    def stop(self) -> None:
        """Ask every camera to stop after its current frame (tracks are ended, events flushed)."""
        for pipeline in self._pipelines.values():
            pipeline.stop()

    def _watch_config(self) -> WatchConfig:
        config = self.config
        return WatchConfig([], tenant=config.tenant, events=Path(config.events) if config.events else None,
                           webhook=checked_settings(WebhookConfig, config.webhook, "the store's webhook")
                           if config.webhook else None,
                           mqtt=checked_settings(MqttConfig, config.mqtt, "the store's mqtt") if config.mqtt else None)

    # -- events -----------------------------------------------------------------------------
    def outgoing(self, event: Event) -> Event | None:
        """The event as it leaves the store through its sinks: a member's id (``subject``, with the
        match's ``name``, ``similarity`` and ``far_level``; ``previous``) stays only when the member
        consented to visit recognition, decided on each event (a withdrawal counts at once).
        Otherwise it is taken out: an ``identified`` event left naming nobody is not sent (the
        track reads as unidentified), or becomes ``identity_lost`` when the sinks knew the track as
        a member who may be named; a ``watchlist_hit`` or an ``identity_lost`` of a member who may
        not be named is not sent. None: not sent."""
        data = event.data
        subject, previous = data.get("subject"), data.get("previous")
        if not subject and not previous:
            return event
        named = {str(s) for s in (subject, previous) if s and self.store.members.shares_identity(str(s))}
        if (not subject or str(subject) in named) and (not previous or str(previous) in named):
            return event
        out = dict(data)
        if subject and str(subject) not in named:
            for key in IDENTITY_FIELDS:
                out.pop(key, None)
        if previous and str(previous) not in named:
            out["previous"] = None
        if event.type == "identified" and "subject" not in out:
            return replace(event, type="identity_lost", data=out) if out.get("previous") else None
        if (event.type == "watchlist_hit" and "subject" not in out) or \
                (event.type == "identity_lost" and not out.get("previous")):
            return None
        return replace(event, data=out)

    def _handle(self, event: Event) -> None:
        """One video event's effect on the store; an error is logged and counted (``errors``), never
        fatal to the cameras."""
        pipeline = self._pipelines.get(event.camera)
        if pipeline is None:
            return
        event = replace(event, wall_time=self._clock(pipeline, event).isoformat())
        with self._lock:
            try:
                self._dispatch(pipeline, event)
            except FaceAtlasError as exc:
                self.report.errors += 1
                log.warning("store %s: event %s on %s: %s", self.config.id, event.type, event.camera, exc)
            except Exception:  # a database hiccup must not stop the cameras
                self.report.errors += 1
                log.exception("store %s: event %s on %s failed", self.config.id, event.type, event.camera)

    def _clock(self, pipeline: _StorePipeline, event: Event) -> datetime:
        """When the event happened: wall time on a live camera; on a file, the run's start plus the
        video time (so that dwell and visit times are those of the recording)."""
        return self._time(pipeline, event.video_time, event.wall_time).replace(tzinfo=UTC)

    def _time(self, pipeline: _StorePipeline, video_time: float, wall_time: str | None) -> datetime:
        """Naive UTC: the wall time (``wall_time``, else now) on a live camera, the run's start
        plus ``video_time`` on a file."""
        if is_live(pipeline.camera.source):
            wall = datetime.fromisoformat(wall_time) if wall_time else datetime.now(UTC)
            return wall.astimezone(UTC).replace(tzinfo=None)
        return self._started + timedelta(seconds=video_time)

    def _dispatch(self, pipeline: _StorePipeline, event: Event) -> None:
        camera = self.config.camera(event.camera)
        at = datetime.fromisoformat(event.wall_time).replace(tzinfo=None)
        if event.type == "identified" and camera.role == "checkout" and event.track_id is not None:
            self._served.setdefault(camera.id, []).append(event.video_time)
            self._flush_strangers(camera.id, event.video_time - SERVED_WINDOW_S)
            payment = _Payment(event.data.get("subject"), event.id)
            self._paying[(camera.id, event.track_id)] = payment
            self._pay(pipeline, camera, event.track_id, payment, event.video_time, at)
            return
        if event.type in ("track_ended", "identity_lost") and camera.role == "checkout" and event.track_id is not None:
            self._paying.pop((camera.id, event.track_id), None)
        if event.type == "unknown_person" and camera.role == "checkout":
            self._strangers[(camera.id, event.track_id)] = (event, at)
            return
        if camera.role == "checkout":
            self._flush_strangers(camera.id, event.video_time - SERVED_WINDOW_S)
            return
        if event.type == "identified" and camera.role in ("entrance", "door"):
            person = event.data.get("linked_track") if pipeline.counted == "person" else event.track_id
            if person is not None and event.data.get("subject"):
                self.store.observations.recognised(f"{camera.id}:{person}", event.data["subject"], at)
            return
        if event.type == "track_ended" and camera.role == "zone":
            if event.kind == pipeline.counted:
                self.store.observations.zone_track(camera.id, camera.zone or "", f"{camera.id}:{event.track_id}",
                                                   event.id, float(event.data.get("dwell", 0.0)), at)
                self.report.zone_tracks += 1
            return
        if event.type == "line_crossed" and event.kind != pipeline.counted:
            return
        image = self._crop(pipeline, (event.kind or "face", event.track_id)) if camera.faces else None
        retail = from_video_event(event, self.config, image=image)
        if isinstance(retail, Entry):
            self.store.entry(retail)
            self.report.entries += 1
            if image is not None:
                self._demographics(image, at)
        elif isinstance(retail, Exit):
            self._exit(self._exit_track(pipeline, retail, event.track_id), camera)
        elif isinstance(retail, ZoneVisit):
            self.store.zone_visit(retail)

    def _retry_payments(self, pipeline: _StorePipeline) -> None:
        """Face pay again on this frame for the checkout's identified tracks not paid yet."""
        if pipeline.frame is None:
            return
        video_time = pipeline.frame.time
        with self._lock:
            camera = self.config.camera(pipeline.camera.name)
            for (camera_id, track_id), payment in list(self._paying.items()):
                if camera_id == camera.id and video_time - payment.tried_at >= PAY_RETRY_S:
                    at = self._time(pipeline, video_time, None)
                    try:
                        self._pay(pipeline, camera, track_id, payment, video_time, at)
                    except Exception:  # a database hiccup must not stop the cameras
                        self.report.errors += 1
                        log.exception("store %s: face pay on %s failed", self.config.id, camera.id)

    def _pay(self, pipeline: _StorePipeline, camera: Camera, track_id: int, payment: _Payment, video_time: float,
             at: datetime) -> None:
        """One face pay attempt on the track's face in the current frame; the track is done once
        the face matched at the pay FAR (charged or not), was a spoof, or after the last attempt."""
        payment.attempts += 1
        payment.tried_at = video_time
        image = self._crop(pipeline, ("face", track_id))
        if image is None:
            return
        outcome = self._exit(Exit(camera.id, at, image=image, track=f"{camera.id}:{track_id}",
                                  id=f"{payment.event_id}:{payment.attempts}", subject=payment.subject), camera)
        retry = outcome.status == "no_visit" and outcome.member_id is None and outcome.alert is None
        if not retry or payment.attempts >= PAY_ATTEMPTS:
            self._paying.pop((camera.id, track_id), None)

    def _flush_strangers(self, camera: str | None, before: float) -> None:
        """A face decided unknown at the checkout (before video time ``before``, on ``camera`` or
        any) is an alert, unless the camera served a member within :data:`SERVED_WINDOW_S` of it
        (the member's face on a second track, or someone waiting behind them)."""
        for key, (event, at) in list(self._strangers.items()):
            if (camera is not None and key[0] != camera) or event.video_time >= before:
                continue
            del self._strangers[key]
            if not any(abs(t - event.video_time) <= SERVED_WINDOW_S for t in self._served.get(key[0], [])):
                self._alert("stranger_at_checkout", event, at, {"track": event.track_id})

    def _exit_track(self, pipeline: _StorePipeline, event: Exit, track_id: int | None) -> Exit:
        """The exit of a track whose entry this camera did not count (the tracker lost the person
        and found them again on a new track, or first saw them already past the line) closes the
        oldest open anonymous visit; when there is none, the visit is recorded as entered when the
        track was first seen (an inferred entry): the door's visits stay right."""
        if event.subject is not None:
            return event
        visits = self.store.observations.open_visits(event.at - self.window)
        if any(v["track"] == event.track for v in visits):
            return event
        anonymous = [v for v in visits if not v["member"]]
        if anonymous:
            return replace(event, track=anonymous[0]["track"])
        track = pipeline.tracks.get((pipeline.counted, track_id or 0))
        seconds = track.first_time if track is not None else 0.0
        entered = event.at - timedelta(seconds=max(0.0, pipeline.last_time - seconds))
        self.store.entry(Entry(event.camera, entered, track=event.track, id=f"{event.id}:entry"))
        self.report.inferred_entries += 1
        return event

    def _exit(self, event: Exit, camera: Camera) -> ExitOutcome:
        outcome = self.store.exit(event)
        self.report.outcomes.append(outcome)
        if camera.role != "checkout":
            self.report.exits += 1
        if outcome.alert and not outcome.repeated:
            self.report.alerts[outcome.alert] = self.report.alerts.get(outcome.alert, 0) + 1
            self._send_alert(outcome.alert, event.camera, event.id, event.at,
                             {"visit_id": outcome.visit_id, "status": outcome.status})
        return outcome

    def _alert(self, kind: str, event: Event, at: datetime, details: dict[str, Any]) -> None:
        self.store.observations.alert(kind, event.camera, event.id, at, details)
        self.report.alerts[kind] = self.report.alerts.get(kind, 0) + 1
        self._send_alert(kind, event.camera, event.id, at, details)

    def _send_alert(self, kind: str, camera: str, event_id: str, at: datetime, details: dict[str, Any]) -> None:
        pipeline = self._pipelines[camera]
        alert: Any = ALERT_EVENT  # a type of its own beside the video layer's, for the same sinks
        pipeline.bus.emit(Event(alert, camera, pipeline.stats.frames, 0.0,
                                data={"alert": kind, "store": self.config.id, "event": event_id,
                                      "at": at.isoformat(), **details}))

    def _crop(self, pipeline: _StorePipeline, key: tuple[str, int | None]) -> np.ndarray | None:
        """The current frame around the track's box, or None: a face box grown by its size each way
        (the liveness models look at the face's surroundings), a person box by a tenth (the face
        in it is that person's)."""
        frame = pipeline.frame
        track = pipeline.tracks.get((key[0], key[1])) if key[1] is not None else None
        if frame is None or track is None:
            return None
        x1, y1, x2, y2 = (float(v) for v in track.box)
        grow = 1.0 if key[0] == "face" else 0.1
        w, h = (x2 - x1) * grow, (y2 - y1) * grow
        height, width = frame.image.shape[:2]
        left, top = max(0, int(x1 - w)), max(0, int(y1 - h))
        right, bottom = min(width, int(x2 + w)), min(height, int(y2 + h))
        if right <= left or bottom <= top:
            return None
        return frame.image[top:bottom, left:right].copy()

    def _demographics(self, image: np.ndarray, at: datetime) -> None:
        count_demographics(self.store, image, at)


def count_demographics(store: RetailStore, image: Any, at: datetime) -> bool:
    """Add the estimated age band and gender of the largest face in ``image`` to the hour's counts
    (the pack's attribute models; nothing is kept per person); False when there is no face or the
    pack has no attribute model."""
    if not store.analyzer.pack.attributes:
        return False
    faces = store.analyzer.analyze(image, max_faces=1, embed=False, attributes=True)
    if not faces or faces[0].attributes is None:
        return False
    store.observations.demographic(at, faces[0].attributes.age, faces[0].attributes.gender)
    return True


def run_cameras_of(config: StoreConfig, config_file: Path | str | None = None,
                   ) -> tuple[list[Camera], list[CameraConfig]]:
    """The store's cameras that name a source, with their video settings, once every one can run:
    a source the video layer refuses (:func:`faceatlas.video.check_camera_source`: a file that is not
    there or that is no video, a stream URL that names no host), a setting the
    video layer refuses or outputs that overlap (one another, a source, or ``config_file``: the
    file the store was read from, which an ``events:`` naming it overwrote with JSON lines) are
    :class:`InvalidInput` (before the store is opened)."""
    cameras = [c for c in config.cameras if c.source is not None]
    if not cameras:
        raise InvalidInput(f"store '{config.id}' names no camera with a video source")
    for camera in cameras:
        check_camera_source(camera.source or "", of=camera.id)
    settings = [camera_config(c) for c in cameras]
    # one camera's output video that is another's source was written over while it was read
    check_run_outputs(settings, events=config.events, config=config_file)
    return cameras, settings


def run_store(config: StoreConfig, *, url: str | None = None, index_dir: Path | None = None,
              pack: str | None = None, payments: PaymentBackend | None = None,
              on_frame: Callable[[str, int, int | None], None] | None = None,
              config_file: Path | str | None = None) -> StoreRunReport:
    """Open the store on ``url`` and run its cameras (see the module docstring) until their files
    end or Ctrl-C. Everything that can be checked is checked before the store is opened (nor made,
    nor its pack fixed): the cameras and outputs (:func:`run_cameras_of`; ``config_file``, the
    file ``config`` was read from, is no output), the index folder, the pack."""
    cameras = run_cameras_of(config, config_file)
    check_index_dir(index_dir, "--index-dir")
    get_pack(pack)  # fail before loading models: an unknown pack, a missing file
    with_persons = any(c.persons for c in config.cameras if c.source is not None)
    analyzer = FaceAnalyzer(pack, threads=1 if with_persons else None, announce_license=False)
    persons = PersonDetector(threads=1) if with_persons else None
    with RetailStore.open(config, analyzer, url, index_dir=index_dir, payments=payments) as store:
        return StoreRun(store, persons=persons, on_frame=on_frame, cameras=cameras).run()


def count_by(outcomes: list[ExitOutcome]) -> dict[str, int]:
    """Exit outcomes by status."""
    return dict(sorted(Counter(o.status for o in outcomes).items()))
