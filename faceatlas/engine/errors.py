"""Typed errors of the engine. Each carries a stable ``code`` that the service layer maps to HTTP."""

from __future__ import annotations


class FaceAtlasError(Exception):
    """Base class of every error FaceAtlas raises on purpose."""

    code = "error"


class InvalidImage(FaceAtlasError):
    """The input is not an image FaceAtlas can decode."""

    code = "invalid_image"


class EmptyImage(InvalidImage):
    """The input has zero bytes or zero pixels."""

    code = "empty_image"


class TruncatedImage(InvalidImage):
    """The image header is valid but the pixel data ends early."""

    code = "truncated_image"


class ImageTooLarge(InvalidImage):
    """The image has more pixels than the configured limit (checked before decoding)."""

    code = "image_too_large"


class NoFace(FaceAtlasError):
    """An operation that needs a face found none."""

    code = "no_face"


class TooManyFaces(FaceAtlasError):
    """An operation that needs exactly one face found several."""

    code = "too_many_faces"


class ModelMissing(FaceAtlasError):
    """A model file is not on disk and could not be downloaded."""

    code = "model_missing"


class ModelIntegrityError(FaceAtlasError):
    """A model file on disk or downloaded does not match its published sha256."""

    code = "model_integrity"


class UnknownPack(FaceAtlasError):
    """No model pack has the requested name."""

    code = "unknown_pack"


class ModelMismatch(FaceAtlasError):
    """Embeddings of two different models were mixed."""

    code = "model_mismatch"


class NotCalibrated(FaceAtlasError):
    """A FAR-based threshold was asked of a pack that has no calibration."""

    code = "not_calibrated"
