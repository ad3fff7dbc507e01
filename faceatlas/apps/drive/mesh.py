"""The driver's face landmarks from MediaPipe Face Mesh (with iris), plus a cheap camera check.

MediaPipe's video mode already tracks the face region from one frame's landmarks to the next and
only re-runs its detector when a face is lost, so the per-frame cost is mostly the landmark model.
Here the frame is cropped to the driver region and downscaled first, and a frame that did not
change since the last one is not processed again.
"""

from __future__ import annotations

import os
import re
import sys
import tempfile
import threading
import warnings
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from typing import IO, Any, Literal

import cv2
import numpy as np

from faceatlas.apps.drive.config import DriveConfig
from faceatlas.apps.drive.geometry import MESH_POINTS_WITH_IRIS

CameraState = Literal["ok", "dark", "blocked"]
THUMBNAIL_SIZE = (64, 36)
MIN_CROP_PIXELS = 8  # a driver region (or an image) narrower or lower than this, as Face Mesh sees it, holds no face


@dataclass(frozen=True)
class DriverFace:
    """The driver's landmarks in full-frame pixels ((478, 2)) and their bounding box."""

    landmarks: np.ndarray
    bbox: tuple[float, float, float, float]

    @property
    def area(self) -> float:
        x1, y1, x2, y2 = self.bbox
        return (x2 - x1) * (y2 - y1)


def to_gray(frame: np.ndarray) -> np.ndarray:
    """Luma of a BGR, BGRA or already single-channel frame."""
    if frame.ndim == 2:
        return frame
    if frame.shape[2] == 1:
        return frame[:, :, 0]
    code = cv2.COLOR_BGRA2GRAY if frame.shape[2] == 4 else cv2.COLOR_BGR2GRAY
    return cv2.cvtColor(frame, code)


def to_rgb(frame: np.ndarray) -> np.ndarray:
    """RGB for MediaPipe from BGR, BGRA or grayscale (night IR) frames."""
    if frame.ndim == 2 or frame.shape[2] == 1:
        return cv2.cvtColor(frame.reshape(frame.shape[:2]), cv2.COLOR_GRAY2RGB)
    code = cv2.COLOR_BGRA2RGB if frame.shape[2] == 4 else cv2.COLOR_BGR2RGB
    return cv2.cvtColor(frame, code)


def camera_state(thumbnail: np.ndarray, config: DriveConfig) -> CameraState:
    """``dark`` when almost nothing is lit, ``blocked`` when the view is one flat colour (lens covered)."""
    if float(np.percentile(thumbnail, 95)) < config.dark_luma:
        return "dark"
    if float(thumbnail.std()) < config.blocked_std:
        return "blocked"
    return "ok"


def thumbnail(gray: np.ndarray) -> np.ndarray:
    """A tiny luma image for the camera check and change detection."""
    return cv2.resize(gray, THUMBNAIL_SIZE, interpolation=cv2.INTER_AREA).astype(np.float32)


# What MediaPipe 0.10.14 says on standard error, from its C++ code, when a graph first runs: no
# setting turns these off (GLOG_minloglevel, TF_CPP_MIN_LOG_LEVEL were tried: MediaPipe logs
# through absl before absl::InitializeLog, and TFLite through its own logger), and `-q` printed them.
NATIVE_NOISE = re.compile(
    rb"INFO: Created TensorFlow Lite XNNPACK delegate for CPU\."
    rb"|WARNING: All log messages before absl::InitializeLog\(\) is called are written to STDERR"
    rb"|W\d{4} [\d:. ]+ +\d+ inference_feedback_manager\.cc:\d+\] Feedback manager requires a model with a "
    rb"single signature inference\. Disabling support for feedback tensors\.")


