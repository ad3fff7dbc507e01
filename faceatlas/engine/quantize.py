"""int8 recognisers: a quantised copy derived from the published float file, made once and cached.

The copy is made here, never downloaded: ONNX Runtime's static QDQ quantisation (per-channel int8
weights, uint8 activations) calibrated on aligned crops of real face photos, each activation's
range by the 99.999th percentile of what the crops give it (min/max before: on MobileFaceNet the
percentile ranges gave LFW 99.40 % against float's 99.45 %, min/max 99.32 %; TAR@FAR 1e-4 0.9531
vs 0.9557 float, 0.9536 min/max: within the 0.1 pt / 0.005 guard where min/max was not). It is written to
``$FACEATLAS_CACHE/derived/<name>.int8.onnx`` with a JSON record beside it (``.json``: its own
sha256, the float file's sha256, the recipe version); a later load checks the record and the hash
and reuses the file, a mismatch makes it again.

Making it takes minutes (about 3 on 2 CPU cores for a pack's 256 crops; the detector's, seconds for
its 32 photos): it says so once, at WARNING on the ``faceatlas.int8`` logger (with where the file is
cached), and says how far it is through a
:data:`Progress` callback, stage by stage (:data:`READING` the calibration photos, :data:`CALIBRATING`
on them, :data:`QUANTISING`), each from 0 to its total; without a callback each stage's start,
quarters and end are logged at INFO instead (a server making it on first use logs them).

The SCRFD detector can be quantised too (``FACEATLAS_INT8_DETECTOR``: on, or auto where the CPU
has int8 dot-product instructions: AVX-512 VNNI, AVX-VNNI, AMX, Arm's SDOT): the same recipe with
min/max ranges, the first two convolutions and the keypoint heads in float, calibrated on 32
calibration photos letterboxed to 640. bench/int8_detector.py: about 1.5x on detection with every
face of the float detector found, on an AVX-512 VNNI EPYC (0.8x float on a 2-core AVX2 machine).
Off by default: `faceatlas eval lfw --runtime int8` gave 99.25 % 10-fold with it against 99.42 %
without (float 99.45 %; TAR@FAR 1e-4 0.9548 vs 0.9538), outside the 0.1-pt accuracy guard.
"""

from __future__ import annotations

import logging
import sys
import tempfile
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager, redirect_stdout
from pathlib import Path
from typing import TYPE_CHECKING

import cv2
import numpy as np

from faceatlas.engine.detectors import fit_size
from faceatlas.engine.image import network_input
from faceatlas.engine.models import ModelFile, cached_derived, file_sha256, parse_onnx, store_derived

if TYPE_CHECKING:
    import onnx
from faceatlas.errors import ModelMissing
from faceatlas.settings import EngineSettings

RECIPE = "qdq-u8s8-perchannel-percentile-float-ends-v3"
DETECTOR_RECIPE = "qdq-u8s8-perchannel-minmax-float-head2-keypoints-letterbox640-v2"
DETECTOR_CALIBRATION_PHOTOS = 32
DETECTOR_SIDE = 640
FLOAT_HEAD, FLOAT_TAIL = 2, 4  # the first and last convolutions stay float (see sensitive_nodes)
CALIBRATION_CROPS = 256
OPSET = 13  # per-channel DequantizeLinear needs opset 13

log = logging.getLogger("faceatlas.int8")
Blobs = Callable[[Sequence[np.ndarray]], np.ndarray]
Progress = Callable[[str, int, int], None]
"""How far the making of an int8 copy is: ``(stage, done, total)``, ``done`` from 0 up to ``total``."""
READING, CALIBRATING, QUANTISING = "reading calibration photos", "calibrating", "quantising"
STAGES = (READING, CALIBRATING, QUANTISING)
TAKES = f"up to a few minutes (about 3 on 2 CPU cores for {CALIBRATION_CROPS} photos)"
# the detector's own (its banner said the recogniser's 256 photos and 3 minutes): 12 s on 2 EPYC cores
DETECTOR_TAKES = f"under a minute (about 15 seconds on 2 CPU cores for {DETECTOR_CALIBRATION_PHOTOS} photos)"


def derived_path(model: ModelFile, settings: EngineSettings) -> Path:
    """Where the int8 copy of ``model`` is cached."""
    return settings.cache_dir / "derived" / f"{Path(model.name).with_suffix('')}.int8.onnx"


