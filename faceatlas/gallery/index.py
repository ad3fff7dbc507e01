"""Derived vector index of a collection: exact BLAS search for small sets, and above that a FAISS
HNSW graph over subject templates whose faces are then scored exactly (:class:`TemplateIndex`).

The database is the source of truth; an index only ever holds (face id, vector, subject) copied
from it, persisted atomically together with the collection ``revision`` it reflects.
"""

from __future__ import annotations

import io
import json
import os
import threading
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Protocol

import faiss
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
    """FAISS HNSW graph over inner product of unit vectors stored as 8-bit codes, multi-threaded
    build; the router of :class:`TemplateIndex` (its labels are template node ids).

    The codes span, per dimension, a range fitted on the first vectors added (:func:`code_range`),
    a quarter of float32's bytes: at 200k 128-d templates the build is 1.5x and search 1.04-1.4x
    faster than on float32 with the same recall (docs/gallery.md); the router only ranks
    candidates, whose faces are then scored exactly. A float32 graph saved before loads and works
    as it is.

    FAISS cannot unlink a node from the graph, so ``remove`` leaves a tombstone: the node keeps
    routing searches, its label becomes -1 (never returned) and its stored vector is overwritten
    with zeros at once, so a removed vector is neither in memory nor in the next saved file. The
    cache rebuilds a graph when tombstones pile up. One lock guards the graph: FAISS may
    reallocate it while adding, which concurrent searches must not see."""

    def __init__(self, dim: int, *, expansion_search: int = DEFAULT_EXPANSION_SEARCH,
                 expansion_add: int = HNSW_EXPANSION_ADD, connectivity: int = HNSW_CONNECTIVITY,
                 graph: faiss.IndexHNSW | None = None, labels: np.ndarray | None = None) -> None:
        self.dim = dim
        if graph is None:
            graph = faiss.IndexHNSWSQ(dim, faiss.ScalarQuantizer.QT_8bit, connectivity, faiss.METRIC_INNER_PRODUCT)
            graph.hnsw.efConstruction = expansion_add
        self.graph = graph
        self.expansion_search = expansion_search
        self._labels = np.empty(0, np.int64) if labels is None else np.array(labels, np.int64)
        self.tombstones = int(np.count_nonzero(self._labels < 0))  # graph nodes left by removed faces
        self._lock = threading.Lock()

    @property
    def labels(self) -> np.ndarray:
        """The label of every graph node in insertion order, -1 for a tombstone (a view)."""
        return self._labels[: self.graph.ntotal]

    def add(self, ids: np.ndarray, vectors: np.ndarray) -> None:
        ids = np.asarray(ids, dtype=np.int64).ravel()
        if not len(ids):
            return
        vectors = np.ascontiguousarray(vectors, dtype=np.float32).reshape(-1, self.dim)
        with self._lock:
            if not self.graph.is_trained:
                limit = code_range(vectors)
                self.graph.train(np.stack([-limit, limit]))  # per dimension: codes span [-limit, limit]
            start = self.graph.ntotal
            self._labels = _grown(self._labels, start + len(ids))  # geometric: adds come a few at a time
            self._labels[start: start + len(ids)] = ids
            self.graph.add(vectors)

    def _codes(self) -> tuple[np.ndarray, faiss.Index]:
        """The graph's stored vectors as a writable (nodes, code size) byte view, and their codec."""
        stored = faiss.downcast_index(self.graph.storage)
        codes = faiss.rev_swig_ptr(stored.codes.data(), stored.codes.size())
        return codes.reshape(-1, stored.code_size), stored

    def overwrite(self, positions: np.ndarray, vectors: np.ndarray) -> None:
        """Replace the stored vectors of graph nodes in place (their links stay as built)."""
        vectors = np.ascontiguousarray(vectors, dtype=np.float32).reshape(-1, self.dim)
        with self._lock:
            codes, stored = self._codes()
            codes[np.asarray(positions, np.int64)] = stored.sa_encode(vectors)

    def remove(self, ids: np.ndarray) -> int:
        ids = np.asarray(ids, dtype=np.int64).ravel()
        with self._lock:
            positions = np.flatnonzero(np.isin(self.labels, ids) & (self.labels >= 0))
            if not len(positions):
                return 0
            codes, _ = self._codes()
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

    def save(self, file: Path) -> None:
        """Write the graph to ``file`` (fsynced)."""
        with self._lock:
            faiss.write_index(self.graph, str(file))
        with open(file, "rb+") as handle:
            os.fsync(handle.fileno())


