"""AR face effects on MediaPipe Face Mesh (478 landmarks, several faces): One Euro filtered
landmarks per face track, head pose, and effects (stickers, skin smoothing, face warps,
background blur or replacement) on video or one image.

Needs the optional extra: ``pip install 'faceatlas[ar]'``.
"""

from faceatlas.apps.ar.config import ArConfig
from faceatlas.apps.ar.effects import EFFECTS, Background, Effect, Smooth, Sticker, make_effects
from faceatlas.apps.ar.run import IMAGE_FORMATS, MAX_EFFECTS, ArSession, apply_effects, run_ar
from faceatlas.apps.ar.stickers import PLACES, StickerArt
from faceatlas.apps.ar.tracking import ArFace, FaceTracker, OneEuroFilter
from faceatlas.apps.ar.warp import Warp

__all__ = [
    "EFFECTS",
    "IMAGE_FORMATS",
    "MAX_EFFECTS",
    "PLACES",
    "ArConfig",
    "ArFace",
    "ArSession",
    "Background",
    "Effect",
    "FaceTracker",
    "OneEuroFilter",
    "Smooth",
    "Sticker",
    "StickerArt",
    "Warp",
    "apply_effects",
    "make_effects",
    "run_ar",
]
