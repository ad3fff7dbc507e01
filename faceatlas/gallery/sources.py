"""Where a gallery's faces come from: the crop kept of a face (enough context for any pack to
detect it again), the quality gate of an enrolment, and the source text a face records (a photo's
path, as `gallery enrol` and `batch enrol` both write it)."""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence

import cv2
import numpy as np

from faceatlas.engine import Face
from faceatlas.errors import FaceAtlasError, LowQuality
from faceatlas.gallery.rules import check_stored
from faceatlas.gallery.types import EnrolReport, Rejection

_CROP_MARGIN = 0.5


def source_crop(image: np.ndarray, face: Face, margin: float = _CROP_MARGIN, *, scale: float = 1.0) -> bytes:
    """JPEG of the face box grown by ``margin`` on each side: enough context for any pack to
    detect and align the face again (used by :meth:`Gallery.reembed`). ``scale`` maps the box
    into ``image`` (an image decoded reduced)."""
    x1, y1, x2, y2 = (float(v) * scale for v in face.bbox)
    dx, dy = (x2 - x1) * margin, (y2 - y1) * margin
    height, width = image.shape[:2]
    left, top = max(0, int(x1 - dx)), max(0, int(y1 - dy))
    right, bottom = min(width, int(x2 + dx)), min(height, int(y2 + dy))
    ok, encoded = cv2.imencode(".jpg", image[top:bottom, left:right], [cv2.IMWRITE_JPEG_QUALITY, 95])
    if not ok:
        raise FaceAtlasError("could not encode the face crop")
    return encoded.tobytes()


def quality_gate(faces: Sequence[Face], min_quality: float, source: str, report: EnrolReport) -> list[Face]:
    """The faces reaching ``min_quality``; the others are recorded as rejected in ``report``."""
    kept = []
    for face in faces:
        if (face.quality or 0.0) < min_quality:
            report.rejected.append(Rejection(source, LowQuality.code, f"{face.quality or 0.0:.2f} < {min_quality:.2f}"))
        else:
            kept.append(face)
    return kept


_FACE_NUMBER = re.compile(r"#[0-9]+\Z")


def photo_source(path: str) -> str:
    """The source that a face enrolled from the photo at ``path`` records, by `gallery enrol`
    (:meth:`Gallery.enrol_images`) and by `batch enrol` alike: the path as the column keeps it."""
    return source_text(path) or ""


def enrolled_photos(sources: Iterable[str | None]) -> set[str]:
    """The photos that stored ``sources`` name (:func:`photo_source`). A source that an earlier
    `batch enrol` wrote as ``<path>#<face>`` names ``<path>`` too: the two doors wrote different
    sources for one photo and each enrolled again what the other had."""
    photos: set[str] = set()
    for source in sources:
        if source:
            photos.add(source)
            photos.add(_FACE_NUMBER.sub("", source))
    return photos


def source_text(source: str | None) -> str | None:
    """A face's source as its column keeps it: UTF-8 text (a file name that is not UTF-8 gets U+FFFD
    for its odd bytes; it failed the enrolment without naming the file) of at most 1000 characters.
    Text that is no file name's (an import's: a lone surrogate that is not an odd byte, a NUL) is
    :class:`InvalidArgument`."""
    if source is None:
        return None
    try:
        raw = source.encode("utf-8", "surrogateescape")
    except UnicodeEncodeError:
        check_stored(source, "face source")  # refuses it, naming the surrogate
        raise
    return check_stored(raw.decode("utf-8", "replace")[:1000], "face source")