def source_sha256(model: ModelFile, source: Path | None) -> str | None:
    """The sha256 an int8 copy is keyed on: the published one of ``model``, else (an unpinned file,
    InsightFace's) that of the float file at ``source`` itself, so that a replaced file is not served
    the old copy (hashed once per process while the file stays the same)."""
    return model.sha256 or (None if source is None else file_sha256(source))


def cached_int8(model: ModelFile, settings: EngineSettings, source: Path | None = None,
                recipe: str = RECIPE) -> Path | None:
    """The cached int8 copy of ``model`` (float file at ``source``, needed when no sha256 is
    published) when its record matches the float file, the recipe and its own bytes; None when it
    has to be made (again)."""
    sha256 = source_sha256(model, source)
    if sha256 is None:
        return None
    return cached_derived(derived_path(model, settings), source_sha256=sha256, recipe=recipe)


Quantiser = Callable[[Path, np.ndarray, Path, Progress], Path]
Samples = Callable[[Progress], list[np.ndarray]]


def int8_model(model: ModelFile, source: Path, crops: Samples, blobs: Blobs, settings: EngineSettings, *,
               recipe: str = RECIPE, quantise: Quantiser | None = None, progress: Progress | None = None,
               takes: str = TAKES) -> Path:
    """The int8 copy of the recogniser ``model`` (float file at ``source``): the cached one, or one
    made now from ``crops(report)`` (aligned BGR crops; ``report(READING, done, total)`` as the
    photos are read) turned into inputs by ``blobs``. A detector's copy passes its own ``recipe``,
    ``quantise`` and ``takes`` (how long the making takes, said as it begins: :func:`int8_detector`).
    ``progress`` hears each stage of the making (not called when the cached copy is used)."""
    found = cached_int8(model, settings, source, recipe)
    if found is not None:
        return found
    parse_onnx(source)  # a float file that does not load says so now, not after minutes of calibration
    path = derived_path(model, settings)
    path.parent.mkdir(parents=True, exist_ok=True)
    with _one_maker(path, model):
        found = cached_int8(model, settings, source, recipe)  # made by another process while this one waited
        if found is not None:
            return found
        log.warning("making the int8 copy of %s, once: %s; cached at %s", model.name, takes, path)
        report = _reporter(progress, model.name)
        samples = crops(report)
        if not samples:
            raise ModelMissing(f"no face found in the int8 calibration photos ({calibration_folder(settings)})")
        with tempfile.TemporaryDirectory(dir=path.parent) as work:
            made = (quantise or _quantize)(source, blobs(samples), Path(work), report)
            report(QUANTISING, 1, 1)
            return store_derived(made, path, source=model.name, source_sha256=source_sha256(model, source),
                                 recipe=recipe, calibration_crops=len(samples))


def int8_detector(model: ModelFile, source: Path, photos: Samples, settings: EngineSettings, *,
                  progress: Progress | None = None) -> Path:
    """The int8 copy of the SCRFD detector ``model`` (float file at ``source``): the cached one, or
    one made now from ``photos(report)`` (BGR images, letterboxed here to 640 as the detector sees
    them), its making told to ``progress`` as :func:`int8_model`'s."""
    def blobs(images: Sequence[np.ndarray]) -> np.ndarray:
        rows = []
        for image in images:
            height, width = image.shape[:2]
            scale, _, _ = fit_size(height, width, DETECTOR_SIDE, 32)
            size = (max(1, round(width * scale)), max(1, round(height * scale)))
            rows.append(network_input([cv2.resize(image, size) if scale < 1.0 else image], 127.5, 1.0 / 128.0,
                                      DETECTOR_SIDE, DETECTOR_SIDE))
        return np.concatenate(rows)

    return int8_model(model, source, photos, blobs, settings, recipe=DETECTOR_RECIPE, quantise=_quantize_detector,
                      progress=progress, takes=DETECTOR_TAKES)


def _reporter(progress: Progress | None, name: str) -> Progress:
    """``progress`` (when given), with each stage's start, quarters and end logged: at INFO without
    a callback (a server's log says how far it is), at DEBUG with one (the caller shows it)."""
    level = logging.INFO if progress is None else logging.DEBUG
    said: dict[str, int] = {}

    def report(stage: str, done: int, total: int) -> None:
        if progress is not None:
            progress(stage, done, total)
        quarter = 4 * done // total if total > 0 else 4
        if said.get(stage) != quarter:
            said[stage] = quarter
            log.log(level, "int8 copy of %s: %s %d/%d", name, stage, done, total)

    return report


