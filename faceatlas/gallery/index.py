"""Derived vector index of a collection: exact BLAS search for small sets, a FAISS HNSW graph above.

The database is the source of truth; an index only ever holds (face id, vector) pairs copied
from it, persisted atomically together with the collection ``revision`` it reflects.
"""

from __future__ import annotations

import io
import json
import os
import threading
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Protocol

import faiss
import numpy as np

Storage = Literal["float32", "float16"]

# Below this many faces the exact (brute-force) index is used; at and above it the HNSW graph.
# Measured with bench/gallery_search.py (2 shared, heavily loaded cores); see docs/gallery.md.
ANN_MIN_FACES = 20_000
# HNSW graph: neighbours per node ("M"), candidate list while inserting ("efConstruction") and
# while searching ("ef"). Chosen with bench/gallery_search.py for recall@1 >= 0.99; see docs/gallery.md.
HNSW_CONNECTIVITY = 32
HNSW_EXPANSION_ADD = 128
DEFAULT_EXPANSION_SEARCH = 256
_EXACT_BLOCK = 262_144
_FORMAT = 3


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


class HNSWIndex:
    """FAISS HNSW graph over inner product, float32 or float16 vectors, multi-threaded build.

    FAISS cannot unlink a node from the graph, so ``remove`` leaves a tombstone: the node keeps
    routing searches, its label becomes -1 (never returned) and its stored vector is overwritten
    with zeros at once, so a removed face is neither in memory nor in the next saved file. The
    cache rebuilds a graph when tombstones pile up. One lock guards the graph: FAISS may
    reallocate it while adding, which concurrent searches must not see."""

    kind = "hnsw"

    def __init__(self, dim: int, storage: Storage = "float32", *, expansion_search: int = DEFAULT_EXPANSION_SEARCH,
                 expansion_add: int = HNSW_EXPANSION_ADD, graph: faiss.IndexHNSW | None = None,
                 labels: np.ndarray | None = None) -> None:
        self.dim = dim
        self.storage = storage
        if graph is None:
            graph = faiss.IndexHNSWFlat(dim, HNSW_CONNECTIVITY, faiss.METRIC_INNER_PRODUCT) \
                if storage == "float32" else \
                faiss.IndexHNSWSQ(dim, faiss.ScalarQuantizer.QT_fp16, HNSW_CONNECTIVITY, faiss.METRIC_INNER_PRODUCT)
            graph.hnsw.efConstruction = expansion_add
        self.graph = graph
        self.expansion_search = expansion_search
        self._labels = np.empty(0, np.int64) if labels is None else np.array(labels, np.int64)
        self.tombstones = int(np.count_nonzero(self._labels < 0))  # graph nodes left by removed faces
        self._lock = threading.Lock()

    @property
    def labels(self) -> np.ndarray:
        """The face id of every graph node in insertion order, -1 for a tombstone (a view)."""
        return self._labels[: self.graph.ntotal]

    def __len__(self) -> int:
        return len(self.labels) - self.tombstones

    def ids(self) -> np.ndarray:
        with self._lock:
            return self.labels[self.labels >= 0].copy()

    def add(self, ids: np.ndarray, vectors: np.ndarray) -> None:
        ids = np.asarray(ids, dtype=np.int64).ravel()
        if not len(ids):
            return
        vectors = np.ascontiguousarray(vectors, dtype=np.float32).reshape(-1, self.dim)
        with self._lock:
            start = self.graph.ntotal
            if start + len(ids) > len(self._labels):  # grow geometrically: adds come a few at a time
                grown = np.empty(max(start + len(ids), 2 * len(self._labels), 1024), np.int64)
                grown[:start] = self._labels[:start]
                self._labels = grown
            self._labels[start: start + len(ids)] = ids
            self.graph.add(vectors)

    def remove(self, ids: np.ndarray) -> int:
        ids = np.asarray(ids, dtype=np.int64).ravel()
        with self._lock:
            positions = np.flatnonzero(np.isin(self.labels, ids) & (self.labels >= 0))
            if not len(positions):
                return 0
            stored = faiss.downcast_index(self.graph.storage)
            codes = faiss.rev_swig_ptr(stored.codes.data(), stored.codes.size()).reshape(-1, stored.code_size)
            codes[positions] = 0  # the vector itself is gone, not just unreachable
            self.labels[positions] = -1
            self.tombstones += len(positions)
        return len(positions)

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        queries = np.ascontiguousarray(np.atleast_2d(queries), dtype=np.float32)
        with self._lock:
            count = min(k + min(self.tombstones, k), len(self.labels))
            if count == 0:
                return _pad(np.empty((len(queries), 0), np.float32), np.empty((len(queries), 0), np.int64), k)
            params = faiss.SearchParametersHNSW()
            params.efSearch = max(self.expansion_search, count)
            sims, positions = self.graph.search(queries, count, params=params)
            ids = np.where(positions >= 0, self.labels[positions], -1)
        order = np.argsort(ids < 0, axis=1, kind="stable")[:, :k]
        sims, ids = np.take_along_axis(sims, order, 1), np.take_along_axis(ids, order, 1)
        sims[ids < 0] = -np.inf
        return _pad(sims.astype(np.float32), ids, k)

    def memory_bytes(self) -> int:
        stored = faiss.downcast_index(self.graph.storage)
        hnsw = self.graph.hnsw
        return int(stored.codes.size() + 4 * hnsw.neighbors.size() + 8 * hnsw.offsets.size()
                   + 4 * hnsw.levels.size() + 8 * len(self.labels))

    def save(self, file: Path) -> np.ndarray:
        """Write the graph to ``file`` (fsynced); returns the face id of every graph node."""
        with self._lock:
            faiss.write_index(self.graph, str(file))
            labels = self.labels.copy()
        with open(file, "rb+") as handle:
            os.fsync(handle.fileno())
        return labels


