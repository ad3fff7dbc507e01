"""Errors of the gallery layer (each with a stable ``code``, like the engine's)."""

from __future__ import annotations

from faceatlas.engine import FaceAtlasError


class NotFound(FaceAtlasError):
    """A collection, subject or face does not exist for this tenant."""

    code = "not_found"


class AlreadyExists(FaceAtlasError):
    """A collection or subject with this name or external id already exists."""

    code = "already_exists"
