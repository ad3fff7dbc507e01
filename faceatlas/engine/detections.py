"""One columnar, validated type for what a detector finds in one image (faces or persons), modelled
on supervision's ``Detections``: every column has a row per object, and indexing with an int, a
slice, an index array or a boolean mask selects rows of every column at once."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from faceatlas.errors import InvalidArgument

if TYPE_CHECKING:
    import supervision as sv

__all__ = ["Detections"]


@dataclass
class Detections:
    """Objects found in one image, column by column.

    ``boxes`` N x 4 ``[x1, y1, x2, y2]`` in image pixels, ``scores`` N; for faces ``keypoints``
    N x 5 x 2 (left eye, right eye, nose, mouth corners) and, when the detector marks other points
    (dlib's eye corners and nose base), ``landmarks`` N x P x 2; ``class_id`` N (persons: 0);
    ``data`` holds any further per-row columns. Columns are validated (same length, shapes) and
    stored as float32 / int64.
    """

    boxes: np.ndarray
    scores: np.ndarray
    keypoints: np.ndarray | None = None
    landmarks: np.ndarray | None = None
    class_id: np.ndarray | None = None
    data: dict[str, np.ndarray] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.boxes = np.asarray(self.boxes, np.float32).reshape(-1, 4)
        self.scores = np.asarray(self.scores, np.float32).reshape(-1)
        rows = len(self.boxes)
        self._check("scores", self.scores, rows)
        if self.keypoints is not None:
            self.keypoints = np.asarray(self.keypoints, np.float32)
            self._check("keypoints", self.keypoints, rows, (5, 2))
        if self.landmarks is not None:
            self.landmarks = np.asarray(self.landmarks, np.float32)
            self._check("landmarks", self.landmarks, rows)
            if self.landmarks.ndim != 3 or self.landmarks.shape[2] != 2:
                raise InvalidArgument(f"landmarks must be N x P x 2, got {self.landmarks.shape}")
        if self.class_id is not None:
            self.class_id = np.asarray(self.class_id, np.int64).reshape(-1)
            self._check("class_id", self.class_id, rows)
        self.data = {name: np.asarray(column) for name, column in self.data.items()}
        for name, column in self.data.items():
            self._check(f"data[{name!r}]", column, rows)

    @staticmethod
    def _check(name: str, column: np.ndarray, rows: int, shape: tuple[int, ...] | None = None) -> None:
        if len(column) != rows:
            raise InvalidArgument(f"{name} has {len(column)} rows, the boxes {rows}")
        if shape is not None and column.shape[1:] != shape:
            raise InvalidArgument(f"{name} must be N x {' x '.join(map(str, shape))}, got {column.shape}")

    def __len__(self) -> int:
        return len(self.boxes)

    def __getitem__(self, index: int | slice | Sequence[int] | np.ndarray) -> Detections:
        """The rows ``index`` selects (an int keeps one row, as a Detections of length 1)."""
        if isinstance(index, int | np.integer):
            index = [int(index)]
        rows = np.asarray(index) if not isinstance(index, slice) else index
        if isinstance(rows, np.ndarray) and rows.dtype == bool and len(rows) != len(self):
            raise InvalidArgument(f"a mask of {len(rows)} rows for {len(self)} detections")

        def pick(column: np.ndarray | None) -> np.ndarray | None:
            return None if column is None else column[rows]

        return Detections(
            self.boxes[rows],
            self.scores[rows],
            pick(self.keypoints),
            pick(self.landmarks),
            pick(self.class_id),
            {name: column[rows] for name, column in self.data.items()},
        )

    @classmethod
    def empty(cls, *, keypoints: bool = True) -> Detections:
        """No detection (with an empty keypoint column for face detectors)."""
        return cls(np.zeros((0, 4), np.float32), np.zeros(0, np.float32),
                   np.zeros((0, 5, 2), np.float32) if keypoints else None)

    @classmethod
    def merge(cls, parts: Sequence[Detections]) -> Detections:
        """The rows of every part, in order (parts must have the same columns)."""
        if not parts:
            return cls.empty()

        def joined(columns: list[np.ndarray | None]) -> np.ndarray | None:
            if all(c is None for c in columns):
                return None
            if any(c is None for c in columns):
                raise InvalidArgument("detections with different columns cannot be merged")
            return np.concatenate(columns)  # type: ignore[arg-type]

        names = set(parts[0].data)
        if any(set(p.data) != names for p in parts):
            raise InvalidArgument("detections with different data columns cannot be merged")
        return cls(
            np.concatenate([p.boxes for p in parts]),
            np.concatenate([p.scores for p in parts]),
            joined([p.keypoints for p in parts]),
            joined([p.landmarks for p in parts]),
            joined([p.class_id for p in parts]),
            {name: np.concatenate([p.data[name] for p in parts]) for name in names},
        )

    @property
    def area(self) -> np.ndarray:
        return (self.boxes[:, 2] - self.boxes[:, 0]) * (self.boxes[:, 3] - self.boxes[:, 1])

    def sorted_by_area(self, limit: int | None = None) -> Detections:
        """Largest box first, at most ``limit`` rows."""
        return self[np.argsort(-self.area, kind="stable")[:limit]]

    def to_supervision(self, **data: Any) -> sv.Detections:
        """The same rows as ``supervision.Detections`` (for ByteTrack, zones, annotators); ``data``
        adds columns. ``class_id`` defaults to 0."""
        import supervision as sv

        class_id = self.class_id if self.class_id is not None else np.zeros(len(self), np.int64)
        columns: dict[str, Any] = {**self.data, **{k: np.asarray(v) for k, v in data.items()}}
        return sv.Detections(xyxy=self.boxes, confidence=self.scores, class_id=class_id.astype(int), data=columns)

    @classmethod
    def from_supervision(cls, detections: sv.Detections) -> Detections:
        """Boxes, confidences, class ids and data columns of a ``supervision.Detections``."""
        scores = detections.confidence if detections.confidence is not None else np.ones(len(detections))
        data = {name: np.asarray(column) for name, column in detections.data.items()}
        return cls(detections.xyxy, scores, class_id=detections.class_id, data=data)
