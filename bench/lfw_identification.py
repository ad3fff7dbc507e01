"""1:N identification on LFW through the gallery.

Enrols one image per identity for every identity with >= 2 images, searches with the rest
(rank-1 accuracy), and searches with every image of the identities not enrolled (false-accept
rate at the FAR-1e-4 threshold of the pack calibration, or ``--threshold`` as a raw similarity).

    python bench/lfw_identification.py --lfw ../shared/data/lfw/images --pack scrfd-mbf
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
from rich.console import Console
from rich.progress import track
from rich.table import Table

from faceatlas.engine import Embedding, FaceAnalyzer
from faceatlas.gallery import Gallery


def embed_folder(analyzer: FaceAnalyzer, images: list[Path]) -> list[np.ndarray | None]:
    """The largest face's embedding of each image (None where no face is found)."""
    out: list[np.ndarray | None] = []
    for image in track(images, description="embedding", console=Console(stderr=True)):
        faces = analyzer.analyze(str(image), max_faces=1)
        out.append(faces[0].embedding if faces else None)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--lfw", type=Path, default=Path("../shared/data/lfw/images"))
    parser.add_argument("--pack", default="scrfd-mbf")
    parser.add_argument("--far", type=float, default=1e-4)
    parser.add_argument("--threshold", type=float, default=None, help="raw similarity (when the pack is uncalibrated)")
    args = parser.parse_args()
    console = Console()
    analyzer = FaceAnalyzer(args.pack)
    threshold = args.threshold if args.threshold is not None else analyzer.threshold(args.far)
    people = {p.name: sorted(p.glob("*.jpg")) for p in sorted(args.lfw.iterdir()) if p.is_dir()}
    enrolled = {name: images for name, images in people.items() if len(images) >= 2}
    strangers = [image for name, images in people.items() if len(images) < 2 for image in images]

    start = time.perf_counter()
    gallery_images = [images[0] for images in enrolled.values()]
    probes = [(name, image) for name, images in enrolled.items() for image in images[1:]]
    with tempfile.TemporaryDirectory() as folder, Gallery.open(f"sqlite:///{folder}/lfw.db") as gallery:
        gallery.create_collection("lfw", analyzer)
        enrolled_count = 0
        for name, vector in zip(enrolled, embed_folder(analyzer, gallery_images)):
            if vector is not None:
                gallery.add_embeddings("lfw", name, vector[None], recognizer_id=analyzer.pack.recognizer_id)
                enrolled_count += 1
        correct = accepted_genuine = no_face = 0
        for (name, _), vector in zip(probes, embed_folder(analyzer, [image for _, image in probes])):
            if vector is None:
                no_face += 1
                continue
            matches = gallery.search("lfw", Embedding(vector, analyzer.pack.recognizer_id), k=1)
            correct += bool(matches) and matches[0].external_id == name
            accepted_genuine += bool(matches) and matches[0].external_id == name and matches[0].similarity >= threshold
        false_accepts = stranger_no_face = 0
        for vector in embed_folder(analyzer, strangers):
            if vector is None:
                stranger_no_face += 1
                continue
            matches = gallery.search("lfw", Embedding(vector, analyzer.pack.recognizer_id), k=1, threshold=threshold)
            false_accepts += bool(matches)
    elapsed = time.perf_counter() - start

    table = Table(title=f"LFW 1:N identification, pack {args.pack}, threshold {threshold:.3f}")
    table.add_column("measure")
    table.add_column("value", justify="right")
    table.add_row("enrolled identities (1 image each)", f"{enrolled_count:,}")
    table.add_row("genuine probes (no face found)", f"{len(probes):,} ({no_face})")
    table.add_row("rank-1 accuracy (all genuine probes)", f"{correct / len(probes):.4f}")
    table.add_row("rank-1 accepted at threshold (DIR)", f"{accepted_genuine / len(probes):.4f}")
    table.add_row("non-enrolled probes (no face found)", f"{len(strangers):,} ({stranger_no_face})")
    searched = max(1, len(strangers) - stranger_no_face)
    table.add_row("false-accept rate of non-enrolled", f"{false_accepts / searched:.4f} ({false_accepts})")
    table.add_row("wall time", f"{elapsed:.0f} s")
    console.print(table)


if __name__ == "__main__":
    main()
