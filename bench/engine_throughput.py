"""Engine throughput: FaceAtlas ``analyze_many`` (float/int8 recogniser x ONNX Runtime/OpenVINO) vs InsightFace.

``scrfd-mbf`` rows run det_500m (SCRFD-500M) + the shared MobileFaceNet 128-d on the CPU, as
InsightFace ``FaceAnalysis`` does with the same two files; ``yunet-frfeature`` rows (the default
pack, YuNet through OpenCV + Faceplugin fr_feature 512-d) have no InsightFace counterpart and are
compared with their own float/onnxruntime row. Every variant runs in the same process,
alternating warm rounds, on 200 LFW photos and on repeated group photos. FaceAtlas rows run
``analyze_many`` as shipped (images split into lanes side by side, ``FACEATLAS_PARALLEL_IMAGES``); the
"one image at a time" rows run each pack's float variant on one lane. Images are decoded
beforehand, so only detection, alignment and embedding are timed. The int8 rows are the pack with
``runtime="int8"`` (the recogniser quantised, ``engine.quantize``), the int8-det rows that with the SCRFD
detector quantised too (``FACEATLAS_INT8_DETECTOR=on``; its LFW figures are those measured once by
``faceatlas eval lfw``, in INT8_DETECTOR_LFW); the openvino rows run the
detector (SCRFD) and the float recogniser through OpenVINO (``FACEATLAS_PROVIDER=openvino``; an
int8 recogniser stays on ONNX Runtime, see bench/openvino_compare.py for OpenVINO's int8). LFW accuracy
and TAR come from the variant's calibration (``faceatlas eval lfw``; the provider does not change
the recogniser's id, so both providers share it), and "cos to onnxruntime" is the lowest cosine
between an openvino row's embedding and the onnxruntime row's of the same face, measured here.
On the group photos every variant also runs with a smallest wanted face (``--min-face``, default 64 px:
``FACEATLAS_MIN_FACE``), which detects on a smaller image; its "faces" column beside InsightFace's is
the recall cost on these photos. Also prints how closely FaceAtlas and InsightFace embeddings
agree, and the thread policy for each call shape: one session with 2 intra-op threads vs two
1-thread sessions in parallel.

    FACEATLAS_MODEL_DIR=shared/models python bench/engine_throughput.py --shared ../shared

InsightFace rows need the ``bench`` extra (``pip install insightface``), openvino rows the
``openvino`` extra; without them those rows are left out.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import cv2
import numpy as np
import onnxruntime as ort
from rich.console import Console
from rich.table import Table

from faceatlas.engine import FaceAnalyzer, get_pack
from faceatlas.engine.detectors import fit_size
from faceatlas.engine.geometry import align_face
from faceatlas.engine.image import network_input
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


# `faceatlas eval lfw -p scrfd-mbf --runtime int8` with FACEATLAS_INT8_DETECTOR=on, 2026-12-06 (AMD EPYC,
# AVX-512 VNNI): no calibration ships for it (the int8 one was measured with the float detector)
INT8_DETECTOR_LFW = ("99.25%", "0.9548")


def lfw_figures(analyzer: FaceAnalyzer) -> tuple[str, str]:
    """LFW 10-fold accuracy and TAR at FAR 1e-4 from the pack's calibration (made by `eval lfw`)."""
    if analyzer.int8_detector:
        return INT8_DETECTOR_LFW
    metrics = analyzer.calibration.metrics if analyzer.calibration else {}
    accuracy, tar = metrics.get("lfw_accuracy"), metrics.get("tar_at_far_1e-4")
    return (f"{100 * accuracy:.2f}%" if accuracy else "-"), (f"{tar:.4f}" if tar else "-")


PACKS = ("scrfd-mbf", "yunet-frfeature")
RUNTIMES = ("float", "int8", "int8-det")  # int8-det: runtime int8 with FACEATLAS_INT8_DETECTOR=on


