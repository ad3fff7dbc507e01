"""The face engine: model packs, detection, alignment, embeddings, liveness, calibration."""

from faceatlas.engine.analyzer import FaceAnalyzer, Verdict
from faceatlas.engine.calibration import DEFAULT_FAR, Calibration, load_calibration
from faceatlas.engine.detectors import Detections
from faceatlas.engine.face import Embedding, Face, Pose, as_embedding, cosine_similarity
from faceatlas.engine.image import load_image
from faceatlas.engine.liveness import REAL_THRESHOLD, LivenessResult
from faceatlas.engine.packs import PACKS, Pack, get_pack
from faceatlas.errors import (
    EmptyImage,
    FaceAtlasError,
    FarNotCalibrated,
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
    "DEFAULT_FAR",
    "PACKS",
    "REAL_THRESHOLD",
    "Calibration",
    "Detections",
    "Embedding",
    "EmptyImage",
    "FarNotCalibrated",
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
    "as_embedding",
    "Verdict",
    "cosine_similarity",
    "get_pack",
    "load_calibration",
    "load_image",
]
