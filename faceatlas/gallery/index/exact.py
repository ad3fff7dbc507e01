"""The exact index: brute-force inner products over every face (small collections)."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from faceatlas.engine import top_k
from faceatlas.gallery.index.base import (
    _EXACT_BLOCK,
    Storage,
    _grown,
    _pad,
)


class ExactIndex:
    """Brute force: one float32 (or float16) matrix, numpy BLAS matmul, argpartition top-k."""

    kind = "exact"

    def __init__(self, dim: int, storage: Storage = "float32") -> None:
        self.dim = dim
        self.storage = storage
        self._vectors = np.empty((0, dim), dtype=storage)
        self._ids = np.empty(0, dtype=np.int64)
        self._size = 0

    def __len__(self) -> int:
        return self._size

    def ids(self) -> np.ndarray:
        return self._ids[: self._size].copy()

    def vectors(self) -> np.ndarray:
        return self._vectors[: self._size]

    def reserve(self, faces: int) -> None:
        """Make room for ``faces`` more faces, so adding them in chunks copies nothing."""
        end = self._size + faces
        self._vectors, self._ids = _grown(self._vectors, end, spare=False), _grown(self._ids, end, spare=False)

    def add(self, ids: np.ndarray, vectors: np.ndarray, groups: np.ndarray | None = None) -> None:
        ids = np.asarray(ids, dtype=np.int64).ravel()
        new_size = self._size + len(ids)
        self._vectors, self._ids = _grown(self._vectors, new_size), _grown(self._ids, new_size)
        self._vectors[self._size: new_size] = np.asarray(vectors, dtype=np.float32).reshape(-1, self.dim)
        self._ids[self._size: new_size] = ids
        self._size = new_size

    def remove(self, ids: np.ndarray) -> int:
        keep = ~np.isin(self._ids[: self._size], np.asarray(ids, dtype=np.int64))
        removed = int(self._size - keep.sum())
        if removed:
            self._vectors = np.ascontiguousarray(self._vectors[: self._size][keep])
            self._ids = self._ids[: self._size][keep].copy()
            self._size = len(self._ids)
        return removed

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        queries = np.atleast_2d(np.asarray(queries, dtype=np.float32))
        if self._size == 0:
            return _pad(np.empty((len(queries), 0), np.float32), np.empty((len(queries), 0), np.int64), k)
        if self.storage == "float32":
            scores = queries @ self._vectors[: self._size].T
            return _pad(*top_k(scores, self._ids[: self._size], k), k)
        best_sims, best_ids = [], []
        for start in range(0, self._size, _EXACT_BLOCK):
            block = self._vectors[start: min(start + _EXACT_BLOCK, self._size)].astype(np.float32)
            sims, ids = top_k(queries @ block.T, self._ids[start: start + len(block)], k)
            best_sims.append(sims)
            best_ids.append(ids)
        sims, ids = np.hstack(best_sims), np.hstack(best_ids)
        order = np.argsort(-sims, axis=1)[:, :k]
        return _pad(np.take_along_axis(sims, order, 1), np.take_along_axis(ids, order, 1), k)

    def groups(self) -> None:
        return None  # faces only: a subject is read from the database with each search

    def needs_rebuild(self, faces: int, ann_min_faces: int) -> bool:
        return faces >= ann_min_faces  # grown into template-index size

    def persist(self, path: Path, meta: dict[str, Any], write: Callable[[dict[str, np.ndarray]], None]) -> Path | None:
        write({"ids": self.ids(), "vectors": self.vectors()})
        return None

    @classmethod
    def restore(cls, path: Path, meta: dict[str, Any], arrays: Mapping[str, np.ndarray]) -> ExactIndex:
        index = cls(meta["dim"], meta["storage"])
        index.add(arrays["ids"], arrays["vectors"])
        return index

    def memory_bytes(self) -> int:
        return self._size * (self.dim * np.dtype(self.storage).itemsize + 8)

