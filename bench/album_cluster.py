"""Clustering speed of albums: synthetic libraries of 100k and 1M faces (the gallery bench's
generator fitted on LFW embeddings), identities with power-law photo counts (Zipf, as in real
albums); time to cluster the library, time to add 1,000 new faces to it against its kept index,
and the process's peak memory. Run on 2 cores by default (``--threads``).

For sizes up to ``--album-max`` (100k) also the whole upload path: the library stored as an album
(SQLite in a temporary folder: its faces' vectors in the album's gallery collection, one person
per cluster), then one real photo added through ``Album.add_photos`` as the service does it (an
album attached per call on one engine): *cold* (the first upload of the process: the placed faces
read from the database and indexed), *warm* (the median of the next three uploads: the process's
cached library, no read), and the photo's analysis alone, which is in both.

    python bench/album_cluster.py --sizes 100k 1M --pack scrfd-mbf
"""

from __future__ import annotations

import argparse
import resource
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from rich.console import Console
from rich.table import Table
from sqlalchemy import insert

sys.path.insert(0, str(Path(__file__).parent))
from gallery_search import _faces_of, fitted_model, parse_size

from faceatlas.apps.albums import Album, assign, cluster, score
from faceatlas.apps.albums.album import COLLECTION
from faceatlas.apps.albums.clustering import build_index
from faceatlas.apps.albums.db import FaceRow, Person, Photo
from faceatlas.db import create_database_engine
from faceatlas.engine import FaceAnalyzer, get_pack, load_calibration
from faceatlas.gallery import Gallery


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


def album_upload(faces: np.ndarray, labels: np.ndarray, photos: list[Path], analyzer: FaceAnalyzer,
                 far: float) -> tuple[float, float, float]:
    """Seconds to add one photo to an album holding ``faces`` placed as ``labels``: the first
    upload of the process (cold), the median of the next three (warm), and one photo's analysis."""
    with tempfile.TemporaryDirectory(prefix="album-bench-") as folder:
        url = f"sqlite:///{Path(folder) / 'album.db'}"
        engine = create_database_engine(url)
        gallery = Gallery.open(url, index_dir=Path(folder) / "indexes")
        try:
            album = Album.attach("bench", analyzer, gallery, engine, owner="bench", far=far, create=True)
            store(album, faces, labels)
            times = []
            for photo in photos[:4]:
                request = Album.attach("bench", analyzer, gallery, engine, owner="bench", far=far)
                start = time.perf_counter()
                request.add_photos([(str(photo), photo.read_bytes())], total=1)
                times.append(time.perf_counter() - start)
                request.close()
            start = time.perf_counter()
            analyzer.analyze_many([photos[0].read_bytes()])
            return times[0], statistics.median(times[1:]), time.perf_counter() - start
        finally:
            gallery.close()
            engine.dispose()


def store(album: Album, faces: np.ndarray, labels: np.ndarray) -> None:
    """The faces as placed faces of the album, a person per label (in the gallery, one subject
    holds them all: a scan files them by person, which placing new faces does not read)."""
    with album._sessions.begin() as session:
        people = list(session.scalars(insert(Person).returning(Person.id, sort_by_parameter_order=True),
                                      [{"album_id": album._id}] * (int(labels.max()) + 1)))
        photo = session.scalar(insert(Photo).values(album_id=album._id, sha256="0" * 64, source="synthetic")
                               .returning(Photo.id))
    for start in range(0, len(faces), 20_000):
        ids = album.gallery.add_embeddings(COLLECTION, "synthetic", faces[start:start + 20_000],
                                           recognizer_id=album.analyzer.pack.recognizer_id)
        with album._sessions.begin() as session:
            session.execute(insert(FaceRow), [
                {"id": fid, "album_id": album._id, "photo_id": photo, "person_id": people[label],
                 "bbox": [0, 0, 100, 100], "quality": 0.9, "yaw": 0.0, "unsorted": False}
                for fid, label in zip(ids, labels[start:start + 20_000].tolist())])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", nargs="+", default=["100k", "1M"])
    parser.add_argument("--pack", default="scrfd-mbf")
    parser.add_argument("--lfw", type=Path, default=Path("../shared/data/lfw/images"))
    parser.add_argument("--far", default="1e-6")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--album-max", default="100k", help="largest size also timed through Album.add_photos")
    args = parser.parse_args()
    album_max = parse_size(args.album_max)
    photos = sorted((args.lfw / "George_W_Bush").glob("*.jpg"))[:4]
    analyzer = FaceAnalyzer(args.pack) if any(parse_size(size) <= album_max for size in args.sizes) else None
    calibration = load_calibration(get_pack(args.pack))
    assert calibration is not None
    threshold = calibration.thresholds[args.far]
    model = fitted_model(args.lfw, args.pack)
    table = Table(title=f"Album clustering, synthetic {args.pack} faces, FAR {args.far} (t={threshold:.3f}), "
                        f"{args.threads} threads")
    for column in ("faces", "identities", "cluster (s)", "B³ F", "clusters", "index (s)", "+1,000 (s)",
                   "+1 photo cold (s)", "+1 photo warm (s)", "of which analysis (s)", "peak RSS (GiB)"):
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
        del index
        upload = ("-", "-", "-")
        if analyzer is not None and size <= album_max:
            upload = tuple(f"{t:.2f}" for t in album_upload(old, labels, photos, analyzer, float(args.far)))
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
        table.add_row(f"{size:,}", f"{len(np.unique(owner[:size])):,}", f"{clustered:.1f}", f"{quality.bcubed_f:.4f}",
                      f"{quality.clusters:,}", f"{indexed:.1f}", f"{added:.2f}", *upload, f"{peak:.2f}")
        Console(width=200).print(table)


if __name__ == "__main__":
    main()
