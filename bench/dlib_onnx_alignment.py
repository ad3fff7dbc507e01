"""The `yunet-dlib` pack against the `dlib` pack on the same LFW faces: same vectors, how much faster.

Both run dlib's ResNet on dlib's 150x150 chip; `dlib` finds faces with dlib's HOG detector and runs
the network in dlib, `yunet-dlib` finds them with YuNet, places dlib's 5 landmarks inside YuNet's box
moved to where HOG's would be (``YUNET_TO_DLIB_BOX``, re-measured here) and runs the network
converted to ONNX (``engine.dlib_onnx``). For each photo where both find one face, the table gives
the cosine between the two packs' vectors, and each stage's cost per face, measured in one run.

    FACEATLAS_MODEL_DIR=../shared/models python bench/dlib_onnx_alignment.py --shared ../shared
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
from rich.console import Console
from rich.table import Table

from faceatlas.engine import FaceAnalyzer, load_image
from faceatlas.engine.recognizers import YUNET_TO_DLIB_BOX


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shared", type=Path, default=Path("../shared"))
    parser.add_argument("--photos", type=int, default=400)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    dlib_pack = FaceAnalyzer("dlib", threads=args.threads, announce_license=False)
    fast = FaceAnalyzer("yunet-dlib", threads=args.threads, announce_license=False)
    photos = sorted((args.shared / "data" / "lfw" / "images").rglob("*.jpg"))
    photos = photos[:: max(1, len(photos) // args.photos)][: args.photos]
    seconds = dict.fromkeys(("dlib detect", "dlib chip", "dlib embed", "YuNet detect", "yunet-dlib chip",
                             "ONNX embed"), 0.0)
    theirs, ours, boxes = [], [], []
    for photo in photos:
        image = load_image(photo)
        start = time.perf_counter()
        found_dlib = dlib_pack.detector.detect(image)
        seconds["dlib detect"] += time.perf_counter() - start
        start = time.perf_counter()
        found_yunet = fast.detector.detect(image)
        seconds["YuNet detect"] += time.perf_counter() - start
        if len(found_dlib) != 1 or len(found_yunet) != 1:
            continue
        start = time.perf_counter()
        theirs.append(dlib_pack.recognizer.align(image, found_dlib, 0))
        seconds["dlib chip"] += time.perf_counter() - start
        start = time.perf_counter()
        ours.append(fast.recognizer.align(image, found_yunet, 0))
        seconds["yunet-dlib chip"] += time.perf_counter() - start
        (hx1, hy1, hx2, hy2), (yx1, yy1, yx2, yy2) = found_dlib.boxes[0], found_yunet.boxes[0]
        width, height = yx2 - yx1, yy2 - yy1
        boxes.append([((hx1 + hx2) - (yx1 + yx2)) / 2 / width, ((hy1 + hy2) - (yy1 + yy2)) / 2 / height,
                      (hx2 - hx1) / width, (hy2 - hy1) / height])
    start = time.perf_counter()
    vectors_dlib = dlib_pack.recognizer.embed_aligned(theirs)
    seconds["dlib embed"] = time.perf_counter() - start
    fast.recognizer.embed_aligned(ours[:8])  # warm-up
    start = time.perf_counter()
    vectors_fast = np.concatenate([fast.recognizer.embed_aligned(ours[i : i + 32]) for i in range(0, len(ours), 32)])
    seconds["ONNX embed"] = time.perf_counter() - start
    cosine = (vectors_dlib * vectors_fast).sum(axis=1)
    faces, console = len(cosine), Console()
    table = Table(title=f"dlib vs yunet-dlib on {faces} LFW faces both packs find alone ({len(photos)} photos), "
                        f"{args.threads} threads")
    for column in ("stage", "dlib ms / face", "yunet-dlib ms / face", "speed-up"):
        table.add_column(column, justify="left" if column == "stage" else "right")
    pairs = [("detect (per photo)", "dlib detect", "YuNet detect", len(photos)),
             ("chip", "dlib chip", "yunet-dlib chip", faces), ("embed", "dlib embed", "ONNX embed", faces)]
    for label, a, b, count in pairs:
        table.add_row(label, f"{1000 * seconds[a] / count:.1f}", f"{1000 * seconds[b] / count:.1f}",
                      f"{seconds[a] / seconds[b]:.1f}x")
    total_a = seconds["dlib detect"] / len(photos) + (seconds["dlib chip"] + seconds["dlib embed"]) / faces
    total_b = seconds["YuNet detect"] / len(photos) + (seconds["yunet-dlib chip"] + seconds["ONNX embed"]) / faces
    table.add_row("one face, end to end", f"{1000 * total_a:.1f}", f"{1000 * total_b:.1f}", f"{total_a / total_b:.1f}x")
    console.print(table)
    console.print(f"cosine between the packs' vectors of the same face: mean {cosine.mean():.4f}, "
                  f"5th percentile {np.percentile(cosine, 5):.4f}, min {cosine.min():.4f}")
    median = np.median(np.array(boxes), axis=0)
    console.print("dlib's HOG box relative to YuNet's (centre dx, dy; width, height): measured "
                  f"({', '.join(f'{v:.4f}' for v in median)}), in use {YUNET_TO_DLIB_BOX}")


if __name__ == "__main__":
    main()
