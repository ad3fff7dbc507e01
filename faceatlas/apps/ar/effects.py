"""AR effects: each a small class with one ``apply(frame, faces) -> frame`` (the :class:`Effect`
protocol), so that users can write their own. ``frame`` is BGR uint8 and may be modified in place."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from types import MappingProxyType
from typing import Protocol, runtime_checkable

import cv2
import numpy as np

from faceatlas.apps.ar.stickers import ART, StickerArt, placement, quad
from faceatlas.apps.ar.tracking import INSTALL_HINT, ArFace
from faceatlas.apps.ar.warp import Warp
from faceatlas.apps.drive.mesh import graph_start, quiet_mediapipe
from faceatlas.errors import InvalidArgument, ProviderMissing, UnknownEffect

# Face Mesh regions (indices of the 478 points) that skin smoothing leaves alone.
LEFT_EYE = (33, 7, 163, 144, 145, 153, 154, 155, 133, 173, 157, 158, 159, 160, 161, 246)
RIGHT_EYE = (263, 249, 390, 373, 374, 380, 381, 382, 362, 398, 384, 385, 386, 387, 388, 466)
LEFT_BROW = (70, 63, 105, 66, 107, 55, 65, 52, 53, 46)
RIGHT_BROW = (300, 293, 334, 296, 336, 285, 295, 282, 283, 276)
LIPS = (61, 146, 91, 181, 84, 17, 314, 405, 321, 375, 291, 409, 270, 269, 267, 0, 37, 39, 40, 185)
FACE_OVAL = (10, 338, 297, 332, 284, 251, 389, 356, 454, 323, 361, 288, 397, 365, 379, 378, 400, 377,
             152, 148, 176, 149, 150, 136, 172, 58, 132, 93, 234, 127, 162, 21, 54, 103, 67, 109)
NOSE_TIP = 1


@runtime_checkable
class Effect(Protocol):
    def apply(self, frame: np.ndarray, faces: Sequence[ArFace]) -> np.ndarray: ...


def _roi(points: np.ndarray, shape: tuple[int, ...], margin: float) -> tuple[int, int, int, int]:
    """Bounding box of ``points`` grown by ``margin`` pixels, clipped to the frame: x1, y1, x2, y2."""
    lo = np.floor(points.min(axis=0) - margin).astype(int)
    hi = np.ceil(points.max(axis=0) + margin).astype(int)
    return max(lo[0], 0), max(lo[1], 0), min(hi[0], shape[1]), min(hi[1], shape[0])


def _blend(target: np.ndarray, top: np.ndarray, weight: np.ndarray) -> None:
    """``target`` := ``top`` * weight + ``target`` * (1 - weight), in place (weight: 0..1 per pixel)."""
    weight = np.ascontiguousarray(weight, dtype=np.float32)
    target[:] = cv2.blendLinear(top, np.ascontiguousarray(target), weight, 1.0 - weight)


class Sticker:
    """A BGRA sticker (``glasses``, ``hat``, ``mask`` or your own :class:`StickerArt`, e.g.
    ``StickerArt.from_png``) anchored to two landmarks, alpha-blended. When the head turns by more
    than ``hide_yaw`` degrees, the part of the sticker on the far side of the nose that falls
    outside the face is hidden (behind the head)."""

    def __init__(self, art: str | StickerArt = "glasses", hide_yaw: float = 15.0) -> None:
        if isinstance(art, str):
            if art not in ART:
                raise UnknownEffect(f"no sticker named {art!r}; stickers: {', '.join(ART)}")
            art = ART[art]()
        elif not isinstance(art, StickerArt):
            raise InvalidArgument(f"a sticker is a name ({', '.join(ART)}) or a StickerArt, not {type(art).__name__}")
        self.art, self.hide_yaw = art, hide_yaw

    def matrix(self, face: ArFace) -> np.ndarray:
        """The 2x3 affine map from the sticker's pixels onto ``face`` (its filtered landmarks and pose)."""
        i, j = self.art.landmarks
        return placement(self.art, face.landmarks[i], face.landmarks[j], face.pose.yaw)

    def quad(self, face: ArFace) -> np.ndarray:
        """Where the sticker's four corners are drawn on ``face``: (4, 2) frame pixels."""
        return quad(self.art, self.matrix(face))

    def apply(self, frame: np.ndarray, faces: Sequence[ArFace]) -> np.ndarray:
        for face in faces:
            self._one(frame, face)
        return frame

    def _one(self, frame: np.ndarray, face: ArFace) -> None:
        matrix = self.matrix(face)
        x1, y1, x2, y2 = _roi(quad(self.art, matrix), frame.shape, 2)
        if x2 <= x1 or y2 <= y1:
            return
        shifted = matrix.copy()
        shifted[:, 2] -= (x1, y1)
        warped = cv2.warpAffine(self.art.image, shifted, (x2 - x1, y2 - y1), flags=cv2.INTER_LINEAR,
                                borderMode=cv2.BORDER_CONSTANT, borderValue=(0, 0, 0, 0))
        alpha = warped[:, :, 3:4].astype(np.float32) / 255.0
        if abs(face.pose.yaw) > self.hide_yaw:
            alpha *= self._behind_head(face, (x1, y1, x2, y2))[:, :, None]
        _blend(frame[y1:y2, x1:x2], np.ascontiguousarray(warped[:, :, :3]), alpha[:, :, 0])

    @staticmethod
    def _behind_head(face: ArFace, box: tuple[int, int, int, int]) -> np.ndarray:
        """1 where the sticker stays visible, 0 on the far side of the nose outside the face."""
        x1, y1, x2, y2 = box
        visible = np.zeros((y2 - y1, x2 - x1), np.uint8)
        oval = np.round(face.landmarks[list(FACE_OVAL)] - (x1, y1)).astype(np.int32)
        cv2.fillPoly(visible, [oval], 1)
        xs = np.arange(x1, x2)[None, :]
        nose_x = face.landmarks[NOSE_TIP][0]
        near = (xs < nose_x) if face.pose.yaw > 0 else (xs > nose_x)  # yaw > 0: the image-right side is far
        visible |= np.broadcast_to(near, visible.shape).astype(np.uint8)
        return cv2.GaussianBlur(visible.astype(np.float32), (5, 5), 0)


