"""int8 SCRFD-500M vs float: ms per photo and what the detector still finds, on this CPU.

On a 2-core AVX2 machine without VNNI the int8 detector ran slower than float (0.8x). This script
measures it on whatever CPU runs it (it prints the CPU's int8 instructions: avx512_vnni, avx_vnni,
amx), so the choice can be checked where the cores have VNNI (``FACEATLAS_INT8_DETECTOR=auto``
picks int8 there). It makes int8 copies of det_500m in a temp folder: the engine's own
(``engine.quantize.int8_detector``) and two others with ONNX Runtime's static QDQ quantisation (u8
activations, s8 per-channel weights), calibrated on the same 32 letterboxed photos, all
convolutions int8 or the first two float, and times each in the engine's own ``SCRFD`` (same pre-
and post-processing) on the group photos (640 input) and on LFW photos (256 input), alternating
rounds. "recall vs float": the share of the float detector's faces that the variant also finds
(IoU >= 0.5); "kps px": the largest keypoint distance between matched faces.

    FACEATLAS_MODEL_DIR=../shared/models python bench/int8_detector.py --shared ../shared --threads 2
"""

from __future__ import annotations

import argparse
import logging
import sys
import tempfile
import time
from contextlib import redirect_stdout
from pathlib import Path

import cv2
import numpy as np
from rich.console import Console
from rich.table import Table

from faceatlas.engine import get_pack
from faceatlas.engine.detectors import SCRFD, fit_size
from faceatlas.engine.image import load_image, network_input
from faceatlas.engine.quantize import DETECTOR_CALIBRATION_PHOTOS, calibration_photos, int8_detector
from faceatlas.settings import EngineSettings

GROUP_PHOTOS = (
    "face_recognition_examples/examples/two_people.jpg",
    "face_recognition_examples/examples/knn_examples/test/obama_and_biden.jpg",
    "face_recognition_examples/examples/knn_examples/test/kit_with_rose.jpg",
)
DETECTOR = "insightface/det_500m.onnx"


def cpu_flags() -> str:
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return "unknown"
    flags = next((line.split(":", 1)[1].split() for line in text.splitlines() if line.startswith("flags")), [])
    model = next((line.split(":", 1)[1].strip() for line in text.splitlines() if line.startswith("model name")), "?")
    wanted = [f for f in flags if f in {"avx2", "avx512f", "avx512_vnni", "avx_vnni", "avx512_bf16", "amx_int8"}]
    return f"{model}: {' '.join(wanted) or 'no avx2'}"


def blob_of(image: np.ndarray, side: int) -> np.ndarray:
    height, width = image.shape[:2]
    scale, in_h, in_w = fit_size(height, width, side, 32)
    resized = cv2.resize(image, (max(1, round(width * scale)), max(1, round(height * scale)))) \
        if scale < 1.0 else image
    return network_input([resized], 127.5, 1.0 / 128.0, side, side)


def quantise(source: Path, blobs: list[np.ndarray], out: Path, float_head: int) -> Path:
    import onnx
    from onnx import version_converter
    from onnxruntime.quantization import (
        CalibrationDataReader,
        CalibrationMethod,
        QuantFormat,
        QuantType,
        quantize_static,
    )
    from onnxruntime.quantization.shape_inference import quant_pre_process

    upgraded, prepared = out.with_suffix(".opset13.onnx"), out.with_suffix(".prepared.onnx")
    model = onnx.load(str(source))
    if model.opset_import[0].version < 13:  # per-channel DequantizeLinear needs opset 13
        model = version_converter.convert_version(model, 13)
    onnx.save(model, str(upgraded))
    with redirect_stdout(sys.stderr):
        quant_pre_process(str(upgraded), str(prepared), skip_symbolic_shape=True)
    model = onnx.load(str(prepared))
    name = model.graph.input[0].name
    convs = [n.name for n in model.graph.node if n.op_type == "Conv"]

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self.items = iter(blobs)

        def get_next(self) -> dict[str, np.ndarray] | None:
            item = next(self.items, None)
            return None if item is None else {name: item}

    logging.disable(logging.WARNING)
    try:
        with redirect_stdout(sys.stderr):
            quantize_static(str(prepared), str(out), Reader(), quant_format=QuantFormat.QDQ,
                            activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8, per_channel=True,
                            nodes_to_exclude=convs[:float_head], calibrate_method=CalibrationMethod.MinMax)
    finally:
        logging.disable(logging.NOTSET)
    return out


def iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    x1, y1 = np.maximum(a[:, None, 0], b[None, :, 0]), np.maximum(a[:, None, 1], b[None, :, 1])
    x2, y2 = np.minimum(a[:, None, 2], b[None, :, 2]), np.minimum(a[:, None, 3], b[None, :, 3])
    inter = np.clip(x2 - x1, 0, None) * np.clip(y2 - y1, 0, None)
    area = lambda r: (r[:, 2] - r[:, 0]) * (r[:, 3] - r[:, 1])  # noqa: E731
    return inter / (area(a)[:, None] + area(b)[None, :] - inter + 1e-9)


def agreement(reference: list, found: list) -> tuple[float, float]:
    """Recall of the reference's faces and the largest keypoint distance of matched faces."""
    total = matched = 0
    worst = 0.0
    for ref, got in zip(reference, found):
        total += len(ref.boxes)
        if len(ref.boxes) == 0 or len(got.boxes) == 0:
            continue
        overlap = iou(ref.boxes, got.boxes)
        for i in range(len(ref.boxes)):
            j = int(overlap[i].argmax())
            if overlap[i, j] >= 0.5:
                matched += 1
                worst = max(worst, float(np.abs(ref.keypoints[i] - got.keypoints[j]).max()))
    return (matched / total if total else 1.0), worst


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shared", type=Path, default=Path(__file__).resolve().parents[2] / "shared")
    parser.add_argument("--threads", type=int, default=2, help="intra-op threads of each session")
    parser.add_argument("--lfw", type=int, default=64, help="LFW photos timed (and used for calibration)")
    parser.add_argument("--rounds", type=int, default=5, help="alternating timed rounds")
    args = parser.parse_args()
    data, source = args.shared / "data", args.shared / "models" / DETECTOR
    lfw_paths = sorted((data / "lfw" / "images").glob("*/*.jpg"))
    lfw = [cv2.imread(str(p)) for p in lfw_paths[:: max(1, len(lfw_paths) // args.lfw)][: args.lfw]]
    groups = [cv2.imread(str(data / p)) for p in GROUP_PHOTOS]
    console = Console(width=200)
    console.print(f"CPU: {cpu_flags()}; {args.threads} intra-op threads")
    settings = EngineSettings(shared=args.shared)
    photos = [load_image(p) for p in calibration_photos(settings, DETECTOR_CALIBRATION_PHOTOS)]
    calibration = [blob_of(image, 640) for image in photos]
    with tempfile.TemporaryDirectory() as tmp:
        model = get_pack("scrfd-mbf", settings).detector.file
        variants = {"float": source,
                    "int8, the engine's recipe (first 2 convs and keypoint heads float)": int8_detector(
                        model, source, lambda _report: photos, settings.model_copy(update={"cache": Path(tmp)}))}
        for head in (0, 2):
            label = "int8 (all convolutions)" if head == 0 else "int8 (first 2 convs float)"
            variants[label] = quantise(source, calibration, Path(tmp) / f"int8-{head}.onnx", head)
        detectors = {label: SCRFD(path, threads=args.threads) for label, path in variants.items()}
        table = Table(title="SCRFD-500M float vs int8 in the engine's SCRFD: ms per photo (best of alternating rounds)")
        for column in ("image set", "variant", "ms/photo", "speed-up", "faces", "recall vs float", "kps px (max)"):
            table.add_column(column, justify="left" if column in ("image set", "variant") else "right")
        for label, images in (("group photos (3, 640 input)", groups * 4), (f"LFW ({len(lfw)}, 256 input)", lfw)):
            for det in detectors.values():
                det.detect(images[0])
            best = dict.fromkeys(detectors, float("inf"))
            found: dict[str, list] = {}
            order = list(detectors.items())
            for round_ in range(args.rounds):
                for name, det in order if round_ % 2 == 0 else order[::-1]:
                    start = time.perf_counter()
                    found[name] = [det.detect(image) for image in images]
                    best[name] = min(best[name], (time.perf_counter() - start) / len(images))
            for name in detectors:
                recall, worst = agreement(found["float"], found[name])
                table.add_row(label, name, f"{1000 * best[name]:.2f}", f"{best['float'] / best[name]:.2f}x",
                              str(sum(len(d.boxes) for d in found[name])), f"{recall:.3f}", f"{worst:.1f}")
        console.print(table)


if __name__ == "__main__":
    main()
