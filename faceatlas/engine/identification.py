"""Open-set identification (1:N) measured NIST FRVT style: FNIR at a stated FPIR.

A gallery enrols one image of each of ``n`` identities (chosen among those with two images or
more); *mated* searches are the other images of enrolled identities, *non-mated* searches every
image of an identity not enrolled. At a threshold ``t``

* FPIR(t): the share of non-mated searches whose best score reaches ``t`` (a stranger named),
* FNIR(t): the share of mated searches whose best match is not their identity at ``t`` or above.

The threshold for a stated FPIR comes from the pack calibration for the gallery's size
(:meth:`Calibration.fpir_threshold`); the report sets the FPIR it really reached on these searches
beside it. Synthetic distractors (faces of a Gaussian fitted to the embeddings' identity
means and within-identity spread) make galleries larger than the data's identities; they model
the bulk of impostor scores, not the lookalikes of a real population, so FNIR with them is an
estimate.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from faceatlas.engine.calibration import IMPOSTORS_PER_FAR, STANDARD_FPIRS, Calibration
from faceatlas.engine.evaluation import json_ready
from faceatlas.engine.vectors import l2_normalize
from faceatlas.errors import InvalidArgument


@dataclass(frozen=True)
class FpirPoint:
    """One operating point of a gallery: the stated FPIR, its threshold, and what it reached."""

    fpir: float
    threshold: float
    achieved_fpir: float
    fnir: float
    supported: bool  # enough non-mated searches (IMPOSTORS_PER_FAR / fpir) to check the FPIR reached

    def to_dict(self) -> dict[str, float | bool]:
        return {"fpir": self.fpir, "threshold": round(self.threshold, 6), "achieved_fpir": self.achieved_fpir,
                "fnir": self.fnir, "supported": self.supported}


@dataclass(frozen=True)
class IdentificationReport:
    """FNIR at each stated FPIR for galleries of one size (several random draws pooled)."""

    identities: int
    distractors: int
    mated: int
    non_mated: int
    rank1: float  # share of mated searches whose best match is their identity (no threshold)
    points: tuple[FpirPoint, ...]

    @property
    def gallery_size(self) -> int:
        return self.identities + self.distractors

    def to_dict(self) -> dict[str, object]:
        return json_ready({"identities": self.identities, "distractors": self.distractors,
                           "gallery_size": self.gallery_size, "mated_searches": self.mated,
                           "non_mated_searches": self.non_mated, "rank1": self.rank1,
                           "points": [p.to_dict() for p in self.points]})


@dataclass(frozen=True)
class Searches:
    """The outcome of every search: mated best score when rank-1 is right (else -inf), non-mated best."""

    mated: np.ndarray
    non_mated: np.ndarray


def distractor_faces(embeddings: np.ndarray, identities: np.ndarray, count: int, seed: int = 0) -> np.ndarray:
    """``count`` synthetic faces of new identities: centre ~ N(mean, between-identity covariance),
    plus within-identity noise, unit length (both covariances fitted to ``embeddings``)."""
    vectors = np.asarray(embeddings, np.float64)
    people, inverse, counts = np.unique(identities, return_inverse=True, return_counts=True)
    means = np.zeros((len(people), vectors.shape[1]))
    np.add.at(means, inverse, vectors)
    means /= counts[:, None]
    residuals = vectors - means[inverse]
    repeated = counts[inverse] > 1
    within = residuals[repeated].T @ residuals[repeated] / max(1, int((counts[counts > 1] - 1).sum()))
    between = np.cov(means.T) - within * float(np.mean(1.0 / counts))
    values, vecs = np.linalg.eigh(between)
    between_root = vecs * np.sqrt(np.clip(values, 0.0, None))
    within_root = np.linalg.cholesky(within + 1e-6 * np.eye(len(within)))
    rng = np.random.default_rng(seed)
    out = np.empty((count, vectors.shape[1]), np.float32)
    for start in range(0, count, 50_000):
        n = min(50_000, count - start)
        centres = vectors.mean(0) + rng.standard_normal((n, vectors.shape[1])) @ between_root.T
        out[start:start + n] = l2_normalize(centres + rng.standard_normal((n, vectors.shape[1])) @ within_root.T)
    return out


def run_searches(embeddings: np.ndarray, identities: np.ndarray, gallery_identities: int, *,
                 distractors: np.ndarray | None = None, seed: int = 0, block: int = 2048) -> Searches:
    """One random gallery of ``gallery_identities`` (one image each, among identities with two
    images or more) plus ``distractors``; every other image searched against it."""
    embeddings = l2_normalize(np.asarray(embeddings, np.float32))
    identities = np.asarray(identities)
    people, counts = np.unique(identities, return_counts=True)
    eligible = people[counts >= 2]
    if not 1 <= gallery_identities <= len(eligible):
        raise InvalidArgument(f"a gallery of {gallery_identities} identities needs that many with two images or "
                              f"more; the data has {len(eligible)}")
    rng = np.random.default_rng(seed)
    chosen = rng.choice(eligible, gallery_identities, replace=False)
    enrolled_rows = np.array([rng.choice(np.flatnonzero(identities == person)) for person in chosen])
    gallery = embeddings[enrolled_rows]
    owner = identities[enrolled_rows]
    if distractors is not None and len(distractors):
        gallery = np.concatenate([gallery, np.asarray(distractors, np.float32)])
        owner = np.concatenate([owner, np.full(len(distractors), -1, owner.dtype)])
    probes = np.setdiff1d(np.arange(len(embeddings)), enrolled_rows)
    in_gallery = np.isin(identities[probes], chosen)
    best = np.empty(len(probes), np.float32)
    who = np.empty(len(probes), owner.dtype)
    for start in range(0, len(probes), block):
        sims = embeddings[probes[start:start + block]] @ gallery.T
        top = sims.argmax(axis=1)
        best[start:start + block] = sims[np.arange(len(top)), top]
        who[start:start + block] = owner[top]
    mated = np.where(who[in_gallery] == identities[probes][in_gallery], best[in_gallery], -np.inf)
    return Searches(mated.astype(np.float32), best[~in_gallery])


def identification_report(embeddings: np.ndarray, identities: np.ndarray, calibration: Calibration,
                          gallery_identities: int, *, distractors: np.ndarray | None = None, draws: int = 1,
                          fpirs: Sequence[float] = STANDARD_FPIRS, seed: int = 0) -> IdentificationReport:
    """FNIR at each FPIR (thresholds from ``calibration`` for the gallery's size), pooled over
    ``draws`` random galleries."""
    runs = [run_searches(embeddings, identities, gallery_identities, distractors=distractors, seed=seed + d)
            for d in range(draws)]
    mated = np.concatenate([r.mated for r in runs])
    non_mated = np.concatenate([r.non_mated for r in runs])
    size = gallery_identities + (0 if distractors is None else len(distractors))
    points = []
    for fpir in fpirs:
        threshold = np.float32(calibration.fpir_threshold(fpir, size))
        points.append(FpirPoint(
            fpir=fpir, threshold=float(threshold),
            achieved_fpir=float((non_mated >= threshold).mean()) if len(non_mated) else float("nan"),
            fnir=float((mated < threshold).mean()) if len(mated) else float("nan"),
            supported=len(non_mated) * fpir >= IMPOSTORS_PER_FAR))
    return IdentificationReport(gallery_identities, 0 if distractors is None else len(distractors), len(mated),
                                len(non_mated), float(np.isfinite(mated).mean()) if len(mated) else float("nan"),
                                tuple(points))
