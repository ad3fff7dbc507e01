"""Derived vector index of a collection: exact BLAS search for small sets, FAISS IVF above.

The database is the source of truth; an index only ever holds (face id, vector) pairs copied
from it, persisted atomically together with the collection ``revision`` it reflects.
"""

from __future__ import annotations

import io
import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Protocol

import faiss
import numpy as np

Storage = Literal["float32", "float16"]

# Below this many faces the exact (brute-force) index is used; at and above it FAISS IVF.
# Measured with bench/gallery_search.py (2 shared cores, 128-d, clustered synthetic faces): exact
# numpy p50 1.3 ms at 25k, 8 ms at 50k, 12 ms at 100k with recall 1.0; IVF (sqrt(n) cells,
# nprobe 32) was faster (0.3-0.7 ms) but reached only recall@1 0.87-0.94 on that data, so exact
# search is kept as long as its latency is tolerable. See docs/gallery.md.
ANN_MIN_FACES = 100_000
DEFAULT_NPROBE = 64
_EXACT_BLOCK = 262_144
_FORMAT = 1


def normalize_rows(vectors: np.ndarray) -> np.ndarray:
    """Float32 copy of ``vectors`` (n, d) with every row scaled to unit length."""
    vectors = np.atleast_2d(np.asarray(vectors, dtype=np.float32))
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    return vectors / np.maximum(norms, 1e-12)


