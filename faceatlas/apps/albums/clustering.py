"""Clustering of face vectors into people, batch and incremental, under the user's constraints.

The graph: each face's ``k`` nearest neighbours (FAISS: exact inner product up to
:data:`EXACT_MAX`, an inverted file above) whose cosine reaches the pack's threshold at the
album's FAR. Edges are joined strongest first (constrained single linkage, Kruskal): must-link
groups (``locks``) are joined before any edge, a join that would put a cannot-link pair in one
person is skipped, and in an increment faces already placed (``anchors``) keep their person: a new
face joins its strongest neighbour's person or starts a new one, and new faces that bridge two
people join them (as the batch would) unless the user's cannot-links or names keep them apart.
Single linkage does not depend on the order faces come in, so increments equal one batch (up to the
kNN lists). The batch keeps named people apart as an increment does: rows of two ``exclusive``
groups (the faces of two named people) are never joined, so no re-cluster joins two names. With
no constraint the batch is the connected components of the graph (SciPy).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import faiss
import numpy as np
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components

from faceatlas.errors import InvalidArgument

EXACT_MAX = 50_000
DEFAULT_K = 10
_LOCK_SIMILARITY = 2.0  # above any cosine: must-link edges are joined first


@dataclass(frozen=True)
class Edges:
    """Graph edges ``i - j`` of similarity ``s`` (``i < j``)."""

    i: np.ndarray
    j: np.ndarray
    s: np.ndarray


def build_index(base: np.ndarray, *, threads: int | None = None) -> faiss.Index:
    """A FAISS inner-product index over ``base``: exact up to :data:`EXACT_MAX` rows, an inverted
    file (``4 sqrt(n)`` lists, 8 probed) above. Keep it to place later increments against."""
    base = np.ascontiguousarray(base, np.float32)
    if threads:
        faiss.omp_set_num_threads(threads)
    index: faiss.Index
    if len(base) <= EXACT_MAX:
        index = faiss.IndexFlatIP(base.shape[1])
    else:
        lists = int(4 * np.sqrt(len(base)))
        index = faiss.IndexIVFFlat(faiss.IndexFlatIP(base.shape[1]), base.shape[1], lists, faiss.METRIC_INNER_PRODUCT)
        rng = np.random.default_rng(0)
        index.train(base[rng.choice(len(base), min(len(base), 40 * lists), replace=False)])
        index.nprobe = 8
    index.add(base)
    return index


def knn(base: np.ndarray | None, queries: np.ndarray, k: int, *, index: faiss.Index | None = None,
        threads: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Similarities and row numbers in ``base`` (or the rows of ``index``) of each query's ``k``
    nearest (-1 when fewer)."""
    if index is None:
        assert base is not None
        index = build_index(base, threads=threads)
    elif threads:
        faiss.omp_set_num_threads(threads)
    sims, rows = index.search(np.ascontiguousarray(queries, np.float32), max(1, min(k, index.ntotal)))
    return sims, rows


def threshold_edges(sims: np.ndarray, rows: np.ndarray, threshold: float, query_rows: np.ndarray) -> Edges:
    """The kNN pairs at or above ``threshold`` (self pairs and duplicates dropped)."""
    q = np.repeat(query_rows, sims.shape[1])
    r, s = rows.ravel(), sims.ravel()
    keep = (r >= 0) & (s >= threshold) & (r != q)
    i, j = np.minimum(q[keep], r[keep]), np.maximum(q[keep], r[keep])
    s = s[keep]
    if len(i):
        pair = i.astype(np.int64) * (int(max(i.max(), j.max())) + 1) + j
        _, first = np.unique(pair, return_index=True)
        i, j, s = i[first], j[first], s[first]
    return Edges(i.astype(np.int64), j.astype(np.int64), s.astype(np.float32))


def cluster(vectors: np.ndarray, threshold: float, *, k: int = DEFAULT_K, locks: np.ndarray | None = None,
            cannot: Sequence[tuple[int, int]] = (), exclusive: np.ndarray | None = None,
            threads: int | None = None) -> np.ndarray:
    """Label every row of ``vectors`` (L2-normalised): rows of one person share a label
    (0..m-1). ``locks``: a must-link group per row (-1: none); ``cannot``: row pairs never in one person;
    ``exclusive``: a group per row (-1: none), rows of two different groups never in one person
    (the faces of two named people, as :func:`assign`'s ``exclusive``); a group may still part."""
    n = len(vectors)
    if n == 0:
        return np.empty(0, np.int64)
    sims, rows = knn(vectors, vectors, k + 1, threads=threads)
    edges = threshold_edges(sims, rows, threshold, np.arange(n))
    edges = _with_locks(edges, locks)
    tags = None if exclusive is None or not (np.asarray(exclusive) >= 0).any() else np.asarray(exclusive, np.int64)
    if not cannot and tags is None:
        graph = coo_matrix((np.ones(len(edges.i)), (edges.i, edges.j)), shape=(n, n))
        return connected_components(graph, directed=False)[1].astype(np.int64)
    if tags is not None and len(tags) != n:
        raise InvalidArgument(f"exclusive holds {len(tags)} groups for {n} rows")
    labels = _kruskal(n, edges, np.full(n, -1, np.int64), cannot, tags=tags)
    return np.unique(labels, return_inverse=True)[1].astype(np.int64)


@dataclass(frozen=True)
class Placement:
    """Where an increment went: a label per new row, and the old people its faces joined
    (``merged``: old label -> the label that absorbs it)."""

    labels: np.ndarray
    merged: dict[int, int]