def build_index(ids: np.ndarray, vectors: np.ndarray, dim: int, *, storage: Storage = "float32",
                ann_min_faces: int = ANN_MIN_FACES, expansion_search: int = DEFAULT_EXPANSION_SEARCH,
                expansion_add: int = HNSW_EXPANSION_ADD) -> VectorIndex:
    """The right index for this many faces: exact below ``ann_min_faces``, HNSW from there on."""
    index: VectorIndex = HNSWIndex(dim, storage, expansion_search=expansion_search, expansion_add=expansion_add) \
        if len(ids) >= ann_min_faces else ExactIndex(dim, storage)
    index.add(ids, vectors)
    return index


@dataclass
class IndexState:
    """A collection's index and the database state it reflects."""

    index: VectorIndex
    revision: int
    meta: dict[str, Any] = field(default_factory=dict)


def _graph_files(path: Path) -> list[Path]:
    """Graph files of the index at ``path``, including the usearch ones of index format 2."""
    return [*path.parent.glob(f"{path.name}.*.faiss"), *path.parent.glob(f"{path.name}.*.usearch")]


def save_index(state: IndexState, path: Path) -> None:
    """Write index and revision to ``path`` atomically (tmp, fsync, rename). An HNSW graph goes to
    a fresh ``<path>.<token>.faiss`` file named in the metadata; older graph files are deleted."""
    path.parent.mkdir(parents=True, exist_ok=True)
    index = state.index
    meta = {"format": _FORMAT, "kind": index.kind, "dim": index.dim, "storage": index.storage,
            "revision": state.revision, **state.meta}
    arrays: dict[str, np.ndarray] = {}
    graph_file = None
    if isinstance(index, HNSWIndex):
        graph_file = path.with_name(f"{path.name}.{uuid.uuid4().hex}.faiss")
        arrays["labels"] = index.save(graph_file)
        meta["graph"] = graph_file.name
        meta["expansion_search"] = index.expansion_search
    else:
        arrays["ids"] = index.ids()
        arrays["vectors"] = index.vectors()
    arrays["meta"] = np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8)
    tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
    with open(tmp, "wb") as handle:
        np.savez(handle, **arrays)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, path)
    for stale in _graph_files(path):
        if stale != graph_file:
            stale.unlink(missing_ok=True)


def delete_index(path: Path) -> None:
    """Remove the index saved at ``path`` and its graph files."""
    path.unlink(missing_ok=True)
    for graph_file in _graph_files(path):
        graph_file.unlink(missing_ok=True)


def load_index(path: Path) -> IndexState | None:
    """The index saved at ``path``, or None when it is missing or unreadable (then rebuild)."""
    try:
        with np.load(path, allow_pickle=False) as data:
            meta = json.loads(bytes(data["meta"]).decode())
            if meta.get("format") != _FORMAT:
                return None
            if meta["kind"] == "exact":
                index: VectorIndex = ExactIndex(meta["dim"], meta["storage"])
                index.add(data["ids"], data["vectors"])
            else:
                graph = faiss.read_index(str(path.with_name(meta["graph"])))
                labels = data["labels"]
                if graph.d != meta["dim"] or graph.ntotal != len(labels):
                    return None
                index = HNSWIndex(meta["dim"], meta["storage"], expansion_search=meta["expansion_search"],
                                  graph=graph, labels=labels)
    except (OSError, ValueError, KeyError, EOFError, RuntimeError, io.UnsupportedOperation):
        return None
    revision = meta.pop("revision")
    for key in ("format", "kind", "dim", "storage", "graph", "expansion_search"):
        meta.pop(key, None)
    return IndexState(index, revision, meta)
