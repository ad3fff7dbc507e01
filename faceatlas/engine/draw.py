"""Annotated images for a person to look at: boxes, keypoints and labels drawn on a copy."""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from pathlib import Path

import cv2
import numpy as np

from faceatlas.engine.face import Face
from faceatlas.errors import InvalidArgument

_KEYPOINT_COLORS = [(255, 0, 0), (0, 0, 255), (0, 255, 0), (255, 0, 255), (0, 255, 255)]


def draw_faces(image: np.ndarray, faces: Sequence[Face], labels: Sequence[str] | None = None) -> np.ndarray:
    """A copy of the BGR ``image`` with each face's box, 5 keypoints and label drawn."""
    canvas = image.copy()
    thickness = max(1, round(max(image.shape[:2]) / 400))
    for i, face in enumerate(faces):
        x1, y1, x2, y2 = (int(round(v)) for v in face.bbox)
        cv2.rectangle(canvas, (x1, y1), (x2, y2), (0, 200, 0), thickness)
        for (x, y), color in zip(face.keypoints, _KEYPOINT_COLORS):
            cv2.circle(canvas, (int(round(x)), int(round(y))), thickness + 1, color, -1)
        text = labels[i] if labels else f"{face.det_score:.2f}"
        scale = 0.4 * thickness
        (tw, th), _ = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, scale, 1)
        top = max(0, y1 - th - 4)
        cv2.rectangle(canvas, (x1, top), (x1 + tw + 4, top + th + 4), (0, 200, 0), -1)
        cv2.putText(canvas, text, (x1 + 2, top + th + 1), cv2.FONT_HERSHEY_SIMPLEX, scale, (0, 0, 0), 1, cv2.LINE_AA)
    return canvas


def save_image(path: str | Path, image: np.ndarray) -> Path:
    """Write the BGR ``image`` to ``path`` in the format its suffix names (its folder made if
    missing). A suffix OpenCV writes no format for is :class:`InvalidArgument`; a file that
    cannot be written is ``OSError``: nothing is reported written that was not."""
    path = Path(path)
    if not cv2.haveImageWriter(str(path)):
        raise InvalidArgument(f"{path}: cannot write an image with suffix {path.suffix or '(none)'!r}; "
                              "use .jpg or .png")
    path.parent.mkdir(parents=True, exist_ok=True)
    if not cv2.imwrite(str(path), image):
        raise OSError(f"{path}: could not write the image")
    return path


def check_drawing_path(path: str | Path, inputs: Iterable[str | Path], what: str = "drawing") -> Path:
    """``path`` when :func:`save_image` can write an annotated image there: a suffix OpenCV writes,
    and none of the ``inputs`` (links resolved): ``detect photo.jpg --draw photo.jpg`` wrote the
    annotated copy over the photo. Else :class:`InvalidArgument` naming it as ``what`` (the door's
    option). Called before the models load."""
    path = Path(path)
    if not cv2.haveImageWriter(str(path)):
        raise InvalidArgument(f"{what} {path}: cannot write an image with suffix {path.suffix or '(none)'!r}; "
                              "use .jpg or .png")
    for source in inputs:
        if same_file(path, source):
            raise InvalidArgument(f"{what} {path} is the input image {source}: writing it would destroy the "
                                  "photo; give another file")
    return path


def same_file(path: str | Path, other: str | Path) -> bool:
    """Whether ``path`` and ``other`` name one file, links resolved: ``os.path.samefile`` when both
    exist (a symlink, a hard link), their resolved paths otherwise (an output not written yet).
    Outputs are checked with it before anything is written (an output that is an input would
    destroy it); :func:`faceatlas.video.same_file` adds that a stream or a webcam is no file."""
    try:
        if os.path.exists(path) and os.path.exists(other):
            return os.path.samefile(path, other)
        return Path(path).resolve() == Path(other).resolve()
    except (OSError, ValueError, RuntimeError):  # RuntimeError: a loop of links (Python 3.11's resolve)
        return False


def check_figure_path(path: str | Path, what: str = "") -> Path:
    """``path`` when matplotlib writes a figure in the format its suffix names (png, pdf, svg, jpg,
    ...); else :class:`InvalidArgument` (naming it as ``what``, the door's option). Called before
    the work a plot shows (matplotlib's own ``ValueError`` came after an evaluation's minutes, as a
    traceback)."""
    from matplotlib.backend_bases import FigureCanvasBase  # only where a plot is asked for

    path = Path(path)
    formats = FigureCanvasBase.get_supported_filetypes()
    if path.suffix.lower().lstrip(".") not in formats:
        named = f"{what} {path}" if what else str(path)
        raise InvalidArgument(f"{named}: cannot write a plot with suffix {path.suffix or '(none)'!r}; "
                              f"use .png, .pdf or .svg")
    return path
