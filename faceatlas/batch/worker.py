"""The work of one batch of images, in one process: read (each file on its own: one that cannot
be read is a failed image), decode (with the engine's pixel limit), perceptual hash, faces
(``FaceAnalyzer.analyze_many``), and the two tables of its output part.

:class:`FaceWorker` is the Ray actor class: each actor holds one analyzer, reads its batch's
files and writes its own parts, so the driver only counts. :func:`analyze_batch` is the same
work without Ray (the plain loop of ``bench/batch_throughput.py``)."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import cv2
import numpy as np
import pyarrow as pa
import pyarrow.fs as pafs

from faceatlas.batch.output import FACE_SCHEMA, IMAGE_SCHEMA, out_filesystem, write_part
from faceatlas.db import one_reason
from faceatlas.engine import FaceAnalyzer, FaceAtlasError
from faceatlas.engine.face import Face
from faceatlas.engine.image import decode_image
from faceatlas.errors import InvalidInput, NotFound
from faceatlas.settings import EngineSettings

REMOTE_READS = 8  # files of a batch read at once from object storage (each read waits on the network)


def phash(image: np.ndarray) -> int:
    """The 64-bit DCT perceptual hash of an image (OpenCV's ``img_hash.pHash``: 32x32 grey,
    the 8x8 lowest frequencies against their median) as an unsigned integer."""
    return int.from_bytes(cv2.img_hash.pHash(image).tobytes(), "big")


@dataclass
class _Image:
    image_id: str
    array: np.ndarray | None = None
    factor: float = 1.0
    width: int = 0
    height: int = 0
    phash: int = 0
    faces: list[Face] = field(default_factory=list)
    error: str = ""
    message: str = ""

    def fail(self, exc: Exception) -> None:
        self.array = None
        self.error = exc.code if isinstance(exc, FaceAtlasError) else FaceAtlasError.code
        self.message = str(exc) if isinstance(exc, FaceAtlasError) else f"{type(exc).__name__}: {exc}"


def read_failure(exc: OSError) -> tuple[str, str]:
    """The error code and message of a file that could not be read (an image failed, not the job)."""
    if isinstance(exc, FileNotFoundError):
        return NotFound.code, "not read: the file was not there when the job read it"
    if isinstance(exc, IsADirectoryError):
        return InvalidInput.code, "a folder, not an image file"
    if isinstance(exc, PermissionError):
        return InvalidInput.code, "cannot read the file: permission denied"
    reason = os.strerror(exc.errno) if exc.errno else one_reason(exc)
    return FaceAtlasError.code, f"cannot read the file: {reason[:1].lower()}{reason[1:]}"


def read_files(fs: pafs.FileSystem, paths: Sequence[str]) -> tuple[list[bytes], dict[str, tuple[str, str]]]:
    """The bytes of each file (empty for one that failed) and, by path, the code and message of
    each that could not be read (an I/O error, a permission, gone since it was listed): one
    unreadable file fails alone (it failed Ray's read task, and with it the whole job)."""
    failed: dict[str, tuple[str, str]] = {}

    def read(path: str) -> bytes:
        try:
            with fs.open_input_stream(path) as stream:
                return bytes(stream.read())
        except OSError as exc:
            failed[path] = read_failure(exc)
            return b""

    if isinstance(fs, pafs.LocalFileSystem) or len(paths) < 2:
        return [read(path) for path in paths], failed
    with ThreadPoolExecutor(min(REMOTE_READS, len(paths))) as pool:
        return list(pool.map(read, paths)), failed


def _decode(image_id: str, data: bytes, settings: EngineSettings) -> _Image:
    item = _Image(image_id)
    try:
        item.array, item.factor = decode_image(data, max_pixels=settings.max_pixels,
                                               work_pixels=settings.work_pixels)
        item.height, item.width = (round(n * item.factor) for n in item.array.shape[:2])
        item.phash = phash(item.array)
    except Exception as exc:  # noqa: BLE001 - one bad file (typed code, or `error`) must not stop the job
        item.fail(exc)
    return item


def _analyze(analyzer: FaceAnalyzer, items: list[_Image]) -> None:
    """Faces of every decoded image: one ``analyze_many`` call, else image by image (so that an
    image the detector chokes on fails alone)."""
    good = [item for item in items if item.array is not None]
    try:
        results = analyzer.analyze_many([item.array for item in good])  # type: ignore[misc]
    except Exception:  # noqa: BLE001 - retried one by one below, each failure recorded on its image
        results = []
        for item in good:
            try:
                results.append(analyzer.analyze(item.array))  # type: ignore[arg-type]
            except Exception as exc:  # noqa: BLE001
                item.fail(exc)
                results.append([])
    for item, faces in zip(good, results):
        for face in faces:
            face.rescale(item.factor)
        item.faces = faces


def analyze_batch(image_ids: Sequence[str], data: Sequence[bytes], analyzer: FaceAnalyzer | None,
                  settings: EngineSettings, failed: Mapping[str, tuple[str, str]] | None = None,
                  ) -> tuple[pa.Table, pa.Table]:
    """The faces table and the image table (one row each, the done-manifest) of one batch; no
    faces are looked for without an ``analyzer`` (hashes only). ``failed``: the images that could
    not be read, by id, with their error code and message (their rows say so)."""
    failed = failed or {}
    items = [_Image(str(i), error=failed[str(i)][0], message=failed[str(i)][1]) if str(i) in failed
             else _decode(str(i), bytes(d), settings) for i, d in zip(image_ids, data)]
    if analyzer is not None:
        _analyze(analyzer, items)
    pack = analyzer.pack.name if analyzer is not None else ""
    rows: dict[str, list[Any]] = {name: [] for name in FACE_SCHEMA.names}
    for item in items:
        for number, face in enumerate(item.faces):
            pose = face.pose
            rows["image_id"].append(item.image_id)
            rows["face"].append(number)
            rows["box"].append(np.asarray(face.bbox, np.float32).tolist())
            rows["det_score"].append(face.det_score)
            rows["keypoints"].append(np.asarray(face.keypoints, np.float32).reshape(-1).tolist())
            rows["quality"].append(face.quality)
            rows["yaw"].append(None if pose is None else pose.yaw)
            rows["pitch"].append(None if pose is None else pose.pitch)
            rows["roll"].append(None if pose is None else pose.roll)
            rows["embedding"].append(None if face.embedding is None else np.asarray(face.embedding, np.float32))
            rows["recognizer_id"].append(face.recognizer_id)
            rows["pack"].append(pack)
    faces = pa.table(rows, schema=FACE_SCHEMA)
    images = pa.table({
        "image_id": [i.image_id for i in items], "faces": [len(i.faces) for i in items],
        "width": [i.width for i in items], "height": [i.height for i in items],
        "phash": [i.phash for i in items], "error": [i.error for i in items], "message": [i.message for i in items],
    }, schema=IMAGE_SCHEMA)
    return faces, images


class FaceWorker:
    """A Ray Data actor: one analyzer (one intra-op thread: the actors are the parallelism),
    reading the files of each batch it is given (paths on ``source``, the source's filesystem)
    and writing one output part per batch; returns the batch's image table for the driver's
    progress."""

    def __init__(self, out: str, pack: str | None, settings: EngineSettings, faces: bool = True,
                 source: pafs.FileSystem | None = None) -> None:
        self.settings = settings
        self.fs, self.root = out_filesystem(out)
        self.source = source or pafs.LocalFileSystem()
        self.analyzer = FaceAnalyzer(pack, threads=1, settings=settings, announce_license=False) if faces else None

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        paths = [str(path) for path in batch["path"]]
        data, failed = read_files(self.source, paths)
        faces, images = analyze_batch(paths, data, self.analyzer, self.settings, failed)
        write_part(self.fs, self.root, faces, images)
        return {"image_id": np.asarray(images.column("image_id").to_pylist(), dtype=object),
                "faces": images.column("faces").to_numpy(),
                "error": np.asarray(images.column("error").to_pylist(), dtype=object)}
