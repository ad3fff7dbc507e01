"""Object detectors: YOLOX (COCO-80) through ONNX Runtime; persons and road users.

Input: a square of ``input_size`` (416 for YOLOX-Nano, 640 for YOLOX-S), BGR, raw 0-255 floats,
letterboxed (top-left aligned) and padded with 114. Output ``[1, N, 85]``: per grid cell (strides
8/16/32) x/y offsets, log w/h, objectness, 80 class scores. The result is columnar like the face
:class:`~faceatlas.engine.Detections`, ``class_id`` the COCO index (:data:`COCO_CLASSES`).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import cv2
import numpy as np

from faceatlas.engine.detections import Detections
from faceatlas.engine.geometry import nms
from faceatlas.engine.models import ModelFile, resolve
from faceatlas.engine.runtime import create_session
from faceatlas.errors import InvalidArgument, UnknownPack
from faceatlas.settings import EngineSettings

YOLOX_NANO = ModelFile(
    "person_detector/yolox_nano.onnx",
    "e8af074932d4ed7e232278e3055cefcdea3edf178874a3694ae292649fb464dd",
    "https://raw.githubusercontent.com/Bigisland1729/object-detection-models/"
    "7f3f2fa34b351e3d2af150893458106ad3f3a84f/yolox_nano.onnx",
    "assumed Apache-2.0 (Megvii YOLOX), unconfirmed",
    3678356,
)
# the larger COCO detector, for users who have it (or can download it): OpenCV Zoo's YOLOX-S
# (Apache-2.0), 640x640 input, the same output layout; about 4x slower than Nano on a CPU
YOLOX_S = ModelFile(
    "object_detector/object_detection_yolox_2022nov.onnx",
    "c5c2d13e59ae883e6af3b45daea64af4833a4951c92d116ec270d9ddbe998063",
    "https://media.githubusercontent.com/media/opencv/opencv_zoo/main/models/object_detection_yolox/"
    "object_detection_yolox_2022nov.onnx",
    "Apache-2.0 (OpenCV Zoo, Megvii YOLOX-S)",
)
# model name -> (file, input size)
OBJECT_MODELS: dict[str, tuple[ModelFile, int]] = {"yolox-nano": (YOLOX_NANO, 416), "yolox-s": (YOLOX_S, 640)}
COCO_CLASSES: tuple[str, ...] = (
    "person", "bicycle", "car", "motorcycle", "airplane", "bus", "train", "truck", "boat", "traffic_light",
    "fire_hydrant", "stop_sign", "parking_meter", "bench", "bird", "cat", "dog", "horse", "sheep", "cow",
    "elephant", "bear", "zebra", "giraffe", "backpack", "umbrella", "handbag", "tie", "suitcase", "frisbee",
    "skis", "snowboard", "sports_ball", "kite", "baseball_bat", "baseball_glove", "skateboard", "surfboard",
    "tennis_racket", "bottle", "wine_glass", "cup", "fork", "knife", "spoon", "bowl", "banana", "apple",
    "sandwich", "orange", "broccoli", "carrot", "hot_dog", "pizza", "donut", "cake", "chair", "couch",
    "potted_plant", "bed", "dining_table", "toilet", "tv", "laptop", "mouse", "remote", "keyboard",
    "cell_phone", "microwave", "oven", "toaster", "sink", "refrigerator", "book", "clock", "vase", "scissors",
    "teddy_bear", "hair_drier", "toothbrush",
)
VEHICLE_CLASSES: tuple[str, ...] = ("car", "bus", "truck", "motorcycle", "bicycle")
ROAD_CLASSES: tuple[str, ...] = ("person", *VEHICLE_CLASSES)


def class_ids(names: Sequence[str]) -> list[int]:
    """COCO indices of class ``names``; an unknown name is :class:`InvalidArgument`."""
    unknown = [n for n in names if n not in COCO_CLASSES]
    if unknown:
        raise InvalidArgument(f"unknown object classes {unknown}; COCO names such as {', '.join(ROAD_CLASSES)}")
    return [COCO_CLASSES.index(n) for n in names]


class ObjectDetector:
    """A YOLOX COCO detector keeping ``classes`` (COCO names; default persons only). ``model``:
    a file of the ``name`` model (default: the pinned file, looked up and downloaded as usual)."""

    strides = (8, 16, 32)

    def __init__(
        self,
        model: Path | None = None,
        providers: Sequence[str] | None = None,
        threads: int | None = None,
        *,
        classes: Sequence[str] = ("person",),
        name: str = "yolox-nano",
        score_threshold: float = 0.35,
        nms_threshold: float = 0.45,
        download: bool | None = None,
        settings: EngineSettings | None = None,
    ) -> None:
        if name not in OBJECT_MODELS:
            raise UnknownPack(f"unknown object detector {name!r}; one of {', '.join(OBJECT_MODELS)}")
        settings = settings or EngineSettings()
        spec, self.input_size = OBJECT_MODELS[name]
        path = model or resolve(spec, download=download, settings=settings)
        self.session = create_session(path, providers, threads or settings.threads)
        self.input_name = self.session.get_inputs()[0].name
        self.classes = tuple(classes)
        self._class_ids = np.asarray(class_ids(self.classes), np.int64)
        self._vehicle_ids = np.asarray(class_ids(VEHICLE_CLASSES), np.int64)
        self.score_threshold = score_threshold
        self.nms_threshold = nms_threshold
        self._grid, self._grid_strides = _grid(self.input_size, self.strides)

    def detect(self, image: np.ndarray) -> Detections:
        """Objects of the detector's classes in a BGR uint8 image; ``class_id`` is the COCO index."""
        height, width = image.shape[:2]
        scale = min(self.input_size / height, self.input_size / width)
        new_w, new_h = max(1, round(width * scale)), max(1, round(height * scale))
        canvas = np.full((self.input_size, self.input_size, 3), 114, dtype=np.uint8)
        canvas[:new_h, :new_w] = cv2.resize(image, (new_w, new_h), interpolation=cv2.INTER_LINEAR)
        blob = canvas.transpose(2, 0, 1)[None].astype(np.float32)
        raw = self.session.run(None, {self.input_name: blob})[0][0]
        per_class = raw[:, 5 + self._class_ids] * raw[:, 4:5]
        best = per_class.argmax(axis=1)
        scores = per_class[np.arange(len(raw)), best]
        hits = np.where(scores >= self.score_threshold)[0]
        if len(hits) == 0:
            return Detections(np.zeros((0, 4), np.float32), np.zeros(0, np.float32), class_id=np.zeros(0, np.int64))
        centers = (raw[hits, :2] + self._grid[hits]) * self._grid_strides[hits]
        sizes = np.exp(raw[hits, 2:4]) * self._grid_strides[hits]
        boxes = np.hstack([centers - sizes / 2, centers + sizes / 2]) / scale
        boxes = np.clip(boxes, 0, [width, height, width, height])
        labels = self._class_ids[best[hits]]
        # NMS per group: persons apart from vehicles (a cyclist is a person and a bicycle), the
        # vehicle classes together (one box is a car or a truck, not both); other classes each alone
        group = np.where(np.isin(labels, self._vehicle_ids), -1, labels).astype(np.float32)
        keep = nms(boxes + (group[:, None] + 2) * (max(width, height) + 1), scores[hits], self.nms_threshold)
        return Detections(boxes[keep], scores[hits][keep], class_id=labels[keep])


class PersonDetector(ObjectDetector):
    """YOLOX-Nano person detector; ``model`` defaults to the pinned :data:`YOLOX_NANO` file."""

    person_class = 0

    def __init__(
        self,
        model: Path | None = None,
        providers: Sequence[str] | None = None,
        threads: int | None = None,
        *,
        score_threshold: float = 0.35,
        nms_threshold: float = 0.45,
        download: bool | None = None,
        settings: EngineSettings | None = None,
    ) -> None:
        super().__init__(model, providers, threads, classes=("person",), score_threshold=score_threshold,
                         nms_threshold=nms_threshold, download=download, settings=settings)


def _grid(size: int, strides: Sequence[int]) -> tuple[np.ndarray, np.ndarray]:
    """Cell coordinates and the stride of every output row, in the model's output order."""
    cells, cell_strides = [], []
    for stride in strides:
        side = size // stride
        ys, xs = np.mgrid[:side, :side]
        cells.append(np.stack([xs, ys], axis=-1).reshape(-1, 2))
        cell_strides.append(np.full((side * side, 1), stride))
    return np.vstack(cells).astype(np.float32), np.vstack(cell_strides).astype(np.float32)
