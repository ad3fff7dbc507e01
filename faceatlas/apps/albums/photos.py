"""Photos of an album: finding them in a folder, their content hash, their EXIF date, and the
contact sheet of a person's faces (drawn from the photos, only where the user asks for it)."""

from __future__ import annotations

import hashlib
import io
import os
from collections.abc import Iterator, Sequence
from datetime import datetime
from pathlib import Path

import cv2
import numpy as np
from PIL import Image

from faceatlas.apps.albums.types import ContactSheet, PhotoListing
from faceatlas.engine import IMAGE_SUFFIXES, FaceAnalyzer, InvalidImage, is_hidden, must_exist, not_regular, save_image
from faceatlas.engine.image import DECODER_ERRORS, HEIF_SUFFIXES
from faceatlas.errors import InvalidInput
from faceatlas.gallery import Rejection

PHOTO_SUFFIXES = IMAGE_SUFFIXES  # what decode_image decodes, as batch takes: no .heic (a library's iPhone
# photos are not each a failure of the scan: a scan counts them apart, `left_out`, and says to convert them)
_EXIF_IFD = 0x8769
_DATETIME_ORIGINAL = 36867
_DATETIME = 306
_TILE = 112


def find_photos(folder: Path, suffixes: frozenset[str] = PHOTO_SUFFIXES) -> list[Path]:
    """Every photo under ``folder`` (recursive, by suffix, through linked folders too, each real
    folder once: a link to a parent is no loop; hidden files and folders left out), in path order."""
    return _walk(Path(folder), suffixes)[0]


def _walk(folder: Path, suffixes: frozenset[str]) -> tuple[list[Path], list[tuple[Path, str]]]:
    """The regular files under ``folder`` named with one of ``suffixes`` (as :func:`find_photos`),
    and the entries named so that are no file to read (a dangling link, a loop of links, a FIFO, a
    socket, a device), each with why (:func:`~faceatlas.engine.not_regular`): both in path order.
    Only an entry's metadata is read: a FIFO is never opened (reading one waits for a writer)."""
    if not folder.is_dir():
        raise InvalidImage(f"{folder}: not a folder")
    found: list[Path] = []
    others: list[tuple[Path, str]] = []
    visited: set[str] = set()
    for root, folders, files in os.walk(folder, followlinks=True):
        real = os.path.realpath(root)
        if real in visited:
            folders[:] = []
            continue
        visited.add(real)
        folders[:] = [name for name in folders if not is_hidden(name)]  # .thumbs/ and the like
        for name in files:
            if Path(name).suffix.lower() not in suffixes or is_hidden(name):
                continue
            path = Path(root, name)
            why = not_regular(path)
            if why is None:
                found.append(path)
            else:  # silently skipped before: a scan said nothing of them
                others.append((path, why))
    return sorted(found), sorted(others)


def list_photos(folder: Path) -> PhotoListing:
    """The photos a scan of ``folder`` adds (as :func:`find_photos`), the HEIC/HEIF photos it
    leaves out, and the entries named as photos that are no file to read (``unreadable``: a
    dangling link, a FIFO...; never opened), each with its source and why, as a scan reports a photo
    that does not decode; a folder that is not there is :class:`FileMissing`, one without any photo
    to add :class:`InvalidInput` (a wrong folder, not
    nothing new), said before any album is made or any progress is drawn (a scan of an empty
    folder made the album, fixing its pack, and drew "scanning 0/?" before its error)."""
    found, others = _walk(must_exist(folder, "folder"), PHOTO_SUFFIXES | HEIF_SUFFIXES)
    paths = [path for path in found if path.suffix.lower() not in HEIF_SUFFIXES]
    left_out = [str(path.resolve()) for path in found if path.suffix.lower() in HEIF_SUFFIXES]
    unreadable = [Rejection(_entry_source(path), InvalidImage.code, why) for path, why in others]
    if not paths:
        heif = (f" ({len(left_out)} HEIC/HEIF photos, which FaceAtlas does not decode: convert them to JPEG "
                "first)") if left_out else ""
        named = (f" ({len(unreadable)} entries named as photos are no files to read, e.g. {unreadable[0].source}: "
                 f"{others[0][1]})") if unreadable else ""
        raise InvalidInput(f"{folder}: no photos under this folder ({', '.join(sorted(PHOTO_SUFFIXES))})"
                           f"{heif}{named}")
    return PhotoListing(Path(folder), paths, left_out, unreadable)