def _topk(scores: np.ndarray, ids: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Best ``k`` columns of ``scores`` (nq, n) per row, sorted descending, as (sims, ids)."""
    k_eff = min(k, scores.shape[1])
    part = np.argpartition(-scores, k_eff - 1, axis=1)[:, :k_eff] if k_eff < scores.shape[1] else \
        np.tile(np.arange(scores.shape[1]), (scores.shape[0], 1))
    part_scores = np.take_along_axis(scores, part, axis=1)
    order = np.argsort(-part_scores, axis=1)
    best = np.take_along_axis(part, order, axis=1)
    return np.take_along_axis(part_scores, order, axis=1), ids[best]


def _pad(sims: np.ndarray, ids: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    missing = k - sims.shape[1]
    if missing <= 0:
        return sims, ids
    nq = sims.shape[0]
    return (np.hstack([sims, np.full((nq, missing), -np.inf, np.float32)]),
            np.hstack([ids, np.full((nq, missing), -1, np.int64)]))


class VectorIndex(Protocol):
    """Inner-product top-k over unit vectors keyed by int64 face ids."""

    kind: str
    dim: int
    storage: Storage

    def __len__(self) -> int: ...
    def ids(self) -> np.ndarray: ...
    def add(self, ids: np.ndarray, vectors: np.ndarray) -> None: ...
    def remove(self, ids: np.ndarray) -> int: ...
    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]: ...
    def memory_bytes(self) -> int: ...


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

    def add(self, ids: np.ndarray, vectors: np.ndarray) -> None:
        ids = np.asarray(ids, dtype=np.int64).ravel()
        new_size = self._size + len(ids)
        if new_size > len(self._ids):
            capacity = max(new_size, 2 * len(self._ids), 1024)
            grown = np.empty((capacity, self.dim), dtype=self.storage)
            grown[: self._size] = self._vectors[: self._size]
            grown_ids = np.empty(capacity, dtype=np.int64)
            grown_ids[: self._size] = self._ids[: self._size]
            self._vectors, self._ids = grown, grown_ids
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
            return _pad(*_topk(scores, self._ids[: self._size], k), k)
        best_sims, best_ids = [], []
        for start in range(0, self._size, _EXACT_BLOCK):
            block = self._vectors[start: min(start + _EXACT_BLOCK, self._size)].astype(np.float32)
            sims, ids = _topk(queries @ block.T, self._ids[start: start + len(block)], k)
            best_sims.append(sims)
            best_ids.append(ids)
        sims, ids = np.hstack(best_sims), np.hstack(best_ids)
        order = np.argsort(-sims, axis=1)[:, :k]
        return _pad(np.take_along_axis(sims, order, 1), np.take_along_axis(ids, order, 1), k)

    def memory_bytes(self) -> int:
        return self._size * (self.dim * np.dtype(self.storage).itemsize + 8)


class IVFIndex:
    """FAISS inverted file (k-means cells, ``nprobe`` cells scanned per query), float32 or
    float16 (scalar-quantised) vectors, ids kept inside FAISS; trained on the vectors it is built from."""

    kind = "ivf"

    def __init__(self, index: faiss.IndexIVF, storage: Storage, ids: np.ndarray, trained_on: int) -> None:
        self.index = index
        self.dim = index.d
        self.storage = storage
        self._ids = np.asarray(ids, dtype=np.int64)
        self.trained_on = trained_on

    @classmethod
    def train(cls, ids: np.ndarray, vectors: np.ndarray, storage: Storage = "float32",
              nprobe: int = DEFAULT_NPROBE, nlist: int | None = None) -> IVFIndex:
        """Train the coarse quantiser on ``vectors`` (about sqrt(n) cells) and add them all."""
        vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        n, dim = vectors.shape
        nlist = nlist or max(16, 2 ** round(math.log2(math.sqrt(n))))
        codec = "SQfp16" if storage == "float16" else "Flat"
        index = faiss.index_factory(dim, f"IVF{nlist},{codec}", faiss.METRIC_INNER_PRODUCT)
        index.cp.max_points_per_centroid = 64
        index.cp.niter = 10
        index.train(vectors)
        index.nprobe = min(nprobe, nlist)
        built = cls(index, storage, np.empty(0, np.int64), trained_on=n)
        built.add(ids, vectors)
        return built

    def __len__(self) -> int:
        return int(self.index.ntotal)

    def ids(self) -> np.ndarray:
        return self._ids.copy()

    def add(self, ids: np.ndarray, vectors: np.ndarray) -> None:
        ids = np.asarray(ids, dtype=np.int64).ravel()
        self.index.add_with_ids(np.ascontiguousarray(vectors, dtype=np.float32).reshape(-1, self.dim), ids)
        self._ids = np.concatenate([self._ids, ids])

    def remove(self, ids: np.ndarray) -> int:
        ids = np.asarray(ids, dtype=np.int64).ravel()
        removed = int(self.index.remove_ids(faiss.IDSelectorBatch(ids)))
        self._ids = self._ids[~np.isin(self._ids, ids)]
        return removed

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        queries = np.ascontiguousarray(np.atleast_2d(queries), dtype=np.float32)
        sims, ids = self.index.search(queries, k)
        sims[ids < 0] = -np.inf
        return sims, ids

    def memory_bytes(self) -> int:
        item = 2 if self.storage == "float16" else 4
        return len(self) * (self.dim * item + 8 + 8) + self.index.nlist * self.dim * 4


def build_index(ids: np.ndarray, vectors: np.ndarray, dim: int, *, storage: Storage = "float32",
                ann_min_faces: int = ANN_MIN_FACES, nprobe: int = DEFAULT_NPROBE) -> VectorIndex:
    """The right index for this many faces: exact below ``ann_min_faces``, IVF from there on."""
    if len(ids) >= ann_min_faces:
        return IVFIndex.train(ids, vectors, storage, nprobe)
    index = ExactIndex(dim, storage)
    index.add(ids, vectors)
    return index


@dataclass
class IndexState:
    """A collection's index and the database state it reflects."""

    index: VectorIndex
    revision: int
    meta: dict[str, Any] = field(default_factory=dict)


def save_index(state: IndexState, path: Path) -> None:
    """Write index, ids and revision to ``path`` in one file, atomically (tmp, fsync, rename)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    index = state.index
    meta = {"format": _FORMAT, "kind": index.kind, "dim": index.dim, "storage": index.storage,
            "revision": state.revision, **state.meta}
    arrays: dict[str, np.ndarray] = {"ids": index.ids()}
    if isinstance(index, ExactIndex):
        arrays["vectors"] = index.vectors()
    else:
        meta["trained_on"] = index.trained_on
        arrays["faiss"] = faiss.serialize_index(index.index)
    arrays["meta"] = np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8)
    tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
    with open(tmp, "wb") as handle:
        np.savez(handle, **arrays)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, path)


def load_index(path: Path) -> IndexState | None:
    """The index saved at ``path``, or None when it is missing or unreadable (then rebuild)."""
    try:
        with np.load(path, allow_pickle=False) as data:
            meta = json.loads(bytes(data["meta"]).decode())
            if meta.get("format") != _FORMAT:
                return None
            ids = data["ids"]
            if meta["kind"] == "exact":
                index: VectorIndex = ExactIndex(meta["dim"], meta["storage"])
                index.add(ids, data["vectors"])
            else:
                ivf = faiss.deserialize_index(np.array(data["faiss"]))
                index = IVFIndex(ivf, meta["storage"], ids, meta.get("trained_on", len(ids)))
    except (OSError, ValueError, KeyError, EOFError, RuntimeError, io.UnsupportedOperation):
        return None
    revision = meta.pop("revision")
    for key in ("format", "kind", "dim", "storage", "trained_on"):
        meta.pop(key, None)
    return IndexState(index, revision, meta)