class Smooth:
    """Skin smoothing: an edge-preserving bilateral filter inside the face oval, eyes, brows and lips
    excluded, blended in by a feathered mask (``strength`` 0..1)."""

    def __init__(self, strength: float = 0.8, diameter: int = 9, sigma_color: float = 40.0,
                 sigma_space: float = 7.0) -> None:
        self.strength, self.diameter = strength, diameter
        self.sigma_color, self.sigma_space = sigma_color, sigma_space

    def mask(self, face: ArFace, box: tuple[int, int, int, int]) -> np.ndarray:
        """The feathered 0..1 smoothing mask of ``face`` inside ``box`` (x1, y1, x2, y2)."""
        x1, y1, x2, y2 = box
        points = face.landmarks - (x1, y1)
        mask = np.zeros((y2 - y1, x2 - x1), np.uint8)
        cv2.fillConvexPoly(mask, cv2.convexHull(np.round(points).astype(np.int32)), 255)
        feather = max(3, int(face.size * 0.03)) | 1
        for region in (LEFT_EYE, RIGHT_EYE, LEFT_BROW, RIGHT_BROW, LIPS):
            hull = cv2.convexHull(np.round(points[list(region)]).astype(np.int32))
            cv2.fillConvexPoly(mask, hull, 0)
            cv2.polylines(mask, [hull], True, 0, feather)  # a margin around eyes and lips
        mask = cv2.erode(mask, np.ones((feather, feather), np.uint8))
        return cv2.GaussianBlur(mask, (2 * feather + 1, 2 * feather + 1), 0).astype(np.float32) / 255.0

    def apply(self, frame: np.ndarray, faces: Sequence[ArFace]) -> np.ndarray:
        for face in faces:
            box = _roi(face.landmarks, frame.shape, 4)
            x1, y1, x2, y2 = box
            if x2 - x1 < 8 or y2 - y1 < 8:
                continue
            roi = frame[y1:y2, x1:x2]
            smooth = cv2.bilateralFilter(roi, self.diameter, self.sigma_color, self.sigma_space)
            _blend(roi, smooth, self.mask(face, box) * np.float32(self.strength))
        return frame


