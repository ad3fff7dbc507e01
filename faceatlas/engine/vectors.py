"""Vector helpers every layer uses: the check of untrusted vectors, L2 normalisation and
brute-force top-k by inner product."""

from __future__ import annotations

import numbers

import numpy as np

from faceatlas.errors import InvalidArgument

__all__ = ["check_vectors", "l2_normalize", "top_k"]


def check_vectors(vectors: object) -> np.ndarray:
    """``vectors`` ((n, d), or one (d,) vector as (1, d)) as float32, when every row is usable as an
    embedding: real numbers (not booleans nor strings, which a cast would turn into numbers), finite
    after the cast to float32, and of a norm that is neither zero nor beyond float32 (computed in
    float64: 128 x 1e38 is finite in float32, its float32 norm is not). Else :class:`InvalidArgument`.
    Every entry point that takes a vector from outside uses this."""
    try:
        _check_numbers(vectors)
        with np.errstate(over="ignore"):  # a value beyond float32 becomes inf: refused below
            array = np.atleast_2d(np.asarray(vectors, dtype=np.float32))
    except (TypeError, ValueError, OverflowError, RuntimeError) as exc:  # RuntimeError: nesting beyond numpy's dims
        raise InvalidArgument("an embedding is a list of numbers") from exc
    if array.ndim != 2 or array.shape[1] == 0:
        raise InvalidArgument(f"embeddings are (n, d) numbers with d > 0, got shape {array.shape}")
    if not np.isfinite(array).all():
        raise InvalidArgument("an embedding must be finite numbers (as float32)")
    norms = np.linalg.norm(array.astype(np.float64), axis=1)
    if not ((norms > 0) & (norms <= np.finfo(np.float32).max)).all():
        raise InvalidArgument("an embedding must not be all zero, nor have a norm beyond float32")
    return array


def _check_numbers(vectors: object) -> None:
    """Refuse elements that are not real numbers: an array by its dtype, anything else (JSON lists)
    element by element, since numpy casts ``True`` and ``"0.5"`` to float without a word (and a list
    mixing booleans and numbers to a float array)."""
    if isinstance(vectors, list | tuple) and all(isinstance(v, np.ndarray) and v.dtype.kind in "iuf" for v in vectors):
        return  # rows of numbers (a layer's own vectors): no element-wise look
    array = vectors if isinstance(vectors, np.ndarray) else np.asarray(vectors, dtype=object)
    if array.dtype.kind in "iuf":
        return
    if array.dtype.kind != "O" or not all(_is_number(value) for value in array.flat):
        raise InvalidArgument("an embedding is a list of numbers (not booleans or strings)")


def _is_number(value: object) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool | np.bool_)


def l2_normalize(vectors: np.ndarray) -> np.ndarray:
    """Float32 copy of ``vectors`` ((n, d), or one (d,) vector as (1, d)) with every row scaled to
    unit length (a zero row stays zero)."""
    vectors = np.atleast_2d(np.asarray(vectors, dtype=np.float32))
    norms = np.linalg.norm(vectors.astype(np.float64), axis=1, keepdims=True)  # float64: no overflow
    return (vectors / np.maximum(norms, 1e-12)).astype(np.float32)


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
