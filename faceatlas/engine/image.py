"""Turn any supported input (path, bytes, numpy array, PIL image) into a BGR uint8 array.

The pixel limit is checked from the header, before any pixel is decoded, so a 100-megapixel
upload costs nothing but its header read.
"""

from __future__ import annotations

import io
import os
import warnings
from pathlib import Path
from typing import Literal

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from faceatlas.errors import EmptyImage, ImageTooLarge, InvalidImage, TruncatedImage
from faceatlas.settings import EngineSettings

ImageInput = str | os.PathLike | bytes | bytearray | memoryview | np.ndarray | Image.Image
ChannelOrder = Literal["bgr", "rgb"]

# FaceAtlas enforces its own (configurable) limit; PIL's bomb check would fire with another message.
Image.MAX_IMAGE_PIXELS = None


def load_image(source: ImageInput, *, channels: ChannelOrder = "bgr", max_pixels: int | None = None) -> np.ndarray:
    """Decode ``source`` to an HxWx3 BGR uint8 array, EXIF orientation applied.

    ``channels`` states the channel order of a numpy input (ignored for other inputs).
    Raises :class:`InvalidImage` (or a subclass) with a message saying what is wrong.
    """
    limit = EngineSettings().max_pixels if max_pixels is None else max_pixels
    if isinstance(source, np.ndarray):
        return _from_array(source, channels, limit)
    if isinstance(source, Image.Image):
        _check_pixels(source.width, source.height, limit)
        return _from_pil(source)
    if isinstance(source, (bytes, bytearray, memoryview)):
        data, name = bytes(source), "<bytes>"
    elif isinstance(source, (str, os.PathLike)):
        path = Path(source)
        if not path.is_file():
            raise InvalidImage(f"{path}: no such file")
        data, name = path.read_bytes(), str(path)
    else:
        raise InvalidImage(f"unsupported image input of type {type(source).__name__}")
    if not data:
        raise EmptyImage(f"{name}: the file is empty (0 bytes)")
    try:
        pil = Image.open(io.BytesIO(data))
    except UnidentifiedImageError as exc:
        raise InvalidImage(f"{name}: not an image (unrecognised format)") from exc
    except (OSError, SyntaxError, ValueError) as exc:
        raise _decode_error(name, exc) from exc
    _check_pixels(pil.width, pil.height, limit, name)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            pil.load()
            return _from_pil(pil)
    except (OSError, SyntaxError, ValueError) as exc:
        raise _decode_error(name, exc) from exc


def _decode_error(name: str, exc: Exception) -> InvalidImage:
    text = str(exc).lower()
    if "truncated" in text or "broken data stream" in text:
        return TruncatedImage(f"{name}: the image data is truncated ({exc})")
    return InvalidImage(f"{name}: the image could not be decoded ({exc})")


def _check_pixels(width: int, height: int, limit: int, name: str = "<image>") -> None:
    if width <= 0 or height <= 0:
        raise EmptyImage(f"{name}: the image has no pixels ({width}x{height})")
    if width * height > limit:
        raise ImageTooLarge(
            f"{name}: {width}x{height} = {width * height / 1e6:.1f} MP exceeds the limit of "
            f"{limit / 1e6:.1f} MP (set FACEATLAS_MAX_PIXELS to raise it)"
        )


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
