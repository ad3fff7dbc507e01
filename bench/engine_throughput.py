"""Engine throughput: FaceAtlas ``analyze_many`` (float and int8 recogniser) vs InsightFace ``FaceAnalysis``.

All run det_500m (SCRFD-500M) + the shared MobileFaceNet 128-d on the CPU, in the same process,
alternating warm rounds, on 200 LFW photos and on repeated group photos. Images are decoded
beforehand, so only detection, alignment and embedding are timed. The int8 row is the same pack
with ``runtime="int8"`` (the recogniser quantised, ``engine.quantize``); its LFW accuracy and TAR
column come from its calibration (``faceatlas eval lfw --runtime int8``). Also prints how closely
the engines' embeddings of the same faces agree (cosine).

    FACEATLAS_MODEL_DIR=shared/models python bench/engine_throughput.py --shared ../shared

InsightFace rows need the ``bench`` extra (``pip install insightface``); without it the table
compares float and int8 only.
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

from faceatlas.engine import FaceAnalyzer, get_pack
from faceatlas.engine.geometry import align_face
from faceatlas.settings import EngineSettings

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


def lfw_figures(analyzer: FaceAnalyzer) -> tuple[str, str]:
    """LFW 10-fold accuracy and TAR at FAR 1e-4 from the pack's calibration (made by `eval lfw`)."""
    metrics = analyzer.calibration.metrics if analyzer.calibration else {}
    accuracy, tar = metrics.get("lfw_accuracy"), metrics.get("tar_at_far_1e-4")
    return (f"{100 * accuracy:.2f}%" if accuracy else "-"), (f"{tar:.4f}" if tar else "-")


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
    settings = EngineSettings(shared=args.shared)
    analyzers = {f"FaceAtlas {runtime}": FaceAnalyzer(get_pack("scrfd-mbf", settings, runtime=runtime),
                                                      settings=settings, announce_license=False)
                 for runtime in ("float", "int8")}
    analyzer = analyzers["FaceAtlas float"]
    with tempfile.TemporaryDirectory() as tmp:
        try:
            insight = insightface_app(model_dir, Path(tmp))
        except ImportError:
            insight = None
            console.print("[yellow]insightface is not installed (pip install insightface): float vs int8 only")
        engines: dict[str, Callable[[Sequence[np.ndarray]], Found]] = {
            name: (lambda im, a=a: run_faceatlas(a, im, args.batch)) for name, a in analyzers.items()}
        if insight is not None:
            engines["InsightFace"] = lambda im: run_insightface(insight, im)
        baseline = "InsightFace" if insight is not None else "FaceAtlas float"
        table = Table(title="FaceAtlas (scrfd-mbf, float and int8 recogniser) vs InsightFace FaceAnalysis, "
                            "same det_500m + MobileFaceNet, CPU")
        for column in ("image set", "engine", "images/s", "faces/s", "faces", f"ratio to {baseline}",
                       "LFW 10-fold", "TAR@FAR1e-4"):
            table.add_column(column, justify="left" if column in ("image set", "engine") else "right")
        agreements = []
        for label, images in sets.items():
            for fn in engines.values():
                fn(images[:8])  # warm-up
            best = dict.fromkeys(engines, float("inf"))
            results: dict[str, Found] = {}
            order = list(engines.items())
            for round_ in range(args.rounds):
                for name, fn in order if round_ % 2 == 0 else order[::-1]:
                    seconds, results[name] = timed(lambda fn=fn, im=images: fn(im))
                    best[name] = min(best[name], seconds)
            for name in engines:
                faces = sum(len(r) for r in results[name])
                accuracy, tar = lfw_figures(analyzers[name]) if name in analyzers else ("-", "-")
                table.add_row(label, name, f"{len(images) / best[name]:.1f}", f"{faces / best[name]:.1f}", str(faces),
                              f"{best[baseline] / best[name]:.2f}x", accuracy, tar)
            if insight is not None:
                agreements.append((label, *agreement(analyzer, images, results["FaceAtlas float"],
                                                     results["InsightFace"])))
        console.print(table)
        if agreements:
            agree = Table(title="Embedding agreement, FaceAtlas float vs InsightFace (cosine, same face)")
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
