"""The face engine: model packs, detection, alignment, embeddings, liveness, calibration."""

from faceatlas.engine.analyzer import FaceAnalyzer, Verdict
from faceatlas.engine.attributes import EMOTIONS, Attributes
from faceatlas.engine.calibration import (
    DEFAULT_FAR,
    DEFAULT_FPIR,
    IMPOSTORS_PER_FAR,
    STANDARD_FPIRS,
    Calibration,
    Cut,
    far_key,
    load_calibration,
    per_comparison_far,
    save_calibration,
    user_calibration_path,
)
from faceatlas.engine.dataset import DatasetReport, evaluate_dataset, plot_dataset
from faceatlas.engine.detections import Detections
from faceatlas.engine.draw import check_figure_path, draw_faces, save_image
from faceatlas.engine.evaluation import (
    LFWReport,
    evaluate_lfw,
    measuring_analyzer,
    plot_roc,
    save_user_calibration,
)
from faceatlas.engine.face import Embedding, Face, Pose, as_embedding, cosine_similarity
from faceatlas.engine.identification import IdentificationReport, identification_report
from faceatlas.engine.image import IMAGE_SUFFIXES, ImageInput, decode_image, decoded_pixels, encoded_pixels, load_image
from faceatlas.engine.liveness import REAL_THRESHOLD, LivenessResult
from faceatlas.engine.models import ModelFile, candidate_paths, fetch, locate, resolve, verify_sha256
from faceatlas.engine.packs import PACKS, RUNTIMES, Pack, Runtime, default_pack_name, get_pack
from faceatlas.engine.persons import PersonDetector
from faceatlas.engine.vectors import check_vectors, l2_normalize, top_k
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
    "IMAGE_SUFFIXES",
    "DEFAULT_FAR",
    "DEFAULT_FPIR",
    "EMOTIONS",
    "PACKS",
    "REAL_THRESHOLD",
    "RUNTIMES",
    "STANDARD_FPIRS",
    "Attributes",
    "Calibration",
    "Cut",
    "DatasetReport",
    "Detections",
    "Embedding",
    "EmptyImage",
    "Face",
    "FaceAnalyzer",
    "IMPOSTORS_PER_FAR",
    "FaceAtlasError",
    "IdentificationReport",
    "FarNotCalibrated",
    "ImageInput",
    "ImageTooLarge",
    "InvalidImage",
    "LFWReport",
    "LivenessResult",
    "ModelFile",
    "ModelMismatch",
    "ModelMissing",
    "NoFace",
    "NotCalibrated",
    "Pack",
    "PersonDetector",
    "Pose",
    "Runtime",
    "TooManyFaces",
    "TruncatedImage",
    "UnknownPack",
    "Verdict",
    "as_embedding",
    "candidate_paths",
    "check_figure_path",
    "check_vectors",
    "cosine_similarity",
    "decode_image",
    "decoded_pixels",
    "default_pack_name",
    "draw_faces",
    "encoded_pixels",
    "evaluate_dataset",
    "evaluate_lfw",
    "far_key",
    "fetch",
    "get_pack",
    "identification_report",
    "load_calibration",
    "per_comparison_far",
    "l2_normalize",
    "load_image",
    "measuring_analyzer",
    "locate",
    "plot_dataset",
    "plot_roc",
    "resolve",
    "save_calibration",
    "save_image",
    "save_user_calibration",
    "top_k",
    "user_calibration_path",
    "verify_sha256",
]