class _NativeStderr:
    """Standard error (file descriptor 2, which C++ writes to) into a temporary file while one
    MediaPipe graph or more start; what came that is not :data:`NATIVE_NOISE` is written to it
    after, in order. Counted, so that graphs starting in several threads at once share one redirect."""

    def __init__(self) -> None:
        self.enabled = False
        self._lock = threading.Lock()
        self._depth = 0
        self._saved = -1
        self._buffer: IO[bytes] | None = None

    def enter(self) -> None:
        with self._lock:
            self._depth += 1
            if self._depth > 1:
                return
            self._buffer = None
            buffer = tempfile.TemporaryFile()  # noqa: SIM115 - open until leave()
            try:
                with suppress(OSError, ValueError, AttributeError):
                    sys.stderr.flush()
                self._saved = os.dup(2)
            except OSError:  # no file descriptor 2: nothing to keep clean
                buffer.close()
                return
            os.dup2(buffer.fileno(), 2)
            self._buffer = buffer

    def leave(self) -> None:
        with self._lock:
            self._depth -= 1
            if self._depth or self._buffer is None:
                return
            buffer, self._buffer = self._buffer, None
            with suppress(OSError, ValueError, AttributeError):
                sys.stderr.flush()
            os.dup2(self._saved, 2)
            os.close(self._saved)
            with buffer:
                buffer.seek(0)
                kept = [line for line in buffer.read().splitlines(keepends=True)
                        if not NATIVE_NOISE.fullmatch(line.rstrip(b"\r\n"))]
            if kept:
                os.write(2, b"".join(kept))


_native_stderr = _NativeStderr()


def quiet_mediapipe(native: bool | None = None) -> None:
    """Silence MediaPipe's noise: protobuf's deprecation warning of ``GetPrototype`` (a Python
    warning each graph gave on its first frame), and, with ``native=True``, the lines of
    :data:`NATIVE_NOISE` that its C++ code writes to standard error as a graph starts (for the
    CLI, which owns the process: while a graph starts, file descriptor 2 goes to a temporary file;
    a library or server is left its standard error as it is unless it asks)."""
    warnings.filterwarnings("ignore", message=r"SymbolDatabase\.GetPrototype\(\) is deprecated",
                            category=UserWarning)
    if native is not None:
        _native_stderr.enabled = native


@contextmanager
def graph_start() -> Iterator[None]:
    """Around a MediaPipe graph's first run: drops :data:`NATIVE_NOISE` from standard error when
    :func:`quiet_mediapipe` asked for it (``native=True``); else nothing."""
    if not _native_stderr.enabled:
        yield
        return
    _native_stderr.enter()
    try:
        yield
    finally:
        _native_stderr.leave()


MEDIAPIPE_MAX_SIDE = 32766  # MediaPipe's OpenCV remaps images below SHRT_MAX a side; at it, the process aborts


