"""Draw the driver's state on a frame: landmarks, gauges, head/gaze direction and the latest alert."""

from __future__ import annotations

import cv2
import numpy as np

from faceatlas.apps.drive.events import Level
from faceatlas.apps.drive.geometry import IMAGE_LEFT_EYE, IMAGE_LEFT_IRIS, IMAGE_RIGHT_EYE, IMAGE_RIGHT_IRIS
from faceatlas.apps.drive.monitor import FrameReport

GREEN, AMBER, RED, WHITE, GREY = (80, 200, 80), (0, 190, 255), (60, 60, 230), (240, 240, 240), (90, 90, 90)
LEVEL_COLOURS = {Level.INFO: WHITE, Level.WARNING: AMBER, Level.ALERT: RED, Level.CRITICAL: RED}
FONT = cv2.FONT_HERSHEY_SIMPLEX


def _gauge(image: np.ndarray, x: int, y: int, label: str, value: float | None, danger_above: float) -> None:
    """A horizontal 0..1 bar with its label; red past ``danger_above``."""
    width, height = 160, 12
    cv2.putText(image, label, (x, y - 4), FONT, 0.45, WHITE, 1, cv2.LINE_AA)
    cv2.rectangle(image, (x, y), (x + width, y + height), GREY, 1)
    if value is not None:
        fill = int(np.clip(value, 0.0, 1.0) * width)
        cv2.rectangle(image, (x, y), (x + fill, y + height), RED if value > danger_above else GREEN, -1)


def draw_report(frame: np.ndarray, report: FrameReport) -> np.ndarray:
    """A BGR copy of ``frame`` with the report drawn on it (its alert as the banner)."""
    image = cv2.cvtColor(frame, cv2.COLOR_GRAY2BGR) if frame.ndim == 2 else frame.copy()
    if report.face is not None:
        points = report.face.landmarks
        for index in (*IMAGE_LEFT_EYE, *IMAGE_RIGHT_EYE):
            cv2.circle(image, tuple(int(v) for v in points[index]), 2, GREEN, -1, cv2.LINE_AA)
        for index in (IMAGE_LEFT_IRIS, IMAGE_RIGHT_IRIS):
            cv2.circle(image, tuple(int(v) for v in points[index]), 3, AMBER, -1, cv2.LINE_AA)
        x1, y1, x2, y2 = (int(v) for v in report.face.bbox)
        cv2.rectangle(image, (x1, y1), (x2, y2), RED if report.off_road else GREEN, 2)
        if report.gaze_yaw is not None and report.gaze_pitch is not None:
            nose = points[1]
            tip = nose + 2.0 * np.array([report.gaze_yaw, -report.gaze_pitch])
            cv2.arrowedLine(image, tuple(int(v) for v in nose), tuple(int(v) for v in tip), AMBER, 2, cv2.LINE_AA)
    panel = image[0:200, 0:200]
    panel[:] = (panel * 0.4).astype(np.uint8)
    openness = report.openness or (None, None)
    closure = [None if o is None else 1.0 - o for o in openness]
    _gauge(image, 10, 24, "L eye closed", closure[0], 0.8)
    _gauge(image, 10, 56, "R eye closed", closure[1], 0.8)
    _gauge(image, 10, 88, "PERCLOS", report.perclos, 0.15)
    _gauge(image, 10, 120, "mouth", report.mar, 0.5)
    if report.pose is not None:
        text = f"yaw {report.pose.yaw:+.0f} pitch {report.pose.pitch:+.0f} roll {report.pose.roll:+.0f}"
        cv2.putText(image, text, (10, 152), FONT, 0.42, WHITE, 1, cv2.LINE_AA)
    status: str = report.camera if report.camera != "ok" else ("no face" if report.face is None else "driver")
    if report.off_road:
        status += ", off road"
    status += f", drowsy {report.drowsiness}" if report.drowsiness else ""
    cv2.putText(image, status, (10, 176), FONT, 0.45, WHITE, 1, cv2.LINE_AA)
    if not report.calibrated:
        cv2.putText(image, "calibrating", (10, 194), FONT, 0.45, AMBER, 1, cv2.LINE_AA)
    if report.alert is not None:
        text = f"{report.alert.level.name}: {report.alert.type}"
        cv2.putText(image, text, (220, 40), FONT, 1.0, LEVEL_COLOURS[report.alert.level], 2, cv2.LINE_AA)
    return image