@contextmanager
def _one_maker(path: Path, model: ModelFile) -> Iterator[None]:
    """Held while the int8 copy at ``path`` is made: an exclusive lock on the ``.lock`` file beside
    it, so that processes started together (service workers, two commands) wait for the first one
    instead of each spending minutes making the same file (no lock where ``fcntl`` is missing)."""
    try:
        import fcntl
    except ImportError:  # pragma: no cover - not POSIX
        yield
        return
    with open(path.with_suffix(".lock"), "a") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            log.warning("waiting for another process that makes the int8 copy of %s", model.name)
            fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def _quantize(source: Path, batch: np.ndarray, work: Path, report: Progress) -> Path:
    """The recogniser in int8: its batch made dynamic, ranges by percentile, fed 32 crops a call,
    the ends left in float (:func:`sensitive_nodes`)."""
    import onnx
    from onnxruntime.quantization import CalibrationMethod

    from faceatlas.engine.recognizers import dynamic_batch_model

    loaded = dynamic_batch_model(source)
    model = onnx.load_from_string(loaded) if isinstance(loaded, bytes) else onnx.load(str(loaded))
    return _static_qdq(model, np.array_split(batch, max(1, len(batch) // 32)), work, sensitive_nodes,
                       CalibrationMethod.Percentile, report)


def _quantize_detector(source: Path, batch: np.ndarray, work: Path, report: Progress) -> Path:
    """SCRFD in int8: min/max activation ranges over ``batch`` fed one image a call (the file's
    batch size is 1), its first convolutions and keypoint heads left in float (:func:`detector_float_nodes`)."""
    import onnx
    from onnxruntime.quantization import CalibrationMethod

    return _static_qdq(onnx.load(str(source)), [batch[row: row + 1] for row in range(len(batch))], work,
                       detector_float_nodes, CalibrationMethod.MinMax, report)


def _static_qdq(model: onnx.ModelProto, chunks: Sequence[np.ndarray], work: Path,
                float_nodes: Callable[[onnx.ModelProto], list[str]], method: object, report: Progress) -> Path:
    """ONNX Runtime's static QDQ quantisation of ``model`` (u8 activations, s8 per-channel weights,
    opset raised to 13), calibrated on ``chunks`` (one input each), ``float_nodes`` of the prepared
    graph left in float; the int8 file written under ``work``. ``report`` hears :data:`CALIBRATING`
    chunk by chunk as ONNX Runtime asks for the next one, then :data:`QUANTISING` begun (ranges, the
    int8 graph: its end is the caller's to say, once the file is written)."""
    import onnx
    from onnx import version_converter
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    if model.opset_import[0].version < OPSET:
        model = version_converter.convert_version(model, OPSET)
    upgraded, prepared, out = work / "float.onnx", work / "prepared.onnx", work / "int8.onnx"
    onnx.save(model, str(upgraded))
    input_name = model.graph.input[0].name
    total = len(chunks)

    def heard(stage: str, done: int, of: int) -> None:  # logged even while the quantiser's logging is off
        logging.disable(logging.NOTSET)
        try:
            report(stage, done, of)
        finally:
            logging.disable(logging.WARNING)

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self.chunks: Iterator[np.ndarray] = iter(chunks)
            self.fed = 0

        def get_next(self) -> dict[str, np.ndarray] | None:  # asked again once the last chunk has run
            if self.fed:
                heard(CALIBRATING, self.fed, total)
            chunk = next(self.chunks, None)
            if chunk is None:
                heard(QUANTISING, 0, 1)
                return None
            self.fed += 1
            return {input_name: chunk}

    report(CALIBRATING, 0, total)  # its graph prepared first (seconds)
    logging.disable(logging.WARNING)  # the quantiser logs every tensor it leaves in float
    # and its calibrator print()s its progress: on stderr, so that a command's stdout (--json) stays its own
    try:
        with redirect_stdout(sys.stderr), _root_logging_left_alone():
            quant_pre_process(str(upgraded), str(prepared), skip_symbolic_shape=True)
            quantize_static(str(prepared), str(out), Reader(), quant_format=QuantFormat.QDQ,
                            activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8, per_channel=True,
                            nodes_to_exclude=float_nodes(onnx.load(str(prepared))),
                            calibrate_method=method)
    finally:
        logging.disable(logging.NOTSET)
    return out


@contextmanager
def _root_logging_left_alone() -> Iterator[None]:
    """Around ONNX Runtime's quantiser, which logs through the root logger (``logging.info(...)``):
    on a root logger without a handler that call configures one (``basicConfig``), and from then on
    every ``faceatlas.int8`` record was also said in its format, ``INFO:faceatlas.int8:int8 copy of
    ...: quantising 1/1`` after the command's own line, and the recogniser's whole making after it.
    A handler on stderr for warnings and errors (what Python's last resort shows without any) is held
    on such a root meanwhile, so the other threads' errors are still said; one configured
    (``serve``'s) is left as it is."""
    root = logging.getLogger()
    held: logging.Handler | None = None
    if not root.handlers:
        held = logging.StreamHandler(sys.stderr)
        held.setLevel(logging.WARNING)
    if held is not None:
        root.addHandler(held)
    try:
        yield
    finally:
        if held is not None:
            root.removeHandler(held)


def detector_float_nodes(model: onnx.ModelProto) -> list[str]:
    """The detector's layers left in float: its first two convolutions (as the recogniser's) and the
    keypoint heads (the convolutions, and what follows them, that give the 10 keypoint coordinates
    of each anchor): the keypoints place the face for the recogniser. Measured on 300 LFW photos
    (bench/int8_detector.py): largest face's keypoints 0.41 px from float's on average with the heads
    in float, 0.51 px all int8, for the same speed."""
    convolutions = [n.name for n in model.graph.node if n.op_type == "Conv"]
    made_by = {output: node for node in model.graph.node for output in node.output}
    keep = convolutions[:FLOAT_HEAD]
    for output in model.graph.output:
        dims = output.type.tensor_type.shape.dim
        if not dims or dims[-1].dim_value != 10:
            continue
        node = made_by.get(output.name)
        while node is not None and node.op_type != "Conv":  # the reshapes / scaling after the head
            keep.append(node.name)
            node = made_by.get(node.input[0])
        if node is not None:
            keep.append(node.name)
    return keep


def sensitive_nodes(model: onnx.ModelProto) -> list[str]:
    """The layers left in float: the first two convolutions (the raw pixel range saturates the u8s8
    kernels of CPUs without VNNI) and the last four with what follows them (the embedding itself).
    Measured on MobileFaceNet: mean cosine to float 0.981 (min 0.85) with all int8, 0.996 (min 0.993)
    with these ends in float, for most of the speed."""
    nodes = list(model.graph.node)
    weighted = [i for i, n in enumerate(nodes) if n.op_type in ("Conv", "Gemm", "MatMul")]
    if len(weighted) <= FLOAT_HEAD + FLOAT_TAIL:
        return [n.name for n in nodes]
    keep_float = set(weighted[:FLOAT_HEAD]) | set(range(weighted[-FLOAT_TAIL], len(nodes)))
    return [nodes[i].name for i in sorted(keep_float)]


def calibration_folder(settings: EngineSettings) -> Path | None:
    """The photos that calibrate the quantisation: ``FACEATLAS_INT8_IMAGES``, else LFW in the shared assets."""
    if settings.int8_images is not None:
        return settings.int8_images.expanduser()
    if settings.shared is not None:
        return settings.shared.expanduser() / "data" / "lfw" / "images"
    return None


def calibration_photos(settings: EngineSettings, count: int = CALIBRATION_CROPS) -> list[Path]:
    """``count`` photos spread evenly over the calibration folder (sorted, so the same each time)."""
    folder = calibration_folder(settings)
    if settings.int8_images is not None and folder is not None and not folder.is_dir():
        # it went on to say "no face found in the int8 calibration photos (/nonexistent)"
        state = "is not a folder" if folder.exists() else "does not exist"
        raise ModelMissing(f"FACEATLAS_INT8_IMAGES {folder} {state}: the int8 recogniser is made from the float "
                           "one on calibration photos; set it to a folder of face photos (e.g. LFW's images)")
    if folder is None or not folder.is_dir():
        raise ModelMissing("the int8 recogniser is made from the float one on calibration photos: set "
                           "FACEATLAS_INT8_IMAGES to a folder of face photos (e.g. LFW's images) or "
                           f"FACEATLAS_SHARED (looked in {folder})")
    photos = sorted(p for p in folder.rglob("*") if p.suffix.lower() in {".jpg", ".jpeg", ".png"})
    if not photos:
        raise ModelMissing(f"no photos (.jpg, .jpeg, .png) in the int8 calibration folder {folder}: the int8 "
                           "recogniser is made from the float one on face photos")
    step = max(1, len(photos) // count)
    return photos[::step][:count]
