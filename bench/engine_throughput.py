"""Engine throughput: FaceAtlas ``analyze_many`` vs InsightFace ``FaceAnalysis`` on the same model files.

Both run det_500m (SCRFD-500M) + the shared MobileFaceNet 128-d on the CPU, in the same process,
alternating warm rounds, on 200 LFW photos and on repeated group photos. Images are decoded
beforehand, so only detection, alignment and embedding are timed. Also prints how closely the
two engines' embeddings of the same faces agree (cosine).

    FACEATLAS_MODEL_DIR=shared/models python bench/engine_throughput.py --shared ../shared

Needs the ``bench`` extra (``pip install insightface``).
"""

from __future__ import annotations

import argparse
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import cv2
import numpy as np
from rich.console import Console
from rich.table import Table

from faceatlas.engine import FaceAnalyzer
from faceatlas.engine.geometry import align_face

GROUP_PHOTOS = (
    "face_recognition_examples/examples/two_people.jpg",
    "face_recognition_examples/examples/knn_examples/test/obama_and_biden.jpg",
    "face_recognition_examples/examples/knn_examples/test/kit_with_rose.jpg",
)
MODEL_FILES = ("insightface/det_500m.onnx", "recognition/mobilefacenet_128d.onnx")


def lfw_sample(images_dir: Path, count: int) -> list[Path]:
    """``count`` LFW photos spread evenly over the sorted image list."""
    paths = sorted(images_dir.glob("*/*.jpg"))
    step = max(1, len(paths) // count)
    return paths[::step][:count]


def insightface_app(model_dir: Path, root: Path):
    """InsightFace FaceAnalysis on a temp model folder holding links to our two model files."""
    from insightface.app import FaceAnalysis

    pack = root / "models" / "faceatlas_bench"
    pack.mkdir(parents=True, exist_ok=True)
    for name in MODEL_FILES:
        (pack / Path(name).name).symlink_to((model_dir / name).resolve())
    app = FaceAnalysis(name=pack.name, root=str(root), allowed_modules=["detection", "recognition"],
                       providers=["CPUExecutionProvider"])
    app.prepare(ctx_id=-1, det_size=(640, 640))
    return app


Found = list[list[tuple[np.ndarray, np.ndarray]]]  # per image, largest face first: (embedding, 5x2 keypoints)


def run_faceatlas(analyzer: FaceAnalyzer, images: Sequence[np.ndarray], batch: int) -> Found:
    """FaceAtlas ``analyze_many`` in batches."""
    out = []
    for start in range(0, len(images), batch):
        for faces in analyzer.analyze_many(images[start : start + batch]):
            out.append([(f.embedding, f.keypoints) for f in faces])
    return out


def run_insightface(app, images: Sequence[np.ndarray]) -> Found:
    """InsightFace ``FaceAnalysis.get``, one image at a time."""
    out = []
    for image in images:
        faces = sorted(app.get(image), key=lambda f: -(f.bbox[2] - f.bbox[0]) * (f.bbox[3] - f.bbox[1]))
        out.append([(f.normed_embedding, f.kps) for f in faces])
    return out


def timed(fn: Callable[[], Found]) -> tuple[float, Found]:
    start = time.perf_counter()
    result = fn()
    return time.perf_counter() - start, result


def agreement(analyzer: FaceAnalyzer, images: Sequence[np.ndarray], ours: Found, theirs: Found) -> list[float]:
    """Cosine between the engines' embeddings of InsightFace's largest face, end to end and with FaceAtlas
    embedding the crop aligned on InsightFace's keypoints (separates detector-scale effects from the embedder)."""
    both = []
    for image, a, b in zip(images, ours, theirs):
        if a and b:  # InsightFace's largest face, and the FaceAtlas face whose keypoints are nearest to it
            nearest = min(a, key=lambda face: float(np.abs(face[1] - b[0][1]).mean()))
            both.append((image, nearest, b[0]))
    end_to_end = np.array([float(a[0] @ b[0]) for _, a, b in both])
    crops = [align_face(image, b[1], analyzer.recognizer.crop_size) for image, _, b in both]
    same_kps = np.einsum("ij,ij->i", analyzer.embed_aligned(crops), np.array([b[0] for _, _, b in both]))
    return [end_to_end.mean(), end_to_end.min(), same_kps.mean(), same_kps.min(), len(both)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shared", type=Path, default=Path(__file__).resolve().parents[2] / "shared")
    parser.add_argument("--lfw", type=int, default=200, help="number of LFW photos")
    parser.add_argument("--group-repeat", type=int, default=10, help="times each group photo is repeated")
    parser.add_argument("--rounds", type=int, default=3, help="alternating timed rounds per engine")
    parser.add_argument("--batch", type=int, default=32, help="FaceAtlas analyze_many batch size")
    args = parser.parse_args()

    model_dir = args.shared / "models"
    data = args.shared / "data"
    lfw = [cv2.imread(str(p)) for p in lfw_sample(data / "lfw" / "images", args.lfw)]
    groups = [cv2.imread(str(data / p)) for p in GROUP_PHOTOS] * args.group_repeat
    sets = {f"LFW ({len(lfw)} photos, 250x250)": lfw, f"group photos (3 x {args.group_repeat})": groups}
    console = Console()
    analyzer = FaceAnalyzer("scrfd-mbf")
    with tempfile.TemporaryDirectory() as tmp:
        insight = insightface_app(model_dir, Path(tmp))
        table = Table(title="FaceAtlas (scrfd-mbf) vs InsightFace FaceAnalysis, same det_500m + MobileFaceNet, CPU")
        for column in ("image set", "engine", "images/s", "faces/s", "faces", "ratio (images/s)"):
            table.add_column(column, justify="left" if column in ("image set", "engine") else "right")
        agreements = []
        for label, images in sets.items():
            run_faceatlas(analyzer, images[:8], args.batch)  # warm-up
            run_insightface(insight, images[:8])
            best = {"FaceAtlas": float("inf"), "InsightFace": float("inf")}
            results: dict[str, Found] = {}
            for round_ in range(args.rounds):
                engines = [("FaceAtlas", lambda im=images: run_faceatlas(analyzer, im, args.batch)),
                           ("InsightFace", lambda im=images: run_insightface(insight, im))]
                for name, fn in engines if round_ % 2 == 0 else engines[::-1]:
                    seconds, results[name] = timed(fn)
                    best[name] = min(best[name], seconds)
            ratio = best["InsightFace"] / best["FaceAtlas"]
            for name in ("FaceAtlas", "InsightFace"):
                faces = sum(len(r) for r in results[name])
                table.add_row(label, name, f"{len(images) / best[name]:.1f}", f"{faces / best[name]:.1f}", str(faces),
                              f"{ratio:.2f}x" if name == "FaceAtlas" else "1.00x")
            agreements.append((label, *agreement(analyzer, images, results["FaceAtlas"], results["InsightFace"])))
        console.print(table)
        agree = Table(title="Embedding agreement, FaceAtlas vs InsightFace (cosine, same face)")
        for column in ("image set", "end to end: mean", "min", "same keypoints: mean", "min", "images"):
            agree.add_column(column, justify="left" if column == "image set" else "right")
        for label, *values in agreements:
            agree.add_row(label, *(f"{v:.4f}" for v in values[:4]), str(values[4]))
        console.print(agree)
        threads = analyzer.detector.session.get_session_options().intra_op_num_threads
        console.print(f"best of {args.rounds} alternating warm rounds; FaceAtlas batch {args.batch}; "
                      f"onnxruntime intra-op threads: FaceAtlas {threads}, InsightFace its default")


if __name__ == "__main__":
    main()
