"""Passive liveness: Faceplugin ``fr_liveness`` (MIT) vs Silent-Face MiniFASNet (Apache-2.0) on
every spoof and real sample in shared/.

Spoofs: Silent-Face's two recaptured samples (image_F1, image_F2); the only spoofs on hand, so
APCER rests on 2 attempts. Reals: Silent-Face's real sample (image_T1), every photo of the
face_recognition examples (press photos, the Obama resolutions, group photos: every face), frames
of the in-cabin driver video (one each ``--frame-step`` frames), and ``--lfw`` LFW photos spread
over the set. One YuNet box per face for every model; each model decides at
``REAL_THRESHOLD`` (0.5 on its real class). APCER = spoofs accepted as real, BPCER = reals
refused (ISO/IEC 30107-3).

    FACEATLAS_MODEL_DIR=../shared/models python bench/liveness_compare.py --shared ../shared
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import cv2
import numpy as np
from rich.console import Console
from rich.table import Table

from faceatlas.engine import REAL_THRESHOLD, FaceAnalyzer, resolve
from faceatlas.engine.liveness import LivenessMember, MiniFASNet
from faceatlas.engine.packs import FACEPLUGIN_LIVENESS, SILENT_FACE, LivenessSpec


def ensemble(specs: tuple[LivenessSpec, ...]) -> MiniFASNet:
    """The liveness models of ``specs`` (as a pack declares them), one thread."""
    return MiniFASNet([LivenessMember(resolve(s.file), s.scale, s.size, s.real_class) for s in specs], threads=1)


def samples(shared: Path, lfw: int, frame_step: int) -> list[tuple[str, np.ndarray, bool]]:
    """(name, BGR image, is_real) for every sample."""
    out: list[tuple[str, np.ndarray, bool]] = []
    for path in sorted((shared / "data" / "antispoof_samples").glob("*.jpg")):
        out.append((path.name, cv2.imread(str(path)), path.stem.endswith("T1")))
    examples = shared / "data" / "face_recognition_examples"
    for path in sorted(p for p in examples.rglob("*") if p.suffix.lower() in (".jpg", ".jpeg", ".png")):
        image = cv2.imread(str(path), cv2.IMREAD_COLOR)
        if image is not None:
            out.append((path.name, image, True))
    photos = sorted((shared / "data" / "lfw" / "images").glob("*/*.jpg"))
    out += [(p.name, cv2.imread(str(p)), True) for p in photos[:: max(1, len(photos) // max(1, lfw))][:lfw]]
    video = cv2.VideoCapture(str(shared / "data" / "videos" / "driver_night_cabin.mp4"))
    index = 0
    while True:
        ok, frame = video.read()
        if not ok:
            break
        if index % frame_step == 0:
            out.append((f"driver frame {index}", frame, True))
        index += 1
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--shared", type=Path, default=Path("../shared"))
    parser.add_argument("--lfw", type=int, default=200, help="LFW photos among the reals")
    parser.add_argument("--frame-step", type=int, default=100, help="one driver-video frame in this many")
    args = parser.parse_args()
    analyzer = FaceAnalyzer("yunet-mbf", threads=1, announce_license=False)
    contenders = {
        "fr_liveness (MIT, Faceplugin)": ensemble(FACEPLUGIN_LIVENESS),
        "MiniFASNet V2 + V1SE (Apache-2.0)": ensemble(SILENT_FACE),
    }
    scores: dict[str, list[float]] = {name: [] for name in contenders}
    spent = dict.fromkeys(contenders, 0.0)
    truth: list[bool] = []
    spoof_rows: list[tuple[str, list[float]]] = []
    for name, image, real in samples(args.shared, args.lfw, args.frame_step):
        found = analyzer.detector.detect(image)
        for box in found.boxes:
            truth.append(real)
            row = []
            for model_name, model in contenders.items():
                start = time.perf_counter()
                score = model.predict(image, box).score
                spent[model_name] += time.perf_counter() - start
                scores[model_name].append(score)
                row.append(score)
            if not real or name.startswith("image_T1"):
                spoof_rows.append((name, row))
    labels = np.array(truth)
    n_spoof, n_real = int((~labels).sum()), int(labels.sum())
    table = Table(title=f"passive liveness at REAL_THRESHOLD {REAL_THRESHOLD}: {n_spoof} spoof faces, "
                        f"{n_real} real faces (YuNet boxes, 1 thread)")
    for column in ("model", "APCER (spoof passed)", "BPCER (real refused)", "refused reals", "ms / face"):
        table.add_column(column, justify="left" if column == "model" else "right")
    for model_name, values in scores.items():
        said_real = np.array(values) >= REAL_THRESHOLD
        apcer = float(said_real[~labels].mean()) if n_spoof else float("nan")
        bpcer = float((~said_real[labels]).mean())
        table.add_row(model_name, f"{apcer:.3f} ({int(said_real[~labels].sum())}/{n_spoof})",
                      f"{bpcer:.3f}", f"{int((~said_real[labels]).sum())}/{n_real}",
                      f"{1000 * spent[model_name] / len(values):.2f}")
    console = Console()
    console.print(table)
    samples_table = Table(title="real-class score on Silent-Face's own samples")
    samples_table.add_column("sample")
    for model_name in contenders:
        samples_table.add_column(model_name, justify="right")
    for name, row in spoof_rows:
        samples_table.add_row(name, *(f"{s:.3f}" for s in row))
    console.print(samples_table)


if __name__ == "__main__":
    main()
