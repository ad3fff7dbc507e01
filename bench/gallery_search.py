"""Search benchmark of the gallery's vector index against FAISS IndexFlatIP (exact), same run.

Synthetic embeddings with face-like cluster structure: identities with several faces each
(same-identity cosine about 0.5-0.8, like real recognisers); queries are fresh faces of
enrolled identities. Two generators:

- ``fitted`` (128-d): identity centres and within-identity variation drawn from Gaussians whose
  covariances are fitted to real embeddings (the ``--pack`` recogniser on the LFW photos in
  ``--lfw``; the fit is cached), so the spread of faces over the sphere is that of real faces.
- ``isotropic``: random directions, the worst case for any index (nothing to learn).

    python bench/gallery_search.py --sizes 100k 1M --dims 128 --generator fitted
    python bench/gallery_search.py --sizes 100k --dims 512 --generator isotropic
"""

from __future__ import annotations

import argparse
import resource
import time
from dataclasses import dataclass
from pathlib import Path

import faiss
import numpy as np
from rich.console import Console
from rich.table import Table

from faceatlas.gallery.index import (
    ANN_MIN_FACES,
    DEFAULT_EXPANSION_SEARCH,
    HNSW_CONNECTIVITY,
    HNSW_EXPANSION_ADD,
    ExactIndex,
    TemplateIndex,
    VectorIndex,
    build_index,
    normalize_rows,
)

FACES_PER_IDENTITY = 5
_CHUNK = 500_000
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
        from lfw_identification import embed_folder  # the sibling bench: largest face of each photo

        from faceatlas.engine import FaceAnalyzer

        people = [folder for folder in sorted(lfw.iterdir()) if folder.is_dir()]
        photos = [(label, image) for label, folder in enumerate(people) for image in sorted(folder.glob("*.jpg"))]
        embedded = embed_folder(FaceAnalyzer(pack), [image for _, image in photos])
        found = [(label, vector) for (label, _), vector in zip(photos, embedded) if vector is not None]
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


