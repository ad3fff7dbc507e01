"""Face detectors: SCRFD (ONNX Runtime), YuNet (OpenCV) and dlib HOG, behind one interface.

Every detector returns :class:`Detections`, a columnar set of boxes, scores and 5 keypoints.
The input size adapts to the image: a 250x250 photo is run at 256x256, not letterboxed to 640.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Protocol

import cv2
import numpy as np

from faceatlas.engine.detections import Detections
from faceatlas.engine.geometry import ARCFACE_TEMPLATE, nms
from faceatlas.engine.image import network_input
from faceatlas.engine.models import loading
from faceatlas.engine.runtime import Provider, create_session


class Detector(Protocol):
    def detect(self, image: np.ndarray) -> Detections:
        """Faces in a BGR uint8 image."""
        ...


# The smallest face SCRFD and YuNet find reliably at their input scale (their finest anchors: stride 8).
DETECTABLE_FACE = 16


def detection_scale(height: int, width: int, max_side: int, min_face: int | None = None) -> float:
    """How much an image is reduced before detection: to ``max_side`` on its longest side, and
    further while a face of ``min_face`` pixels (the smallest the caller wants) stays at least
    ``DETECTABLE_FACE`` pixels; never enlarged."""
    scale = min(1.0, max_side / max(height, width))
    if min_face is not None:
        scale = min(scale, DETECTABLE_FACE / min_face)
    return scale


def fit_size(height: int, width: int, max_side: int, multiple: int,
              min_face: int | None = None) -> tuple[float, int, int]:
    """Scale factor and padded input size for an image, never upscaling."""
    scale = detection_scale(height, width, max_side, min_face)
    in_h = max(multiple, math.ceil(height * scale / multiple) * multiple)
    in_w = max(multiple, math.ceil(width * scale / multiple) * multiple)
    return scale, in_h, in_w


class SCRFD:
    """InsightFace SCRFD detector with keypoints (det_500m, 2.5g, 10g)."""

    strides = (8, 16, 32)
    anchors_per_cell = 2

    def __init__(
        self,
        model: Path,
        providers: Sequence[str] | None = None,
        threads: int | None = None,
        score_threshold: float = 0.5,
        nms_threshold: float = 0.4,
        max_side: int = 640,
        provider: Provider = "onnxruntime",
        min_face: int | None = None,
    ) -> None:
        self.session = create_session(model, providers, threads, provider)
        self.input_name = self.session.get_inputs()[0].name
        self.score_threshold = score_threshold
        self.nms_threshold = nms_threshold
        self.max_side = max_side
        self.min_face = min_face
        self._centers: dict[tuple[int, int, int], np.ndarray] = {}

    def detect(self, image: np.ndarray) -> Detections:
        height, width = image.shape[:2]
        scale, in_h, in_w = fit_size(height, width, self.max_side, 32, self.min_face)
        new_w, new_h = max(1, round(width * scale)), max(1, round(height * scale))
        resized = cv2.resize(image, (new_w, new_h)) if scale < 1.0 else image
        blob = network_input([resized], 127.5, 1.0 / 128.0, in_h, in_w)
        outputs = self.session.run(None, {self.input_name: blob})
        boxes, scores, kps = self._decode(outputs, in_h, in_w)
        if len(scores) == 0:
            return Detections.empty()
        keep = nms(boxes, scores, self.nms_threshold)
        real_scale = new_w / width
        return Detections(
            (boxes[keep] / real_scale).astype(np.float32),
            scores[keep].astype(np.float32),
            (kps[keep] / real_scale).astype(np.float32),
        ).sorted_by_area()

    def _decode(self, outputs: list[np.ndarray], in_h: int, in_w: int) -> tuple[np.ndarray, ...]:
        outputs = [o[0] if o.ndim == 3 else o for o in outputs]
        by_kind = {k: sorted((o for o in outputs if o.shape[1] == k), key=len, reverse=True) for k in (1, 4, 10)}
        all_boxes, all_scores, all_kps = [], [], []
        for level, stride in enumerate(self.strides):
            scores = by_kind[1][level][:, 0]
            hits = np.where(scores >= self.score_threshold)[0]
            if len(hits) == 0:
                continue
            centers = self._anchor_centers(in_h // stride, in_w // stride, stride)[hits]
            dist = by_kind[4][level][hits] * stride
            kps = by_kind[10][level][hits].reshape(-1, 5, 2) * stride
            all_boxes.append(np.hstack([centers - dist[:, :2], centers + dist[:, 2:]]))
            all_kps.append(kps + centers[:, None, :])
            all_scores.append(scores[hits])
        if not all_scores:
            return np.zeros((0, 4)), np.zeros(0), np.zeros((0, 5, 2))
        return np.vstack(all_boxes), np.concatenate(all_scores), np.vstack(all_kps)

    def _anchor_centers(self, rows: int, cols: int, stride: int) -> np.ndarray:
        key = (rows, cols, stride)
        if key not in self._centers:
            ys, xs = np.mgrid[:rows, :cols]
            centers = (np.stack([xs, ys], axis=-1).reshape(-1, 2) * stride).astype(np.float32)
            self._centers[key] = np.repeat(centers, self.anchors_per_cell, axis=0)
        return self._centers[key]


class YuNet:
    """OpenCV Zoo YuNet detector (MIT), run through ``cv2.FaceDetectorYN``.

    A ``FaceDetectorYN`` keeps the input size of its last call, so one object used by two threads
    (two cameras of ``watch``, the service's workers) at different image sizes breaks; each thread
    gets its own (the model is 230 kB)."""

    def __init__(
        self, model: Path, score_threshold: float = 0.6, nms_threshold: float = 0.3, max_side: int = 640,
        min_face: int | None = None,
    ) -> None:
        self.model = str(model)
        self.max_side = max_side
        self.min_face = min_face
        self._options = (score_threshold, nms_threshold)
        self._local = threading.local()
        cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_ERROR)  # OpenCV 5 warns on every YuNet load
        self._local.net = self._create()

    def _create(self) -> Any:
        with loading(Path(self.model)):
            return cv2.FaceDetectorYN.create(self.model, "", (320, 320), *self._options, 5000)

    @property
    def _net(self) -> Any:
        net = getattr(self._local, "net", None)
        if net is None:
            net = self._local.net = self._create()
        return net

    def detect(self, image: np.ndarray) -> Detections:
        height, width = image.shape[:2]
        scale = detection_scale(height, width, self.max_side, self.min_face)
        if scale < 1.0:
            image = cv2.resize(image, (max(1, round(width * scale)), max(1, round(height * scale))))
        self._net.setInputSize((image.shape[1], image.shape[0]))
        _, rows = self._net.detect(image)
        if rows is None or len(rows) == 0:
            return Detections.empty()
        rows = rows.astype(np.float32) / np.array([scale] * 14 + [1.0], dtype=np.float32)
        boxes = np.column_stack([rows[:, 0], rows[:, 1], rows[:, 0] + rows[:, 2], rows[:, 1] + rows[:, 3]])
        return Detections(boxes, rows[:, 14], rows[:, 4:14].reshape(-1, 5, 2)).sorted_by_area()


class DlibHOG:
    """dlib's HOG face detector with its 5-point shape predictor (the landmarks dlib's recogniser
    aligns on) and its 68-point predictor (the 5 keypoints: eye centres, nose tip, mouth corners,
    the points SCRFD and YuNet give); public-domain models."""

    def __init__(self, shape_model: Path, keypoint_model: Path, max_side: int = 1280) -> None:
        import dlib

        self._dlib = dlib
        self._detector = dlib.get_frontal_face_detector()
        with loading(shape_model):
            self._shape = dlib.shape_predictor(str(shape_model))
        with loading(keypoint_model):
            self._shape68 = dlib.shape_predictor(str(keypoint_model))
        self.max_side = max_side

    def detect(self, image: np.ndarray) -> Detections:
        height, width = image.shape[:2]
        scale = min(1.0, self.max_side / max(height, width))
        small = cv2.resize(image, (round(width * scale), round(height * scale))) if scale < 1 else image
        rgb = np.ascontiguousarray(small[:, :, ::-1])
        upsample = 1 if max(small.shape[:2]) <= 800 else 0
        rects, scores, _ = self._detector.run(rgb, upsample, 0.0)
        if not rects:
            return Detections.empty()
        boxes = np.array([[r.left(), r.top(), r.right(), r.bottom()] for r in rects], np.float32) / scale
        landmarks = np.stack([self.landmarks_in_box(image, box) for box in boxes])
        keypoints = np.stack([self.keypoints_in_box(image, box) for box in boxes])
        # HOG margins (about -0.5..3) mapped to (0, 1) so that scores read like the other detectors'.
        confidence = 1.0 / (1.0 + np.exp(-3.0 * np.asarray(scores, np.float32)))
        return Detections(boxes, confidence.astype(np.float32), keypoints, landmarks).sorted_by_area()

    def keypoints_in_box(self, image: np.ndarray, box: np.ndarray) -> np.ndarray:
        """The 5 standard keypoints inside ``box``, from the 68-point predictor."""
        rect = self._dlib.rectangle(*(int(round(v)) for v in box))
        shape = self._shape68(np.ascontiguousarray(image[:, :, ::-1]), rect)
        return keypoints_from_dlib68(np.array([[p.x, p.y] for p in shape.parts()], dtype=np.float32))

    def landmarks_in_box(self, image: np.ndarray, box: np.ndarray) -> np.ndarray:
        """dlib's 5 points (eye corners, nose base) inside ``box``."""
        rect = self._dlib.rectangle(*(int(round(v)) for v in box))
        shape = self._shape(np.ascontiguousarray(image[:, :, ::-1]), rect)
        return np.array([[p.x, p.y] for p in shape.parts()], dtype=np.float32)


def keypoints_from_dlib68(points: np.ndarray) -> np.ndarray:
    """The 5 standard keypoints from dlib's 68 points: the eye contours' centres (36-41 in the
    image's left, 42-47), the nose tip (30) and the mouth corners (48, 54), all measured.

    dlib's 5-point model has no nose tip (its nose point is the base of the nose, well below the
    tip) and no mouth; keypoints built from it gave pose angles of the opposite sign to SCRFD's
    on the same faces."""
    points = np.asarray(points, dtype=np.float32)
    return np.array(
        [points[36:42].mean(axis=0), points[42:48].mean(axis=0), points[30], points[48], points[54]], dtype=np.float32
    )


def template_keypoints(box: np.ndarray) -> np.ndarray:
    """The 5 template keypoints laid onto ``box`` (used when a detector gives a box only)."""
    x1, y1, x2, y2 = box
    return (ARCFACE_TEMPLATE / 112.0 * np.array([x2 - x1, y2 - y1]) + np.array([x1, y1])).astype(np.float32)
