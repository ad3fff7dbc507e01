"""Clustering speed of albums: synthetic libraries of 100k and 1M faces (the gallery bench's
generator fitted on LFW embeddings), identities with power-law photo counts (Zipf, as in real
albums); time to cluster the library, time to add 1,000 new faces to it against its kept index,
and the process's peak memory. Run on 2 cores by default (``--threads``).

    python bench/album_cluster.py --sizes 100k 1M --pack scrfd-mbf
"""

from __future__ import annotations

import argparse
import resource
import sys
import time
from pathlib import Path

import numpy as np
from rich.console import Console
from rich.table import Table

sys.path.insert(0, str(Path(__file__).parent))
from gallery_search import _faces_of, fitted_model, parse_size

from faceatlas.apps.albums import assign, cluster, score
from faceatlas.apps.albums.clustering import build_index
from faceatlas.engine import get_pack, load_calibration


def library(n: int, model: object, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """``n`` faces of identities whose photo counts follow Zipf(2) (1 to 1,000 photos each)."""
    rng = np.random.default_rng(seed)
    counts: list[int] = []
    while sum(counts) < n:
        counts.extend(np.minimum(rng.zipf(2.0, 10_000), 1000).tolist())
    counts_arr = np.asarray(counts)
    counts_arr = counts_arr[: int(np.searchsorted(np.cumsum(counts_arr), n)) + 1]
    owner = np.repeat(np.arange(len(counts_arr)), counts_arr)[:n]
    centres = model.mean + rng.standard_normal((len(counts_arr), model.dim), dtype=np.float32) @ model.between.T
    scale = np.sqrt(rng.uniform(*model.spread, len(counts_arr))).astype(np.float32)
    faces = np.concatenate([_faces_of(model, centres[owner[s:s + 100_000]], scale[owner[s:s + 100_000]], rng)
                            for s in range(0, n, 100_000)])
    return faces.astype(np.float32), owner


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", nargs="+", default=["100k", "1M"])
    parser.add_argument("--pack", default="scrfd-mbf")
    parser.add_argument("--lfw", type=Path, default=Path("../shared/data/lfw/images"))
    parser.add_argument("--far", default="1e-6")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    calibration = load_calibration(get_pack(args.pack))
    assert calibration is not None
    threshold = calibration.thresholds[args.far]
    model = fitted_model(args.lfw, args.pack)
    table = Table(title=f"Album clustering, synthetic {args.pack} faces, FAR {args.far} (t={threshold:.3f}), "
                        f"{args.threads} threads")
    for column in ("faces", "identities", "cluster (s)", "B³ F", "clusters", "index (s)", "+1,000 (s)",
                   "peak RSS (GiB)"):
        table.add_column(column, justify="right")
    for size in map(parse_size, args.sizes):
        faces, owner = library(size + 1000, model)
        old, new = faces[:size], faces[size:]
        start = time.perf_counter()
        labels = cluster(old, threshold, threads=args.threads)
        clustered = time.perf_counter() - start
        quality = score(labels, owner[:size])
        start = time.perf_counter()
        index = build_index(old, threads=args.threads)
        indexed = time.perf_counter() - start
        start = time.perf_counter()
        assign(old, labels, new, threshold, index=index, threads=args.threads)
        added = time.perf_counter() - start
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
        table.add_row(f"{size:,}", f"{len(np.unique(owner[:size])):,}", f"{clustered:.1f}", f"{quality.bcubed_f:.4f}",
                      f"{quality.clusters:,}", f"{indexed:.1f}", f"{added:.2f}", f"{peak:.2f}")
        Console(width=200).print(table)


if __name__ == "__main__":
    main()