def variant_settings(runtime: str, **update: object) -> tuple[str, EngineSettings]:
    """The pack runtime and the settings of a bench variant (``int8-det``: int8, the detector too)."""
    if runtime == "int8-det":
        return "int8", EngineSettings(**update, int8_detector="on")  # type: ignore[arg-type]
    return runtime, EngineSettings(**update, int8_detector="off")  # type: ignore[arg-type]
PROVIDERS = ("onnxruntime", "openvino")


def openvino_installed() -> bool:
    try:
        import openvino  # noqa: F401
    except ImportError:
        return False
    return True


def lowest_cosine(ours: Found, theirs: Found) -> float | None:
    """The lowest cosine between two variants' embeddings of the same faces (None: faces differ)."""
    if [len(r) for r in ours] != [len(r) for r in theirs]:
        return None
    values = [float(a[0] @ b[0]) for x, y in zip(ours, theirs) for a, b in zip(x, y)]
    return min(values) if values else None


Work = Callable[[FaceAnalyzer, int, int], object]  # (analyzer, start, stop): one call on that share


def thread_policy(variants: dict[str, tuple[FaceAnalyzer, FaceAnalyzer, FaceAnalyzer]],
                  shapes: dict[str, tuple[Work, int]], rounds: int) -> Table:
    """Per call shape: one 2-thread analyzer doing all ``n`` items vs two 1-thread analyzers doing
    half each, in parallel threads."""
    table = Table(title="Thread policy: one session x 2 intra-op threads vs two 1-thread sessions in parallel "
                        "(seconds per call, best of alternating rounds)")
    for column in ("variant", "call shape", "1 x 2 threads", "2 x 1 thread", "2 x 1 speed-up"):
        table.add_column(column, justify="left" if column in ("variant", "call shape") else "right")
    with ThreadPoolExecutor(2) as pool:
        for name, (two, one_a, one_b) in variants.items():
            for shape, (work, n) in shapes.items():
                if shape.startswith("detect") and not name.startswith("scrfd-mbf float"):
                    continue  # the detector is the same for float and int8; YuNet runs in OpenCV
                calls: dict[str, Callable[[], object]] = {
                    "whole": lambda w=work, n=n, a=two: w(a, 0, n),
                    "halves": lambda w=work, n=n, a=one_a, b=one_b: list(
                        pool.map(lambda job: w(*job), [(a, 0, n // 2), (b, n // 2, n)])),
                }
                for fn in calls.values():
                    fn()
                best = dict.fromkeys(calls, float("inf"))
                for round_ in range(rounds):
                    for key, fn in (calls.items() if round_ % 2 == 0 else reversed(list(calls.items()))):
                        start = time.perf_counter()
                        fn()
                        best[key] = min(best[key], time.perf_counter() - start)
                table.add_row(name, shape, f"{best['whole']:.3f}", f"{best['halves']:.3f}",
                              f"{best['whole'] / best['halves']:.2f}x")
    return table


def input_table(photos: dict[str, np.ndarray], rounds: int) -> Table:
    """SCRFD's input made by ``cv2.dnn.blobFromImage`` on a padded canvas (before 2026-12-05) vs the
    engine's ``network_input`` (same floats), per photo at its detection size."""
    table = Table(title="SCRFD input of one photo (ms, median of alternating rounds): padded canvas + "
                        "cv2.dnn.blobFromImage vs network_input")
    for column in ("photo", "input", "blobFromImage", "network_input", "speed-up", "same floats"):
        table.add_column(column, justify="left" if column == "photo" else "right")
    for name, photo in photos.items():
        height, width = photo.shape[:2]
        scale, in_h, in_w = fit_size(height, width, 640, 32)
        resized = cv2.resize(photo, (round(width * scale), round(height * scale))) if scale < 1 else photo

        def opencv(resized: np.ndarray = resized, in_h: int = in_h, in_w: int = in_w) -> np.ndarray:
            canvas = np.zeros((in_h, in_w, 3), np.uint8)
            canvas[: resized.shape[0], : resized.shape[1]] = resized
            return cv2.dnn.blobFromImage(canvas, 1 / 128, (in_w, in_h), (127.5,) * 3, swapRB=True)

        def ours(resized: np.ndarray = resized, in_h: int = in_h, in_w: int = in_w) -> np.ndarray:
            return network_input([resized], 127.5, 1 / 128, in_h, in_w)

        times: dict[str, list[float]] = {"opencv": [], "ours": []}
        for round_ in range(max(rounds, 1) * 10):
            for key, fn in (("opencv", opencv), ("ours", ours))[:: 1 if round_ % 2 == 0 else -1]:
                start = time.perf_counter()
                fn()
                times[key].append(time.perf_counter() - start)
        a, b = (1000 * float(np.median(times[k])) for k in ("opencv", "ours"))
        table.add_row(name, f"{in_w}x{in_h}", f"{a:.2f}", f"{b:.2f}", f"{a / b:.1f}x",
                      str(np.array_equal(opencv(), ours())))
    return table


def spinning_table(shared: Path, photos: dict[str, np.ndarray], rounds: int) -> Table:
    """One image at a time through scrfd-mbf (detector and recogniser sessions alternating, 2 threads):
    the engine's sessions (threads do not spin between calls) vs the same sessions with ONNX Runtime's
    default (threads spin after each call, keeping the cores from the other session)."""
    from faceatlas.engine.recognizers import dynamic_batch_model

    settings = EngineSettings(shared=shared, parallel_images=1)
    ours = FaceAnalyzer(get_pack("scrfd-mbf", settings), settings=settings, announce_license=False)
    default = FaceAnalyzer(get_pack("scrfd-mbf", settings), settings=settings, announce_license=False)
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.intra_op_num_threads = ours.settings.threads or 2
    options.log_severity_level = 3
    det, rec = (shared / "models" / name for name in MODEL_FILES)
    default.detector.session = ort.InferenceSession(str(det), options, providers=["CPUExecutionProvider"])  # type: ignore[union-attr]
    rec_source = dynamic_batch_model(rec)
    default.recognizer.session = ort.InferenceSession(  # type: ignore[union-attr]
        rec_source if isinstance(rec_source, bytes) else str(rec_source), options, providers=["CPUExecutionProvider"])
    table = Table(title="One image at a time, scrfd-mbf (detector and recogniser sessions alternating, 2 threads): "
                        "ms per image, median of alternating rounds")
    for column in ("photo", "faces", "ONNX Runtime default (spinning)", "FaceAtlas (no spinning)", "speed-up"):
        table.add_column(column, justify="left" if column == "photo" else "right")
    for name, photo in photos.items():
        times: dict[str, list[float]] = {"default": [], "ours": []}
        for analyzer in (default, ours):
            analyzer.analyze(photo)
        for round_ in range(max(rounds, 1) * 3):  # blocks of 10 calls, a pause after each: spinning threads
            for key, analyzer in (("default", default), ("ours", ours))[:: 1 if round_ % 2 == 0 else -1]:
                start = time.perf_counter()  # of one block would otherwise slow the next block down
                for _ in range(10):
                    analyzer.analyze(photo)
                times[key].append((time.perf_counter() - start) / 10)
                time.sleep(0.2)
        a, b = (1000 * float(np.median(times[k])) for k in ("default", "ours"))
        table.add_row(name, str(len(ours.analyze(photo))), f"{a:.1f}", f"{b:.1f}", f"{a / b:.2f}x")
    return table


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shared", type=Path, default=Path(__file__).resolve().parents[2] / "shared")
    parser.add_argument("--lfw", type=int, default=200, help="number of LFW photos")
    parser.add_argument("--group-repeat", type=int, default=10, help="times each group photo is repeated")
    parser.add_argument("--rounds", type=int, default=3, help="alternating timed rounds per engine")
    parser.add_argument("--batch", type=int, default=32, help="FaceAtlas analyze_many batch size")
    parser.add_argument("--packs", default=",".join(PACKS), help="packs to measure, comma-separated")
    parser.add_argument("--no-threads", action="store_true", help="skip the thread-policy table")
    parser.add_argument("--min-face", type=int, default=64,
                        help="also run each variant with FACEATLAS_MIN_FACE=N on the group photos (0: no such rows)")
    args = parser.parse_args()

    model_dir = args.shared / "models"
    data = args.shared / "data"
    lfw = [cv2.imread(str(p)) for p in lfw_sample(data / "lfw" / "images", args.lfw)]
    groups = [cv2.imread(str(data / p)) for p in GROUP_PHOTOS] * args.group_repeat
    sets = {f"LFW ({len(lfw)} photos, 250x250)": lfw, f"group photos (3 x {args.group_repeat})": groups}
    console = Console(width=220)
    providers = PROVIDERS if openvino_installed() else PROVIDERS[:1]
    if len(providers) == 1:
        console.print("[yellow]openvino is not installed (pip install 'faceatlas[openvino]'): onnxruntime rows only")
    analyzers: dict[str, FaceAnalyzer] = {}
    for pack in args.packs.split(","):
        for runtime in RUNTIMES:
            if runtime == "int8-det" and get_pack(pack).detector.kind != "scrfd":
                continue
            for provider in providers[: 1 if runtime == "int8-det" else None]:  # an int8 detector: ONNX Runtime
                kind, settings = variant_settings(runtime, shared=args.shared, provider=provider)
                analyzers[f"{pack} {runtime} {provider}"] = FaceAnalyzer(
                    get_pack(pack, settings, runtime=kind), settings=settings, announce_license=False)  # type: ignore[arg-type]
    # Each pack's float onnxruntime variant once more, one image after the other on 2-thread sessions
    # (FACEATLAS_PARALLEL_IMAGES=1, the engine before lanes): what analysing images side by side gains.
    one_lane = {f"{name} one image at a time": FaceAnalyzer(
        analyzer.pack, settings=analyzer.settings.model_copy(update={"parallel_images": 1}), announce_license=False)
        for name, analyzer in analyzers.items() if name.endswith("float onnxruntime")}
    sized: dict[str, FaceAnalyzer] = {}  # the same variants with a smallest wanted face: group photos only
    if args.min_face:
        for name, analyzer in analyzers.items():
            settings = analyzer.settings.model_copy(update={"min_face": args.min_face})
            sized[f"{name} min-face {args.min_face}"] = FaceAnalyzer(analyzer.pack, settings=settings,
                                                                   announce_license=False)
    with tempfile.TemporaryDirectory() as tmp:
        try:
            insight = insightface_app(model_dir, Path(tmp)) if "scrfd-mbf float onnxruntime" in analyzers else None
        except ImportError:
            insight = None
            console.print("[yellow]insightface is not installed (pip install insightface): no InsightFace rows")
        engines: dict[str, Callable[[Sequence[np.ndarray]], Found]] = {
            name: (lambda im, a=a: run_faceatlas(a, im, args.batch)) for name, a in (analyzers | one_lane).items()}
        if insight is not None:
            engines["InsightFace"] = lambda im: run_insightface(insight, im)
        group_only = {name: (lambda im, a=a: run_faceatlas(a, im, args.batch)) for name, a in sized.items()}
        table = Table(title="FaceAtlas variants (pack, recogniser runtime, provider) vs InsightFace FaceAnalysis "
                            "(scrfd-mbf: same det_500m + MobileFaceNet), CPU")
        for column in ("image set", "engine", "images/s", "faces/s", "faces", "ratio to InsightFace",
                       "ratio to pack float onnxruntime", "cos to onnxruntime (min)", "LFW 10-fold", "TAR@FAR1e-4"):
            table.add_column(column, justify="left" if column in ("image set", "engine") else "right")
        agreements = []
        for label, images in sets.items():
            runs = engines | (group_only if label.startswith("group") else {})
            for fn in runs.values():
                fn(images[:8])  # warm-up
            best = dict.fromkeys(runs, float("inf"))
            results: dict[str, Found] = {}
            order = list(runs.items())
            for round_ in range(args.rounds):
                for name, fn in order if round_ % 2 == 0 else order[::-1]:
                    seconds, results[name] = timed(lambda fn=fn, im=images: fn(im))
                    best[name] = min(best[name], seconds)
            for name in runs:
                faces = sum(len(r) for r in results[name])
                variant = analyzers.get(name) or sized.get(name) or one_lane.get(name)
                accuracy, tar = lfw_figures(variant) if variant is not None else ("-", "-")
                own = f"{name.split()[0]} float onnxruntime"
                vs_insight = f"{best['InsightFace'] / best[name]:.2f}x" \
                    if insight is not None and name.startswith("scrfd-mbf") or name == "InsightFace" else "-"
                vs_own = f"{best[own] / best[name]:.2f}x" if own in best and name != "InsightFace" else "-"
                cosine = lowest_cosine(results[name], results[name.replace("openvino", "onnxruntime")]) \
                    if " openvino" in name else None
                table.add_row(label, name, f"{len(images) / best[name]:.1f}", f"{faces / best[name]:.1f}", str(faces),
                              vs_insight, vs_own, "-" if cosine is None else f"{cosine:.6f}", accuracy, tar)
            if insight is not None:
                agreements.append((label, *agreement(analyzers["scrfd-mbf float onnxruntime"], images,
                                                     results["scrfd-mbf float onnxruntime"], results["InsightFace"])))
        console.print(table)
        if agreements:
            agree = Table(title="Embedding agreement, FaceAtlas scrfd-mbf float vs InsightFace (cosine, same face)")
            for column in ("image set", "end to end: mean", "min", "same keypoints: mean", "min", "images"):
                agree.add_column(column, justify="left" if column == "image set" else "right")
            for label, *values in agreements:
                agree.add_row(label, *(f"{v:.4f}" for v in values[:4]), str(values[4]))
            console.print(agree)
        first = analyzers[next(iter(analyzers))]
        console.print(input_table({Path(p).name: cv2.imread(str(data / p)) for p in GROUP_PHOTOS}
                                  | {"LFW photo": lfw[0]}, args.rounds))
        console.print(spinning_table(args.shared, {Path(p).name: cv2.imread(str(data / p)) for p in GROUP_PHOTOS}
                                     | {"LFW photo": lfw[0]}, args.rounds))
        console.print(f"best of {args.rounds} alternating warm rounds; FaceAtlas batch {args.batch} split into "
                      f"{first.lane_count(args.batch)} lanes of one-thread sessions (FACEATLAS_PARALLEL_IMAGES; "
                      "'one image at a time': 1 lane on sessions with every core); InsightFace onnxruntime's default")
    if not args.no_threads:
        first = next(iter(analyzers.values()))
        crops = [align_face(image, faces[0][1], 112)
                 for image, faces in zip(lfw, run_faceatlas(first, lfw[:64], args.batch)) if faces][:32]
        variants = {}
        for name in analyzers:
            pack, runtime, provider = name.split()
            kind, settings = variant_settings(runtime, shared=args.shared, provider=provider)
            variants[name] = tuple(FaceAnalyzer(get_pack(pack, settings, runtime=kind), threads=threads,  # type: ignore[arg-type]
                                                settings=settings, announce_license=False) for threads in (2, 1, 1))
        shapes: dict[str, tuple[Work, int]] = {
            f"embed {len(crops)} crops in one batch": (lambda a, i, j: a.embed_aligned(crops[i:j]), len(crops)),
            "detect 16 LFW photos (256x256 input)": (lambda a, i, j: [a.detector.detect(x) for x in lfw[i:j]], 16),
            "detect 6 group photos (640 input)": (lambda a, i, j: [a.detector.detect(x) for x in groups[i:j]], 6),
        }
        console.print(thread_policy(variants, shapes, args.rounds))


if __name__ == "__main__":
    main()
