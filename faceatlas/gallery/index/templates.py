"""The template index: an HNSW graph over subject templates finds candidates, their faces are
scored exactly."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import faiss as _faiss
import numpy as np

from faceatlas.engine import l2_normalize, top_k
from faceatlas.gallery.index.base import (
    _TEMPLATE_BLOCK,
    DEFAULT_EXPANSION_SEARCH,
    HNSW_CONNECTIVITY,
    HNSW_EXPANSION_ADD,
    TEMPLATE_CANDIDATES,
    TEMPLATE_GROUP_SIZE,
    Storage,
    _grown,
    _pad,
    router_dim,
)
from faceatlas.gallery.index.router import HNSWIndex, principal_axes

# FAISS's SWIG stubs miss attributes it has at run time (codes, hnsw.neighbors, SearchParametersHNSW).
faiss: Any = _faiss


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

    def groups(self) -> tuple[np.ndarray, np.ndarray]:
        with self._lock:
            ids = self._ids[: self._rows]
            held = ids >= 0
            return ids[held].copy(), self._groups[self._node_of[: self._rows][held]]

    def needs_rebuild(self, faces: int, ann_min_faces: int) -> bool:
        """Rebuilt when the collection fell back to exact-search size or a quarter of its graph
        nodes or face rows are left over from removals."""
        return faces < ann_min_faces // 2 or self.stale_fraction > 0.25

    def persist(self, path: Path, meta: dict[str, Any], write: Callable[[dict[str, np.ndarray]], None]) -> Path:
        """Write the graph to a fresh ``<path>.<token>.faiss`` named in ``meta`` and hand the other
        arrays to ``write``, all under the lock, so the arrays are views (no copy of every face)
        that nothing changes meanwhile."""
        graph_file = path.with_name(f"{path.name}.{uuid.uuid4().hex}.faiss")
        meta["graph"] = graph_file.name
        meta["expansion_search"] = self.expansion_search
        with self._lock:
            self.router.save(graph_file)
            arrays = {"vectors": self._vectors[: self._rows], "ids": self._ids[: self._rows],
                      "node_of": self._node_of[: self._rows], "members": self._members[: self.nodes],
                      "groups": self._groups[: self.nodes]}
            write(arrays if self.projection is None else {**arrays, "projection": self.projection})
        return graph_file

    @classmethod
    def restore(cls, path: Path, meta: dict[str, Any], data: Mapping[str, np.ndarray]) -> TemplateIndex | None:
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
        return cls(meta["dim"], meta["storage"], router=router, arrays=arrays)

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
                top = top_k((self._vectors[rows].astype(np.float32) @ query)[None], self._ids[rows], k) \
                    if len(rows) else (np.empty((1, 0), np.float32), np.empty((1, 0), np.int64))
                padded = _pad(top[0], top[1], k)
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
        placed = np.repeat(np.cumsum(per_subject) - per_subject, counts) + \
            rank * np.repeat(per_subject, counts) // np.repeat(counts, counts)
        slot = np.arange(len(rows)) - np.searchsorted(placed, placed)
        base, created = self.nodes, int(per_subject.sum())
        self._members = _grown(self._members, base + created, fill=-1)
        self._groups = _grown(self._groups, base + created, fill=-1)
        self._members[base + placed, slot] = rows
        self._groups[base: base + created] = np.repeat(subjects, per_subject)
        self._node_of[rows] = base + placed
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
        return vectors if self.projection is None else l2_normalize(vectors @ self.projection)

    def _templates(self, nodes: np.ndarray) -> np.ndarray:
        """Normalised mean face of each node, computed in blocks (bounded memory)."""
        out = np.empty((len(nodes), self.dim), np.float32)
        for start in range(0, len(nodes), _TEMPLATE_BLOCK):
            members = self._members[nodes[start: start + _TEMPLATE_BLOCK]]
            faces = self._vectors[np.maximum(members, 0)].astype(np.float32)
            out[start: start + len(members)] = l2_normalize(np.einsum("ng,ngd->nd", (members >= 0).astype(np.float32),
                                                                        faces))
        return out

