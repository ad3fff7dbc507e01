"""Search benchmark of the gallery's vector index against FAISS IndexFlatIP (exact), same run.

Synthetic embeddings with face-like cluster structure: identities with several faces each
(same-identity cosine about 0.5-0.8, like real recognisers); queries are fresh faces of
enrolled identities. Two generators:

- ``fitted`` (128-d): identity centres and within-identity variation drawn from Gaussians whose
  covariances are fitted to real embeddings (the ``--pack`` recogniser on the LFW photos in
  ``--lfw``; the fit is cached), so the spread of faces over the sphere is that of real faces.
- ``isotropic``: random directions, the worst case for any index (nothing to learn).

Faces are generated a million at a time (the same chunks on every pass), so neither the exact
reference (FAISS IndexFlatIP scanning chunk by chunk: same work, same answers as one big index)
nor the gallery index needs a second copy of all faces: 10M x 512-d fits in 24 GB as float16.

    python bench/gallery_search.py --sizes 100k 1M --dims 128 --generator fitted
    python bench/gallery_search.py --sizes 100k --dims 512 --generator isotropic
    python bench/gallery_search.py --sizes 10M --dims 512 --generator isotropic --storage float16 --no-exact

``--backend milvus`` adds rows for Milvus (``FACEATLAS_VECTOR_BACKEND=milvus``) filled through the
gallery's :class:`MilvusIndex` (the same upserts and searches): Milvus Lite in a fresh file by
default, or a server with ``--milvus-uri http://host:19530``; ``--nprobe`` (IVF_FLAT) and
``--milvus-ef`` (HNSW) give one row each. Milvus searches in its own process (Lite too), so its
CPU column is "-" and its memory is not this process's.

    python bench/gallery_search.py --sizes 100k --backend milvus --milvus-index FLAT IVF_FLAT --nprobe 8 128 --no-exact
"""

from __future__ import annotations

import argparse
import resource
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import faiss
import numpy as np
from rich.console import Console
from rich.table import Table

from faceatlas.engine import l2_normalize
from faceatlas.gallery.index import (
    ANN_MIN_FACES,
    DEFAULT_EXPANSION_SEARCH,
    HNSW_CONNECTIVITY,
    HNSW_EXPANSION_ADD,
    ExactIndex,
    TemplateIndex,
    VectorIndex,
    empty_index,
)
from faceatlas.gallery.index.milvus import HNSW_EF, IVF_NPROBE

FACES_PER_IDENTITY = 5
_CHUNK = 1_000_000
_CACHE = Path.home() / ".cache" / "faceatlas" / "bench"


def parse_size(text: str) -> int:
    """'100k' -> 100000, '1M' -> 1000000, '12345' -> 12345."""
    scale = {"k": 1_000, "m": 1_000_000}.get(text[-1].lower(), 1)
    return int(float(text[:-1] if scale > 1 else text) * scale)


@dataclass
class FaceModel:
    """Gaussian model of embeddings: identity centre ~ N(mean, B B^T), a face of it adds
    N(0, s^2 W W^T) with s^2 drawn per identity from ``spread``, then unit length."""

    mean: np.ndarray
    between: np.ndarray
    within: np.ndarray
    spread: tuple[float, float]

    @property
    def dim(self) -> int:
        return len(self.mean)


def isotropic_model(dim: int) -> FaceModel:
    """Random identity directions; two faces of one identity have cosine about 0.5-0.8."""
    unit = np.eye(dim, dtype=np.float32) / np.sqrt(dim)
    return FaceModel(np.zeros(dim, np.float32), unit, unit, (0.25, 1.0))


