"""Passive liveness with Silent-Face MiniFASNet models (each sees the face at its own crop scale,
2.7x and 4.0x the box, 80x80; their softmax outputs are averaged; class 1 is a real face) or
Faceplugin's ``fr_liveness`` (2.7x the box, 128x128, raw BGR 0..255; class 0 is a real face)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from faceatlas.engine.runtime import create_session

# The one liveness rule: a face is real when the ensemble's probability of the real class reaches
# this. At 0.5 the real class outweighs both spoof classes together, which is stricter than "real is
# the largest class" (a 0.45 / 0.30 / 0.25 split is not accepted). On Silent-Face's labelled samples
# (shared/ASSETS.md) the real face scores 1.000 and the two spoofs 0.068 and 0.013.
REAL_THRESHOLD = 0.5


@dataclass(frozen=True)
class LivenessResult:
    """Averaged class probabilities ``[spoof (print), real, spoof (replay)]``; :meth:`is_real` is
    the one decision rule every door and app uses."""

    probabilities: tuple[float, float, float]

    @property
    def score(self) -> float:
        """Probability that the face is real."""
        return self.probabilities[1]

    def is_real(self, threshold: float | None = None) -> bool:
        """Real when :attr:`score` reaches ``threshold`` (default :data:`REAL_THRESHOLD`)."""
        return self.score >= (REAL_THRESHOLD if threshold is None else threshold)

    def to_dict(self) -> dict[str, Any]:
        return {
            "real": self.is_real(),
            "score": round(self.score, 4),
            "probabilities": [round(p, 4) for p in self.probabilities],
        }


def scaled_crop_box(width: int, height: int, box: np.ndarray, scale: float) -> tuple[int, int, int, int]:
    """Silent-Face's crop: the box grown ``scale`` times about its centre, shifted to stay inside."""
    x1, y1, x2, y2 = (float(v) for v in box)
    box_w, box_h = max(1.0, x2 - x1), max(1.0, y2 - y1)
    scale = min((height - 1) / box_h, (width - 1) / box_w, scale)
    new_w, new_h = box_w * scale, box_h * scale
    cx, cy = x1 + box_w / 2, y1 + box_h / 2
    left, top, right, bottom = cx - new_w / 2, cy - new_h / 2, cx + new_w / 2, cy + new_h / 2
    if left < 0:
        right, left = right - left, 0.0
    if top < 0:
        bottom, top = bottom - top, 0.0
    if right > width - 1:
        left, right = left - (right - width + 1), width - 1.0
    if bottom > height - 1:
        top, bottom = top - (bottom - height + 1), height - 1.0
    return int(left), int(top), int(right), int(bottom)


@dataclass(frozen=True)
class LivenessMember:
    """One 3-class passive-liveness model: its file, crop scale, input side and real class."""

    path: Path
    scale: float
    size: int = 80
    real_class: int = 1


class MiniFASNet:
    """An ensemble of 3-class liveness ONNX models (MiniFASNet, fr_liveness), each with its crop
    scale; the classes are put in :class:`LivenessResult`'s order (real in the middle)."""

    def __init__(
        self,
        models: Sequence[tuple[Path, float] | LivenessMember],
        providers: Sequence[str] | None = None,
        threads: int | None = None,
    ) -> None:
        members = [m if isinstance(m, LivenessMember) else LivenessMember(*m) for m in models]
        self.members = [(create_session(m.path, providers, threads), m) for m in members]

    def predict(self, image: np.ndarray, box: np.ndarray) -> LivenessResult:
        """Liveness of the face in ``box`` of a BGR image."""
        height, width = image.shape[:2]
        total = np.zeros(3, dtype=np.float64)
        for session, member in self.members:
            left, top, right, bottom = scaled_crop_box(width, height, box, member.scale)
            crop = cv2.resize(image[top : bottom + 1, left : right + 1], (member.size, member.size))
            blob = crop.transpose(2, 0, 1)[None].astype(np.float32)
            logits = session.run(None, {session.get_inputs()[0].name: blob})[0][0].astype(np.float64)
            exp = np.exp(logits - logits.max())
            order = [0, 1, 2]
            order[1], order[member.real_class] = member.real_class, 1
            total += (exp / exp.sum())[order]
        mean = total / len(self.members)
        return LivenessResult((float(mean[0]), float(mean[1]), float(mean[2])))
