"""DriverMonitor: frames in, per-frame driver state and alert events out."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field

import cv2
import numpy as np

from faceatlas.apps.drive.config import DriveConfig
from faceatlas.apps.drive.events import DriveEvent, Level
from faceatlas.apps.drive.geometry import (
    eye_aspect_ratios,
    head_pose,
    iris_offset,
    mouth_aspect_ratio,
)
from faceatlas.apps.drive.mesh import (
    CameraState,
    DriverChooser,
    DriverFace,
    FaceMeshTracker,
    camera_state,
    thumbnail,
    to_gray,
)
from faceatlas.apps.drive.signals import Baseline, Calibrator, SlidingShare, Sustained, WindowedCount
from faceatlas.engine import Pose

MAX_SAMPLE_S = 0.5  # one frame never counts for more than this (pauses, dropped stretches)


@dataclass
class FrameReport:
    """What the monitor saw in one frame; ``None`` fields were not measurable (no face)."""

    frame: int
    t: float
    camera: CameraState
    face: DriverFace | None = None
    ear: tuple[float, float] | None = None
    openness: tuple[float, float] | None = None
    mar: float | None = None
    pose: Pose | None = None
    gaze_yaw: float | None = None
    gaze_pitch: float | None = None
    off_road: bool | None = None
    eyes_closed: bool | None = None
    perclos: float | None = None
    drowsiness: int = 0
    calibrated: bool = False
    reused: bool = False
    events: list[DriveEvent] = field(default_factory=list)
    alert: DriveEvent | None = None  # the warning or alert to show now: its condition still holds

    @property
    def face_found(self) -> bool:
        return self.face is not None


class Persistent:
    """A condition that must hold for ``after_s`` seconds before it counts; reports start and end once."""

    def __init__(self, after_s: float) -> None:
        self.after_s = after_s
        self.since: float | None = None
        self.reported = False

    def update(self, t: float, active: bool) -> str | None:
        """``"start"`` when the condition has just lasted ``after_s``, ``"end"`` when a reported one clears."""
        if not active:
            ended = self.reported
            self.since, self.reported = None, False
            return "end" if ended else None
        if self.since is None:
            self.since = t
        if not self.reported and t - self.since >= self.after_s:
            self.reported = True
            return "start"
        return None

    def duration(self, t: float) -> float:
        return 0.0 if self.since is None else t - self.since


class DriverMonitor:
    """Feed frames in order with :meth:`process`; each returns a :class:`FrameReport` with new events."""

    def __init__(self, config: DriveConfig | None = None, tracker: FaceMeshTracker | None = None) -> None:
        self.config = cfg = config or DriveConfig()
        self.tracker = tracker or FaceMeshTracker(cfg)
        self._chooser = DriverChooser(cfg)
        self._alerts: list[DriveEvent] = []
        self.baseline: Baseline | None = None
        self._calibrator = Calibrator(cfg.calibration_s)
        self._closure = Sustained(cfg.blink_below, cfg.blink_above, above=False)
        self._yawn = Sustained(cfg.yawn_mar, cfg.yawn_mar * 0.8, above=True)
        self._perclos = SlidingShare(cfg.perclos_window_s)
        self._off_road_share = SlidingShare(cfg.accumulated_window_s)
        self._long_blinks = WindowedCount(cfg.perclos_window_s)
        self._yawns = WindowedCount(cfg.perclos_window_s)
        self._glance = Persistent(cfg.long_glance_s)
        self._accumulated_reported = False
        self._face_lost = Persistent(cfg.face_lost_s)
        self._absent = Persistent(cfg.driver_absent_s)
        self._dark = Persistent(cfg.camera_problem_s)
        self._blocked = Persistent(cfg.camera_problem_s)
        self._drowsiness = 0
        self._last_t: float | None = None
        self._last_roi: np.ndarray | None = None
        self._last_face: DriverFace | None = None
        self.blinks = 0
        self.yawns = 0
        self.frames = 0
        self.face_frames = 0

    def close(self) -> None:
        self.tracker.close()

    # -- per frame ----------------------------------------------------------------------
    def process(self, frame: np.ndarray, t: float, index: int) -> FrameReport:
        """Analyse one frame (BGR or grayscale) taken at ``t`` seconds."""
        dt = 0.0 if self._last_t is None else min(max(t - self._last_t, 0.0), MAX_SAMPLE_S)
        self._last_t = t
        self.frames += 1
        gray = to_gray(frame)
        report = FrameReport(frame=index, t=t, camera=camera_state(thumbnail(gray), self.config))
        if report.camera == "ok":
            report.face, report.reused = self._find_face(frame, gray)
        else:
            self._last_face = self._last_roi = None
            self._chooser.choose([], frame.shape[1], frame.shape[0])  # a frame without the driver
        self._presence(report)
        if report.face is not None:
            self.face_frames += 1
            self._measure(report, frame.shape[1], frame.shape[0], dt)
        else:
            self._closure.update(t, None)
            self._yawn.update(t, None)
            self._glance.update(t, False)
        self._drowsy(report)
        report.calibrated = self.baseline is not None
        report.alert = self._current_alert(report)
        return report

    def _current_alert(self, report: FrameReport) -> DriveEvent | None:
        """The latest warning or alert whose condition still holds after this frame."""
        for event in report.events:
            if event.level > Level.INFO:
                self._alerts = [a for a in self._alerts if a.type != event.type] + [event]
        self._alerts = [a for a in self._alerts if self._holds(a, report.t)]
        return self._alerts[-1] if self._alerts else None

    def _holds(self, event: DriveEvent, t: float) -> bool:
        conditions = {
            "face_not_visible": self._face_lost,
            "driver_absent": self._absent,
            "camera_dark": self._dark,
            "camera_blocked": self._blocked,
        }
        if event.type in conditions:
            return conditions[event.type].reported
        if event.type == "drowsiness":
            return self._drowsiness > 0
        if event.type == "distraction" and event.details.get("kind") == "long_glance":
            return self._glance.reported
        if event.type == "distraction":
            return self._accumulated_reported
        return t - event.t < self.config.alert_hold_s

    def _find_face(self, frame: np.ndarray, gray: np.ndarray) -> tuple[DriverFace | None, bool]:
        """The driver's face; the previous one again when the face region did not change at all."""
        roi = self._face_roi(gray)
        if roi is not None and self._last_roi is not None and roi.shape == self._last_roi.shape \
                and float(cv2.absdiff(roi, self._last_roi).mean()) < self.config.unchanged_diff:
            return self._last_face, True
        self._last_face = self._chooser.choose(self.tracker.find(frame), frame.shape[1], frame.shape[0])
        self._last_roi = self._face_roi(gray)
        return self._last_face, False

    def _face_roi(self, gray: np.ndarray) -> np.ndarray | None:
        """The pixels of the last face's box (full resolution), for change detection."""
        if self._last_face is None:
            return None
        x1, y1, x2, y2 = (max(int(v), 0) for v in self._last_face.bbox)
        roi = gray[y1:y2, x1:x2]
        return roi.copy() if roi.size else None

    def _emit(self, report: FrameReport, event_type: str, level: Level, /, **details: object) -> None:
        report.events.append(DriveEvent(event_type, level, report.t, report.frame, dict(details)))

    def _presence(self, report: FrameReport) -> None:
        t, camera_ok = report.t, report.camera == "ok"
        for state, tracker in (("dark", self._dark), ("blocked", self._blocked)):
            change = tracker.update(t, report.camera == state)
            if change == "start":
                self._emit(report, f"camera_{state}", Level.ALERT)
            elif change == "end":
                self._emit(report, "camera_ok", Level.INFO, was=state)
        missing = camera_ok and report.face is None
        lost, absent = self._face_lost.update(t, missing), self._absent.update(t, missing)
        if lost == "start":
            self._emit(report, "face_not_visible", Level.WARNING)
        if absent == "start":
            self._emit(report, "driver_absent", Level.ALERT)
        if lost == "end":
            self._emit(report, "face_visible", Level.INFO)

    def _measure(self, report: FrameReport, width: int, height: int, dt: float) -> None:
        cfg, t = self.config, report.t
        assert report.face is not None, "measured only when a face was found"
        landmarks = report.face.landmarks
        report.ear = eye_aspect_ratios(landmarks)
        report.mar = mouth_aspect_ratio(landmarks)
        report.pose = pose = head_pose(landmarks, width, height)
        if pose is None:
            return
        mean_ear = float(np.mean(report.ear))
        if self.baseline is None:
            self.baseline = self._calibrator.add(dt, mean_ear, pose.yaw, pose.pitch)
            if self.baseline is not None:
                b = self.baseline
                self._emit(
                    report,
                    "calibrated",
                    Level.INFO,
                    open_ear=round(b.open_ear, 3),
                    yaw=round(b.yaw, 1),
                    pitch=round(b.pitch, 1),
                )
        base = self.baseline or Baseline(cfg.default_open_ear, 0.0, 0.0)
        span = max(base.open_ear - cfg.closed_ear, 1e-3)
        left, right = (float(np.clip((e - cfg.closed_ear) / span, 0.0, 1.0)) for e in report.ear)
        report.openness = (left, right)
        openness = (left + right) / 2.0
        report.eyes_closed = openness < cfg.perclos_closed_below
        self._perclos.add(t, dt, report.eyes_closed)
        if self._perclos.covered_s >= cfg.perclos_min_s:
            report.perclos = self._perclos.share
        self._eyes(report, openness)
        self._mouth(report)
        iris_h, _ = iris_offset(landmarks)
        report.gaze_yaw = pose.yaw - base.yaw + iris_h * cfg.gaze_gain
        report.gaze_pitch = pose.pitch - base.pitch
        report.off_road = (
            abs(report.gaze_yaw) > cfg.off_road_yaw
            or report.gaze_pitch < -cfg.off_road_pitch_down
            or report.gaze_pitch > cfg.off_road_pitch_up
        )
        self._attention(report, dt)

    def _eyes(self, report: FrameReport, openness: float) -> None:
        blink = self._closure.update(report.t, openness)
        if blink is None:
            return
        self.blinks += 1
        long = blink.duration >= self.config.long_blink_s
        if long:
            self._long_blinks.add(report.t)
        self._emit(
            report,
            "blink",
            Level.WARNING if long else Level.INFO,
            duration_s=round(blink.duration, 3),
            long=long,
            count=self.blinks,
        )

    def _mouth(self, report: FrameReport) -> None:
        opening = self._yawn.update(report.t, report.mar)
        if opening is not None and opening.duration >= self.config.yawn_min_s:
            self.yawns += 1
            self._yawns.add(report.t)
            self._emit(report, "yawn", Level.INFO, duration_s=round(opening.duration, 3), count=self.yawns)

    def _attention(self, report: FrameReport, dt: float) -> None:
        cfg, t = self.config, report.t
        if self._glance.update(t, bool(report.off_road)) == "start":
            self._emit(
                report,
                "distraction",
                Level.ALERT,
                kind="long_glance",
                seconds=cfg.long_glance_s,
                gaze_yaw=round(report.gaze_yaw or 0.0, 1),
                gaze_pitch=round(report.gaze_pitch or 0.0, 1),
            )
        self._off_road_share.add(t, dt, bool(report.off_road))
        away = self._off_road_share.flagged_s
        if away >= cfg.accumulated_s and not self._accumulated_reported:
            self._accumulated_reported = True
            self._emit(
                report,
                "distraction",
                Level.WARNING,
                kind="accumulated",
                seconds=round(away, 1),
                window_s=cfg.accumulated_window_s,
            )
        elif away < cfg.accumulated_s:
            self._accumulated_reported = False

    def _drowsy(self, report: FrameReport) -> None:
        cfg, t = self.config, report.t
        # a frame without a measurement (no face, no head pose) leaves the window's PERCLOS as it
        # was: it cleared a level set by PERCLOS on every such frame, reporting a PERCLOS of 0.0
        self._perclos.expire(t)
        share = self._perclos.share  # what events report
        perclos = share if self._perclos.covered_s >= cfg.perclos_min_s else 0.0  # no verdict before
        long_blinks, yawns = self._long_blinks.count(t), self._yawns.count(t)
        closed_s = self._closure.running_for(t)
        if closed_s >= cfg.microsleep_s:
            level = 3
        elif perclos >= cfg.perclos_alert or long_blinks >= cfg.long_blinks_alert or yawns >= cfg.yawns_alert:
            level = 2
        elif perclos >= cfg.perclos_warning or long_blinks >= cfg.long_blinks_warning or yawns >= cfg.yawns_warning:
            level = 1
        else:
            level = 0
        report.drowsiness = level
        if level != self._drowsiness:
            self._drowsiness = level
            self._emit(
                report,
                "drowsiness",
                Level(level),
                drowsiness=level,
                perclos=round(share, 3),
                long_blinks=long_blinks,
                yawns=yawns,
                eyes_closed_s=round(closed_s, 2),
            )

    # -- whole sources ------------------------------------------------------------------
    def run(self, frames: Iterator[tuple[int, float, np.ndarray]]) -> Iterator[FrameReport]:
        """Process ``(index, t, frame)`` tuples in order, yielding one report per frame."""
        for index, t, frame in frames:
            yield self.process(frame, t, index)

    def summary(self) -> dict[str, object]:
        """Totals so far: frames, share with a face, blinks, yawns, calibration, and the PERCLOS of the
        last window: None before ``perclos_min_s`` of face time are in it, as in the frames' reports
        (an 18-frame clip with one blink said 0.176)."""
        covered = self._perclos.covered_s >= self.config.perclos_min_s
        return {
            "frames": self.frames,
            "face_frames": self.face_frames,
            "blinks": self.blinks,
            "yawns": self.yawns,
            "perclos": round(self._perclos.share, 3) if covered else None,
            "baseline": None if self.baseline is None else vars(self.baseline),
        }