def fitted_model(lfw: Path, pack: str) -> FaceModel:
    """Between- and within-identity covariances of ``pack``'s embeddings of the LFW folder (cached)."""
    cache = _CACHE / f"face-model-{pack}.npz"
    if not cache.exists():
        from faceatlas.engine import FaceAnalyzer
        from faceatlas.engine.dataset import embed_largest

        people = [folder for folder in sorted(lfw.iterdir()) if folder.is_dir()]
        photos = [(label, image) for label, folder in enumerate(people) for image in sorted(folder.glob("*.jpg"))]
        keys = [f"{image.parent.name}/{image.name}" for _, image in photos]
        vectors, ok = embed_largest(FaceAnalyzer(pack), lfw, keys)
        found = [(label, vector) for (label, _), vector, good in zip(photos, vectors, ok) if good]
        cache.parent.mkdir(parents=True, exist_ok=True)
        np.savez(cache, vectors=np.asarray([vector for _, vector in found], np.float64),
                 labels=np.asarray([label for label, _ in found]))
    with np.load(cache) as data:
        vectors, labels = data["vectors"], data["labels"]
    people, counts = np.unique(labels, return_counts=True)
    means = np.stack([vectors[labels == p].mean(0) for p in people])
    residuals = np.concatenate([vectors[labels == p] - means[i] for i, p in enumerate(people) if counts[i] > 1])
    within = residuals.T @ residuals / (counts[counts > 1] - 1).sum()
    # an identity's mean photo still carries within-identity noise: take it out of the spread of means
    between = np.cov(means.T) - within * np.mean(1.0 / counts)
    ridge = 1e-6 * np.eye(len(within))
    values, vecs = np.linalg.eigh(between)
    between_root = vecs * np.sqrt(np.clip(values, 0, None))
    return FaceModel(vectors.mean(0).astype(np.float32), between_root.astype(np.float32),
                     np.linalg.cholesky(within + ridge).astype(np.float32), (0.5, 1.5))


