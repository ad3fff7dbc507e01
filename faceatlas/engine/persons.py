"""Person detector: YOLOX-Nano (COCO, class 0 = person) through ONNX Runtime.

Input: 416x416 BGR, raw 0-255 floats, letterboxed (top-left aligned) and padded with 114.
Output ``[1, 3549, 85]``: per grid cell (strides 8/16/32) x/y offsets, log w/h, objectness,
80 class scores. The result is columnar like the face :class:`~faceatlas.engine.Detections`.
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
from faceatlas.settings import EngineSettings

YOLOX_NANO = ModelFile(
    "person_detector/yolox_nano.onnx",
    "e8af074932d4ed7e232278e3055cefcdea3edf178874a3694ae292649fb464dd",
    "https://raw.githubusercontent.com/Bigisland1729/object-detection-models/"
    "7f3f2fa34b351e3d2af150893458106ad3f3a84f/yolox_nano.onnx",
    "assumed Apache-2.0 (Megvii YOLOX), unconfirmed",
    3678356,
)


class PersonDetector:
    """YOLOX-Nano person detector; ``model`` defaults to the pinned :data:`YOLOX_NANO` file."""

    input_size = 416
    strides = (8, 16, 32)
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
        settings = settings or EngineSettings()
        path = model or resolve(YOLOX_NANO, download=download, settings=settings)
        self.session = create_session(path, providers, threads or settings.threads)
        self.input_name = self.session.get_inputs()[0].name
        self.score_threshold = score_threshold
        self.nms_threshold = nms_threshold
        self._grid, self._grid_strides = _grid(self.input_size, self.strides)

    def detect(self, image: np.ndarray) -> Detections:
        """Persons in a BGR uint8 image."""
        height, width = image.shape[:2]
        scale = min(self.input_size / height, self.input_size / width)
        new_w, new_h = max(1, round(width * scale)), max(1, round(height * scale))
        canvas = np.full((self.input_size, self.input_size, 3), 114, dtype=np.uint8)
        canvas[:new_h, :new_w] = cv2.resize(image, (new_w, new_h), interpolation=cv2.INTER_LINEAR)
        blob = canvas.transpose(2, 0, 1)[None].astype(np.float32)
        raw = self.session.run(None, {self.input_name: blob})[0][0]
        scores = raw[:, 4] * raw[:, 5 + self.person_class]
        hits = np.where(scores >= self.score_threshold)[0]
        if len(hits) == 0:
            return Detections.empty(keypoints=False)
        centers = (raw[hits, :2] + self._grid[hits]) * self._grid_strides[hits]
        sizes = np.exp(raw[hits, 2:4]) * self._grid_strides[hits]
        boxes = np.hstack([centers - sizes / 2, centers + sizes / 2]) / scale
        boxes = np.clip(boxes, 0, [width, height, width, height])
        keep = nms(boxes, scores[hits], self.nms_threshold)
        return Detections(boxes[keep], scores[hits][keep], class_id=np.zeros(len(keep), np.int64))


def _grid(size: int, strides: Sequence[int]) -> tuple[np.ndarray, np.ndarray]:
    """Cell coordinates and the stride of every output row, in the model's output order."""
    cells, cell_strides = [], []
    for stride in strides:
        side = size // stride
        ys, xs = np.mgrid[:side, :side]
        cells.append(np.stack([xs, ys], axis=-1).reshape(-1, 2))
        cell_strides.append(np.full((side * side, 1), stride))
    return np.vstack(cells).astype(np.float32), np.vstack(cell_strides).astype(np.float32)
