"""Face attributes on request: gender and emotion (oarriaga's mini-Xception, MIT) and age
(SSR-Net, no licence stated upstream), each from a square crop around the detector's box.

Preprocessing follows shared/ASSETS.md, which measured it on real photos (it differs from what the
models' original app fed some of them):

- mini-Xception gender / emotion: grey ``.2989 R + .587 G + .114 B`` in 0..1, then ``(g - .5) * 2``,
  64x64x1 NHWC; gender output ``[female, male]``, emotion 7 softmax classes (:data:`EMOTIONS`).
- SSR-Net age: 64x64 **BGR** 0..255 NHWC (the RGB feed gives implausible ages) -> years.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import cv2
import numpy as np

from faceatlas.engine.runtime import create_session

EMOTIONS = ("angry", "disgust", "fear", "happy", "sad", "surprise", "neutral")
GENDERS: tuple[Literal["female"], Literal["male"]] = ("female", "male")
# The crop the attribute models see: the detector box grown this much about its centre, made square.
CROP_SCALE = 1.4
CROP_SIZE = 64
# Gender is the mean over three views: the crop, its mirror image and a crop 1.6x the box. On the
# hand-labelled LFW faces (bench/attributes_accuracy.py) that is 92.0 % against 89.7 % for the crop
# alone, for ~2 ms more a face.
GENDER_EXTRA_SCALE = 1.6
_GREY = np.array([0.114, 0.587, 0.2989], np.float32)  # B, G, R weights


@dataclass(frozen=True)
class Attributes:
    """What the attribute models say about one face; a field is None when the pack has no model
    for it (the all-MIT pack has no age model)."""

    gender: Literal["female", "male"] | None = None
    gender_score: float | None = None  # probability of ``gender``
    age: float | None = None  # years
    emotion: str | None = None
    emotion_scores: tuple[tuple[str, float], ...] | None = None

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        if self.gender is not None and self.gender_score is not None:
            out["gender"] = self.gender
            out["gender_score"] = round(self.gender_score, 4)
        if self.age is not None:
            out["age"] = round(self.age, 1)
        if self.emotion is not None and self.emotion_scores is not None:
            out["emotion"] = self.emotion
            out["emotion_scores"] = {name: round(p, 4) for name, p in self.emotion_scores}
        return out


def square_crop(image: np.ndarray, box: Sequence[float] | np.ndarray, size: int = CROP_SIZE,
                scale: float = CROP_SCALE) -> np.ndarray:
    """The ``size`` x ``size`` crop of the square ``scale`` times the box's longer side, centred on
    the box; parts outside the image are black."""
    x1, y1, x2, y2 = (float(v) for v in box)
    side = max(1.0, max(x2 - x1, y2 - y1) * scale)
    cx, cy = (x1 + x2) / 2, (y1 + y2) / 2
    factor = size / side
    matrix = np.array([[factor, 0, size / 2 - cx * factor], [0, factor, size / 2 - cy * factor]], np.float32)
    return cv2.warpAffine(image, matrix, (size, size), flags=cv2.INTER_AREA if factor < 1 else cv2.INTER_LINEAR,
                          borderMode=cv2.BORDER_CONSTANT, borderValue=(0, 0, 0))


def grey_blob(crops: np.ndarray) -> np.ndarray:
    """mini-Xception's input from N x 64 x 64 x 3 BGR crops: N x 64 x 64 x 1 in -1..1."""
    grey = crops.astype(np.float32) @ _GREY / 255.0
    return ((grey - 0.5) * 2.0)[..., None]


class AttributeModels:
    """The attribute models of a pack; any of them may be absent (None)."""

    def __init__(
        self,
        gender: Path | None,
        emotion: Path | None,
        age: Path | None,
        providers: Sequence[str] | None = None,
        threads: int | None = None,
    ) -> None:
        self.gender, self.emotion, self.age = (
            None if path is None else create_session(path, providers, threads) for path in (gender, emotion, age)
        )

    def predict(self, image: np.ndarray, boxes: Sequence[np.ndarray] | np.ndarray) -> list[Attributes]:
        """Attributes of the faces in ``boxes`` of a BGR image, in one batch per model."""
        if len(boxes) == 0:
            return []
        crops = np.stack([square_crop(image, box) for box in boxes])
        grey = grey_blob(crops) if self.gender is not None or self.emotion is not None else None
        gender = None
        if self.gender is not None and grey is not None:
            wider = grey_blob(np.stack([square_crop(image, box, scale=GENDER_EXTRA_SCALE) for box in boxes]))
            views = self._run(self.gender, np.concatenate([grey, grey[:, :, ::-1], wider]))
            gender = None if views is None else views.reshape(3, len(crops), -1).mean(axis=0)
        emotion = self._run(self.emotion, grey)
        age = self._run(self.age, crops.astype(np.float32))
        results = []
        for i in range(len(crops)):
            fields: dict[str, Any] = {}
            if gender is not None:
                male = float(gender[i][1] / max(1e-9, gender[i][0] + gender[i][1]))
                fields["gender"] = GENDERS[int(male > 0.5)]
                fields["gender_score"] = male if male > 0.5 else 1.0 - male
            if emotion is not None:
                scores = tuple((name, float(p)) for name, p in zip(EMOTIONS, emotion[i]))
                fields["emotion"] = max(scores, key=lambda item: item[1])[0]
                fields["emotion_scores"] = scores
            if age is not None:
                fields["age"] = float(np.ravel(age[i])[0])
            results.append(Attributes(**fields))
        return results

    @staticmethod
    def _run(session: Any, blob: np.ndarray | None) -> np.ndarray | None:
        if session is None or blob is None:
            return None
        return np.asarray(session.run(None, {session.get_inputs()[0].name: blob})[0])