class Background:
    """Background blur (``replace=None``) or replacement by an image or a BGR colour, from
    MediaPipe's selfie segmentation model (``selfie_segmentation_landscape.tflite``)."""

    def __init__(self, replace: np.ndarray | tuple[int, int, int] | None = None, blur: int = 31,
                 threshold: float = 0.5) -> None:
        quiet_mediapipe()
        try:
            from mediapipe.python.solutions.selfie_segmentation import SelfieSegmentation
        except ImportError as exc:  # the optional extra is missing
            raise ProviderMissing(f"background effects need MediaPipe (selfie segmentation): {INSTALL_HINT}") from exc

        self.replace, self.blur, self.threshold = replace, blur | 1, threshold
        self._selfie_segmentation = SelfieSegmentation
        self._segmenter: SelfieSegmentation | None = None  # made at the first frame (see FaceMeshTracker)

    def close(self) -> None:
        if self._segmenter is not None:
            self._segmenter.close()
            self._segmenter = None

    def person(self, frame: np.ndarray) -> np.ndarray:
        """The 0..1 person mask of ``frame`` (feathered around the threshold)."""
        rgb = cv2.cvtColor(frame, cv2.COLOR_BGR2RGB)
        if self._segmenter is not None:
            result = self._segmenter.process(rgb)
        else:
            with graph_start():
                self._segmenter = self._selfie_segmentation(model_selection=1)
                result = self._segmenter.process(rgb)
        mask = np.asarray(result.segmentation_mask, np.float32)
        return np.clip((mask - self.threshold) * 5.0 + 0.5, 0.0, 1.0)

    def apply(self, frame: np.ndarray, faces: Sequence[ArFace]) -> np.ndarray:
        height, width = frame.shape[:2]
        person = self.person(frame)
        if self.replace is None:
            small = cv2.resize(frame, (max(width // 4, 1), max(height // 4, 1)), interpolation=cv2.INTER_AREA)
            small = cv2.GaussianBlur(small, (self.blur // 4 | 1, self.blur // 4 | 1), 0)
            back = cv2.resize(small, (width, height), interpolation=cv2.INTER_LINEAR)
        elif isinstance(self.replace, np.ndarray):
            back = cv2.resize(self.replace, (width, height), interpolation=cv2.INTER_AREA)
        else:
            back = np.empty_like(frame)
            back[:] = self.replace
        _blend(frame, back, 1.0 - person)
        return frame


EFFECTS: MappingProxyType[str, Callable[[], Effect]] = MappingProxyType({
    "glasses": lambda: Sticker("glasses"),
    "hat": lambda: Sticker("hat"),
    "mask": lambda: Sticker("mask"),
    "smooth": Smooth,
    "slim": lambda: Warp(slim=0.12, big_eyes=0.0),
    "big-eyes": lambda: Warp(slim=0.0, big_eyes=0.3),
    "blur-background": Background,
    "green-background": lambda: Background(replace=(60, 180, 60)),
})


def make_effects(names: Sequence[str]) -> list[Effect]:
    """The effects named (in order of application); :class:`UnknownEffect` for a name not in EFFECTS."""
    unknown = [n for n in names if n not in EFFECTS]
    if unknown:
        raise UnknownEffect(f"unknown effect {', '.join(map(repr, unknown))}; effects: {', '.join(EFFECTS)}")
    return [EFFECTS[n]() for n in names]
