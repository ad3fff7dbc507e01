"""The central result type of the engine: one detected face and what was measured on it."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np


@dataclass(frozen=True)
class Pose:
    """Head pose in degrees: yaw (left/right), pitch (up/down), roll (in-plane tilt)."""

    yaw: float
    pitch: float
    roll: float


@dataclass
class Face:
    """A detected face.

    ``bbox`` is ``[x1, y1, x2, y2]`` in image pixels; ``keypoints`` is 5x2 in the order
    left eye, right eye, nose, left mouth corner, right mouth corner (as seen in the image).
    ``embedding`` is L2-normalised; ``crop`` is the aligned crop (BGR) when asked for.
    """

    bbox: np.ndarray
    det_score: float
    keypoints: np.ndarray
    embedding: np.ndarray | None = None
    quality: float | None = None
    pose: Pose | None = None
    crop: np.ndarray | None = field(default=None, repr=False)
    liveness: float | None = None

    @property
    def area(self) -> float:
        x1, y1, x2, y2 = self.bbox
        return float(max(0.0, x2 - x1) * max(0.0, y2 - y1))

    def to_dict(self, *, with_embedding: bool = False) -> dict[str, Any]:
        """A JSON-ready view of the face."""
        out: dict[str, Any] = {
            "bbox": [round(float(v), 1) for v in self.bbox],
            "det_score": round(self.det_score, 4),
            "keypoints": [[round(float(x), 1), round(float(y), 1)] for x, y in self.keypoints],
        }
        if self.quality is not None:
            out["quality"] = round(self.quality, 4)
        if self.pose is not None:
            out["pose"] = {k: round(v, 1) for k, v in vars(self.pose).items()}
        if self.liveness is not None:
            out["liveness"] = round(self.liveness, 4)
        if with_embedding and self.embedding is not None:
            out["embedding"] = [round(float(v), 6) for v in self.embedding]
        return out


def cosine_similarity(a: np.ndarray, b: np.ndarray) -> float:
    """Cosine similarity of two embeddings (normalised here, so raw vectors are fine too)."""
    a = np.asarray(a, dtype=np.float32).ravel()
    b = np.asarray(b, dtype=np.float32).ravel()
    denom = float(np.linalg.norm(a) * np.linalg.norm(b))
    return float(a @ b) / denom if denom > 0 else 0.0
