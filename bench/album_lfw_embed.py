"""Embed LFW once per pack for bench/album_accuracy.py (the central face of each photo, with its
quality and yaw), cached in an ``.npz`` under ``$FACEATLAS_CACHE/bench``.

    python bench/album_lfw_embed.py --lfw ../shared/data/lfw/images --pack scrfd-mbf [--limit N]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from rich.progress import track

from faceatlas.engine import FaceAnalyzer
from faceatlas.engine.evaluation import central_index
from faceatlas.settings import EngineSettings


def cache_path(pack: str) -> Path:
    return EngineSettings().cache_dir / "bench" / f"album-lfw-{pack.replace('/', '_')}.npz"


def lfw_keys(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.glob("*/*.jpg"))


def embed(root: Path, pack: str, keys: list[str]) -> Path:
    analyzer = FaceAnalyzer(pack)
    vectors = np.zeros((len(keys), analyzer.embedding_size), np.float32)
    quality = np.zeros(len(keys), np.float32)
    yaw = np.zeros(len(keys), np.float32)
    found = np.zeros(len(keys), bool)
    for row, key in enumerate(track(keys, description=f"embedding LFW ({pack})")):
        image = analyzer.load(root / key)
        faces = analyzer.analyze(image)
        if not faces:
            continue
        face = faces[central_index(faces, image.shape)]
        vectors[row] = face.embedding
        quality[row] = face.quality or 0.0
        yaw[row] = face.pose.yaw if face.pose else 0.0
        found[row] = True
    out = cache_path(pack)
    out.parent.mkdir(parents=True, exist_ok=True)
    np.savez(out, keys=np.array(keys), embeddings=vectors, quality=quality, yaw=yaw, found=found,
             recognizer_id=analyzer.pack.recognizer_id)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--lfw", type=Path, default=Path("../shared/data/lfw/images"))
    parser.add_argument("--pack", default="scrfd-mbf")
    parser.add_argument("--limit", type=int, default=None, help="only the first N photos (sorted by path)")
    args = parser.parse_args()
    keys = lfw_keys(args.lfw)[: args.limit]
    print(embed(args.lfw, args.pack, keys))


if __name__ == "__main__":
    main()
