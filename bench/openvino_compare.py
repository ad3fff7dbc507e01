"""OpenVINO vs ONNX Runtime, model by model, at the engine's call shapes (float and int8).

For SCRFD-500M (one 640x640 group-photo input, one 256x256 LFW input) and the recognisers
MobileFaceNet and Faceplugin fr_feature, float and the int8 copy ``engine.quantize`` derives
(batches of 1 and 32 aligned LFW crops), and dlib's ResNet converted to ONNX (``engine.dlib_onnx``,
batches of 1 and 32 of dlib's 150x150 chips), in one process with alternating warm rounds: ONNX Runtime
(CPU provider, 2 intra-op threads) vs OpenVINO compiled for the CPU with the latency hint (2
threads) on dynamic shapes (what ``FACEATLAS_PROVIDER=openvino`` runs), with the latency hint on
the call's static shape, and with the throughput hint (2 streams, the batch split over 2 requests).
"agreement" is the max abs output difference (detector) or the lowest cosine of the embeddings
(recogniser) between OpenVINO and ONNX Runtime on the same input.

    FACEATLAS_MODEL_DIR=shared/models python bench/openvino_compare.py --shared ../shared

Needs the ``openvino`` extra. The int8 files are made (once, cached) as ``--runtime int8`` does.
"""

from __future__ import annotations

import argparse
import io
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import openvino as ov
from rich.console import Console
from rich.table import Table

from faceatlas.engine import FaceAnalyzer, get_pack
from faceatlas.engine.dlib_onnx import dlib_onnx_model
from faceatlas.engine.models import resolve
from faceatlas.engine.packs import DLIB_RESNET
from faceatlas.engine.quantize import derived_path
from faceatlas.engine.recognizers import arcface_blob, dynamic_batch_model
from faceatlas.engine.runtime import create_ort_session
from faceatlas.settings import EngineSettings

GROUP = "face_recognition_examples/examples/knn_examples/test/obama_and_biden.jpg"
THREADS = 2


def scrfd_blob(image: np.ndarray, side: int) -> np.ndarray:
    """The detector's input for ``image`` letterboxed into a ``side`` x ``side`` canvas."""
    height, width = image.shape[:2]
    scale = min(1.0, side / max(height, width))
    new_w, new_h = round(width * scale), round(height * scale)
    canvas = np.zeros((side, side, 3), np.uint8)
    canvas[:new_h, :new_w] = cv2.resize(image, (new_w, new_h)) if scale < 1 else image
    return cv2.dnn.blobFromImage(canvas, 1 / 128, (side, side), (127.5,) * 3, swapRB=True)


def compile_ov(core: Any, source: Path | bytes, hint: str, shape: list[int] | None = None) -> Any:
    model = core.read_model(io.BytesIO(source) if isinstance(source, bytes) else str(source))
    if shape is not None:
        model.reshape({model.inputs[0].get_any_name(): shape})
    return core.compile_model(model, "CPU", {"PERFORMANCE_HINT": hint, "INFERENCE_NUM_THREADS": THREADS})


def variants(core: Any, source: Path | bytes, x: np.ndarray) -> dict[str, Callable[[], list[np.ndarray]]]:
    """The ways of running ``source`` on ``x``; each returns the outputs in the model's order."""
    session = create_ort_session(source, ["CPUExecutionProvider"], THREADS)
    name = session.get_inputs()[0].name
    latency, static = compile_ov(core, source, "LATENCY"), compile_ov(core, source, "LATENCY", list(x.shape))
    throughput = compile_ov(core, source, "THROUGHPUT")
    requests = {id(c): c.create_infer_request() for c in (latency, static)}
    queue = ov.AsyncInferQueue(throughput, 2)
    parts = np.array_split(x, 2) if len(x) > 1 else [x]
    results: dict[int, list[np.ndarray]] = {}
    queue.set_callback(lambda request, i: results.__setitem__(i, [request.get_output_tensor(k).data.copy()
                                                                   for k in range(len(throughput.outputs))]))

    def ov_run(compiled: Any) -> Callable[[], list[np.ndarray]]:
        request = requests[id(compiled)]
        return lambda: [np.array(v) for v in request.infer({0: x}).values()]

    def split() -> list[np.ndarray]:
        for i, part in enumerate(parts):
            queue.start_async({0: part}, i)
        queue.wait_all()
        return [np.concatenate([results[i][k] for i in range(len(parts))]) for k in range(len(results[0]))]

    return {"onnxruntime": lambda: session.run(None, {name: x}), "openvino latency (dynamic)": ov_run(latency),
            "openvino latency (static shape)": ov_run(static),
            f"openvino throughput ({len(parts)} request{'s' * (len(parts) > 1)})": split}