class FaceMeshTracker:
    """Finds the faces inside the driver region and returns their 478 landmarks."""

    def __init__(self, config: DriveConfig | None = None) -> None:
        quiet_mediapipe()
        try:
            from mediapipe.python.solutions.face_mesh import FaceMesh
        except ImportError as exc:  # the optional extra is missing
            raise ImportError("SenseDrive needs MediaPipe: pip install 'faceatlas[drive]'") from exc
        self.config = config or DriveConfig()
        self._face_mesh = FaceMesh
        # made at the first frame, with it: the graph starts in threads of its own when made, and its
        # C++ start-up lines (see graph_start) come until the first frame's landmarks are out
        self._mesh: FaceMesh | None = None

    def close(self) -> None:
        if self._mesh is not None:
            self._mesh.close()
            self._mesh = None

    def _landmarks(self, rgb: np.ndarray) -> Any:
        """MediaPipe's result for ``rgb``; the graph is made at the first frame."""
        if self._mesh is not None:
            return self._mesh.process(rgb)
        with graph_start():
            self._mesh = self._face_mesh(
                static_image_mode=False,
                max_num_faces=self.config.max_faces,
                refine_landmarks=True,
                min_detection_confidence=self.config.min_face_confidence,
                min_tracking_confidence=self.config.min_face_confidence,
            )
            return self._mesh.process(rgb)

    def region_pixels(self, width: int, height: int) -> tuple[int, int, int, int]:
        """The driver region in pixels of a ``width`` x ``height`` frame."""
        x1, y1, x2, y2 = self.config.driver_region
        return int(x1 * width), int(y1 * height), max(int(x2 * width), 1), max(int(y2 * height), 1)

    def find(self, frame: np.ndarray) -> list[DriverFace]:
        """Every face in the driver region of ``frame`` (BGR or grayscale), largest first."""
        height, width = frame.shape[:2]
        x1, y1, x2, y2 = self.region_pixels(width, height)
        crop = frame[y1:y2, x1:x2]
        crop_h, crop_w = crop.shape[:2]
        # a sliver of a region (0,0,1,0.0005) or of an image (5000x1), or one downscaled to one: no
        # face fits, and an empty crop or a 0-pixel resize was an OpenCV error (a crop 0 px wide, a
        # division by zero below)
        if min(crop_w, crop_h) < MIN_CROP_PIXELS:
            return []
        scale = min(1.0, self.config.process_width / crop_w)
        scale = min(scale, MEDIAPIPE_MAX_SIDE / (crop_h * scale)) if crop_h * scale > MEDIAPIPE_MAX_SIDE else scale
        seen_w, seen_h = (round(crop_w * scale), round(crop_h * scale)) if scale < 1.0 else (crop_w, crop_h)
        if min(seen_w, seen_h) < MIN_CROP_PIXELS:
            return []
        if scale < 1.0:  # at most process_width wide, and within MediaPipe's sides (a 200 x 33000 strip aborted it)
            crop = cv2.resize(crop, (seen_w, seen_h), interpolation=cv2.INTER_AREA)
        result = self._landmarks(to_rgb(crop))
        if not result.multi_face_landmarks:
            return []
        faces = []
        for face in result.multi_face_landmarks:
            points = np.array([(p.x, p.y) for p in face.landmark], dtype=np.float64)
            if len(points) < MESH_POINTS_WITH_IRIS:
                continue
            points = points * (crop_w, crop_h) + (x1, y1)
            lo, hi = points.min(axis=0), points.max(axis=0)
            faces.append(DriverFace(points, (float(lo[0]), float(lo[1]), float(hi[0]), float(hi[1]))))
        return sorted(faces, key=lambda f: f.area, reverse=True)


class DriverChooser:
    """Which of the faces is the driver, frame after frame (see ``DriveConfig``: driver_side,
    driver_lost_frames, driver_max_shift): the largest face on the driver's side, then the same
    face for as long as it is seen, kept through short gaps rather than swapped for a passenger."""

    def __init__(self, config: DriveConfig) -> None:
        self.config = config
        self.driver: DriverFace | None = None
        self.missed = 0

    def forget(self) -> None:
        """Choose afresh on the next frame (the camera saw nothing usable)."""
        self.driver, self.missed = None, 0

    def choose(self, faces: list[DriverFace], width: int, height: int) -> DriverFace | None:
        """The driver among ``faces`` (full-frame pixels of a ``width`` x ``height`` frame), or None."""
        if self.driver is not None:
            followed = self._follow(faces)
            if followed is not None:
                self.driver, self.missed = followed, 0
                return followed
            self.missed += 1
            if self.missed < self.config.driver_lost_frames:
                return None
        self.driver = max(self._on_driver_side(faces, width), key=lambda f: f.area, default=None)
        self.missed = 0
        return self.driver

    def _follow(self, faces: list[DriverFace]) -> DriverFace | None:
        assert self.driver is not None
        x1, y1, x2, y2 = self.driver.bbox
        size = max(x2 - x1, y2 - y1)
        centre = np.array([(x1 + x2) / 2, (y1 + y2) / 2])
        best, best_distance = None, self.config.driver_max_shift * size
        for face in faces:
            fx1, fy1, fx2, fy2 = face.bbox
            distance = float(np.linalg.norm(np.array([(fx1 + fx2) / 2, (fy1 + fy2) / 2]) - centre))
            if distance <= best_distance and 0.5 <= face.area / max(self.driver.area, 1.0) <= 2.0:
                best, best_distance = face, distance
        return best

    def _on_driver_side(self, faces: list[DriverFace], width: int) -> list[DriverFace]:
        side = self.config.driver_side
        if side == "any":
            return faces
        x1, _, x2, _ = self.config.driver_region
        middle = (x1 + x2) / 2 * width
        if side == "left":
            return [f for f in faces if f.bbox[0] < middle]
        return [f for f in faces if f.bbox[2] > middle]
