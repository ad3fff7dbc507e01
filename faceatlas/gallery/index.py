"""Derived vector index of a collection: exact BLAS search for small sets, usearch HNSW above.

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

import numpy as np
from usearch.index import Index

Storage = Literal["float32", "float16"]

# Below this many faces the exact (brute-force) index is used; at and above it the HNSW graph.
# Measured with bench/gallery_search.py (2 shared, heavily loaded cores); see docs/gallery.md.
ANN_MIN_FACES = 20_000
# HNSW graph: neighbours per node ("M"), candidate list while inserting ("efConstruction") and
# while searching ("ef"). Chosen with bench/gallery_search.py for recall@1 >= 0.99; see docs/gallery.md.
HNSW_CONNECTIVITY = 16
HNSW_EXPANSION_ADD = 64
DEFAULT_EXPANSION_SEARCH = 256
_BLANK_KEY_BASE = 2**63
_EXACT_BLOCK = 262_144
_FORMAT = 2


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
    """usearch HNSW graph over inner product, float32 or float16 vectors, multi-threaded build.

    usearch's ``remove`` unlinks a node but leaves its vector in the slot until the slot is reused,
    so every removal at once refills the freed slots with zero-vector placeholders (keys >= 2**63,
    negative as int64, never returned), and later adds take those slots back first: a removed
    face's vector is overwritten in memory and absent from the next saved file. One lock guards the
    graph: usearch may reallocate it while adding, which concurrent searches must not see."""

    kind = "hnsw"

    def __init__(self, dim: int, storage: Storage = "float32", *, expansion_search: int = DEFAULT_EXPANSION_SEARCH,
                 graph: Index | None = None, blanks: np.ndarray | None = None) -> None:
        self.dim = dim
        self.storage = storage
        self.graph = graph if graph is not None else Index(
            ndim=dim, metric="ip", dtype="f16" if storage == "float16" else "f32",
            connectivity=HNSW_CONNECTIVITY, expansion_add=HNSW_EXPANSION_ADD)
        self.graph.expansion_search = expansion_search
        self.blanks = np.empty(0, np.uint64) if blanks is None else np.asarray(blanks, np.uint64)
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self.graph) - len(self.blanks)

    def ids(self) -> np.ndarray:
        with self._lock:
            keys = np.asarray(self.graph.keys).view(np.int64)
        return keys[keys >= 0]

    def add(self, ids: np.ndarray, vectors: np.ndarray) -> None:
        ids = np.asarray(ids, dtype=np.int64).ravel()
        if not len(ids):
            return
        vectors = np.ascontiguousarray(vectors, dtype=np.float32).reshape(-1, self.dim)
        with self._lock:
            reuse = min(len(ids), len(self.blanks))
            if reuse:  # free placeholder slots so the new faces land in them
                self.graph.remove(self.blanks[len(self.blanks) - reuse:])
                self.blanks = self.blanks[: len(self.blanks) - reuse]
            self.graph.add(ids.view(np.uint64), vectors)

    def remove(self, ids: np.ndarray) -> int:
        ids = np.unique(np.asarray(ids, dtype=np.int64).ravel()).view(np.uint64)
        with self._lock:
            present = ids[np.atleast_1d(self.graph.contains(ids))] if len(ids) else ids
            if not len(present):
                return 0
            self.graph.remove(present)
            first = int(self.blanks[-1]) + 1 if len(self.blanks) else _BLANK_KEY_BASE
            blanks = np.arange(first, first + len(present), dtype=np.uint64)
            self.graph.add(blanks, np.zeros((len(present), self.dim), np.float32))
            self.blanks = np.concatenate([self.blanks, blanks])
        return len(present)

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        queries = np.ascontiguousarray(np.atleast_2d(queries), dtype=np.float32)
        with self._lock:
            count = min(k + min(len(self.blanks), k), len(self.graph))
            if count == 0:
                return _pad(np.empty((len(queries), 0), np.float32), np.empty((len(queries), 0), np.int64), k)
            matches = self.graph.search(queries, count)
        ids = matches.keys.reshape(len(queries), -1).view(np.int64)
        sims = 1.0 - matches.distances.reshape(len(queries), -1)
        found = np.asarray(getattr(matches, "counts", [len(matches)])).reshape(-1, 1)  # one query: Matches
        invalid = (ids < 0) | (np.arange(ids.shape[1]) >= found)
        order = np.argsort(invalid, axis=1, kind="stable")[:, :k]
        ids, sims, invalid = (np.take_along_axis(a, order, 1) for a in (ids, sims, invalid))
        sims[invalid], ids[invalid] = -np.inf, -1
        return _pad(sims.astype(np.float32), ids, k)

    def memory_bytes(self) -> int:
        return int(self.graph.memory_usage)

    def save(self, file: Path) -> np.ndarray:
        """Write the graph to ``file`` (fsynced); returns the placeholder keys it holds."""
        with self._lock:
            self.graph.save(str(file))
            blanks = self.blanks.copy()
        with open(file, "rb+") as handle:
            os.fsync(handle.fileno())
        return blanks


def build_index(ids: np.ndarray, vectors: np.ndarray, dim: int, *, storage: Storage = "float32",
                ann_min_faces: int = ANN_MIN_FACES, expansion_search: int = DEFAULT_EXPANSION_SEARCH) -> VectorIndex:
    """The right index for this many faces: exact below ``ann_min_faces``, HNSW from there on."""
    index: VectorIndex = HNSWIndex(dim, storage, expansion_search=expansion_search) \
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
    return list(path.parent.glob(f"{path.name}.*.usearch"))


def save_index(state: IndexState, path: Path) -> None:
    """Write index and revision to ``path`` atomically (tmp, fsync, rename). An HNSW graph goes to
    a fresh ``<path>.<token>.usearch`` file named in the metadata; older graph files are deleted."""
    path.parent.mkdir(parents=True, exist_ok=True)
    index = state.index
    meta = {"format": _FORMAT, "kind": index.kind, "dim": index.dim, "storage": index.storage,
            "revision": state.revision, **state.meta}
    arrays: dict[str, np.ndarray] = {}
    graph_file = None
    if isinstance(index, HNSWIndex):
        graph_file = path.with_name(f"{path.name}.{uuid.uuid4().hex}.usearch")
        arrays["blanks"] = index.save(graph_file)
        meta["graph"] = graph_file.name
        meta["expansion_search"] = index.graph.expansion_search
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
                graph = Index.restore(str(path.with_name(meta["graph"])))
                if graph is None or graph.ndim != meta["dim"]:
                    return None
                index = HNSWIndex(meta["dim"], meta["storage"], expansion_search=meta["expansion_search"],
                                  graph=graph, blanks=data["blanks"])
    except (OSError, ValueError, KeyError, EOFError, RuntimeError, io.UnsupportedOperation):
        return None
    revision = meta.pop("revision")
    for key in ("format", "kind", "dim", "storage", "graph", "expansion_search"):
        meta.pop(key, None)
    return IndexState(index, revision, meta)