class TemplateIndex:
    """Faces grouped by subject: an HNSW graph over *templates* finds candidate subjects, then their
    faces are scored exactly.

    A template is the normalised mean of up to ``TEMPLATE_GROUP_SIZE`` faces of one subject (a
    subject with more faces gets several). The graph has a node per template rather than per face,
    so with a few photos per person it is several times smaller and faster to build, and the mean
    of several photos stands out more clearly from other people than one photo does, which makes
    the graph easier to search. Results are faces with exact similarities.

    The graph routes in ``routing_dim`` dimensions (default :func:`router_dim`): wider templates
    (and queries) are projected onto principal axes fitted on the first templates added, which keeps the true
    subject among the candidates while making the graph cheaper and easier to search.

    Node ids are graph positions. Adding a face to a subject with room in its last node, or
    removing a face, rewrites that node's template in place; a node left empty becomes a
    tombstone. Removed faces are zeroed at once, in memory and in the next saved file."""

    kind = "templates"

    def __init__(self, dim: int, storage: Storage = "float32", *, expansion_search: int = DEFAULT_EXPANSION_SEARCH,
                 expansion_add: int = HNSW_EXPANSION_ADD, connectivity: int = HNSW_CONNECTIVITY,
                 routing_dim: int | None = None, router: HNSWIndex | None = None,
                 arrays: dict[str, np.ndarray] | None = None) -> None:
        self.dim = dim
        self.storage = storage  # of the faces; templates are 8-bit codes in the router
        arrays = arrays or {}
        # (dim, router dim) orthonormal columns when the router is narrower, fitted on the first templates
        self.projection: np.ndarray | None = np.array(arrays["projection"], np.float32) \
            if "projection" in arrays else None
        self.router = router or HNSWIndex(min(dim, routing_dim or router_dim(dim)), expansion_search=expansion_search,
                                          expansion_add=expansion_add, connectivity=connectivity)
        self._vectors = np.array(arrays.get("vectors", np.empty((0, dim))), dtype=storage)
        self._ids = np.array(arrays.get("ids", np.empty(0)), np.int64)  # face id of each row, -1 removed
        self._node_of = np.array(arrays.get("node_of", np.empty(0)), np.int64)  # graph node of each row
        self._members = np.array(arrays.get("members", np.empty((0, TEMPLATE_GROUP_SIZE))), np.int64)  # rows
        self._groups = np.array(arrays.get("groups", np.empty(0)), np.int64)  # subject of each node, -1 empty
        self._rows = len(self._ids)
        self._dead = int(np.count_nonzero(self._ids < 0))
        self._lock = threading.RLock()

    @property
    def expansion_search(self) -> int:
        return self.router.expansion_search

    @expansion_search.setter
    def expansion_search(self, value: int) -> None:
        self.router.expansion_search = value

    @property
    def nodes(self) -> int:
        return self.router.graph.ntotal

    @property
    def stale_fraction(self) -> float:
        """Share of graph nodes that are tombstones or of face rows that are removed."""
        return max(self.router.tombstones / max(self.nodes, 1), self._dead / max(self._rows, 1))

    def __len__(self) -> int:
        return self._rows - self._dead

    def ids(self) -> np.ndarray:
        with self._lock:
            ids = self._ids[: self._rows]
            return ids[ids >= 0].copy()

    def save(self, graph_file: Path, write: Callable[[dict[str, np.ndarray]], None]) -> None:
        """Write the graph to ``graph_file`` and hand the other arrays to ``write``, all under the
        lock, so the arrays are views (no copy of every face) that nothing changes meanwhile."""
        with self._lock:
            self.router.save(graph_file)
            arrays = {"vectors": self._vectors[: self._rows], "ids": self._ids[: self._rows],
                      "node_of": self._node_of[: self._rows], "members": self._members[: self.nodes],
                      "groups": self._groups[: self.nodes]}
            write(arrays if self.projection is None else {**arrays, "projection": self.projection})

    def reserve(self, faces: int) -> None:
        """Make room for ``faces`` more faces, so adding them in chunks copies no face."""
        with self._lock:
            end = self._rows + faces
            self._vectors = _grown(self._vectors, end, spare=False)
            self._ids, self._node_of = _grown(self._ids, end, spare=False), _grown(self._node_of, end, spare=False)

    def add(self, ids: np.ndarray, vectors: np.ndarray, groups: np.ndarray | None = None) -> None:
        """Add faces; ``groups`` is the subject of each (None: every face its own)."""
        ids = np.asarray(ids, dtype=np.int64).ravel()
        if not len(ids):
            return
        groups = ids if groups is None else np.asarray(groups, np.int64).ravel()
        with self._lock:
            start, end = self._rows, self._rows + len(ids)
            self._vectors = _grown(self._vectors, end)
            self._ids, self._node_of = _grown(self._ids, end), _grown(self._node_of, end)
            self._vectors[start:end] = np.asarray(vectors, np.float32).reshape(-1, self.dim)
            self._ids[start:end] = ids
            self._rows = end
            self._place(np.arange(start, end), groups)

    def remove(self, ids: np.ndarray) -> int:
        with self._lock:
            rows = np.flatnonzero(np.isin(self._ids[: self._rows], np.asarray(ids, np.int64)) &
                                  (self._ids[: self._rows] >= 0))
            if not len(rows):
                return 0
            nodes = np.unique(self._node_of[rows])
            self._vectors[rows] = 0  # the vector itself is gone, not just unreachable
            self._ids[rows] = -1
            self._node_of[rows] = -1
            self._dead += len(rows)
            members = self._members[nodes]
            members[np.isin(members, rows)] = -1
            self._members[nodes] = members
            empty = (members >= 0).sum(1) == 0
            self._groups[nodes[empty]] = -1
            self.router.remove(nodes[empty])
            self._refresh(nodes[~empty])
        return len(rows)

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        queries = np.ascontiguousarray(np.atleast_2d(queries), dtype=np.float32)
        with self._lock:
            _, nodes = self.router.search(self._routed(queries), max(k, TEMPLATE_CANDIDATES))
            sims, ids = [], []
            for query, found in zip(queries, nodes):
                rows = self._members[found[found >= 0]].ravel()
                rows = rows[rows >= 0]
                top = _topk((self._vectors[rows].astype(np.float32) @ query)[None], self._ids[rows], k) \
                    if len(rows) else (np.empty((1, 0), np.float32), np.empty((1, 0), np.int64))
                padded = _pad(*top, k)
                sims.append(padded[0])
                ids.append(padded[1])
        return np.vstack(sims), np.vstack(ids)

    def memory_bytes(self) -> int:
        return int(self.router.memory_bytes() + self._rows * (self.dim * np.dtype(self.storage).itemsize + 16)
                   + self.nodes * 8 * (TEMPLATE_GROUP_SIZE + 1))

    def _place(self, rows: np.ndarray, groups: np.ndarray) -> None:
        """Put new face rows into their subject's last node while it has room, the rest into new
        nodes of at most TEMPLATE_GROUP_SIZE faces (balanced within a subject)."""
        order = np.argsort(groups, kind="stable")
        rows, groups = rows[order], groups[order]
        waiting = np.ones(len(rows), bool)
        existing = np.flatnonzero(np.isin(self._groups[: self.nodes], groups))
        existing = existing[(self._members[existing] < 0).any(1)]
        for node in existing:  # subjects that already have a node with room: usually few
            lo, hi = np.searchsorted(groups, self._groups[node], side="left"), \
                np.searchsorted(groups, self._groups[node], side="right")
            take = lo + np.flatnonzero(waiting[lo:hi])
            free = np.flatnonzero(self._members[node] < 0)[: len(take)]
            take = take[: len(free)]
            self._members[node, free] = rows[take]
            self._node_of[rows[take]] = node
            waiting[take] = False
        self._refresh(existing)
        rows, groups = rows[waiting], groups[waiting]
        if not len(rows):
            return
        subjects, first, counts = np.unique(groups, return_index=True, return_counts=True)
        per_subject = -(-counts // TEMPLATE_GROUP_SIZE)
        rank = np.arange(len(rows)) - np.repeat(first, counts)
        node = np.repeat(np.cumsum(per_subject) - per_subject, counts) + \
            rank * np.repeat(per_subject, counts) // np.repeat(counts, counts)
        slot = np.arange(len(rows)) - np.searchsorted(node, node)
        base, created = self.nodes, int(per_subject.sum())
        self._members = _grown(self._members, base + created, fill=-1)
        self._groups = _grown(self._groups, base + created, fill=-1)
        self._members[base + node, slot] = rows
        self._groups[base: base + created] = np.repeat(subjects, per_subject)
        self._node_of[rows] = base + node
        new_nodes = np.arange(base, base + created)
        templates = self._templates(new_nodes)
        if self.router.dim < self.dim and self.projection is None:
            self.projection = principal_axes(templates, self.router.dim)
        self.router.add(new_nodes, self._routed(templates))

    def _refresh(self, nodes: np.ndarray) -> None:
        """Recompute the templates of ``nodes`` after their faces changed."""
        if len(nodes):
            self.router.overwrite(nodes, self._routed(self._templates(nodes)))

    def _routed(self, vectors: np.ndarray) -> np.ndarray:
        """``vectors`` as the router sees them: projected and renormalised when it is narrower."""
        return vectors if self.projection is None else normalize_rows(vectors @ self.projection)

    def _templates(self, nodes: np.ndarray) -> np.ndarray:
        """Normalised mean face of each node, computed in blocks (bounded memory)."""
        out = np.empty((len(nodes), self.dim), np.float32)
        for start in range(0, len(nodes), _TEMPLATE_BLOCK):
            members = self._members[nodes[start: start + _TEMPLATE_BLOCK]]
            faces = self._vectors[np.maximum(members, 0)].astype(np.float32)
            out[start: start + len(members)] = normalize_rows(np.einsum("ng,ngd->nd", (members >= 0).astype(np.float32),
                                                                        faces))
        return out


def code_range(vectors: np.ndarray) -> np.ndarray:
    """Per dimension, the bound of 8-bit router codes for unit vectors like ``vectors``: 1.5 times
    the largest magnitude seen, so later vectors rarely clip, capped at 1 (no unit vector goes
    further); 1 everywhere when there are too few vectors to tell."""
    if len(vectors) < _CODE_RANGE_MIN_VECTORS:
        return np.ones(vectors.shape[1], np.float32)
    return np.minimum(1.5 * np.abs(vectors).max(0), 1.0).astype(np.float32)


def principal_axes(vectors: np.ndarray, count: int) -> np.ndarray:
    """(dim, count) orthonormal directions that keep most of the inner products of ``vectors``: the
    top eigenvectors of the second-moment matrix of (a sample of) them. Orthonormal even when the
    sample spans fewer than ``count`` directions."""
    rng = np.random.default_rng(0)
    sample = vectors if len(vectors) <= _PROJECTION_SAMPLE else \
        vectors[np.sort(rng.choice(len(vectors), _PROJECTION_SAMPLE, replace=False))]
    sample = np.asarray(sample, np.float64)
    _, axes = np.linalg.eigh(sample.T @ sample)
    return np.ascontiguousarray(axes[:, ::-1][:, :count], dtype=np.float32)


def empty_index(faces: int, dim: int, *, storage: Storage = "float32", ann_min_faces: int = ANN_MIN_FACES,
                **template_options: Any) -> VectorIndex:
    """An empty index of the right kind for ``faces`` faces: exact below ``ann_min_faces``,
    templates (built with ``template_options``) from there on."""
    if faces < ann_min_faces:
        return ExactIndex(dim, storage)
    return TemplateIndex(dim, storage, **template_options)


def build_index(ids: np.ndarray, vectors: np.ndarray, dim: int, groups: np.ndarray | None = None,
                **options: Any) -> VectorIndex:
    """The right index (see :func:`empty_index`) holding these faces; ``groups`` is the subject of each."""
    index = empty_index(len(ids), dim, **options)
    index.add(ids, vectors, groups)
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
    """Write index and revision to ``path`` atomically (tmp, fsync, rename). A template index's
    graph goes to a fresh ``<path>.<token>.faiss`` file named in the metadata; older graph files
    are deleted."""
    path.parent.mkdir(parents=True, exist_ok=True)
    index = state.index
    meta = {"format": _FORMAT, "kind": index.kind, "dim": index.dim, "storage": index.storage,
            "revision": state.revision, **state.meta}
    tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")

    def write(arrays: dict[str, np.ndarray]) -> None:
        with open(tmp, "wb") as handle:
            np.savez(handle, **arrays, meta=np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8))
            handle.flush()
            os.fsync(handle.fileno())

    graph_file = None
    if isinstance(index, TemplateIndex):
        graph_file = path.with_name(f"{path.name}.{uuid.uuid4().hex}.faiss")
        meta["graph"] = graph_file.name
        meta["expansion_search"] = index.expansion_search
        index.save(graph_file, write)
    else:
        write({"ids": index.ids(), "vectors": index.vectors()})
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
                names = ("vectors", "ids", "node_of", "members", "groups", "projection")
                arrays = {name: data[name] for name in names if name in data}
                rows = {len(arrays["vectors"]), len(arrays["ids"]), len(arrays["node_of"])}
                projection = arrays["projection"].shape if "projection" in arrays else None
                needs_projection = graph.ntotal > 0 and graph.d < meta["dim"]
                if graph.d > meta["dim"] or (needs_projection and projection != (meta["dim"], graph.d)) or \
                        len(rows) != 1 or {graph.ntotal} != {len(arrays["groups"]), len(arrays["members"])}:
                    return None
                # node ids are graph positions; a tombstone is a node whose subject is gone
                labels = np.where(arrays["groups"] >= 0, np.arange(graph.ntotal), -1)
                router = HNSWIndex(graph.d, expansion_search=meta["expansion_search"], graph=graph, labels=labels)
                index = TemplateIndex(meta["dim"], meta["storage"], router=router, arrays=arrays)
    except (OSError, ValueError, KeyError, EOFError, RuntimeError, io.UnsupportedOperation):
        return None
    revision = meta.pop("revision")
    for key in ("format", "kind", "dim", "storage", "graph", "expansion_search"):
        meta.pop(key, None)
    return IndexState(index, revision, meta)
