"""FaceAnalyzer: one object that detects, aligns, embeds, scores and compares faces with a pack."""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from faceatlas.engine.attributes import AttributeModels
from faceatlas.engine.calibration import DEFAULT_FAR, Calibration, Cut, load_calibration
from faceatlas.engine.detections import Detections
from faceatlas.engine.detectors import (
    SCRFD,
    Detector,
    DlibHOG,
    YuNet,
    template_keypoints,
)
from faceatlas.engine.dlib_onnx import dlib_onnx_model
from faceatlas.engine.face import Embedding, Face, as_embedding, cosine_similarity
from faceatlas.engine.geometry import align_face, estimate_pose
from faceatlas.engine.image import ChannelOrder, ImageInput, decode_image, load_image
from faceatlas.engine.liveness import LivenessMember, LivenessResult, MiniFASNet
from faceatlas.engine.models import DownloadBackoff, ModelFile, resolve
from faceatlas.engine.packs import Pack, RecognizerSpec, get_pack
from faceatlas.engine.quality import quality_score
from faceatlas.engine.quantize import (
    DETECTOR_CALIBRATION_PHOTOS,
    READING,
    Progress,
    calibration_photos,
    derived_path,
    int8_detector,
    int8_model,
)
from faceatlas.engine.recognizers import (
    ArcFaceONNX,
    DlibChipONNX,
    DlibResNet,
    FusedRecognizer,
    Recognizer,
    arcface_blob,
    embed_with_mirror,
)
from faceatlas.engine.runtime import choose_providers, default_threads, has_int8_dot
from faceatlas.errors import ModelError, ModelMismatch, ModelMissing, NoFace, NotCalibrated, TooManyFaces
from faceatlas.settings import EngineSettings

log = logging.getLogger("faceatlas")
_announced: set[str] = set()


@dataclass(frozen=True)
class Verdict:
    """The answer of a 1:1 comparison: similarity, the threshold used, and the FAR it reaches.

    ``match`` (and ``threshold``) are None when the pack has no calibration and no raw threshold
    was given: the similarity alone cannot say "same person"."""

    similarity: float
    match: bool | None
    threshold: float | None
    far: float | None
    far_level: float | None

    def to_dict(self) -> dict[str, Any]:
        return {
            "similarity": round(self.similarity, 4),
            "match": self.match,
            "threshold": None if self.threshold is None else round(self.threshold, 4),
            "far": self.far,
            "match_at_far": self.far_level,
        }


