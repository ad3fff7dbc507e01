"""LFW as a photo album: how well the album's clustering groups faces into people.

Every LFW photo's central face (identities with >= 2 photos, plus the single-photo identities as
background strangers), embedded once per pack by ``bench/album_lfw_embed.py`` (cached). Reports
pairwise and BCubed precision / recall / F, clusters vs identities, for the album's constrained
single linkage at several FARs, the same library added in 10 increments (``assign``), and
scikit-learn's HDBSCAN beside it.

    python bench/album_lfw_embed.py --pack scrfd-mbf && python bench/album_lfw_embed.py --pack dlib
    python bench/album_accuracy.py --packs scrfd-mbf dlib [--limit 2500]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
from rich.console import Console
from rich.table import Table

sys.path.insert(0, str(Path(__file__).parent))
from album_lfw_embed import cache_path

from faceatlas.apps.albums import assign, cluster, score
from faceatlas.apps.albums.album import MAX_YAW, MIN_QUALITY
from faceatlas.engine import get_pack, load_calibration


def incremental(vectors: np.ndarray, threshold: float, parts: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Labels after adding the rows in ``parts`` random increments; and the order used."""
    order = np.random.default_rng(seed).permutation(len(vectors))
    labels = np.full(len(vectors), -1, np.int64)
    for chunk in np.array_split(order, parts):
        placed = labels >= 0
        placement = assign(vectors[placed], labels[placed], vectors[chunk], threshold)
        for gone, kept in placement.merged.items():
            labels[labels == gone] = kept
        labels[chunk] = placement.labels
    return labels, order


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--packs", nargs="+", default=["scrfd-mbf", "dlib"])
    parser.add_argument("--fars", nargs="+", default=["1e-5", "1e-6"])
    parser.add_argument("--no-hdbscan", action="store_true")
    parser.add_argument("--limit", type=int, default=None, help="only the first N photos (by path) of each cache")
    args = parser.parse_args()
    table = Table(title="LFW as an album (central face of each photo; gate: quality, yaw)")
    for column in ("pack", "method", "faces", "pair P", "pair R", "pair F", "B³ P", "B³ R", "B³ F",
                   "clusters / identities", "seconds"):
        table.add_column(column, justify="right")
    for pack in args.packs:
        data = {key: value[: args.limit] if value.ndim else value for key, value in np.load(cache_path(pack)).items()}
        identities = np.array([k.split("/")[0] for k in data["keys"]])
        keep = data["found"] & (data["quality"] >= MIN_QUALITY) & (np.abs(data["yaw"]) <= MAX_YAW)
        vectors, truth = data["embeddings"][keep], identities[keep]
        faces = f"{keep.sum():,} of {len(keep):,}"
        calibration = load_calibration(get_pack(pack))
        assert calibration is not None
        runs = []
        for far in args.fars:
            threshold = calibration.thresholds[far]
            start = time.perf_counter()
            runs.append((f"single linkage, FAR {far} (t={threshold:.3f})", cluster(vectors, threshold),
                         time.perf_counter() - start, truth))
        threshold = calibration.thresholds[args.fars[-1]]
        start = time.perf_counter()
        labels, order = incremental(vectors, threshold, 10)
        runs.append((f"same, 10 increments, FAR {args.fars[-1]}", labels, time.perf_counter() - start, truth))
        if not args.no_hdbscan:
            from sklearn.cluster import HDBSCAN

            start = time.perf_counter()
            found = HDBSCAN(min_cluster_size=2, min_samples=1).fit_predict(vectors.astype(np.float64))
            found = np.where(found < 0, found.max() + 1 + np.arange(len(found)), found)  # noise: singletons
            runs.append(("sklearn HDBSCAN (min_cluster_size 2, min_samples 1)", found,
                         time.perf_counter() - start, truth))
        for method, labels, seconds, truth_used in runs:
            s = score(labels, truth_used)
            table.add_row(pack, method, faces, f"{s.pairwise_precision:.4f}", f"{s.pairwise_recall:.4f}",
                          f"{s.pairwise_f:.4f}", f"{s.bcubed_precision:.4f}", f"{s.bcubed_recall:.4f}",
                          f"{s.bcubed_f:.4f}", f"{s.clusters:,} / {s.identities:,}", f"{seconds:.1f}")
    Console(width=220).print(table)


if __name__ == "__main__":
    main()
