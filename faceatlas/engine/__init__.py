"""The face engine: model packs, detection, alignment, embeddings, liveness, calibration."""

from faceatlas.engine.analyzer import FaceAnalyzer, Verdict
from faceatlas.engine.calibration import Calibration, load_calibration
from faceatlas.engine.detectors import Detections
from faceatlas.engine.face import Face, Pose, cosine_similarity
from faceatlas.engine.image import load_image
from faceatlas.engine.liveness import LivenessResult
from faceatlas.engine.packs import PACKS, Pack, get_pack
from faceatlas.errors import (
    EmptyImage,
    FaceAtlasError,
    ImageTooLarge,
    InvalidImage,
    ModelMismatch,
    ModelMissing,
    NoFace,
    NotCalibrated,
    TooManyFaces,
    TruncatedImage,
    UnknownPack,
)

__all__ = [
    "PACKS",
    "Calibration",
    "Detections",
    "EmptyImage",
    "Face",
    "FaceAnalyzer",
    "FaceAtlasError",
    "ImageTooLarge",
    "InvalidImage",
    "LivenessResult",
    "ModelMismatch",
    "ModelMissing",
    "NoFace",
    "NotCalibrated",
    "Pack",
    "Pose",
    "TooManyFaces",
    "TruncatedImage",
    "UnknownPack",
    "Verdict",
    "cosine_similarity",
    "get_pack",
    "load_calibration",
    "load_image",
]
