"""Faces per second of each model pack, end to end (detect, align, embed), in one run.

Each pack runs ``analyze_many`` on the same LFW photos (decoded beforehand, 250x250, one face
each mostly) with the same thread count; the packs take turns over ``--rounds`` rounds and the
best round counts. Beside it, each pack's shipped LFW calibration (10-fold accuracy, TAR at FAR
1e-4 / 1e-6) so that speed and accuracy are read together.

    FACEATLAS_MODEL_DIR=../shared/models python bench/pack_speed.py --shared ../shared

``--openvino PACK ...`` adds those packs run through OpenVINO (``FACEATLAS_PROVIDER=openvino``, the
``openvino`` extra) and ``--flip PACK ...`` those packs with flip test-time augmentation
(``FACEATLAS_FLIP=1``, LFW figures from their flip calibration) as rows of the same run.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import cv2
from rich.console import Console
from rich.table import Table

from faceatlas.engine import FaceAnalyzer, get_pack, load_calibration
from faceatlas.settings import EngineSettings

PACKS = ("dlib", "yunet-dlib", "scrfd-mbf", "yunet-mbf", "yunet-frfeature", "scrfd-fusion")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shared", type=Path, default=Path("../shared"))
    parser.add_argument("--packs", nargs="+", default=list(PACKS))
    parser.add_argument("--lfw", type=int, default=100, help="number of LFW photos")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--openvino", nargs="*", default=[], help="packs also run through OpenVINO, same run")
    parser.add_argument("--flip", nargs="*", default=[], help="packs also run with flip TTA, same run")
    args = parser.parse_args()
    paths = sorted((args.shared / "data" / "lfw" / "images").glob("*/*.jpg"))
    images = [cv2.imread(str(p)) for p in paths[:: max(1, len(paths) // args.lfw)][: args.lfw]]
    analyzers = {name: FaceAnalyzer(name, threads=args.threads, announce_license=False) for name in args.packs}
    openvino = EngineSettings(provider="openvino")
    for name in args.openvino:
        analyzers[f"{name} openvino"] = FaceAnalyzer(get_pack(name, openvino), threads=args.threads, settings=openvino,
                                                     announce_license=False)
    for name in args.flip:
        analyzers[f"{name} flip"] = FaceAnalyzer(get_pack(name, flip=True), threads=args.threads,
                                                 announce_license=False)
    for analyzer in analyzers.values():
        analyzer.analyze_many(images[:4])  # warm-up
    best = dict.fromkeys(analyzers, float("inf"))
    faces = dict.fromkeys(analyzers, 0)
    for round_ in range(args.rounds):
        order = list(analyzers) if round_ % 2 == 0 else list(analyzers)[::-1]
        for name in order:
            start = time.perf_counter()
            found = [f for batch in range(0, len(images), 16)
                     for f in analyzers[name].analyze_many(images[batch : batch + 16])]
            best[name] = min(best[name], time.perf_counter() - start)
            faces[name] = sum(len(f) for f in found)
    table = Table(title=f"packs on {len(images)} LFW photos, CPU, {args.threads} threads, best of {args.rounds} rounds")
    for column in ("pack", "faces/s", "ms / face", "faces", "LFW 10-fold", "TAR@1e-4", "TAR@1e-6", "licences"):
        table.add_column(column, justify="left" if column in ("pack", "licences") else "right")
    for label, analyzer in analyzers.items():
        name = analyzer.pack.name
        metrics = load_calibration(analyzer.pack) or None
        m = metrics.metrics if metrics else {}
        table.add_row(
            label, f"{faces[label] / best[label]:.1f}", f"{1000 * best[label] / max(1, faces[label]):.1f}",
            str(faces[label]),
            f"{m.get('lfw_accuracy', float('nan')):.4f}", f"{m.get('tar_at_far_1e-4', float('nan')):.3f}",
            f"{m.get('tar_at_far_1e-6', float('nan')):.3f}",
            "; ".join(text.split(" (")[0].split(":")[0] for text in get_pack(name).licenses),
        )
    Console().print(table)


if __name__ == "__main__":
    main()
