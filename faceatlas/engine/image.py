"""Turn any supported input (path, bytes, numpy array, PIL image) into a BGR uint8 array.

The pixel limit is checked from the header, before any pixel is decoded, so a 100-megapixel
upload costs nothing but its header read.
"""

from __future__ import annotations

import errno
import io
import math
import os
import stat
import struct
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Literal

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError, features

from faceatlas.errors import EmptyImage, FileMissing, ImageTooLarge, InvalidImage, TruncatedImage
from faceatlas.settings import EngineSettings

ImageInput = str | os.PathLike | bytes | bytearray | memoryview | np.ndarray | Image.Image
ChannelOrder = Literal["bgr", "rgb"]
# The photo files :func:`decode_image` decodes, by suffix: the one list every walk of a folder for
# photos takes (detect, liveness and gallery enrol on a folder, eval folder, album scan, batch jobs);
# .avif where this Pillow decodes it. A walk that left out .avif, .gif and .jfif skipped files that
# decode when named.
IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".jfif", ".png", ".bmp", ".webp", ".tif", ".tiff", ".gif"}
                           | ({".avif"} if features.check_module("avif") else set()))
# HEIC/HEIF (iPhone photos) is not among them: nothing here decodes it (no pillow-heif); one given is
# refused saying so. A walk of a folder for the commands that report each file (detect, liveness,
# gallery enrol, eval folder) takes them too (:func:`walked_image`), so that each is refused saying
# so, as when named, rather than skipped without a word.
HEIF_SUFFIXES = frozenset({".heic", ".heif"})
_HEIF_BRANDS = frozenset({b"heic", b"heix", b"hevc", b"hevx", b"heim", b"heis", b"hevm", b"hevs", b"mif1", b"msf1"})
# What Pillow's decoders raise for data they cannot decode: OSError (its decoders' errors,
# UnidentifiedImageError), SyntaxError and struct.error (a bad header or chunk), ValueError,
# EOFError (a frame that ends early) and RuntimeError (the AVIF plugin's libavif: "Failed to decode
# image: Missing or empty image item"). An error of another kind (TypeError, AttributeError, ...) is a
# fault of this code and is not taken for a bad image.
DECODER_ERRORS: tuple[type[Exception], ...] = (OSError, SyntaxError, ValueError, EOFError, RuntimeError, struct.error)


def walked_image(path: str | os.PathLike[str]) -> bool:
    """Whether a folder walk for photos to report on one by one takes the file ``path``, by suffix:
    an image :func:`decode_image` decodes (:data:`IMAGE_SUFFIXES`), or a HEIC/HEIF photo, so that it
    is reported (convert it to JPEG) rather than skipped silently."""
    suffix = Path(path).suffix.lower()
    return suffix in IMAGE_SUFFIXES or suffix in HEIF_SUFFIXES


def walked_entry(path: Path) -> bool:
    """Whether a folder walk for photos to report on one by one (detect, liveness, gallery enrol,
    eval folder) takes the entry ``path`` of the folder: not hidden (:func:`is_hidden`), named as a
    photo (:func:`walked_image`) and not a folder (links followed). A regular file, and also an
    entry named so that is none: a dangling link, a FIFO, a socket or a device, so that it is
    reported ("a dangling link", "not a regular file") as a file that does not decode is, rather than
    skipped without a word. Only its metadata is read (a FIFO is never opened: that waited forever
    for a writer)."""
    return not is_hidden(path.name) and walked_image(path) and not path.is_dir()


def images_in(folder: Path) -> list[Path]:
    """The entries directly in ``folder`` a walk for photos takes (:func:`walked_entry`), sorted."""
    return sorted(p for p in Path(folder).iterdir() if walked_entry(p))


NO_SUCH_FILE = "no such file"  # what :func:`not_regular` says of a path with nothing there