def agreement(reference: list[np.ndarray], other: list[np.ndarray], detector: bool) -> str:
    if detector:
        return f"max abs {max(float(np.abs(a - b.reshape(a.shape)).max()) for a, b in zip(reference, other)):.1e}"
    a, b = reference[0].reshape(len(reference[0]), -1), other[0].reshape(len(other[0]), -1)
    cosine = np.sum(a * b, 1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)
    return f"cos min {float(cosine.min()):.6f}"


def aligned(analyzer: FaceAnalyzer, photos: list[Path]) -> list[np.ndarray]:
    """The recogniser's aligned crop of the largest face of each photo (photos without one skipped)."""
    crops = []
    for path in photos:
        image = cv2.imread(str(path))
        found = analyzer.detector.detect(image)
        if len(found):
            crops.append(analyzer.recognizer.align(image, found, 0))
    return crops


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shared", type=Path, default=Path(__file__).resolve().parents[2] / "shared")
    parser.add_argument("--rounds", type=int, default=5, help="alternating timed rounds")
    parser.add_argument("--seconds", type=float, default=0.5, help="about how long one timed round runs")
    args = parser.parse_args()
    models, lfw_dir = args.shared / "models", args.shared / "data" / "lfw" / "images"
    settings = EngineSettings(shared=args.shared)
    analyzers = {name: FaceAnalyzer(get_pack(pack, settings, runtime=runtime), settings=settings,
                                    announce_license=False)
                 for name, pack, runtime in (("mobilefacenet", "scrfd-mbf", "float"),
                                             ("mobilefacenet int8", "scrfd-mbf", "int8"),
                                             ("fr_feature", "yunet-frfeature", "float"),
                                             ("fr_feature int8", "yunet-frfeature", "int8"))}
    photos = sorted(lfw_dir.glob("*/*.jpg"))[::97][:48]
    crops = aligned(analyzers["mobilefacenet"], photos)[:32]
    lfw_photo = cv2.imread(str(sorted(lfw_dir.glob("*/*.jpg"))[0]))
    cases: list[tuple[str, Path | bytes, str, np.ndarray]] = [
        ("det_500m (SCRFD-500M)", models / "insightface" / "det_500m.onnx", "640x640 group photo",
         scrfd_blob(cv2.imread(str(args.shared / "data" / GROUP)), 640)),
        ("det_500m (SCRFD-500M)", models / "insightface" / "det_500m.onnx", "256x256 LFW photo",
         scrfd_blob(lfw_photo, 256)),
    ]
    for name, analyzer in analyzers.items():
        spec = analyzer.pack.recognizer
        # the files the analyzer runs: the float one with its batch made dynamic, the int8 copy it derived
        source = derived_path(spec.file, settings) if analyzer.pack.runtime == "int8" \
            else dynamic_batch_model(resolve(spec.file, settings=settings))
        blob = arcface_blob(crops, 112, spec.input_mean, spec.input_std)
        cases += [(name, source, "1 crop", blob[:1]), (name, source, f"{len(crops)} crops", blob)]
    fast_dlib = FaceAnalyzer(get_pack("yunet-dlib", settings), settings=settings, announce_license=False)
    chips = aligned(fast_dlib, photos)
    dlib_onnx = dlib_onnx_model(resolve(DLIB_RESNET, settings=settings), settings.cache_dir)
    blob = arcface_blob(chips[:32], 150, 0.0, 1.0)
    cases += [("dlib ResNet (converted)", dlib_onnx, "1 chip", blob[:1]),
              ("dlib ResNet (converted)", dlib_onnx, f"{len(blob)} chips", blob)]
    core = ov.Core()
    table = Table(title=f"OpenVINO {ov.__version__} vs ONNX Runtime (CPU provider), {THREADS} threads, "
                        f"ms per call (median of {args.rounds} alternating rounds)")
    for column in ("model", "input", "runtime", "ms per call", "speed vs onnxruntime", "agreement with onnxruntime"):
        table.add_column(column, justify="right" if column.startswith(("ms", "speed")) else "left")
    for model, source, label, x in cases:
        runs = variants(core, source, x)
        reference = runs["onnxruntime"]()
        agree = {key: agreement(reference, fn(), model.startswith("det"))
                 for key, fn in runs.items() if key != "onnxruntime"}
        start = time.perf_counter()
        runs["onnxruntime"]()
        calls = max(2, int(args.seconds / max(1e-4, time.perf_counter() - start)))
        times: dict[str, list[float]] = {key: [] for key in runs}
        order = list(runs.items())
        for round_ in range(args.rounds):
            for key, fn in order if round_ % 2 == 0 else order[::-1]:
                fn()
                start = time.perf_counter()
                for _ in range(calls):
                    fn()
                times[key].append((time.perf_counter() - start) / calls)
        median = {key: float(np.median(values)) for key, values in times.items()}
        for key in runs:
            table.add_row(model, label, key, f"{1000 * median[key]:.1f}",
                          f"{median['onnxruntime'] / median[key]:.2f}x", agree.get(key, "-"))
    Console(width=200).print(table)


if __name__ == "__main__":
    main()