def assign(old: np.ndarray, old_labels: np.ndarray, new: np.ndarray, threshold: float, *, k: int = DEFAULT_K,
           index: faiss.Index | None = None, blocked: Iterable[tuple[int, int]] = (),
           exclusive: Iterable[int] = (), threads: int | None = None) -> Placement:
    """Place ``new`` rows: each gets an old person's label (``old_labels``, -1 for old rows in no
    person) or a new label above the old ones. Old people are never split; two of them are joined
    when new faces bridge them (as one batch would), unless the pair is ``blocked`` (the user's
    cannot-links) or both are ``exclusive`` (named). ``index``: a kept :func:`build_index` over
    the placed old rows (in order), else built here."""
    if len(new) == 0:
        return Placement(np.empty(0, np.int64), {})
    placed = old_labels >= 0
    offset = int(placed.sum())
    rows = np.arange(offset, offset + len(new))
    sims, near = knn(new, new, k + 1, threads=threads)
    parts = [threshold_edges(sims, near + offset, threshold, rows)]
    if offset:
        sims, near = knn(None if index is not None else old[placed], new, k, index=index, threads=threads)
        parts.append(threshold_edges(sims, np.where(near >= 0, near, -1), threshold, rows))
    i = np.concatenate([p.i for p in parts])
    j = np.concatenate([p.j for p in parts])
    nodes, compact = np.unique(np.concatenate([i, j, rows]), return_inverse=True)
    ci, cj = compact[: len(i)], compact[len(i): 2 * len(i)]
    anchors = np.full(len(nodes), -1, np.int64)
    old_nodes = nodes < offset
    anchors[old_nodes] = old_labels[placed][nodes[old_nodes]]
    people = _People({frozenset(pair) for pair in blocked}, set(exclusive))
    labels = _kruskal(len(nodes), Edges(ci, cj, np.concatenate([p.s for p in parts])), anchors, (), people)
    out = labels[compact[2 * len(i):]].copy()
    fresh = out >= 1 << 40
    start = int(old_labels.max(initial=-1)) + 1
    _, remapped = np.unique(out[fresh], return_inverse=True)
    out[fresh] = start + remapped
    return Placement(out, people.merged)


@dataclass
class _People:
    """Which old people may be joined in an increment, and the joins made."""

    blocked: set[frozenset[int]]
    exclusive: set[int]
    merged: dict[int, int] = field(default_factory=dict)

    def may_join(self, a: set[int], b: set[int]) -> bool:
        if len((a | b) & self.exclusive) > 1:
            return False
        return not any(frozenset((x, y)) in self.blocked for x in a for y in b)

    @staticmethod
    def survivor(group: set[int], exclusive: set[int]) -> int:
        named = group & exclusive
        return min(named) if named else min(group)


def _with_locks(edges: Edges, locks: np.ndarray | None) -> Edges:
    if locks is None or not (locks >= 0).any():
        return edges
    rows = np.flatnonzero(locks >= 0)
    order = rows[np.argsort(locks[rows], kind="stable")]
    grouped = locks[order]
    same = grouped[1:] == grouped[:-1]
    li, lj = order[:-1][same], order[1:][same]
    return Edges(np.concatenate([li, edges.i]), np.concatenate([lj, edges.j]),
                 np.concatenate([np.full(len(li), _LOCK_SIMILARITY, np.float32), edges.s]))


def _kruskal(n: int, edges: Edges, anchors: np.ndarray, cannot: Sequence[tuple[int, int]],
             people: _People | None = None, tags: np.ndarray | None = None) -> np.ndarray:
    """Constrained single linkage: roots carry their old people (``anchors``), cannot-links and
    exclusive groups (``tags``, -1: none; two roots of different groups are never joined);
    without ``people`` two old people are never joined."""
    parent = list(range(n))
    groups: dict[int, set[int]] = {}
    first: dict[int, int] = {}
    blocked: dict[int, list[int]] = {}
    tag: dict[int, int] = {} if tags is None else {
        int(row): int(tags[row]) for row in np.flatnonzero(tags >= 0).tolist()}
    for a, b in cannot:
        blocked.setdefault(a, []).append(b)
        blocked.setdefault(b, []).append(a)

    def find(x: int) -> int:
        while parent[x] != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    for node, label in zip(np.flatnonzero(anchors >= 0).tolist(), anchors[anchors >= 0].tolist()):
        if label in first:  # the faces of one old person are one component from the start
            parent[node] = first[label]
        else:
            first[label] = node
            groups[node] = {label}
    for e in np.argsort(-edges.s, kind="stable"):
        ra, rb = find(int(edges.i[e])), find(int(edges.j[e]))
        if ra == rb:
            continue
        ga, gb = groups.get(ra, set()), groups.get(rb, set())
        if ga and gb and (people is None or not people.may_join(ga, gb)):
            continue
        ta, tb = tag.get(ra), tag.get(rb)
        if ta is not None and tb is not None and ta != tb:
            continue
        small, large = (ra, rb) if len(blocked.get(ra, ())) <= len(blocked.get(rb, ())) else (rb, ra)
        if any(find(x) == large for x in blocked.get(small, ())):
            continue
        parent[small] = large
        if small in tag:
            tag[large] = tag.pop(small)
        if ga or gb:
            groups[large] = ga | gb
            groups.pop(small, None)
        if small in blocked:
            blocked.setdefault(large, []).extend(blocked.pop(small))
    roots = np.fromiter((find(x) for x in range(n)), np.int64, n)
    keep_of = np.full(n, -1, np.int64)
    for root, group in groups.items():
        keep = _People.survivor(group, people.exclusive if people else set())
        keep_of[root] = keep
        if people is not None:
            people.merged.update({label: keep for label in group if label != keep})
    kept = keep_of[roots]
    return np.where(kept >= 0, kept, (1 << 40) + roots)  # not an old person: a root number above any label