def must_exist(path: str | os.PathLike[str], what: str = "file or folder") -> Path:
    """``path`` as a :class:`~pathlib.Path` when something is there (a file, a folder, a FIFO, a
    dangling link: what it is, and whether it reads, is its reader's to say, :func:`not_regular`);
    :class:`FileMissing` otherwise, ``PATH: no such WHAT``. The one check of every path a command is
    given to read, so that a script tells "the file named is not there" by one code,
    ``file_not_found``, whatever the command."""
    found = Path(path)
    if not os.path.lexists(found):
        raise FileMissing(f"{found}: no such {what}")
    return found


def not_regular(path: Path, what: str = "an image file") -> str | None:
    """Why ``path`` is no file to read ``what`` from, from its metadata alone (nothing opened): a
    folder, a dangling link, a loop of links, a FIFO, a socket or a device ("not a regular
    file"), no such file; None for a regular file (or a link to one)."""
    try:
        mode = path.stat().st_mode
    except OSError as exc:
        if path.is_symlink() and exc.errno == errno.ELOOP:  # a link to itself, or links around a circle
            return f"a loop of links (to {os.readlink(path)}, nothing there to read): not {what}"
        if path.is_symlink():  # to nothing
            return f"a dangling link (to {os.readlink(path)}, nothing there to read): not {what}"
        return "cannot be read (permission denied)" if isinstance(exc, PermissionError) else NO_SUCH_FILE
    if stat.S_ISREG(mode):
        return None
    if stat.S_ISDIR(mode):
        return f"a folder, not {what}"
    kind = ("a FIFO (named pipe)" if stat.S_ISFIFO(mode) else "a socket" if stat.S_ISSOCK(mode)
            else "a device" if stat.S_ISCHR(mode) or stat.S_ISBLK(mode) else "a special file")
    return f"not a regular file but {kind}: not read"



def is_hidden(relative: str | os.PathLike[str]) -> bool:
    """Whether a path under a folder walked for images (given relative to that folder) is hidden:
    a part of it starts with a dot (``.thumbs/``, ``.DS_Store``, macOS's ``._IMG_1.jpg``). Every walk
    of a folder for photos (gallery enrol, eval folder, album scan, batch jobs, a folder given to
    detect) leaves them out: ``gallery enrol`` made ``.thumbs`` a subject, ``eval folder`` an identity."""
    return any(part.startswith(".") and part not in (".", "..") for part in Path(relative).parts)


# FaceAtlas enforces its own (configurable) limit; PIL's bomb check would fire with another message.
Image.MAX_IMAGE_PIXELS = None


def load_image(source: ImageInput, *, channels: ChannelOrder = "bgr", max_pixels: int | None = None,
               min_side: int | None = None) -> np.ndarray:
    """Decode ``source`` to an HxWx3 BGR uint8 array, EXIF orientation applied.

    ``channels`` states the channel order of a numpy input (ignored for other inputs).
    ``min_side``: an encoded image is decoded reduced by the largest integer factor that keeps its
    longer side at least this (see :func:`decode_image`); full size without it.
    Raises :class:`InvalidImage` (or a subclass) with a message saying what is wrong.
    """
    return decode_image(source, channels=channels, max_pixels=max_pixels, min_side=min_side)[0]


def encoded_pixels(data: bytes) -> int:
    """Width x height of an encoded image from its header alone (0 when it has none that PIL
    reads: decoding will say what is wrong)."""
    try:
        with Image.open(io.BytesIO(data)) as pil:
            return int(pil.width) * int(pil.height)
    except DECODER_ERRORS:
        return 0


def reduction_factor(width: int, height: int, work_pixels: int | None) -> int:
    """The smallest integer factor that brings ``width`` x ``height`` to at most ``work_pixels``."""
    if work_pixels is None or width * height <= work_pixels:
        return 1
    return math.ceil(math.sqrt(width * height / work_pixels))


