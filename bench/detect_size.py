"""Detection input size: what a smaller or larger longest side costs in faces found and saves in time.

The detectors letterbox an image to ``det_max_side`` (default 640) on its longest side (a smaller
image runs at its own size, rounded up to the stride). For the group photos and frames of the crowd
clip (people_walking_vtest, 1280x720, small faces), each size's faces found, the share of the faces
found at the largest size that it finds too (matched by box IoU >= 0.3: a recall against the
largest size, there is no labelled ground truth), and the detection time per image, in one run,
for SCRFD-500M (``scrfd-mbf``) and YuNet (``yunet-frfeature``); and the ``FACEATLAS_MIN_FACE``
policy (the image reduced until the smallest face wanted is ~16 px, within the 640 max side).

    FACEATLAS_MODEL_DIR=../shared/models python bench/detect_size.py --shared ../shared
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import cv2
import numpy as np
import supervision as sv
from rich.console import Console
from rich.table import Table

from faceatlas.engine import FaceAnalyzer
from faceatlas.engine.detections import Detections
from faceatlas.settings import EngineSettings

GROUP_PHOTOS = (
    "face_recognition_examples/examples/two_people.jpg",
    "face_recognition_examples/examples/knn_examples/test/obama_and_biden.jpg",
    "face_recognition_examples/examples/knn_examples/test/kit_with_rose.jpg",
)


def found_again(reference: Detections, found: Detections) -> int:
    """How many of ``reference``'s faces ``found`` has too (greedy, IoU >= 0.3)."""
    if not len(reference) or not len(found):
        return 0
    overlap = sv.box_iou_batch(reference.boxes, found.boxes)
    return int((overlap.max(axis=1) >= 0.3).sum())


def clip_frames(video: Path, count: int) -> list[np.ndarray]:
    capture = cv2.VideoCapture(str(video))
    total = int(capture.get(cv2.CAP_PROP_FRAME_COUNT)) or count
    frames = []
    for index in np.linspace(0, total - 1, count).astype(int):
        capture.set(cv2.CAP_PROP_POS_FRAMES, int(index))
        ok, frame = capture.read()
        if ok:
            frames.append(frame)
    capture.release()
    return frames


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shared", type=Path, default=Path("../shared"))
    parser.add_argument("--sides", default="320,480,640,800,1024")
    parser.add_argument("--frames", type=int, default=30)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--min-faces", default="32,64,128", help="FACEATLAS_MIN_FACE values (max side 640)")
    args = parser.parse_args()
    sides = sorted(int(v) for v in args.sides.split(","))
    variants = [(f"{side}", side, None) for side in sides] + [
        (f"640, min face {m}", 640, int(m)) for m in args.min_faces.split(",") if m]
    data = args.shared / "data"
    sets = {
        "group photos": [cv2.imread(str(data / p)) for p in GROUP_PHOTOS],
        f"crowd clip ({args.frames} frames)": clip_frames(data / "videos" / "people_walking_vtest.avi", args.frames),
    }
    table = Table(title=f"detection input size (longest side), best of {args.rounds} rounds, 2 threads")
    for column in ("pack", "image set", "longest side", "faces", f"of the {sides[-1]} side's", "ms / image"):
        table.add_column(column, justify="left" if column in ("pack", "image set") else "right")
    for pack in ("scrfd-mbf", "yunet-frfeature"):
        detectors = {label: FaceAnalyzer(pack, det_max_side=side, settings=EngineSettings(min_face=min_face),
                                         announce_license=False).detector for label, side, min_face in variants}
        for label, images in sets.items():
            found: dict[str, list[Detections]] = {}
            best = dict.fromkeys(detectors, float("inf"))
            for _ in range(args.rounds):
                for name, detector in detectors.items():
                    detector.detect(images[0])  # warm-up of this input size
                    start = time.perf_counter()
                    found[name] = [detector.detect(image) for image in images]
                    best[name] = min(best[name], (time.perf_counter() - start) / len(images))
            largest = found[f"{sides[-1]}"]
            reference = sum(len(d) for d in largest)
            for name in detectors:
                again = sum(found_again(ref, mine) for ref, mine in zip(largest, found[name], strict=True))
                table.add_row(pack, label, name, str(sum(len(d) for d in found[name])),
                              f"{again}/{reference}", f"{1000 * best[name]:.1f}")
    Console(width=160).print(table)


if __name__ == "__main__":
    main()
