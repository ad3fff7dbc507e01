"""Frames from a video file, a webcam index or an RTSP/HTTP URL through plain OpenCV capture."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import cv2
import numpy as np


def open_capture(spec: str | int | Path) -> cv2.VideoCapture:
    """An opened ``cv2.VideoCapture`` for ``spec`` (a digit string is a webcam index)."""
    text = str(spec)
    capture = cv2.VideoCapture(int(text)) if text.isdigit() else cv2.VideoCapture(text)
    if not capture.isOpened():
        raise OSError(f"cannot open video source {text!r}")
    return capture


def iter_frames(
    spec: str | int | Path, start: int = 0, stop: int | None = None
) -> Iterator[tuple[int, float, np.ndarray]]:
    """``(index, seconds, BGR frame)`` from ``start`` up to (not including) ``stop``.

    Files are timed by their frame rate and seeked to ``start``; live sources (no frame count)
    are timed by the wall clock.
    """
    capture = open_capture(spec)
    try:
        fps = capture.get(cv2.CAP_PROP_FPS) or 0.0
        is_file = capture.get(cv2.CAP_PROP_FRAME_COUNT) > 0 and fps > 0
        if start and is_file:
            capture.set(cv2.CAP_PROP_POS_FRAMES, start)
        index, began = (start if is_file else 0), time.monotonic()
        while stop is None or index < stop:
            ok, frame = capture.read()
            if not ok:
                return
            yield index, (index / fps if is_file else time.monotonic() - began), frame
            index += 1
    finally:
        capture.release()


def frame_rate(spec: str | int | Path, default: float = 25.0) -> float:
    """The source's frames per second (``default`` when it does not say)."""
    capture = open_capture(spec)
    try:
        return capture.get(cv2.CAP_PROP_FPS) or default
    finally:
        capture.release()
