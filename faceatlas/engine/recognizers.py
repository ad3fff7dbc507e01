"""Face recognisers: ArcFace-style ONNX models (112x112 template) and dlib's ResNet (run by dlib, or
converted to ONNX on dlib's own chips)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Protocol

import cv2
import numpy as np

from faceatlas.engine.detections import Detections
from faceatlas.engine.dlib_onnx import CHIP_SIZE
from faceatlas.engine.geometry import align_face
from faceatlas.engine.models import loading, parse_onnx
from faceatlas.engine.runtime import Provider, create_session
from faceatlas.engine.vectors import l2_normalize
from faceatlas.errors import InvalidArgument


class Recognizer(Protocol):
    crop_size: int
    embedding_size: int

    def align(self, image: np.ndarray, detections: Detections, index: int) -> np.ndarray:
        """The aligned crop (BGR) of face ``index``."""
        ...

    def embed_aligned(self, crops: Sequence[np.ndarray] | np.ndarray) -> np.ndarray:
        """L2-normalised embeddings (N x D float32) of aligned BGR crops."""
        ...


def embed_with_mirror(recognizer: Recognizer, crops: Sequence[np.ndarray] | np.ndarray) -> np.ndarray:
    """Flip test-time augmentation: each aligned crop and its horizontal mirror embedded in one
    batch, the vector the L2-normalised sum of the two (bench/templates.py measured it on LFW)."""
    if len(crops) == 0:
        return np.zeros((0, recognizer.embedding_size), np.float32)
    plain = list(crops)
    vectors = recognizer.embed_aligned(plain + [np.ascontiguousarray(c[:, ::-1]) for c in plain])
    return l2_normalize(vectors[: len(plain)] + vectors[len(plain) :])


def dynamic_batch_model(path: Path) -> bytes | Path:
    """The model with its batch dimension made dynamic when it was exported fixed at 1.

    Many recognisers (the shared MobileFaceNet among them) are exported with input ``[1,3,112,112]``
    and a ``Reshape`` to ``[1, -1]``; both are rewritten so that N crops go through in one call.
    Models that already accept any batch are returned unchanged (as their path).
    """
    from onnx import numpy_helper

    model = parse_onnx(path)
    batch = model.graph.input[0].type.tensor_type.shape.dim[0]
    if batch.dim_param or batch.dim_value != 1:
        return path
    constants = {n.output[0]: n for n in model.graph.node if n.op_type == "Constant"}
    initializers = {t.name: t for t in model.graph.initializer}
    for node in model.graph.node:
        if node.op_type != "Reshape":
            continue
        if node.input[1] in constants:
            tensor = constants[node.input[1]].attribute[0].t
        elif node.input[1] in initializers:
            tensor = initializers[node.input[1]]
        else:
            continue
        shape = numpy_helper.to_array(tensor).copy()
        if shape.ndim == 1 and len(shape) >= 1 and shape[0] == 1:
            shape[0] = 0  # 0 = copy the batch dimension from the input
            tensor.CopyFrom(numpy_helper.from_array(shape, tensor.name))
    for value in (*model.graph.input[:1], *model.graph.output):
        value.type.tensor_type.shape.dim[0].dim_param = "N"
    return model.SerializeToString()


def arcface_blob(crops: Sequence[np.ndarray] | np.ndarray, size: int, mean: float, std: float) -> np.ndarray:
    """The NCHW RGB float input of aligned BGR crops: ``(pixel - mean) / std``."""
    return cv2.dnn.blobFromImages(list(crops), 1.0 / std, (size, size), (mean,) * 3, swapRB=True)


class ArcFaceONNX:
    """Any 112x112-template ONNX recogniser (InsightFace w600k/glintr100, MobileFaceNet, SFace)."""

    crop_size = 112

    def __init__(
        self,
        model: Path,
        embedding_size: int,
        input_mean: float = 127.5,
        input_std: float = 127.5,
        providers: Sequence[str] | None = None,
        threads: int | None = None,
        provider: Provider = "onnxruntime",
    ) -> None:
        with loading(model):  # the session of the rewritten bytes: a failure names the file
            self.session = create_session(dynamic_batch_model(model), providers, threads, provider)
        self.input_name = self.session.get_inputs()[0].name
        self.embedding_size = embedding_size
        self.input_mean = input_mean
        self.input_std = input_std
        batch_dim = self.session.get_inputs()[0].shape[0]
        self.max_batch = batch_dim if isinstance(batch_dim, int) and batch_dim > 0 else 64

    def align(self, image: np.ndarray, detections: Detections, index: int) -> np.ndarray:
        keypoints = detections.keypoints
        if keypoints is None:
            raise InvalidArgument("alignment needs the 5 keypoints of a face detector")
        return align_face(image, keypoints[index], self.crop_size)

    def embed_aligned(self, crops: Sequence[np.ndarray] | np.ndarray) -> np.ndarray:
        if len(crops) == 0:
            return np.zeros((0, self.embedding_size), np.float32)
        blob = arcface_blob(crops, self.crop_size, self.input_mean, self.input_std)
        parts = [
            self.session.run(None, {self.input_name: blob[i : i + self.max_batch]})[0]
            for i in range(0, len(blob), self.max_batch)
        ]
        return l2_normalize(np.concatenate(parts).reshape(len(blob), -1))


class FusedRecognizer:
    """Several recognisers of the same aligned crop as one (score-level fusion): each one's
    embedding L2-normalised, scaled by 1/sqrt(n) and joined, so the joined vector has unit length
    and the cosine of two of them is the mean of the recognisers' cosines. Galleries, indexes and
    calibrations use it unchanged, as one embedding space."""

    def __init__(self, parts: Sequence[Recognizer]) -> None:
        if len({part.crop_size for part in parts}) != 1:
            raise InvalidArgument("only recognisers of the same crop size fuse")
        self.parts = list(parts)
        self.crop_size = self.parts[0].crop_size
        self.embedding_size = sum(part.embedding_size for part in self.parts)

    def align(self, image: np.ndarray, detections: Detections, index: int) -> np.ndarray:
        return self.parts[0].align(image, detections, index)

    def embed_aligned(self, crops: Sequence[np.ndarray] | np.ndarray) -> np.ndarray:
        if len(crops) == 0:
            return np.zeros((0, self.embedding_size), np.float32)
        joined = np.hstack([part.embed_aligned(crops) for part in self.parts]) / np.sqrt(len(self.parts))
        return joined.astype(np.float32)


class DlibResNet:
    """dlib's ResNet-29 recogniser on its own 150x150 face chips (aligned by dlib)."""

    crop_size = 150
    embedding_size = 128

    def __init__(self, model: Path) -> None:
        import dlib

        self._dlib = dlib
        with loading(model):
            self._net = dlib.face_recognition_model_v1(str(model))

    def align(self, image: np.ndarray, detections: Detections, index: int) -> np.ndarray:
        dlib = self._dlib
        points = detections.landmarks[index] if detections.landmarks is not None else None
        if points is None:
            raise InvalidArgument("the dlib recognizer needs dlib's 5 landmarks")
        box = detections.boxes[index]
        rect = dlib.rectangle(*(int(round(v)) for v in box))
        shape = dlib.full_object_detection(rect, [dlib.point(int(round(x)), int(round(y))) for x, y in points])
        rgb = np.ascontiguousarray(image[:, :, ::-1])
        chip = dlib.get_face_chip(rgb, shape, size=self.crop_size, padding=0.25)
        return np.ascontiguousarray(chip[:, :, ::-1])

    def embed_aligned(self, crops: Sequence[np.ndarray] | np.ndarray) -> np.ndarray:
        if len(crops) == 0:
            return np.zeros((0, self.embedding_size), np.float32)
        chips = [np.ascontiguousarray(c[:, :, ::-1]) for c in crops]
        vectors = self._net.compute_face_descriptor(chips)
        return l2_normalize(np.array([np.asarray(v) for v in vectors], dtype=np.float32))