def _entry_source(path: Path) -> str:
    """How a scan's report names an entry that is no file to read: its absolute path, not resolved
    (a dangling link resolves to the nothing it points at; a loop of links does not resolve), as
    text as :func:`source_of` makes it."""
    return os.fsencode(os.path.abspath(path)).decode("utf-8", "replace")


def source_of(path: Path) -> str:
    """The source an album keeps of ``path``: the resolved absolute path as text (one relative to
    the folder a scan ran in was read from wherever the album was used later: grey tiles), a name
    that is not UTF-8 with U+FFFD in place of its odd bytes (a database keeps UTF-8 text, and the
    scan was a traceback)."""
    return os.fsencode(Path(path).resolve()).decode("utf-8", "replace")


def read_photos(paths: Sequence[Path]) -> Iterator[tuple[str, bytes]]:
    """(source, bytes) of each path (its source: :func:`source_of`)."""
    for path in paths:
        yield source_of(path), path.read_bytes()


def is_photo_file(source: str) -> bool:
    """Whether ``source`` names a photo file that is there: an absolute path to a file (a path
    relative to where some earlier scan ran, as old albums hold, or an upload's ``upload``, is not)."""
    return os.path.isabs(source) and os.path.isfile(source)


def content_hash(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def taken_at(data: bytes) -> datetime | None:
    """When the photo was taken: EXIF DateTimeOriginal, else DateTime; None without EXIF."""
    try:
        with Image.open(io.BytesIO(data)) as image:
            exif = image.getexif()
            value = exif.get_ifd(_EXIF_IFD).get(_DATETIME_ORIGINAL) or exif.get(_DATETIME)
    except DECODER_ERRORS:
        return None
    if not isinstance(value, str):
        return None
    try:
        return datetime.strptime(value.strip("\x00 "), "%Y:%m:%d %H:%M:%S")
    except ValueError:
        return None


def contact_sheet(analyzer: FaceAnalyzer, faces: Sequence[tuple[str, list[float], str | None]], path: Path,
                  columns: int = 8) -> ContactSheet:
    """Write a PNG grid of the faces (source photo, box, the photo's content hash as scanned),
    each cropped with a margin. A photo that cannot be read (moved, deleted, a relative path of an
    old album, an upload) or whose content is not the one scanned (overwritten since: the box was
    cropped out of another picture, drawing another person) leaves a grey tile and is named in the
    result's ``unreadable`` (the sheet was silently grey, or wrong). ``None`` for a hash: not checked."""
    tiles = []
    unreadable: list[str] = []
    images: dict[str, np.ndarray | None] = {}  # the last photo read: a photo's faces are next to each other often
    for source, box, digest in faces:
        crop = np.empty((0, 0, 3), np.uint8)
        if source not in images:
            images = {source: _scanned_image(analyzer, source, digest)}
        image = images[source]
        if image is not None:
            x1, y1, x2, y2 = box
            margin = 0.25 * max(x2 - x1, y2 - y1)
            h, w = image.shape[:2]
            top, bottom = max(0, int(y1 - margin)), min(h, int(y2 + margin))
            crop = image[top:bottom, max(0, int(x1 - margin)):min(w, int(x2 + margin))]
        if crop.size:
            tiles.append(cv2.resize(crop, (_TILE, _TILE)))
        else:
            tiles.append(np.full((_TILE, _TILE, 3), 128, np.uint8))
            if source not in unreadable:
                unreadable.append(source)
    columns = max(1, min(columns, len(tiles) or 1))
    rows = max(1, -(-len(tiles) // columns))
    sheet = np.full((rows * _TILE, columns * _TILE, 3), 255, np.uint8)
    for n, tile in enumerate(tiles):
        r, c = divmod(n, columns)
        sheet[r * _TILE:(r + 1) * _TILE, c * _TILE:(c + 1) * _TILE] = tile
    written = save_image(path, sheet)  # a suffix no image format has is InvalidArgument (cv2.imwrite raised)
    return ContactSheet(written, len(tiles), unreadable)


def _scanned_image(analyzer: FaceAnalyzer, source: str, digest: str | None) -> np.ndarray | None:
    """The photo at ``source`` decoded, when it is a photo file holding the content scanned
    (``digest``), else None."""
    if not is_photo_file(source):
        return None
    try:
        data = Path(source).read_bytes()
    except OSError:  # unreadable (permissions), gone since
        return None
    if digest is not None and content_hash(data) != digest:
        return None
    try:
        return analyzer.load(data)
    except InvalidImage:
        return None
