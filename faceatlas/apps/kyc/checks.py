"""One verification, decided: the document's face, the selfie's faces and motion, passive
liveness on the best frames, the 1:1 match at the stated FAR. No storage here (see ``sessions``)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import cv2
import numpy as np

from faceatlas.apps.drive import FaceMeshTracker
from faceatlas.apps.kyc.config import REASONS, Action, KycConfig
from faceatlas.apps.kyc.motion import Sample, check_challenge, mesh_samples
from faceatlas.apps.kyc.selfie import MAX_SIDE, Selfie, frame_hash, frames_pixels, replayed_share
from faceatlas.engine import Embedding, Face, FaceAnalyzer, ImageInput, LivenessResult, l2_normalize
from faceatlas.engine.image import decoded_pixels
from faceatlas.errors import ImageTooLarge

CANDIDATE_FRAMES = 5  # frames the engine analyses (detector, recogniser, liveness) out of the selfie
MIN_FACE_SHARE = 0.5  # the person must be found on at least this share of the selfie's frames
MULTI_FACE_SHARE = 0.1  # another face on this share of frames (or of the analysed frames) refuses


@dataclass
class Outcome:
    """The decision (``accepted`` when no reason) with its evidence; ``references`` are the face
    crops a session keeps only under a retention setting."""

    reasons: list[str]
    details: dict[str, Any]
    references: dict[str, np.ndarray] = field(default_factory=dict)

    @property
    def accepted(self) -> bool:
        return not self.reasons


def find_document_face(analyzer: FaceAnalyzer, document: ImageInput, config: KycConfig) -> tuple[Face | None, str]:
    """The largest face on the document and how it was found (``whole`` or ``tiles``): a card's
    printed face is small, so when the whole card (shrunk to the detector's input) shows none,
    overlapping tiles of it are searched at a larger scale. An encoded document above the
    engine's ``work_pixels`` is decoded reduced, as the engine's analyses are."""
    image, _ = analyzer.load_reduced(document)
    return _face_on_document(analyzer, image, config)


def _face_on_document(analyzer: FaceAnalyzer, image: np.ndarray, config: KycConfig) -> tuple[Face | None, str]:
    faces = analyzer.analyze(image, max_faces=1, with_crop=True)
    if faces:
        return faces[0], "whole"
    height, width = image.shape[:2]
    best: Face | None = None
    tile_w, tile_h = round(width * 0.55), round(height * 0.7)
    for x in np.linspace(0, width - tile_w, 3).astype(int):
        for y in np.linspace(0, height - tile_h, 2).astype(int):
            tile = image[y:y + tile_h, x:x + tile_w]
            if min(tile.shape[:2]) < config.document_min_face:
                continue
            up = cv2.resize(tile, None, fx=config.document_upscale, fy=config.document_upscale,
                            interpolation=cv2.INTER_CUBIC)
            found = analyzer.analyze(up, max_faces=1, with_crop=True)
            if found and (best is None or found[0].det_score > best.det_score):
                best = found[0]
    return best, "tiles" if best is not None else "none"


def check_pixels(analyzer: FaceAnalyzer, document: ImageInput, config: KycConfig,
                 frames: Sequence[bytes] | None = None, fps: float | None = None) -> int:
    """What decoding one submission costs, in pixels, read from the headers before anything is
    decoded: the document (as :func:`find_document_face` decodes it) and the selfie's frames used
    (as :func:`~faceatlas.apps.kyc.selfie.decode_frames` does; a video has its own bound). An
    image above the analyzer's ``max_pixels``, or a total above ``config.max_submission_pixels``,
    is :class:`ImageTooLarge`. Returns the total."""
    total = decoded_pixels(document, max_pixels=analyzer.max_pixels, work_pixels=analyzer.settings.work_pixels)
    for cost in frames_pixels(frames, config, fps, max_pixels=analyzer.max_pixels) if frames is not None else ():
        total += cost
        if total > config.max_submission_pixels:
            break
    if total > config.max_submission_pixels:
        raise ImageTooLarge(f"the document and selfie frames decode to at least {total / 1e6:.1f} MP, more than "
                            f"the {config.max_submission_pixels / 1e6:.0f} MP one submission may (frames are used "
                            f"at {MAX_SIDE} pixels: send them no larger)")
    return total


def _area(face: Face) -> float:
    x1, y1, x2, y2 = (float(v) for v in face.bbox)
    return max(0.0, x2 - x1) * max(0.0, y2 - y1)


def _candidates(samples: Sequence[Sample], config: KycConfig) -> list[int]:
    """Frames spread over the selfie where the person faces the camera, alone, eyes open."""
    usable = [i for i, s in enumerate(samples)
              if s.faces == 1 and s.yaw is not None and abs(s.yaw) <= config.max_match_yaw]
    if not usable:
        usable = [i for i, s in enumerate(samples) if s.faces >= 1]
    if len(usable) <= CANDIDATE_FRAMES:
        return usable
    return [usable[round(k)] for k in np.linspace(0, len(usable) - 1, CANDIDATE_FRAMES)]


def model_versions(analyzer: FaceAnalyzer) -> dict[str, Any]:
    """What made the decision: the pack, its files, the embedding space, the calibration's source."""
    pack = analyzer.pack
    calibration = analyzer.calibration
    return {
        "pack": pack.name,
        "pack_version": pack.version,
        "runtime": pack.runtime,
        "flip": pack.flip,
        "detector": pack.detector.file.basename,
        "recognizer_id": pack.recognizer_id,
        "liveness": [spec.file.basename for spec in pack.liveness],
        "calibration": getattr(calibration, "source", None),
        "landmarks": "mediapipe face_mesh (refined, 478 points)",
    }


def run_checks(analyzer: FaceAnalyzer, document: ImageInput, selfie: Selfie, challenge: Sequence[Action],
               config: KycConfig, tracker: FaceMeshTracker | None = None) -> Outcome:
    """Every check of one submission; the reasons keep the order of :data:`REASONS`."""
    reasons: set[str] = set()
    details: dict[str, Any] = {"challenge": list(challenge), "far": config.far, "models": model_versions(analyzer)}
    references: dict[str, np.ndarray] = {}

    document_image, _ = analyzer.load_reduced(document)
    document_face, how = _face_on_document(analyzer, document_image, config)
    # the document's own picture submitted as the selfie (a still "video" of it): the same frame,
    # within the replay check's bits of the document's difference hash
    alike = replayed_share(selfie.hashes, [frame_hash(document_image)], config.replay_bits)
    details["document"] = {"found": document_face is not None, "search": how,
                           "selfie_frames_alike": round(alike, 3)}
    if alike >= config.replay_share:
        reasons.add("selfie_is_document")
    if document_face is None:
        reasons.add("document_no_face")
    else:
        details["document"].update(quality=round(document_face.quality or 0.0, 3),
                                   det_score=round(document_face.det_score, 3))

    samples = mesh_samples(selfie.frames, selfie.times, config, tracker)
    with_face = [s for s in samples if s.faces >= 1]
    crowded = [s for s in with_face if s.faces > 1]
    # every count a selfie reason is decided on: Face Mesh's over all frames, then the engine's over
    # the frames it analyses (_best_faces adds those)
    details["selfie"] = {"frames": len(samples), "seconds": round(selfie.duration, 2), "face_frames": len(with_face),
                         "multi_face_frames": len(crowded), "analysed_frames": 0, "engine_faces": 0,
                         "engine_multi_face_frames": 0, "good_frames": 0}
    if len(with_face) < MIN_FACE_SHARE * max(1, len(samples)):
        reasons.add("selfie_no_face")
    if len(crowded) > MULTI_FACE_SHARE * max(1, len(with_face)):
        reasons.add("multiple_faces")

    result = check_challenge(samples, challenge, config)
    details["challenge_result"] = {
        "passed": result.passed, "detail": result.detail, "failed_step": result.failed_step,
        "done": [{"action": e.action, "at_s": round(e.start, 2)} for e in result.done],
        "seen": [{"action": e.action, "at_s": round(e.start, 2)} for e in result.seen],
    }
    if not result.passed:
        reasons.add("challenge_failed")

    best = _best_faces(analyzer, selfie, samples, config, reasons, details)
    if best:
        _, top = best[0]
        references["selfie"] = selfie.frames[top].copy()
        probabilities = np.mean([face.liveness.probabilities for face, _ in best if face.liveness], axis=0)
        liveness = LivenessResult((float(probabilities[0]), float(probabilities[1]), float(probabilities[2])))
        real = liveness.is_real(config.liveness_cut)
        details["liveness"] = {"score": round(liveness.score, 4), "frames": len(best),
                               "threshold": config.liveness_cut, "real": real}
        if not real:
            reasons.add("liveness_failed")
        if document_face is not None:
            stacked = np.stack([np.asarray(f.embedding) for f, _ in best])
            vectors = l2_normalize(np.mean(l2_normalize(stacked), axis=0))[0]
            verdict = analyzer.verify(document_face, Embedding(vectors, analyzer.pack.recognizer_id), far=config.far)
            details["match"] = verdict.to_dict()
            if not verdict.match:
                reasons.add("face_mismatch")
    if document_face is not None and document_face.crop is not None:
        references["document"] = document_face.crop
    return Outcome([r for r in REASONS if r in reasons], details, references)


def _best_faces(analyzer: FaceAnalyzer, selfie: Selfie, samples: Sequence[Sample], config: KycConfig,
                reasons: set[str], details: dict[str, Any]) -> list[tuple[Face, int]]:
    """The best-quality frontal faces of the analysed frames (with their frame index)."""
    picked = _candidates(samples, config)
    if not picked:
        reasons.add("selfie_no_face")
        return []
    analysed = analyzer.analyze_many([selfie.frames[i] for i in picked], liveness=True)
    good: list[tuple[Face, int]] = []
    crowded = 0
    for index, faces in zip(picked, analysed, strict=True):
        if not faces:
            continue
        person = faces[0]
        crowded += any(_area(f) >= config.other_face_share * _area(person) for f in faces[1:])
        if (person.quality or 0.0) >= config.min_quality and person.pose is not None \
                and abs(person.pose.yaw) <= config.max_match_yaw and person.embedding is not None:
            good.append((person, index))
    details["selfie"].update(analysed_frames=len(picked), engine_faces=sum(1 for f in analysed if f),
                             engine_multi_face_frames=crowded, good_frames=len(good))
    if crowded > MULTI_FACE_SHARE * len(picked):
        reasons.add("multiple_faces")
    if not any(analysed):
        reasons.add("selfie_no_face")
    elif not good:
        reasons.add("low_quality")
    good.sort(key=lambda item: item[0].quality or 0.0, reverse=True)
    return good[:config.best_frames]
