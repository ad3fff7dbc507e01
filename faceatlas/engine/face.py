"""The central result types of the engine: one detected face and what was measured on it, and
an :class:`Embedding`, a face vector that carries the embedding space it belongs to."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from faceatlas.engine.vectors import check_vectors, l2_normalize
from faceatlas.errors import InvalidArgument

if TYPE_CHECKING:
    from faceatlas.engine.attributes import Attributes
    from faceatlas.engine.liveness import LivenessResult


@dataclass(frozen=True)
class Pose:
    """Head pose in degrees: yaw (left/right), pitch (up/down), roll (in-plane tilt)."""

    yaw: float
    pitch: float
    roll: float


@dataclass(frozen=True)
class Embedding:
    """A face vector and its embedding space: ``recognizer_id`` names the model that made it
    (``Pack.recognizer_id``). Vectors of different spaces are never compared; every entry point
    that takes a vector takes an ``Embedding`` (or a :class:`Face`) so that it can check."""

    vector: np.ndarray
    recognizer_id: str

    def __post_init__(self) -> None:
        vectors = check_vectors(self.vector)
        if len(vectors) != 1:
            raise InvalidArgument("an embedding is one vector")
        vector = vectors[0]
        if not self.recognizer_id:
            raise InvalidArgument("an embedding needs the recognizer_id of the model that made it")
        object.__setattr__(self, "vector", vector)

    def __len__(self) -> int:
        return len(self.vector)

    @classmethod
    def parse(cls, values: object, recognizer_id: object) -> Embedding:
        """An embedding from untrusted input (a JSON list and a string), else :class:`InvalidArgument`."""
        if not isinstance(values, list | tuple | np.ndarray):
            raise InvalidArgument("an embedding is a list of numbers")
        if not isinstance(recognizer_id, str) or not recognizer_id:
            raise InvalidArgument("an embedding needs its 'recognizer_id' (the embedding space /detect returns)")
        return cls(np.asarray(values, dtype=object), recognizer_id)


@dataclass
class Face:
    """A detected face.

    ``bbox`` is ``[x1, y1, x2, y2]`` in image pixels; ``keypoints`` is 5x2 in the order
    left eye, right eye, nose, left mouth corner, right mouth corner (as seen in the image).
    ``embedding`` is L2-normalised and made by the recogniser ``recognizer_id``; ``crop`` is the
    aligned crop (BGR) when asked for; ``liveness`` the passive liveness result and ``attributes``
    (age, gender, emotion) when asked for, else None.
    """

    bbox: np.ndarray
    det_score: float
    keypoints: np.ndarray
    embedding: np.ndarray | None = None
    quality: float | None = None
    pose: Pose | None = None
    crop: np.ndarray | None = field(default=None, repr=False)
    liveness: LivenessResult | None = None
    recognizer_id: str | None = None
    attributes: Attributes | None = None

    @property
    def area(self) -> float:
        x1, y1, x2, y2 = self.bbox
        return float(max(0.0, x2 - x1) * max(0.0, y2 - y1))

    def rescale(self, factor: float) -> None:
        """Multiply the face's coordinates by ``factor`` (found on a reduced image, reported in
        the original's pixels)."""
        if factor != 1:
            self.bbox = np.asarray(self.bbox, np.float32) * factor
            self.keypoints = np.asarray(self.keypoints, np.float32) * factor

    def as_embedding(self) -> Embedding:
        """The face's vector with its embedding space."""
        if self.embedding is None or self.recognizer_id is None:
            raise InvalidArgument("the face has no embedding (analyze with embed=True)")
        return Embedding(self.embedding, self.recognizer_id)

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
            out["liveness"] = round(self.liveness.score, 4)
        if self.attributes is not None:
            out["attributes"] = self.attributes.to_dict()
        if with_embedding and self.embedding is not None:
            out["embedding"] = [round(float(v), 6) for v in self.embedding]
            out["recognizer_id"] = self.recognizer_id
        return out


def cosine_similarity(a: np.ndarray, b: np.ndarray) -> float:
    """Cosine similarity of two embeddings (normalised here, so raw vectors are fine too)."""
    return float(l2_normalize(np.ravel(a))[0] @ l2_normalize(np.ravel(b))[0])


def as_embedding(query: Face | Embedding) -> Embedding:
    """The :class:`Embedding` of a face or an embedding; a bare array is refused because it does
    not say which model made it."""
    if isinstance(query, Embedding):
        return query
    if isinstance(query, Face):
        return query.as_embedding()
    raise TypeError(
        f"expected a Face or an Embedding, got {type(query).__name__}: wrap a raw vector as "
        "Embedding(vector, recognizer_id) so that its embedding space can be checked"
    )