class FaceAnalyzer:
    """Detect -> align -> embed -> quality/pose (-> liveness) with one model pack.

    Sessions are created once here; reuse the analyzer. ``providers`` overrides the ONNX Runtime
    providers (CUDA is used automatically when this onnxruntime build has it). The pack's licences
    are logged once per process (a warning when they restrict use) unless ``announce_license`` is off.
    ``settings`` (model folders, cache, threads, pixel limit) defaults to the environment's; its
    ``provider`` (``FACEATLAS_PROVIDER``) picks ONNX Runtime or OpenVINO for the SCRFD detector and the
    float ONNX recogniser (same embeddings either way; an int8 recogniser, liveness and attribute
    models stay on ONNX Runtime). A model file whose download failed is not tried again by this
    analyzer for ``settings.download_retry_seconds`` (its liveness models load on first use: a server
    without internet answers ``model_missing`` at once, not after a download's timeout per request);
    ``backoff`` shares that record with other analyzers (default: one of its own). With runtime
    int8, ``int8_progress`` hears how far the making of an int8 copy is when one is made now
    (``engine.quantize``: minutes, once; without it the stages are logged at INFO).
    """

    def __init__(
        self,
        pack: str | Pack | None = None,
        providers: Sequence[str] | None = None,
        threads: int | None = None,
        *,
        det_threshold: float | None = None,
        det_max_side: int | None = None,
        max_pixels: int | None = None,
        download: bool | None = None,
        announce_license: bool = True,
        settings: EngineSettings | None = None,
        backoff: DownloadBackoff | None = None,
        int8_progress: Progress | None = None,
    ) -> None:
        self.settings = settings or EngineSettings()
        self._int8_progress = int8_progress
        self._backoff = backoff or DownloadBackoff()
        self.pack = pack if isinstance(pack, Pack) else get_pack(pack, self.settings)
        self.providers = providers
        self.threads = threads or self.settings.threads
        self.max_pixels = max_pixels or self.settings.max_pixels
        self._download = download
        self._det_options = (det_threshold, det_max_side or self.settings.det_max_side)
        self.detector = self._build_detector(*self._det_options)
        self.recognizer = self._build_recognizer()
        self._liveness: MiniFASNet | None = None
        self._attributes: AttributeModels | None = None
        self._lane: FaceAnalyzer | None = None
        self._lane_pool: ThreadPoolExecutor | None = None
        self._lane_lock = threading.Lock()
        self.calibration: Calibration | None = load_calibration(self.pack, self.settings)
        if announce_license:
            self._announce_license()

    # -- construction -------------------------------------------------------------------
    def _build_detector(self, threshold: float | None, max_side: int, *, quantised: bool | None = None) -> Detector:
        spec = self.pack.detector
        path = self._resolve(spec.file)
        if spec.kind == "dlib_hog":
            if spec.keypoint_file is None:
                raise ModelError(f"pack {self.pack.name!r}: the dlib detector needs its 68-point keypoint predictor")
            keypoint_path = self._resolve(spec.keypoint_file)
            return DlibHOG(path, keypoint_path, max_side=max(max_side, 1280))
        if spec.kind == "yunet":
            return YuNet(path, score_threshold=threshold or 0.6, max_side=max_side, min_face=self.settings.min_face)
        provider = self.settings.provider
        if self.int8_detector if quantised is None else quantised:  # int8 stays on ONNX Runtime, as the recogniser
            path = int8_detector(spec.file, path, self._calibration_photos, self.settings, progress=self._int8_progress)
            provider = "onnxruntime"
        return SCRFD(path, self.providers, self.threads, score_threshold=threshold or 0.5, max_side=max_side,
                     provider=provider, min_face=self.settings.min_face)

    @property
    def int8_detector(self) -> bool:
        """Whether the pack's SCRFD detector runs quantised: with runtime int8, where the CPU has
        int8 dot-product instructions (``FACEATLAS_INT8_DETECTOR``: auto, on, off)."""
        choice = self.settings.int8_detector
        return (self.pack.runtime == "int8" and self.pack.detector.kind == "scrfd"
                and (choice == "on" or (choice == "auto" and has_int8_dot())))

    def _resolve(self, model: ModelFile) -> Path:
        """A verified copy of the pack's file ``model`` (a missing one's error names this pack's fetch)."""
        return resolve(model, download=self._download, settings=self.settings, pack=self.pack.name,
                       backoff=self._backoff)

    def _build_recognizer(self) -> Recognizer:
        if self.pack.fused:
            return FusedRecognizer([self._build_one_recognizer(spec) for spec in self.pack.recognizers])
        return self._build_one_recognizer(self.pack.recognizer)

    def _build_one_recognizer(self, spec: RecognizerSpec) -> Recognizer:
        path = self._resolve(spec.file)
        if spec.kind == "dlib":
            return DlibResNet(path)
        if spec.kind == "dlib_onnx":
            if spec.aligner is None:
                raise ModelError(f"pack {self.pack.name!r}: dlib's chips need its 5-point landmark predictor")
            aligner = self._resolve(spec.aligner)
            return DlibChipONNX(dlib_onnx_model(path, self.settings.cache_dir), aligner, self.providers, self.threads,
                                self.settings.provider)
        if self.pack.runtime == "int8":
            path = int8_model(spec.file, path, self._calibration_crops,
                              lambda crops: arcface_blob(crops, ArcFaceONNX.crop_size, spec.input_mean, spec.input_std),
                              self.settings, progress=self._int8_progress)
        # int8 stays on ONNX Runtime: OpenVINO's int8 kernels give other embeddings (cosine to ONNX
        # Runtime's int8 down to 0.95 on fr_feature, bench/openvino_compare.py) under the same id.
        provider = self.settings.provider if self.pack.runtime == "float" else "onnxruntime"
        return ArcFaceONNX(path, spec.embedding_size, spec.input_mean, spec.input_std, self.providers, self.threads,
                           provider)

    def _calibration_photos(self, report: Progress) -> list[np.ndarray]:
        """The int8 detector's calibration images: the first calibration photos, decoded (each
        one told to ``report``)."""
        photos = calibration_photos(self.settings, DETECTOR_CALIBRATION_PHOTOS)
        images = []
        report(READING, 0, len(photos))
        for done, photo in enumerate(photos, 1):
            images.append(load_image(photo, max_pixels=self.max_pixels))
            report(READING, done, len(photos))
        return images

    def _calibration_crops(self, report: Progress) -> list[np.ndarray]:
        """Aligned crops of the largest face of each int8 calibration photo (``engine.quantize``),
        found by the float detector: the int8 recogniser is then the same file on every CPU. Each
        photo read is told to ``report``."""
        detector = self.detector
        if self.int8_detector:
            detector = self._build_detector(*self._det_options, quantised=False)
        crops = []
        photos = calibration_photos(self.settings)
        report(READING, 0, len(photos))
        for done, photo in enumerate(photos, 1):
            image = load_image(photo, max_pixels=self.max_pixels)
            detections = detector.detect(image)
            if len(detections) and detections.keypoints is not None:
                crops.append(align_face(image, detections.keypoints[0], ArcFaceONNX.crop_size))
            report(READING, done, len(photos))
        return crops

    def _announce_license(self, what: str = "", licenses: Sequence[str] | None = None) -> None:
        key = f"{self.pack.name}{what}"
        if key in _announced:
            return
        _announced.add(key)
        shown = list(self.pack.licenses + list(self.pack.notes) if licenses is None else licenses)
        text = f"model pack '{self.pack.name}'{what}: " + "; ".join(shown)
        restricted = any(w in text for w in ("non-commercial", "unknown", "not sha256-pinned"))
        log.log(logging.WARNING if restricted else logging.INFO, text)

    @property
    def liveness_model(self) -> MiniFASNet:
        """The pack's liveness ensemble, loaded on first use."""
        if self._liveness is None:
            files = [LivenessMember(self._resolve(s.file), s.scale,
                                    s.size, s.real_class) for s in self.pack.liveness]
            self._liveness = MiniFASNet(files, self.providers, self.threads)
        return self._liveness

    @property
    def attribute_models(self) -> AttributeModels:
        """The pack's attribute models, loaded (and their licences logged) on first use."""
        if self._attributes is None:
            spec = self.pack.attributes
            if spec is None:
                raise ModelMissing(f"pack {self.pack.name!r} has no attribute models")
            gender, emotion, age = (
                None if f is None else self._resolve(f)
                for f in (spec.gender, spec.emotion, spec.age)
            )
            self._attributes = AttributeModels(gender, emotion, age, self.providers, self.threads)
            lines = self.pack.attribute_licenses + ([] if spec.age else ["no age model (none commercially usable)"])
            self._announce_license(" attributes", lines)
        return self._attributes

    @property
    def embedding_size(self) -> int:
        return self.pack.embedding_size

    # -- analysis -------------------------------------------------------------------------
    def load(self, image: ImageInput, channels: ChannelOrder = "bgr") -> np.ndarray:
        """Decode any supported input to BGR with this analyzer's pixel limit, at full size."""
        return load_image(image, channels=channels, max_pixels=self.max_pixels)

    def load_reduced(self, image: ImageInput, channels: ChannelOrder = "bgr") -> tuple[np.ndarray, float]:
        """Decode for analysis: an encoded image above ``work_pixels`` is reduced while decoding
        (see :func:`decode_image`); returns the array and the factor back to the original."""
        return decode_image(image, channels=channels, max_pixels=self.max_pixels,
                            work_pixels=self.settings.work_pixels)

    def detect(self, image: ImageInput, *, channels: ChannelOrder = "bgr") -> Detections:
        """Boxes, scores and keypoints only (no embedding)."""
        return self.detector.detect(self.load(image, channels))

    def analyze(
        self,
        image: ImageInput,
        *,
        channels: ChannelOrder = "bgr",
        max_faces: int | None = None,
        embed: bool = True,
        with_crop: bool = False,
        liveness: bool = False,
        attributes: bool = False,
    ) -> list[Face]:
        """Every face in ``image`` (largest first), with embedding, quality and pose (and liveness,
        attributes (age, gender, emotion) on request)."""
        return self.analyze_many(
            [image], channels=channels, max_faces=max_faces, embed=embed, with_crop=with_crop, liveness=liveness,
            attributes=attributes,
        )[0]

    def analyze_many(
        self,
        images: Iterable[ImageInput],
        *,
        channels: ChannelOrder = "bgr",
        max_faces: int | None = None,
        embed: bool = True,
        with_crop: bool = False,
        liveness: bool = False,
        attributes: bool = False,
    ) -> list[list[Face]]:
        """Like :meth:`analyze` for many images; all their faces are embedded in one batch per lane.

        With two threads or more (``threads``, ``FACEATLAS_PARALLEL_IMAGES``) the images are split
        into contiguous lanes analysed side by side, each on one-thread sessions of the same model
        files (same faces, same order; see :meth:`lane_count`)."""
        options: dict[str, Any] = {"channels": channels, "max_faces": max_faces, "embed": embed,
                                   "with_crop": with_crop, "liveness": liveness, "attributes": attributes}
        items = list(images)
        lanes = self.lane_count(len(items))
        if lanes > 1:
            lane, pool = self._lanes()
            size = -(-len(items) // lanes)
            futures = [pool.submit(lane.analyze_many, items[start:start + size], **options)
                       for start in range(0, len(items), size)]
            return [faces for future in futures for faces in future.result()]
        return self._analyze_here(items, **options)

    def lane_count(self, images: int) -> int:
        """How many images :meth:`analyze_many` works on side by side: ``parallel_images`` (default
        the intra-op threads), at most one per image; 1 for packs with a dlib part (its Python
        objects are not shared across threads), on CUDA, and on OpenVINO (its one-thread compiled
        models side by side ran 0.68-0.94x its one lane: bench/engine_throughput.py)."""
        wanted = self._wanted_lanes()
        uses_dlib = self.pack.detector.kind == "dlib_hog" or any(
            spec.kind.startswith("dlib") for spec in self.pack.recognizers)
        if wanted < 2 or images < 2 or uses_dlib:
            return 1
        if self.settings.provider == "openvino" or "CUDAExecutionProvider" in choose_providers(self.providers):
            return 1
        return min(wanted, images)

    def _wanted_lanes(self) -> int:
        return self.settings.parallel_images or self.threads or default_threads()

    def _lanes(self) -> tuple[FaceAnalyzer, ThreadPoolExecutor]:
        """The one-thread twin of this analyzer (same pack, settings and detector options; its
        sessions are shared by the lanes) and the pool running them, made on first use."""
        with self._lane_lock:
            if self._lane is None:
                single = self.settings.model_copy(update={"parallel_images": 1})
                self._lane = FaceAnalyzer(self.pack, self.providers, 1, det_threshold=self._det_options[0],
                                          det_max_side=self._det_options[1], max_pixels=self.max_pixels,
                                          download=self._download, announce_license=False, settings=single,
                                          backoff=self._backoff)
            if self._lane_pool is None:  # as many threads as lanes can ever be (lane_count's ``wanted``)
                self._lane_pool = ThreadPoolExecutor(self._wanted_lanes(), thread_name_prefix="faceatlas-lane")
            return self._lane, self._lane_pool

    def _analyze_here(
        self, images: list[ImageInput], *, channels: ChannelOrder, max_faces: int | None, embed: bool,
        with_crop: bool, liveness: bool, attributes: bool,
    ) -> list[list[Face]]:
        """:meth:`analyze_many` on this thread, one image after the other."""
        loaded = [self.load_reduced(img, channels) for img in images]
        decoded, factors = [array for array, _ in loaded], [factor for _, factor in loaded]
        per_image = [self.detector.detect(img).sorted_by_area(max_faces) for img in decoded]
        results = self._faces_from(decoded, per_image, embed=embed, with_crop=with_crop, liveness=liveness,
                                   attributes=attributes)
        for faces, factor in zip(results, factors):
            for face in faces:
                face.rescale(factor)
        return results

    def largest(
        self, image: ImageInput, *, channels: ChannelOrder = "bgr", embed: bool = True, with_crop: bool = False,
        liveness: bool = False,
    ) -> tuple[list[Face], int]:
        """The largest face of ``image`` (a list of it alone, or an empty one), as ``analyze(...,
        max_faces=1)`` finds it, and how many faces the image holds: the doors that work on the
        largest face (liveness, enrol, search) say "the largest of 2", where a group photo was
        enrolled into one person's subject without a word. Only the largest is aligned and embedded."""
        decoded, factor = self.load_reduced(image, channels)
        found = self.detector.detect(decoded)
        [faces] = self._faces_from([decoded], [found.sorted_by_area(1)], embed=embed, with_crop=with_crop,
                                   liveness=liveness)
        for face in faces:
            face.rescale(factor)
        return faces, len(found)

    def analyze_one(
        self,
        image: ImageInput,
        *,
        channels: ChannelOrder = "bgr",
        largest: bool = True,
        liveness: bool = False,
        with_crop: bool = False,
        attributes: bool = False,
    ) -> Face:
        """The one face of ``image``: the largest when ``largest``, else exactly one is required.
        :class:`NoFace` names a file given by its path (`compare a.jpg b.png` did not say which)."""
        faces = self.analyze(
            image, channels=channels, max_faces=None if not largest else 1, liveness=liveness, with_crop=with_crop,
            attributes=attributes,
        )
        if not faces:
            if isinstance(image, (str, os.PathLike)):
                raise NoFace(f"no face found in {os.fsdecode(image)}")
            raise NoFace("no face found in the image")
        if not largest and len(faces) > 1:
            raise TooManyFaces(f"{len(faces)} faces found where exactly one was expected")
        return faces[0]

    def face_in_box(self, image: np.ndarray, box: Sequence[float]) -> Face:
        """Embed the face inside a given box when the detector found none (e.g. evaluation on
        pre-cropped photos): dlib places its landmarks in the box, others lay the template on it."""
        box_arr = np.asarray(box, dtype=np.float32).reshape(1, 4)
        if isinstance(self.detector, DlibHOG):
            landmarks = self.detector.landmarks_in_box(image, box_arr[0])[None]
            keypoints = self.detector.keypoints_in_box(image, box_arr[0])[None]
            detections = Detections(box_arr, np.zeros(1, np.float32), keypoints, landmarks)
        else:
            detections = Detections(box_arr, np.zeros(1, np.float32), template_keypoints(box_arr[0])[None])
        return self._faces_from([image], [detections], embed=True, with_crop=False, liveness=False)[0][0]

    def _faces_from(
        self, images: list[np.ndarray], detections: list[Detections], *, embed: bool, with_crop: bool, liveness: bool,
        attributes: bool = False,
    ) -> list[list[Face]]:
        results: list[list[Face]] = []
        crops: list[np.ndarray] = []
        for image, found in zip(images, detections):
            faces = []
            # face detectors always give the 5 keypoints
            keypoints = found.keypoints if found.keypoints is not None else np.zeros((len(found), 5, 2), np.float32)
            for i in range(len(found)):
                crop = self.recognizer.align(image, found, i)
                pose = estimate_pose(keypoints[i], image.shape[:2])
                face = Face(
                    bbox=found.boxes[i],
                    det_score=float(found.scores[i]),
                    keypoints=keypoints[i],
                    quality=quality_score(float(found.scores[i]), keypoints[i], pose, crop),
                    pose=pose,
                    crop=crop if with_crop else None,
                )
                if liveness:
                    face.liveness = self.liveness_model.predict(image, found.boxes[i])
                faces.append(face)
                crops.append(crop)
            if attributes and len(found):
                for face, found_attributes in zip(faces, self.attribute_models.predict(image, found.boxes)):
                    face.attributes = found_attributes
            results.append(faces)
        if embed and crops:
            self.attach_embeddings([face for faces in results for face in faces], self.embed_aligned(crops))
        return results

    def attach_embeddings(self, faces: Sequence[Face], vectors: np.ndarray) -> None:
        """Give each face its vector (made by this pack's recogniser from its aligned crop), with
        the embedding space it belongs to."""
        for face, vector in zip(faces, vectors, strict=True):
            face.embedding = vector
            face.recognizer_id = self.pack.recognizer_id

    def embed_aligned(self, crops: Sequence[np.ndarray] | np.ndarray) -> np.ndarray:
        """Embeddings of already aligned crops (the recogniser's crop size), one batch; with the
        pack's flip on, each crop's with its mirror (:func:`embed_with_mirror`)."""
        if self.pack.flip:
            return embed_with_mirror(self.recognizer, crops)
        return self.recognizer.embed_aligned(crops)

    def check_liveness(self, image: ImageInput, face: Face | None = None) -> LivenessResult:
        """Passive liveness of ``face`` (default: the largest face) in ``image``."""
        decoded = self.load(image)
        if face is None:
            found = self.detector.detect(decoded)
            if len(found) == 0:
                raise NoFace("no face found for the liveness check")
            box = found.boxes[0]
        else:
            box = face.bbox
        return self.liveness_model.predict(decoded, box)

    # -- comparison -----------------------------------------------------------------------
    def compare(self, a: Face | Embedding, b: Face | Embedding) -> float:
        """Cosine similarity of two faces or embeddings made by this pack's recogniser
        (:class:`ModelMismatch` for an embedding of another space)."""
        va, vb = (self.own_embedding(x).vector for x in (a, b))
        return cosine_similarity(va, vb)

    def own_embedding(self, query: Face | Embedding) -> Embedding:
        """``query`` as an :class:`Embedding`, refused unless this pack's recogniser made it."""
        embedding = as_embedding(query)
        if embedding.recognizer_id != self.pack.recognizer_id or len(embedding) != self.embedding_size:
            raise ModelMismatch(
                f"pack {self.pack.name} makes {self.embedding_size}-d embeddings of recognizer "
                f"{self.pack.recognizer_id}; got a {len(embedding)}-d embedding of {embedding.recognizer_id}"
            )
        return embedding

    def threshold(self, far: float) -> float:
        """The similarity threshold of this pack at false-accept rate ``far``."""
        if self.calibration is None:
            raise NotCalibrated(self.pack.uncalibrated)
        return self.calibration.threshold(far)

    def verify(
        self, a: Face | Embedding, b: Face | Embedding, *, far: float = DEFAULT_FAR, threshold: float | None = None
    ) -> Verdict:
        """1:1 decision at a calibrated FAR (or a raw similarity ``threshold``).

        Without a calibration and without ``threshold`` the verdict has ``match=None``; a FAR the
        calibration has no threshold for is :class:`FarNotCalibrated`."""
        similarity = self.compare(a, b)
        level = self.calibration.far_level(similarity) if self.calibration else None
        if threshold is not None:
            return Verdict(similarity, similarity >= threshold, threshold, None, level)
        if self.calibration is None:
            return Verdict(similarity, None, None, None, None)
        used = self.calibration.threshold(far)
        return Verdict(similarity, similarity >= used, used, far, level)

    def verify_images(self, image_a: ImageInput, image_b: ImageInput, *, far: float = DEFAULT_FAR,
                      channels: ChannelOrder = "bgr") -> tuple[Verdict, tuple[int, int]]:
        """1:1 of the largest face of each image at ``far`` (:meth:`verify`), and how many faces each
        image holds (a group photo's largest face is compared). A ``far`` the calibration has no
        threshold for is :class:`FarNotCalibrated` before either image is read (`compare a b --far
        0.5` analysed both first); an image without a face is :class:`NoFace` naming it (a file by
        its path)."""
        Cut.verifying(far=far).check(self.calibration)
        pair = [self.largest(image, channels=channels) for image in (image_a, image_b)]
        for image, label, (faces, _) in zip((image_a, image_b), ("the first image", "the second image"), pair):
            if not faces:
                named = os.fsdecode(image) if isinstance(image, str | os.PathLike) else label
                raise NoFace(f"no face found in {named}")
        return self.verify(pair[0][0][0], pair[1][0][0], far=far), (pair[0][1], pair[1][1])


@dataclass(frozen=True)
class Int8Copy:
    """One int8 file of a pack: the float file it is made from, where it is cached, and whether it
    was made by this call (``False``: the cached copy was used)."""

    source: str
    path: Path
    made: bool

    def to_dict(self) -> dict[str, Any]:
        return {"source": self.source, "path": str(self.path), "made": self.made}


def make_int8(pack: str | None = None, settings: EngineSettings | None = None, *,
              progress: Progress | None = None) -> list[Int8Copy]:
    """Make the int8 copies of ``pack`` now (its recogniser(s), and its SCRFD detector where
    ``FACEATLAS_INT8_DETECTOR`` picks it), as ``FACEATLAS_RUNTIME=int8`` would on first use;
    copies already cached are kept. ``progress`` hears how far the making is (``engine.quantize``)."""
    settings = settings or EngineSettings()
    chosen = get_pack(pack, settings, runtime="int8")
    files = [spec.file for spec in chosen.recognizers]
    if chosen.detector.kind == "scrfd":
        files.append(chosen.detector.file)
    paths = {model.name: derived_path(model, settings) for model in files}
    before = {name: _stamp(path) for name, path in paths.items()}
    analyzer = FaceAnalyzer(chosen, settings=settings, announce_license=False, int8_progress=progress)
    if not analyzer.int8_detector:
        paths.pop(chosen.detector.file.name, None)
    return [Int8Copy(name, path, _stamp(path) != before[name]) for name, path in paths.items()]


def _stamp(path: Path) -> int | None:
    """When ``path`` was last written (None: absent)."""
    try:
        return path.stat().st_mtime_ns
    except FileNotFoundError:
        return None