def synthetic_faces(n: int, model: FaceModel, queries: int, seed: int = 0
                    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(faces (n, dim), identity of each face, queries (q, dim)): FACES_PER_IDENTITY faces per identity."""
    rng = np.random.default_rng(seed)
    dim = model.dim
    identities = max(1, n // FACES_PER_IDENTITY)
    centres = model.mean + rng.standard_normal((identities, dim), dtype=np.float32) @ model.between.T
    scale = np.sqrt(rng.uniform(*model.spread, identities)).astype(np.float32)
    owner = np.arange(n) % identities

    def faces_of(who: np.ndarray) -> np.ndarray:
        noise = rng.standard_normal((len(who), dim), dtype=np.float32) @ model.within.T
        return normalize_rows(centres[who] + noise * scale[who, None])

    faces = np.empty((n, dim), np.float32)
    for start in range(0, n, _CHUNK):
        faces[start: start + _CHUNK] = faces_of(owner[start: start + _CHUNK])
    return faces, owner, faces_of(rng.integers(0, identities, queries))


def cosine_stats(faces: np.ndarray, owner: np.ndarray, pairs: int = 20_000, seed: int = 1) -> str:
    """Same-identity and different-identity cosine of random face pairs, to check the generator."""
    rng = np.random.default_rng(seed)
    identities = int(owner.max()) + 1
    first = rng.integers(0, min(identities, len(faces) - identities), pairs)
    same = np.sum(faces[first] * faces[first + identities], axis=1)
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


def latencies(search, queries: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Wall and process-CPU milliseconds of one top-10 search per query, one query at a time. On a
    loaded machine wall time includes waiting for a core; CPU time is what the search costs."""
    wall, cpu = [], []
    for query in queries:
        start, start_cpu = time.perf_counter(), time.process_time()
        search(query[None])
        wall.append((time.perf_counter() - start) * 1000)
        cpu.append((time.process_time() - start_cpu) * 1000)
    return np.asarray(wall), np.asarray(cpu)


def measure(name: str, build, queries: np.ndarray, truth: np.ndarray | None, timed: int) -> tuple[Result, np.ndarray]:
    """Build an index, time single searches, and compare its top-1 with ``truth`` (None: it is the truth)."""
    start = time.perf_counter()
    index = build()
    build_s = time.perf_counter() - start
    def search(q: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return index.search(q, 10)

    per_face = index.d * 4 if isinstance(index, faiss.Index) else index.memory_bytes() / len(index)
    _, found = search(queries)
    times, cpu = latencies(search, queries[:timed])
    recall = 1.0 if truth is None else float((found[:, 0] == truth).mean())
    return Result(name, build_s, per_face, float(np.percentile(times, 50)), float(np.percentile(times, 99)),
                  float(np.percentile(cpu, 50)), recall), found[:, 0]


def run(size: int, dim: int, args: argparse.Namespace, console: Console) -> list[Result]:
    start = time.perf_counter()
    model = fitted_model(args.lfw, args.pack) if args.generator == "fitted" else isotropic_model(dim)
    if model.dim != dim:
        raise SystemExit(f"--pack {args.pack} makes {model.dim}-d embeddings; use --generator isotropic for {dim}-d")
    faces, owner, queries = synthetic_faces(size, model, args.queries)
    ids = np.arange(size, dtype=np.int64)
    console.log(f"{size:,} x {dim}-d {args.generator} faces generated in {time.perf_counter() - start:.1f}s; "
                f"{cosine_stats(faces, owner)}")

    def flat_ip() -> faiss.IndexFlatIP:
        index = faiss.IndexFlatIP(dim)
        index.add(faces)
        return index

    flat_result, truth = measure("faiss IndexFlatIP (exact)", flat_ip, queries, None, min(args.timed, args.flat_timed))
    results = [flat_result]
    kind = "templates" if size >= args.ann_min_faces else "exact"

    built: list[VectorIndex] = []

    def gallery_index(ef: int) -> VectorIndex:
        """The gallery's index, built on first use; later calls only set the HNSW search depth."""
        if not built:
            built.append(build_index(ids, faces, dim, owner, storage=args.storage, ann_min_faces=args.ann_min_faces,
                                     expansion_search=ef, expansion_add=args.build_depth,
                                     connectivity=args.connectivity))
            if isinstance(built[0], TemplateIndex):
                console.log(f"{built[0].nodes:,} template nodes for {size:,} faces")
        if isinstance(built[0], TemplateIndex):
            built[0].expansion_search = ef
        return built[0]

    for ef in args.ef_search if kind == "templates" else args.ef_search[:1]:
        label = f"{kind}, {args.storage}" + \
            (f", M {args.connectivity}, efC {args.build_depth}, ef {ef}" if kind == "templates" else "")
        results.append(measure(f"gallery index ({label})", lambda ef=ef: gallery_index(ef), queries, truth,
                               args.timed)[0])
    if not args.no_exact and kind == "templates":
        def exact() -> ExactIndex:
            index = ExactIndex(dim, args.storage)
            index.add(ids, faces)
            return index
        results.append(measure(f"gallery ExactIndex ({args.storage})", exact, queries, truth,
                               min(args.timed, args.flat_timed))[0])
    return results


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
    parser.add_argument("--ann-min-faces", type=int, default=ANN_MIN_FACES)
    parser.add_argument("--queries", type=int, default=1000, help="queries for recall@1")
    parser.add_argument("--timed", type=int, default=500, help="queries timed one by one")
    parser.add_argument("--flat-timed", type=int, default=50, help="timed queries for the brute-force indexes")
    parser.add_argument("--no-exact", action="store_true", help="skip the gallery ExactIndex row (saves memory)")
    args = parser.parse_args()
    console = Console(width=150)
    table = Table(title=f"top-10 search, {faiss.omp_get_max_threads()} threads, single-query latency")
    for column in ("faces", "dim", "index", "build s", "bytes/face", "p50 ms", "p99 ms", "cpu p50 ms", "recall@1"):
        table.add_column(column, justify="left" if column == "index" else "right")
    for size in (parse_size(s) for s in args.sizes):
        for dim in args.dims:
            for r in run(size, dim, args, console):
                table.add_row(f"{size:,}", str(dim), r.name, f"{r.build_s:.1f}", f"{r.bytes_per_face:.0f}",
                              f"{r.p50_ms:.2f}", f"{r.p99_ms:.2f}", f"{r.cpu_p50_ms:.2f}", f"{r.recall_at_1:.4f}")
            console.log(f"done {size:,} x {dim}; peak RSS of this process so far "
                        f"{resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20:.1f} GiB")
    console.print(table)


if __name__ == "__main__":
    main()
