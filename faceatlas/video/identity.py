"""Who is on a track: a small matcher protocol, an in-memory matcher, a gallery adapter, and
the per-track vote that turns several frames' matches into one stable identity."""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

from faceatlas.engine import (
    DEFAULT_FPIR,
    Calibration,
    Cut,
    Embedding,
    Face,
    FaceAnalyzer,
    ModelMismatch,
    NotCalibrated,
    as_embedding,
    l2_normalize,
    top_k,
)

if TYPE_CHECKING:
    from faceatlas.gallery import Gallery

log = logging.getLogger(__name__)

# MobileFaceNet-128 on LFW: same-person mean cosine 0.645, different-person 0.014 (shared/ASSETS.md);
# used only when the pack has no calibration and no threshold is given.
FALLBACK_THRESHOLD = 0.40


@dataclass(frozen=True)
class IdentityMatch:
    """A subject matched by one face: its ``external_id`` (as in the gallery's :class:`Match`; ``subject``
    in event JSON), display name, similarity and the FAR level reached."""

    external_id: str
    name: str | None
    similarity: float
    far_level: float | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "subject": self.external_id,
            "name": self.name,
            "similarity": round(self.similarity, 4),
            "far_level": self.far_level,
        }


class IdentityMatcher(Protocol):
    """Anything that names the subject of one embedding, or returns None for nobody known; an
    embedding of another space than the matcher's is :class:`ModelMismatch`."""

    def match(self, embedding: Embedding) -> IdentityMatch | None: ...


def _threshold(cut: Cut, calibration: Calibration | None, gallery_size: int) -> float:
    if cut.threshold is not None or calibration is not None:
        return float(cut.similarity(calibration, gallery_size) or FALLBACK_THRESHOLD)
    log.warning("no calibration for this pack: matching at raw cosine %.2f", FALLBACK_THRESHOLD)
    return FALLBACK_THRESHOLD


class EmbeddingMatcher:
    """In-memory matcher: each subject scores its best enrolled face (for tests and small watchlists).
    Its embedding space is the one of the first embedding added."""

    def __init__(
        self, *, threshold: float | None = None, fpir: float = DEFAULT_FPIR, far: float | None = None,
        calibration: Calibration | None = None,
    ) -> None:
        self.calibration = calibration
        self.cut = Cut(threshold=threshold, far=far, fpir=fpir)
        self._names: list[tuple[str, str | None]] = []
        self._vectors: list[np.ndarray] = []
        self.recognizer_id: str | None = None

    def add(self, subject_id: str, embeddings: Iterable[Embedding | Face], name: str | None = None) -> None:
        """Enrol embeddings (L2-normalised here) for ``subject_id``."""
        for item in embeddings:
            vector = self._own(item)
            self._vectors.append(l2_normalize(vector)[0])
            self._names.append((subject_id, name))

    @property
    def threshold(self) -> float:
        """The similarity a match must reach (at the cut, for the faces enrolled now)."""
        return _threshold(self.cut, self.calibration, max(1, len(self._vectors)))

    def _own(self, item: Embedding | Face) -> np.ndarray:
        embedding = as_embedding(item)
        if self.recognizer_id is None:
            self.recognizer_id = embedding.recognizer_id
        if embedding.recognizer_id != self.recognizer_id:
            raise ModelMismatch(f"this matcher holds embeddings of {self.recognizer_id}, "
                                f"got one of {embedding.recognizer_id}")
        return embedding.vector

    def add_images(
        self, analyzer: FaceAnalyzer, subject_id: str, images: Iterable[Any], name: str | None = None
    ) -> None:
        """Enrol the largest face of each image."""
        self.add(subject_id, [analyzer.analyze_one(image) for image in images], name)

    def match(self, embedding: Embedding) -> IdentityMatch | None:
        if not self._vectors:
            return None
        (scores,), (rows,) = top_k(np.stack(self._vectors) @ self._own(embedding), np.arange(len(self._vectors)), 1)
        best, score = int(rows[0]), float(scores[0])
        if score < self.threshold:  # the open-set threshold follows the number of faces enrolled
            return None
        level = self.calibration.far_level(score) if self.calibration else None
        return IdentityMatch(self._names[best][0], self._names[best][1], score, level)


class GalleryMatcher:
    """Adapter onto a gallery collection: per-subject best-face search at the open-set threshold of
    ``fpir`` for the collection's size (or a 1:1 ``far``, or a raw ``threshold``; the fallback
    threshold when the collection's pack is not calibrated)."""

    def __init__(
        self,
        gallery: Gallery,
        collection: str,
        *,
        fpir: float = DEFAULT_FPIR,
        far: float | None = None,
        threshold: float | None = None,
        calibration: Calibration | None = None,
    ) -> None:
        self.gallery = gallery
        self.collection = collection
        self.cut = Cut(threshold=threshold, far=far, fpir=fpir)
        self.calibration = calibration

    def match(self, embedding: Embedding) -> IdentityMatch | None:
        options: dict[str, Any] = {"k": 1, "calibration": self.calibration}
        try:
            found = self.gallery.search(self.collection, embedding, **self.cut.search_options(), **options)
        except NotCalibrated:
            self.cut = Cut(threshold=_threshold(Cut(), None, 1))
            return self.match(embedding)
        if not found:
            return None
        best = found[0]
        return IdentityMatch(best.external_id, best.name, best.similarity, best.far_level)


@dataclass
class IdentityVote:
    """Evidence of several frames for one track; the identity never rests on one frame.

    A subject is chosen when at least ``min_agree`` matches name it and they are a majority of
    the evidence. Once chosen it changes only when another subject passes the same rule with
    more votes, so names do not flicker. ``unknown`` once ``min_evidence`` frames gave no such
    majority. A chosen identity is forgotten when the last ``forget_after`` matches (the track's
    re-checks) found nobody known: the face on the track is no longer the person it was named
    for (a tracker switch, a face that changed), and it is unknown again until new evidence names it.
    """

    min_evidence: int = 3
    min_agree: int = 2
    evidence: list[IdentityMatch | None] = field(default_factory=list)
    identity: IdentityMatch | None = None
    forget_after: int = 2

    def add(self, match: IdentityMatch | None) -> None:
        self.evidence.append(match)

    @property
    def decided(self) -> bool:
        return len(self.evidence) >= self.min_evidence

    def decide(self) -> IdentityMatch | None:
        """The current identity (updated from the evidence), or None."""
        recent = self.evidence[-self.forget_after:]
        if self.identity is not None and len(recent) == self.forget_after and all(m is None for m in recent):
            self.identity = None
            self.evidence = recent  # the old votes must not bring the name back
            return None
        votes = Counter(m.external_id for m in self.evidence if m is not None)
        current = self.identity.external_id if self.identity else None
        if votes:
            leader, count = votes.most_common(1)[0]
            passes = count >= self.min_agree and 2 * count > len(self.evidence)
            if passes and (current is None or count > votes[current]):
                current = leader
        if current is not None:
            self.identity = max((m for m in self.evidence if m is not None and m.external_id == current),
                                key=lambda m: m.similarity)
        return self.identity
