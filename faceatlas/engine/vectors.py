"""Vector helpers every layer uses: L2 normalisation and brute-force top-k by inner product."""

from __future__ import annotations

import numpy as np

__all__ = ["l2_normalize", "top_k"]


def l2_normalize(vectors: np.ndarray) -> np.ndarray:
    """Float32 copy of ``vectors`` ((n, d), or one (d,) vector as (1, d)) with every row scaled to
    unit length (a zero row stays zero)."""
    vectors = np.atleast_2d(np.asarray(vectors, dtype=np.float32))
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    return vectors / np.maximum(norms, 1e-12)


def top_k(scores: np.ndarray, ids: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Best ``k`` columns of ``scores`` (nq, n) per row, sorted descending, as (scores, ids[columns])."""
    scores = np.atleast_2d(scores)
    k_eff = min(k, scores.shape[1])
    part = np.argpartition(-scores, k_eff - 1, axis=1)[:, :k_eff] if k_eff < scores.shape[1] else \
        np.tile(np.arange(scores.shape[1]), (scores.shape[0], 1))
    part_scores = np.take_along_axis(scores, part, axis=1)
    order = np.argsort(-part_scores, axis=1)
    best = np.take_along_axis(part, order, axis=1)
    return np.take_along_axis(part_scores, order, axis=1), np.asarray(ids)[best]
