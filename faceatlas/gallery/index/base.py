"""What every vector index of a collection shares: the :class:`VectorIndex` protocol (what search,
the index cache and persistence need), the tuning constants, and small array helpers."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, Literal, Protocol

import numpy as np

Storage = Literal["float32", "float16"]

# Below this many faces the exact (brute-force) index is used; at and above it the template index.
# Measured with bench/gallery_search.py (2 shared, heavily loaded cores); see docs/gallery.md.
ANN_MIN_FACES = 20_000
# HNSW graph: neighbours per node ("M"), candidate list while inserting ("efConstruction") and
# while searching ("ef"). Chosen with bench/gallery_search.py for recall@1 >= 0.99; see docs/gallery.md.
HNSW_CONNECTIVITY = 64
HNSW_EXPANSION_ADD = 128
# 10M faces: 128-d fitted to real embeddings reach 0.998 at ef 192 and 0.999 at 384 (2.7 ms);
# random-direction 512-d faces need 384 for 0.99 (3.9 ms).
DEFAULT_EXPANSION_SEARCH = 384
# Template index: at most this many faces of one subject share a graph node, and a search scores
# the faces of at least this many nodes exactly. Chosen with bench/gallery_search.py.
TEMPLATE_GROUP_SIZE = 8
TEMPLATE_CANDIDATES = 16
# The graph routes in a quarter of the embedding's dimensions, at least ROUTER_MIN_DIM: it holds
# templates projected onto their principal axes (scoring stays exact, full width). Measured with
# bench/gallery_search.py: 64 suits 128-d faces; for 10M random 512-d faces a 64-d projection
# keeps the true subject among 16 candidates for 99.5% of queries, a 128-d one for all.
ROUTER_MIN_DIM = 64
_PROJECTION_SAMPLE = 200_000
_CODE_RANGE_MIN_VECTORS = 1_000
_EXACT_BLOCK = 262_144
_TEMPLATE_BLOCK = 65_536
_FORMAT = 5


def router_dim(dim: int) -> int:
    """Dimensions the template graph of ``dim``-wide embeddings routes in."""
    return min(dim, max(ROUTER_MIN_DIM, dim // 4))


def _pad(sims: np.ndarray, ids: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    missing = k - sims.shape[1]
    if missing <= 0:
        return sims, ids
    nq = sims.shape[0]
    return (np.hstack([sims, np.full((nq, missing), -np.inf, np.float32)]),
            np.hstack([ids, np.full((nq, missing), -1, np.int64)]))


def _grown(array: np.ndarray, needed: int, fill: int | None = None, *, spare: bool = True) -> np.ndarray:
    """``array`` itself when it has ``needed`` rows, else a copy with room for them: geometrically
    more rows when ``spare``, exactly ``needed`` otherwise (new rows set to ``fill`` when given)."""
    if needed <= len(array):
        return array
    grown = np.empty((max(needed, 2 * len(array), 1024) if spare else needed, *array.shape[1:]), array.dtype)
    grown[: len(array)] = array
    if fill is not None:
        grown[len(array):] = fill
    return grown


class VectorIndex(Protocol):
    """Inner-product top-k over unit vectors keyed by int64 face ids. ``groups`` (the subject of
    each face) lets an index route by subject; search results are faces either way."""

    kind: str
    dim: int
    storage: Storage

    def __len__(self) -> int: ...
    def ids(self) -> np.ndarray: ...
    def reserve(self, faces: int) -> None: ...
    def add(self, ids: np.ndarray, vectors: np.ndarray, groups: np.ndarray | None = None) -> None: ...
    def remove(self, ids: np.ndarray) -> int: ...
    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]: ...
    def memory_bytes(self) -> int: ...

    def groups(self) -> tuple[np.ndarray, np.ndarray] | None:
        """The face ids held and the subject each is grouped under (None: an index that groups no
        face, where a face moved to another subject changes nothing)."""
        ...

    def needs_rebuild(self, faces: int, ann_min_faces: int) -> bool:
        """Whether a collection of ``faces`` faces is better served by a freshly built index
        (another kind, or this kind without the leftovers of removals)."""
        ...

    def persist(self, path: Path, meta: dict[str, Any], write: Callable[[dict[str, np.ndarray]], None]) -> Path | None:
        """Save the index: its arrays through ``write`` (which also stores ``meta``; add what
        :meth:`restore` needs to it first), any side file beside ``path``, whose path is returned."""
        ...

    @classmethod
    def restore(cls, path: Path, meta: dict[str, Any], arrays: Mapping[str, np.ndarray]) -> VectorIndex | None:
        """The index saved by :meth:`persist`, or None when the files do not fit together."""
        ...

