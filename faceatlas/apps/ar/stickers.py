"""Sticker images (BGRA): drawn in code or a user's PNG with alpha, and their anchoring to Face
Mesh landmarks.

Each sticker is an image in its own frame: its two ``anchors`` map onto two landmarks (glasses:
the outer eye corners), which sets scale, rotation and position.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType

import cv2
import numpy as np
from PIL import Image

from faceatlas.engine.image import DECODER_ERRORS
from faceatlas.errors import ImageTooLarge, InvalidArgument, InvalidImage

SIZE = 400  # sticker canvas width in pixels
MESH_POINTS = 478  # Face Mesh landmarks with iris
MAX_STICKER_SIDE = 4096  # a PNG sticker larger than this is refused (it is warped every frame)
# Where a PNG sticker can sit: two Face Mesh landmarks, left and right in the image.
PLACES = MappingProxyType({"eyes": (33, 263), "temples": (54, 284), "cheeks": (234, 454)})


@dataclass(frozen=True)
class StickerArt:
    """A BGRA uint8 image and its two anchor points (pixels of the image), mapped onto the two
    landmark indices ``landmarks``. Anything else (no alpha channel, equal anchors, an anchor outside
    the image, a landmark not of the mesh) is :class:`~faceatlas.errors.InvalidArgument`."""

    image: np.ndarray
    anchors: tuple[tuple[float, float], tuple[float, float]]
    landmarks: tuple[int, int]

    def __post_init__(self) -> None:
        image = self.image
        if not isinstance(image, np.ndarray) or image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 4:
            shape = getattr(image, "shape", None)
            raise InvalidArgument(f"a sticker is a BGRA uint8 image (height, width, 4) with an alpha channel; "
                                  f"got {getattr(image, 'dtype', type(image).__name__)} {shape}")
        if min(image.shape[:2]) < 2:
            raise InvalidArgument(f"a sticker image must be at least 2x2 pixels, not {image.shape[1]}x{image.shape[0]}")
        (ax, ay), (bx, by) = self.anchors
        if not all(np.isfinite((ax, ay, bx, by))) or np.hypot(bx - ax, by - ay) < 1.0:
            raise InvalidArgument(f"a sticker's two anchors must be finite and at least 1 pixel apart: {self.anchors}")
        height, width = image.shape[:2]
        if not all(0 <= x <= width and 0 <= y <= height for x, y in ((ax, ay), (bx, by))):
            # one far outside put the image far from the face: a sticker nobody saw, and no word said
            raise InvalidArgument(f"a sticker's anchors are two pixels of its {width}x{height} image (x 0..{width}, "
                                  f"y 0..{height}), not {_points(self.anchors)}")
        if len(self.landmarks) != 2 or not all(0 <= int(i) < MESH_POINTS for i in self.landmarks) \
                or self.landmarks[0] == self.landmarks[1]:
            raise InvalidArgument(f"a sticker's landmarks are two different Face Mesh points (0..{MESH_POINTS - 1}): "
                                  f"{self.landmarks}")

    @classmethod
    def from_png(cls, path: str | Path, anchors: Sequence[Sequence[float]] | None = None,
                 on: str | tuple[int, int] = "eyes") -> StickerArt:
        """A sticker from a PNG file with an alpha channel (8 or 16 bits; grey or colour).

        ``on`` is where it sits: a name of :data:`PLACES` (``eyes``: outer eye corners 33, 263;
        ``temples``: 54, 284; ``cheeks``: 234, 454) or two landmark indices. ``anchors`` are the
        two points of the image (x, y pixels) that go onto them, left then right; by default the
        midpoints of the image's left and right edges. A PNG without alpha is refused
        (:class:`~faceatlas.errors.InvalidArgument`): an opaque rectangle over the face is never
        what a sticker means, so the transparency must be in the file. Its size is read from the
        header before any pixel is decoded: more than :data:`MAX_STICKER_SIDE` pixels a side is
        :class:`~faceatlas.errors.ImageTooLarge` at once (a 20000x20000 PNG of a few MB, a
        decompression bomb, decoded to gigabytes first)."""
        if isinstance(on, str):
            if on not in PLACES:
                raise InvalidArgument(f"a sticker sits on one of {', '.join(PLACES)}, not {on!r}")
            landmarks = PLACES[on]
        else:
            landmarks = (int(on[0]), int(on[1]))
        path = Path(path)
        try:
            data = np.fromfile(path, np.uint8)
        except OSError as exc:
            raise InvalidArgument(f"cannot read the sticker {path}: {exc.strerror or exc}") from exc
        _check_header(path, data)
        image = cv2.imdecode(data, cv2.IMREAD_UNCHANGED) if data.size else None
        if image is None:
            raise InvalidImage(f"{path} is not an image OpenCV can decode")
        if image.ndim == 2 or image.shape[2] not in (2, 4):
            raise InvalidArgument(f"the sticker {path} has no alpha channel: save it as a PNG with transparency "
                                  "(RGBA), the parts to leave out fully transparent")
        if image.dtype == np.uint16:
            image = (image >> 8).astype(np.uint8)
        elif image.dtype != np.uint8:
            raise InvalidArgument(f"the sticker {path} has {image.dtype} pixels; 8 or 16 bits per channel are read")
        if image.shape[2] == 2:  # grey + alpha
            image = np.dstack([image[:, :, 0]] * 3 + [image[:, :, 1]])
        height, width = image.shape[:2]
        if anchors is None:
            points = ((0.0, height / 2.0), (float(width), height / 2.0))
        else:
            if len(anchors) != 2 or any(len(p) != 2 for p in anchors):
                raise InvalidArgument(f"a sticker's anchors are two (x, y) points, not {anchors!r}")
            points = ((float(anchors[0][0]), float(anchors[0][1])), (float(anchors[1][0]), float(anchors[1][1])))
        return cls(np.ascontiguousarray(image), points, landmarks)


def _points(points: Sequence[Sequence[float]]) -> str:
    """``((0.0, 50.0), (9999.0, 50.0))`` as ``(0, 50), (9999, 50)``."""
    return ", ".join("(" + ", ".join(f"{float(v):g}" for v in point) + ")" for point in points)


# what reading a header can raise: a decoder's error, or PIL's own pixel limit when nothing turned it off
_HEADER_ERRORS: tuple[type[Exception], ...] = (Image.DecompressionBombError, *DECODER_ERRORS)


def _check_header(path: Path, data: np.ndarray) -> None:
    """Refuse the sticker file ``data`` from its header alone: not an image, or more than
    :data:`MAX_STICKER_SIDE` pixels a side (:class:`~faceatlas.errors.ImageTooLarge`)."""
    try:
        with Image.open(io.BytesIO(data.tobytes())) as header:  # reads the header, decodes no pixel
            width, height = header.size
    except _HEADER_ERRORS as exc:
        if isinstance(exc, Image.DecompressionBombError):  # PIL's own limit, when nothing turned it off
            raise ImageTooLarge(f"the sticker {path} is too large: {exc}") from exc
        raise InvalidImage(f"{path} is not an image whose size can be read (a PNG with transparency is)") from exc
    if max(width, height) > MAX_STICKER_SIDE:
        raise ImageTooLarge(f"the sticker {path} is {width}x{height}; at most {MAX_STICKER_SIDE} pixels a side")


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


def quad(art: StickerArt, matrix: np.ndarray) -> np.ndarray:
    """The sticker's four corners in the frame under ``matrix`` (a :func:`placement`): (4, 2),
    top-left, top-right, bottom-left, bottom-right."""
    h, w = art.image.shape[:2]
    return np.array([[0, 0, 1], [w, 0, 1], [0, h, 1], [w, h, 1]], np.float64) @ matrix.T