def side_factor(width: int, height: int, min_side: int | None) -> int:
    """The largest integer factor that keeps the longer side of ``width`` x ``height`` at least ``min_side``."""
    if min_side is None:
        return 1
    return max(1, max(width, height) // min_side)


def decode_image(source: ImageInput, *, channels: ChannelOrder = "bgr", max_pixels: int | None = None,
                 work_pixels: int | None = None, min_side: int | None = None) -> tuple[np.ndarray, float]:
    """Like :func:`load_image`, but an encoded image of more than ``work_pixels`` is reduced by an
    integer factor, chosen from the header and applied while decoding: a JPEG decodes at 1/2, 1/4
    or 1/8 scale in the codec; another format is reduced right after decoding, before any
    conversion copies it. Returns the array and the factor (multiply its coordinates by it to
    get the original's). Arrays and PIL images are never reduced (factor 1).

    ``min_side`` (instead of ``work_pixels``): reduce by the largest integer factor that keeps the
    longer side at least ``min_side`` (for a caller that shrinks to that side anyway)."""
    limit = EngineSettings().max_pixels if max_pixels is None else max_pixels
    if isinstance(source, np.ndarray):
        return _from_array(source, channels, limit), 1.0
    if isinstance(source, Image.Image):
        _check_pixels(source.width, source.height, limit)
        return _from_pil(source), 1.0
    pil, name = _open(source)
    _check_pixels(pil.width, pil.height, limit, name)
    width, (factor, at_least) = pil.width, _plan(pil, work_pixels, min_side, name)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            pil.load()
            decoded = round(width / pil.width)  # what the codec reduced already (JPEG draft: 1, 2, 4 or 8)
            rest = factor // decoded if at_least else math.ceil(factor / decoded)
            if rest > 1:
                pil = _reducible(pil).reduce(rest)
            return _from_pil(pil), width / pil.width
    except DECODER_ERRORS as exc:
        raise _decode_error(name, exc) from exc


def _reducible(pil: Image.Image) -> Image.Image:
    """``pil`` in a mode :meth:`PIL.Image.Image.reduce` averages right: a palette image (P, PA) in
    RGB(A) (its indices are no values to average), a bilevel one (1) in L, a 16-bit one (I;16...)
    in I; :func:`_from_pil` converts them so anyway. ``reduce`` refused P, 1 and I;16 ("image has
    wrong mode"): such an image above ``work_pixels`` was refused by the API, not the CLI."""
    if pil.mode in ("P", "PA"):
        return pil.convert("RGBA" if pil.mode == "PA" or "transparency" in pil.info else "RGB")
    if pil.mode == "1":
        return pil.convert("L")
    if pil.mode.startswith("I;16"):
        return pil.convert("I")
    return pil


def decoded_pixels(source: ImageInput, *, max_pixels: int | None = None, work_pixels: int | None = None,
                   min_side: int | None = None) -> int:
    """The pixels the codec produces when :func:`decode_image` decodes ``source`` with these
    options, from the header alone (a JPEG at its 1/2, 1/4 or 1/8 draft scale, another format at
    full size): what decoding it costs. Refuses from the header as :func:`decode_image` does
    (:class:`ImageTooLarge` above ``max_pixels``, :class:`EmptyImage`, not an image); 0 for an
    array or a PIL image (already decoded)."""
    if isinstance(source, (np.ndarray, Image.Image)):
        return 0
    pil, name = _open(source)
    with pil:
        _check_pixels(pil.width, pil.height, EngineSettings().max_pixels if max_pixels is None else max_pixels, name)
        _plan(pil, work_pixels, min_side, name)
        return int(pil.width) * int(pil.height)


def _open(source: ImageInput) -> tuple[Image.Image, str]:
    """An encoded image (bytes or a path) opened: its header read, no pixel decoded."""
    if isinstance(source, (bytes, bytearray, memoryview)):
        data, name = bytes(source), ""  # an upload: its caller names it (a file, a form field)
    elif isinstance(source, (str, os.PathLike)):
        path = Path(source)
        why = not_regular(path)
        if why is not None:  # a FIFO is not opened (reading one waited forever for a writer)
            raise (FileMissing if why == NO_SUCH_FILE else InvalidImage)(f"{path}: {why}")
        data, name = path.read_bytes(), str(path)
    else:
        raise InvalidImage(f"unsupported image input of type {type(source).__name__}")
    if not data:
        raise EmptyImage(_named(name, "the file is empty (0 bytes)"))
    try:
        return Image.open(io.BytesIO(data)), name
    except UnidentifiedImageError as exc:
        if _is_heic(data, name):  # an iPhone's photo: say what to do, not "unrecognised"
            raise InvalidImage(_named(name, "a HEIC/HEIF photo, which FaceAtlas does not decode: convert it to "
                                            "JPEG (or PNG) first")) from exc
        raise InvalidImage(_named(name, "not an image (unrecognised format)")) from exc
    except DECODER_ERRORS as exc:  # a corrupt AVIF: RuntimeError from libavif when its header is read
        raise _decode_error(name, exc) from exc


def _is_heic(data: bytes, name: str) -> bool:
    """Whether undecodable ``data`` is a HEIC/HEIF image: an ISO-BMFF ``ftyp`` box of a HEIF
    brand, or a ``.heic``/``.heif`` file name."""
    return (data[4:8] == b"ftyp" and data[8:12] in _HEIF_BRANDS) or Path(name).suffix.lower() in HEIF_SUFFIXES

def _plan(pil: Image.Image, work_pixels: int | None, min_side: int | None, name: str) -> tuple[int, bool]:
    """The reduction factor of an opened image (and whether it is a floor: the result keeps at
    least ``min_side``); a JPEG's codec is set to decode at the largest draft scale within it."""
    if min_side is not None:
        factor, at_least = side_factor(pil.width, pil.height, min_side), True
    else:
        factor, at_least = reduction_factor(pil.width, pil.height, work_pixels), False
    if factor > 1 and pil.format == "JPEG":
        try:
            pil.draft(pil.mode, (math.ceil(pil.width / factor), math.ceil(pil.height / factor)))
        except DECODER_ERRORS as exc:
            raise _decode_error(name, exc) from exc
    return factor, at_least


def _named(name: str, text: str) -> str:
    """``text`` about the image ``name`` (a file's path), or alone for bytes (whose caller names them)."""
    return f"{name}: {text}" if name else text


def _decode_error(name: str, exc: Exception) -> InvalidImage:
    text = str(exc).lower()
    if "truncated" in text or "broken data stream" in text:  # PIL's words add nothing to these
        return TruncatedImage(_named(name, "the image data is truncated (the file was cut short)"))
    return InvalidImage(_named(name, f"the image could not be decoded ({exc})"))


def _check_pixels(width: int, height: int, limit: int, name: str = "") -> None:
    if width <= 0 or height <= 0:
        raise EmptyImage(_named(name, f"the image has no pixels ({width}x{height})"))
    if width * height > limit:  # the setting is named to whoever runs the engine (a path: the CLI's user)
        raise ImageTooLarge(_named(
            name, f"{width}x{height} = {_megapixels(width * height)} is more than the {_megapixels(limit)} "
            "an image may have" + (" (set FACEATLAS_MAX_PIXELS to raise it)" if name else "")))


def _megapixels(pixels: int) -> str:
    """``pixels`` as people read them: "12.3 MP", or the count below a tenth of one ("0.0 MP" said nothing)."""
    return f"{pixels / 1e6:.1f} MP" if pixels >= 100_000 else f"{pixels:,} pixels"


def display_upright(image: np.ndarray, rotation: float | None) -> np.ndarray:
    """A video frame as a player shows it: ``image`` turned by ``rotation``, the degrees its
    display matrix turns it counterclockwise (PyAV's ``VideoFrame.rotation``; -90 for a phone's
    portrait video stored sideways), to the nearest quarter turn, as EXIF orientation is for a
    photo. Phones store portrait video sideways with that flag; frames read without it were
    sideways (KYC refused genuine selfies as ``low_quality``; watch, drive and AR saw no face)."""
    turns = round((rotation or 0) / 90) % 4
    return image if turns == 0 else np.ascontiguousarray(np.rot90(image, turns))


def _from_pil(pil: Image.Image) -> np.ndarray:
    pil = ImageOps.exif_transpose(pil)
    if pil.mode in ("I;16", "I;16B", "I;16L", "I"):
        array = np.asarray(pil, dtype=np.float64)
        return _from_array(array, "rgb", None)
    if pil.mode in ("RGBA", "LA", "PA") or (pil.mode == "P" and "transparency" in pil.info):
        rgba = pil.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        pil = Image.alpha_composite(background, rgba)
    rgb = np.asarray(pil.convert("RGB"))
    return np.ascontiguousarray(rgb[:, :, ::-1])


def _from_array(array: np.ndarray, channels: ChannelOrder, limit: int | None) -> np.ndarray:
    if array.ndim not in (2, 3) or (array.ndim == 3 and array.shape[2] not in (1, 3, 4)):
        raise InvalidImage(f"an image array must be HxW, HxWx1, HxWx3 or HxWx4, got {array.shape}")
    if array.size == 0:
        raise EmptyImage(f"the image array is empty {array.shape}")
    if limit is not None:
        _check_pixels(array.shape[1], array.shape[0], limit)
    if array.dtype != np.uint8:
        array = _to_uint8(array)
    if array.ndim == 2:
        array = array[:, :, None]
    if array.shape[2] == 1:
        return np.ascontiguousarray(np.repeat(array, 3, axis=2))
    if array.shape[2] == 4:
        array = array[:, :, :3]
    if channels == "rgb":
        array = array[:, :, ::-1]
    return np.ascontiguousarray(array)


def _to_uint8(array: np.ndarray) -> np.ndarray:
    if np.issubdtype(array.dtype, np.floating) and float(np.nanmax(array)) <= 1.0:
        return np.clip(array * 255.0 + 0.5, 0, 255).astype(np.uint8)
    top = float(array.max())
    scale = 255.0 / 65535.0 if top > 255 else 1.0
    return np.clip(array * scale + 0.5, 0, 255).astype(np.uint8)


def network_input(images: Sequence[np.ndarray], mean: float, scale: float,
                  height: int | None = None, width: int | None = None) -> np.ndarray:
    """The NCHW RGB float32 input of BGR uint8 images: ``(pixel - mean) * scale``, the float
    ``cv2.dnn.blobFromImages(images, scale, (width, height), (mean,) * 3, swapRB=True)`` gives.

    Each image sits at the top-left of a ``height`` x ``width`` plane (default: its own size)
    whose rest is black (0 before normalisation), so a detector's padded input needs no canvas
    copy. One strided copy per channel plane: 0.51-0.64 ms for a group photo's 640-side input
    against 0.60-0.74 ms for the canvas and ``blobFromImage`` (bench/engine_throughput.py)."""
    if len(images) == 0:
        raise ValueError("network_input needs at least one image")
    height = height or images[0].shape[0]
    width = width or images[0].shape[1]
    blob = np.zeros((len(images), 3, height, width), np.float32)
    for i, image in enumerate(images):
        rows, cols = image.shape[:2]
        if rows > height or cols > width:
            raise ValueError(f"a {cols}x{rows} image does not fit a {width}x{height} input")
        for channel in range(3):
            blob[i, 2 - channel, :rows, :cols] = image[:, :, channel]
    blob -= np.float32(mean)
    blob *= np.float32(scale)
    return blob
