"""Sticker images (BGRA) drawn in code, and their anchoring to Face Mesh landmarks.

Each sticker is drawn once at a fixed size in its own frame: ``anchor`` maps two of its points to
two landmarks (glasses: the outer eye corners), which sets scale, rotation and position.
"""

from __future__ import annotations

from dataclasses import dataclass
from types import MappingProxyType

import cv2
import numpy as np

SIZE = 400  # sticker canvas width in pixels


@dataclass(frozen=True)
class StickerArt:
    """A BGRA image and where its two anchor points are (pixels of the image), bound to the two
    landmark indices ``landmarks``; ``height_ratio`` stretches it vertically by 1/cos(yaw)."""

    image: np.ndarray
    anchors: tuple[tuple[float, float], tuple[float, float]]
    landmarks: tuple[int, int]


def glasses() -> StickerArt:
    """Round dark glasses: lenses, bridge and temple arms; anchors at the outer eye corners."""
    img = np.zeros((160, SIZE, 4), np.uint8)
    frame_colour = (20, 20, 20, 255)
    for cx in (120, 280):
        cv2.circle(img, (cx, 80), 62, (70, 40, 30, 200), -1, cv2.LINE_AA)  # tinted lens
        cv2.circle(img, (cx, 80), 62, frame_colour, 9, cv2.LINE_AA)
        cv2.ellipse(img, (cx - 18, 60), (20, 12), -30, 0, 360, (230, 230, 230, 150), -1, cv2.LINE_AA)
    cv2.ellipse(img, (200, 82), (22, 14), 0, 180, 360, frame_colour, 8, cv2.LINE_AA)
    cv2.line(img, (4, 70), (60, 76), frame_colour, 9, cv2.LINE_AA)
    cv2.line(img, (340, 76), (396, 70), frame_colour, 9, cv2.LINE_AA)
    return StickerArt(img, ((95.0, 80.0), (305.0, 80.0)), (33, 263))


def hat() -> StickerArt:
    """A top hat whose brim sits on the forehead; anchors at the temples (face-oval points 54, 284)."""
    img = np.zeros((360, SIZE, 4), np.uint8)
    cv2.rectangle(img, (90, 20), (310, 300), (35, 30, 30, 255), -1)
    cv2.rectangle(img, (90, 230), (310, 280), (40, 40, 190, 255), -1)  # ribbon
    cv2.ellipse(img, (200, 310), (195, 38), 0, 0, 360, (30, 25, 25, 255), -1, cv2.LINE_AA)
    return StickerArt(img, ((90.0, 330.0), (310.0, 330.0)), (54, 284))


def mask() -> StickerArt:
    """A surgical mask over nose and mouth; anchors at the cheeks (points 234, 454)."""
    img = np.zeros((300, SIZE, 4), np.uint8)
    pts = np.array([[30, 40], [200, 5], [370, 40], [390, 190], [200, 295], [10, 190]], np.int32)
    cv2.fillPoly(img, [pts], (235, 215, 170, 245), cv2.LINE_AA)
    for y in (100, 150, 200):
        cv2.line(img, (40, y), (360, y), (200, 180, 140, 255), 4, cv2.LINE_AA)
    cv2.line(img, (30, 60), (0, 40), (240, 240, 240, 255), 5, cv2.LINE_AA)
    cv2.line(img, (370, 60), (399, 40), (240, 240, 240, 255), 5, cv2.LINE_AA)
    return StickerArt(img, ((20.0, 60.0), (380.0, 60.0)), (234, 454))


ART = MappingProxyType({"glasses": glasses, "hat": hat, "mask": mask})


def placement(art: StickerArt, a: np.ndarray, b: np.ndarray, yaw: float) -> np.ndarray:
    """The 2x3 affine map from the sticker's pixels to the frame: its anchors onto ``a`` and ``b``,
    stretched perpendicular to them by 1/cos(yaw) (the anchors' distance shrinks as the head turns,
    its height does not)."""
    (ax, ay), (bx, by) = art.anchors
    src_vec = np.array([bx - ax, by - ay])
    dst_vec = np.asarray(b, np.float64) - np.asarray(a, np.float64)
    scale = float(np.linalg.norm(dst_vec)) / max(float(np.linalg.norm(src_vec)), 1e-6)
    angle = float(np.arctan2(dst_vec[1], dst_vec[0]) - np.arctan2(src_vec[1], src_vec[0]))
    stretch = 1.0 / max(float(np.cos(np.radians(min(abs(yaw), 60.0)))), 0.5)
    c, s = np.cos(angle), np.sin(angle)
    # rotation R, scale (scale along the anchor line, scale*stretch across it)
    linear = np.array([[c, -s], [s, c]]) @ np.diag([scale, scale * stretch])
    origin = np.asarray(a, np.float64) - linear @ np.array([ax, ay])
    return np.hstack([linear, origin[:, None]])