# Where dlib's HOG detector puts its box, relative to YuNet's on the same face (centre shift and size,
# in units of YuNet's width and height): the median over 334 LFW faces both find alone
# (bench/dlib_onnx_alignment.py). dlib's 5-point predictor was trained on dlib's boxes.
YUNET_TO_DLIB_BOX = (-0.0301, 0.0322, 1.1180, 0.8449)


class DlibChipONNX(ArcFaceONNX):
    """dlib's ResNet converted to ONNX (``engine.dlib_onnx``) on dlib's own 150x150 chips: dlib's
    5-point predictor places its landmarks inside the detector's box (moved to where dlib's HOG box
    would be) and dlib cuts the chip as the ``dlib`` pack does, so the vectors stay within 0.001
    cosine of that pack's (bench/dlib_onnx_alignment.py); only the network runs in ONNX Runtime (or
    OpenVINO, ``provider``)."""

    def __init__(self, model: Path, shape_model: Path, providers: Sequence[str] | None = None,
                 threads: int | None = None, provider: Provider = "onnxruntime") -> None:
        import dlib

        super().__init__(model, 128, 0.0, 1.0, providers, threads, provider)  # mean and scale are in the graph
        self.crop_size = CHIP_SIZE
        self._dlib = dlib
        with loading(shape_model):
            self._shape = dlib.shape_predictor(str(shape_model))

    def align(self, image: np.ndarray, detections: Detections, index: int) -> np.ndarray:
        dlib = self._dlib
        x1, y1, x2, y2 = (float(v) for v in detections.boxes[index])
        dx, dy, sw, sh = YUNET_TO_DLIB_BOX
        width, height = x2 - x1, y2 - y1
        cx, cy = (x1 + x2) / 2 + dx * width, (y1 + y2) / 2 + dy * height
        half_w, half_h = sw * width / 2, sh * height / 2
        rect = dlib.rectangle(round(cx - half_w), round(cy - half_h), round(cx + half_w), round(cy + half_h))
        rgb = np.ascontiguousarray(image[:, :, ::-1])
        chip = dlib.get_face_chip(rgb, self._shape(rgb, rect), size=self.crop_size, padding=0.25)
        return np.ascontiguousarray(chip[:, :, ::-1])