def _identity_block(model: FaceModel, identities: int, block: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Centres and noise scales of the identities of one chunk (the same on every call)."""
    per_block = _CHUNK // FACES_PER_IDENTITY
    count = min(per_block, identities - block * per_block)
    rng = np.random.default_rng([seed, block])
    centres = model.mean + rng.standard_normal((count, model.dim), dtype=np.float32) @ model.between.T
    return centres, np.sqrt(rng.uniform(*model.spread, count)).astype(np.float32)


def _faces_of(model: FaceModel, centres: np.ndarray, scale: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    noise = rng.standard_normal((len(centres), model.dim), dtype=np.float32) @ model.within.T
    return l2_normalize(centres + noise * scale[:, None])


def synthetic_faces(n: int, model: FaceModel, seed: int = 0) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """(faces, identity of each face) in chunks of at most _CHUNK faces, FACES_PER_IDENTITY faces per
    identity, an identity's faces together; the same chunks on every call, so nothing has to hold
    all ``n`` faces."""
    identities = max(1, n // FACES_PER_IDENTITY)
    per_block = _CHUNK // FACES_PER_IDENTITY
    for block in range(-(-identities // per_block)):
        centres, scale = _identity_block(model, identities, block, seed)
        who = np.repeat(np.arange(len(centres)), FACES_PER_IDENTITY)
        rng = np.random.default_rng([seed, block, 1])
        faces = np.empty((len(who), model.dim), np.float32)
        for start in range(0, len(who), _CHUNK // 16):  # bounded temporaries next to a 10M index
            part = who[start: start + _CHUNK // 16]
            faces[start: start + len(part)] = _faces_of(model, centres[part], scale[part], rng)
        yield faces, who + block * per_block


def synthetic_queries(n: int, model: FaceModel, count: int, seed: int = 0) -> np.ndarray:
    """``count`` fresh faces of random identities among those of ``synthetic_faces(n, model, seed)``."""
    identities = max(1, n // FACES_PER_IDENTITY)
    per_block = _CHUNK // FACES_PER_IDENTITY
    who = np.random.default_rng([seed, 2**31]).integers(0, identities, count)
    queries = np.empty((count, model.dim), np.float32)
    for block in np.unique(who // per_block):
        centres, scale = _identity_block(model, identities, int(block), seed)
        mine = np.flatnonzero(who // per_block == block)
        local = who[mine] - block * per_block
        queries[mine] = _faces_of(model, centres[local], scale[local], np.random.default_rng([seed, int(block), 2]))
    return queries


def cosine_stats(faces: np.ndarray, owner: np.ndarray, pairs: int = 20_000, seed: int = 1) -> str:
    """Same-identity and different-identity cosine of random face pairs, to check the generator."""
    rng = np.random.default_rng(seed)
    first = rng.integers(0, len(faces) - 1, pairs)
    first = first[owner[first] == owner[first + 1]]
    same = np.sum(faces[first] * faces[first + 1], axis=1)
    a, b = rng.integers(0, len(faces), (2, pairs))
    diff = np.sum(faces[a] * faces[b], axis=1)[owner[a] != owner[b]]
    return (f"same identity cos {same.mean():.2f} (5-95%: {np.percentile(same, 5):.2f}-{np.percentile(same, 95):.2f}),"
            f" different {diff.mean():.3f} +- {diff.std():.3f}")


@dataclass
class Result:
    name: str
    build_s: float
    bytes_per_face: float
    p50_ms: float
    p99_ms: float
    cpu_p50_ms: float
    recall_at_1: float


def timed(search: Callable[[np.ndarray], object], queries: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Wall and process-CPU milliseconds of one top-10 search per query, one query at a time. On a
    loaded machine wall time includes waiting for a core; CPU time is what the search costs."""
    wall, cpu = [], []
    for query in queries:
        start, start_cpu = time.perf_counter(), time.process_time()
        search(query[None])
        wall.append((time.perf_counter() - start) * 1000)
        cpu.append((time.process_time() - start_cpu) * 1000)
    return np.asarray(wall), np.asarray(cpu)


class BestFace:
    """Running exact top-1 face of each query over chunks of faces."""

    def __init__(self, queries: int) -> None:
        self.similarity = np.full(queries, -np.inf, np.float32)
        self.face = np.full(queries, -1, np.int64)

    def update(self, similarity: np.ndarray, face: np.ndarray) -> None:
        """Keep each query's (similarity, face id) from this chunk where it beats the best so far."""
        better = similarity > self.similarity
        self.similarity[better], self.face[better] = similarity[better], face[better]


def flat_reference(size: int, model: FaceModel, queries: np.ndarray, timed_queries: int, console: Console
                   ) -> tuple[Result, np.ndarray]:
    """FAISS IndexFlatIP over all faces, a chunk at a time (the same scan as one big index, without
    holding every face): the exact top-1 of each query and the time a full scan takes per query."""
    best = BestFace(len(queries))
    build_s, wall, cpu = 0.0, np.zeros(timed_queries), np.zeros(timed_queries)
    offset = 0
    for faces, owner in synthetic_faces(size, model):
        if offset == 0:
            console.log(f"generator: {cosine_stats(faces, owner)}")
        start = time.perf_counter()
        index = faiss.IndexFlatIP(model.dim)
        index.add(faces)
        build_s += time.perf_counter() - start
        sims, found = index.search(queries, 1)
        best.update(sims[:, 0], found[:, 0] + offset)
        chunk_wall, chunk_cpu = timed(partial(index.search, k=10), queries[:timed_queries])
        wall, cpu = wall + chunk_wall, cpu + chunk_cpu
        offset += len(faces)
    return Result("faiss IndexFlatIP (exact)", build_s, model.dim * 4, float(np.percentile(wall, 50)),
                  float(np.percentile(wall, 99)), float(np.percentile(cpu, 50)), 1.0), best.face


def fill(index: VectorIndex, size: int, model: FaceModel) -> float:
    """Add every face to ``index`` chunk by chunk; seconds spent adding (generation not counted)."""
    index.reserve(size)
    spent, offset = 0.0, 0
    for faces, owner in synthetic_faces(size, model):
        start = time.perf_counter()
        index.add(np.arange(offset, offset + len(faces)), faces, owner)
        spent += time.perf_counter() - start
        offset += len(faces)
    return spent


def score(name: str, index: VectorIndex, build_s: float, queries: np.ndarray, truth: np.ndarray,
          timed_queries: int) -> Result:
    """Time single top-10 searches of ``index`` and compare its top-1 with the exact ``truth``."""
    _, found = index.search(queries, 10)
    wall, cpu = timed(partial(index.search, k=10), queries[:timed_queries])
    return Result(name, build_s, index.memory_bytes() / len(index), float(np.percentile(wall, 50)),
                  float(np.percentile(wall, 99)), float(np.percentile(cpu, 50)), float((found[:, 0] == truth).mean()))


def run(size: int, dim: int, args: argparse.Namespace, console: Console) -> list[Result]:
    model = fitted_model(args.lfw, args.pack) if args.generator == "fitted" else isotropic_model(dim)
    if model.dim != dim:
        raise SystemExit(f"--pack {args.pack} makes {model.dim}-d embeddings; use --generator isotropic for {dim}-d")
    queries = synthetic_queries(size, model, args.queries)
    flat, truth = flat_reference(size, model, queries, min(args.timed, args.flat_timed), console)
    console.log(f"{size:,} x {dim}-d {args.generator}: exact reference done")
    results = [flat]
    index = empty_index(size, dim, storage=args.storage, ann_min_faces=args.ann_min_faces,
                        expansion_add=args.build_depth, connectivity=args.connectivity, routing_dim=args.router_dim)
    build_s = fill(index, size, model)
    if isinstance(index, TemplateIndex):
        console.log(f"{index.nodes:,} template nodes for {size:,} faces, built in {build_s:.0f}s")
    for ef in args.ef_search if isinstance(index, TemplateIndex) else args.ef_search[:1]:
        label = f"{index.kind}, {args.storage}"
        if isinstance(index, TemplateIndex):
            index.expansion_search = ef
            label += f", M {args.connectivity}, efC {args.build_depth}, {index.router.dim}-d router, ef {ef}"
        results.append(score(f"gallery index ({label})", index, build_s, queries, truth, args.timed))
    if args.backend == "milvus":
        results.extend(milvus_rows(size, model, queries, truth, args, console))
    if not args.no_exact and isinstance(index, TemplateIndex):
        del index
        exact = ExactIndex(dim, args.storage)
        build_s = fill(exact, size, model)
        results.append(score(f"gallery ExactIndex ({args.storage})", exact, build_s, queries, truth,
                             min(args.timed, args.flat_timed)))
    return results


def milvus_rows(size: int, model: FaceModel, queries: np.ndarray, truth: np.ndarray, args: argparse.Namespace,
                console: Console) -> list[Result]:
    """Milvus through the gallery's MilvusIndex, for each ``--milvus-index``: fill, seal (flush) and
    index, then one row per search setting. The collection is dropped afterwards."""
    from faceatlas.gallery.index.milvus import IVF_NLIST, MilvusStore

    results = []
    with tempfile.TemporaryDirectory(prefix="faceatlas-milvus-") as folder:
        for kind in args.milvus_index:
            store = MilvusStore(args.milvus_uri or f"{folder}/bench.db", prefix="bench", index_type=kind)
            name = store.name(f"bench_{store.index_type}", size * 10_000 + model.dim)
            if store.client.has_collection(name):
                store.client.drop_collection(name)
            index = store.open(name, model.dim)
            build_s = fill(index, size, model)
            start = time.perf_counter()
            store.settle(name)
            build_s += time.perf_counter() - start
            where = "Lite" if store.lite else "server"
            console.log(f"milvus {where} {store.index_type}: {size:,} faces in {build_s:.0f}s")
            sweep = {"IVF_FLAT": ("nprobe", args.nprobe), "HNSW": ("ef", args.milvus_ef)}.get(store.index_type)
            for value in sweep[1] if sweep else [None]:
                label = f"milvus {where} {store.index_type}"
                if sweep:
                    setattr(store, sweep[0], value)
                    nlist = f", nlist {IVF_NLIST}" if store.index_type == "IVF_FLAT" else ""
                    label += f"{nlist}, {sweep[0]} {value}"
                row = score(label, index, build_s, queries, truth, args.timed)
                results.append(Result(row.name, row.build_s, float("nan"), row.p50_ms, row.p99_ms, float("nan"),
                                      row.recall_at_1))
            store.client.drop_collection(name)
            store.close()
    return results


def _cell(value: float, digits: int) -> str:
    return f"{value:.{digits}f}" if np.isfinite(value) else "-"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", nargs="+", default=["100k", "1M"], help="collection sizes, e.g. 100k 1M 10M")
    parser.add_argument("--dims", nargs="+", type=int, default=[128])
    parser.add_argument("--generator", choices=["fitted", "isotropic"], default="fitted")
    parser.add_argument("--lfw", type=Path, default=Path("../shared/data/lfw/images"),
                        help="LFW photos the fitted generator learns from")
    parser.add_argument("--pack", default="scrfd-mbf", help="recogniser whose embeddings the generator imitates")
    parser.add_argument("--storage", choices=["float32", "float16"], default="float32")
    parser.add_argument("--ef-search", type=int, nargs="+", default=[DEFAULT_EXPANSION_SEARCH],
                        help="HNSW expansion_search values, one row each (the graph is built once)")
    parser.add_argument("--build-depth", type=int, default=HNSW_EXPANSION_ADD, help="HNSW efConstruction")
    parser.add_argument("--connectivity", type=int, default=HNSW_CONNECTIVITY, help="HNSW M (links per node)")
    parser.add_argument("--router-dim", type=int, help="dimensions the graph routes in (default: router_dim(dim))")
    parser.add_argument("--ann-min-faces", type=int, default=ANN_MIN_FACES)
    parser.add_argument("--queries", type=int, default=1000, help="queries for recall@1")
    parser.add_argument("--timed", type=int, default=500, help="queries timed one by one")
    parser.add_argument("--flat-timed", type=int, default=50, help="timed queries for the brute-force indexes")
    parser.add_argument("--no-exact", action="store_true", help="skip the gallery ExactIndex row (saves memory)")
    parser.add_argument("--backend", choices=["faiss", "milvus"], default="faiss",
                        help="milvus: add Milvus rows beside the gallery's FAISS index")
    parser.add_argument("--milvus-uri", help="Milvus server (http://host:19530); default: Milvus Lite, a fresh file")
    parser.add_argument("--milvus-index", choices=["auto", "FLAT", "IVF_FLAT", "HNSW"], nargs="+", default=["auto"],
                        help="one collection each; auto: FLAT on Lite (no HNSW, nprobe ignored), HNSW on a server")
    parser.add_argument("--nprobe", type=int, nargs="+", default=[IVF_NPROBE], help="IVF_FLAT clusters scanned")
    parser.add_argument("--milvus-ef", type=int, nargs="+", default=[HNSW_EF], help="Milvus HNSW ef")
    args = parser.parse_args()
    console = Console(width=150)
    table = Table(title=f"top-10 search, {faiss.omp_get_max_threads()} threads, single-query latency")
    for column in ("faces", "dim", "index", "build s", "bytes/face", "p50 ms", "p99 ms", "cpu p50 ms", "recall@1"):
        table.add_column(column, justify="left" if column == "index" else "right")
    for size in (parse_size(s) for s in args.sizes):
        for dim in args.dims:
            for r in run(size, dim, args, console):
                table.add_row(f"{size:,}", str(dim), r.name, f"{r.build_s:.1f}", _cell(r.bytes_per_face, 0),
                              f"{r.p50_ms:.2f}", f"{r.p99_ms:.2f}", _cell(r.cpu_p50_ms, 2), f"{r.recall_at_1:.4f}")
            console.log(f"done {size:,} x {dim}; peak RSS of this process so far "
                        f"{resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20:.1f} GiB")
    console.print(table)


if __name__ == "__main__":
    main()
