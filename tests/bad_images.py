"""Images the decoders fail on, made from a real photo for the tests that need them."""

from __future__ import annotations

import io
from pathlib import Path

from PIL import Image


def corrupt_avif(photo: Path) -> bytes:
    """``photo`` saved as AVIF by PIL with its byte 81 set to 0: PIL's AVIF plugin raises
    RuntimeError ("Failed to decode image: Missing or empty image item") when it opens it."""
    out = io.BytesIO()
    Image.open(photo).convert("RGB").save(out, format="AVIF")
    data = bytearray(out.getvalue())
    data[81] = 0
    return bytes(data)
