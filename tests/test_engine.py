"""The engine on real photos: detection counts, same/different person, batching, liveness."""

from __future__ import annotations

import copy

import numpy as np
import pytest

from faceatlas.engine import (
    REAL_THRESHOLD,
    Embedding,
    FaceAnalyzer,
    FarNotCalibrated,
    LivenessResult,
    ModelMismatch,
    NoFace,
    TooManyFaces,
)
from faceatlas.engine.detectors import fit_size


def test_group_photo_has_two_faces_with_every_detector(examples, fast_analyzer, dlib_analyzer):
    group = examples / "examples" / "two_people.jpg"
    for analyzer in (fast_analyzer, dlib_analyzer, FaceAnalyzer("yunet-mbf"), FaceAnalyzer("scrfd25-mbf")):
        faces = analyzer.analyze(group)
        assert len(faces) == 2, analyzer.pack.name
        assert faces[0].area >= faces[1].area
        for face in faces:
            assert face.embedding.shape == (analyzer.embedding_size,)
            assert abs(float(np.linalg.norm(face.embedding)) - 1.0) < 1e-4
            assert 0.0 <= face.quality <= 1.0
            # eyes above the mouth, left eye left of the right eye
            assert face.keypoints[0, 0] < face.keypoints[1, 0]
            assert face.keypoints[:2, 1].mean() < face.keypoints[3:, 1].mean()


def test_three_faces_in_obama_and_biden(examples, fast_analyzer):
    assert len(fast_analyzer.analyze(examples / "examples/knn_examples/test/obama_and_biden.jpg")) == 3


@pytest.mark.parametrize("analyzer_name", ["fast_analyzer", "dlib_analyzer"])
def test_same_person_is_more_similar_than_different_people(request, examples, analyzer_name):
    analyzer = request.getfixturevalue(analyzer_name)
    images = examples / "tests" / "test_images"
    obama, obama2, biden = (analyzer.analyze_one(images / n) for n in ("obama.jpg", "obama2.jpg", "biden.jpg"))
    same = analyzer.compare(obama, obama2)
    different = analyzer.compare(obama, biden)
    assert same > different + 0.1
    if analyzer.pack.name == "scrfd-mbf":
        assert same > 0.5 and different < 0.3


def test_analyze_many_embeds_in_one_batch_like_one_by_one(examples, fast_analyzer):
    paths = [examples / "examples" / "two_people.jpg", examples / "tests/test_images/obama.jpg"]
    batched = fast_analyzer.analyze_many(paths)
    single = [fast_analyzer.analyze(p) for p in paths]
    assert [len(f) for f in batched] == [len(f) for f in single] == [2, 1]
    for faces_b, faces_s in zip(batched, single):
        for fb, fs in zip(faces_b, faces_s):
            assert float(fb.embedding @ fs.embedding) > 0.9999


def test_embed_aligned_batch_matches_single_crops(examples, fast_analyzer):
    faces = fast_analyzer.analyze(examples / "examples/knn_examples/test/obama_and_biden.jpg", with_crop=True)
    crops = np.stack([f.crop for f in faces])
    assert crops.shape == (3, 112, 112, 3)
    batch = fast_analyzer.embed_aligned(crops)
    one_by_one = np.vstack([fast_analyzer.embed_aligned(c[None]) for c in crops])
    np.testing.assert_allclose(batch, one_by_one, atol=1e-5)


def test_analyze_one_errors(examples, fast_analyzer):
    with pytest.raises(TooManyFaces):
        fast_analyzer.analyze_one(examples / "examples" / "two_people.jpg", largest=False)
    blank = np.full((240, 320, 3), 127, np.uint8)
    assert fast_analyzer.analyze(blank) == []
    with pytest.raises(NoFace):
        fast_analyzer.analyze_one(blank)


def test_compare_refuses_embeddings_of_another_size(examples, fast_analyzer):
    face = fast_analyzer.analyze_one(examples / "tests/test_images/obama.jpg")
    with pytest.raises(ModelMismatch):
        fast_analyzer.compare(face, Embedding(np.ones(512, np.float32), fast_analyzer.pack.recognizer_id))
    with pytest.raises(TypeError, match="Embedding"):  # a bare vector does not say which model made it
        fast_analyzer.compare(face, face.embedding)


def test_same_size_embeddings_of_another_model_do_not_mix(examples, fast_analyzer, dlib_analyzer):
    """dlib and MobileFaceNet both make 128-d vectors; their spaces must never be compared."""
    photo = examples / "tests/test_images/obama.jpg"
    mbf, dlib = fast_analyzer.analyze_one(photo), dlib_analyzer.analyze_one(photo)
    assert len(mbf.embedding) == len(dlib.embedding) == 128
    assert dlib.recognizer_id == dlib_analyzer.pack.recognizer_id != mbf.recognizer_id
    with pytest.raises(ModelMismatch):
        fast_analyzer.compare(mbf, dlib)
    with pytest.raises(ModelMismatch):
        fast_analyzer.verify(mbf, dlib.as_embedding())


def test_detection_input_size_adapts_to_the_image():
    assert fit_size(250, 250, 640, 32) == (1.0, 256, 256)
    scale, height, width = fit_size(1080, 1920, 640, 32)
    assert scale == pytest.approx(1 / 3) and (height, width) == (384, 640)


def test_liveness_on_the_silent_face_samples(shared, fast_analyzer):
    samples = shared / "data" / "antispoof_samples"
    names = ("image_F1", "image_F2", "image_T1")
    verdicts = {name: fast_analyzer.check_liveness(samples / f"{name}.jpg").is_real() for name in names}
    assert verdicts == {"image_F1": False, "image_F2": False, "image_T1": True}


def test_pose_is_frontal_for_a_frontal_portrait_and_turned_for_a_profile(examples, fast_analyzer):
    frontal = fast_analyzer.analyze_one(examples / "examples" / "obama-480p.jpg")
    assert abs(frontal.pose.yaw) < 20 and abs(frontal.pose.roll) < 15
    mirrored = fast_analyzer.analyze_one(
        np.ascontiguousarray(fast_analyzer.load(examples / "examples" / "obama-480p.jpg")[:, ::-1])
    )
    assert abs(mirrored.pose.yaw + frontal.pose.yaw) < 8


def test_one_liveness_rule():
    """Real only when the real class reaches the threshold: a real class that is merely the largest
    of three (0.45) is not enough (the CLI's old argmax rule said real, the API's said spoof)."""
    assert not LivenessResult((0.30, 0.45, 0.25)).is_real()
    assert LivenessResult((0.10, 0.60, 0.30)).is_real()
    assert LivenessResult((0.30, 0.45, 0.25)).is_real(threshold=0.4)
    assert REAL_THRESHOLD == 0.5


def test_verify_without_calibration_gives_no_verdict(examples, fast_analyzer):
    images = examples / "tests/test_images"
    a, b = fast_analyzer.analyze_one(images / "obama.jpg"), fast_analyzer.analyze_one(images / "obama2.jpg")
    with pytest.raises(FarNotCalibrated, match="1e-3"):  # the calibrated rates are named
        fast_analyzer.verify(a, b, far=0.02)
    uncalibrated = copy.copy(fast_analyzer)
    uncalibrated.calibration = None
    verdict = uncalibrated.verify(a, b)
    assert verdict.match is None and verdict.threshold is None and verdict.similarity > 0.5
    assert uncalibrated.verify(a, b, threshold=0.3).match is True


def test_engine_sessions_do_not_spin_between_calls(fast_analyzer):
    """Detector, recogniser and liveness sessions alternate on the same cores: a session whose
    threads kept spinning after its call would hold the cores the next one needs (2-2.5x slower
    single-image analysis of a group photo, bench/engine_throughput.py)."""
    from faceatlas.engine.runtime import SPINNING

    sessions = [fast_analyzer.detector.session, fast_analyzer.recognizer.session,
                *(session for session, _ in fast_analyzer.liveness_model.members)]
    assert len(sessions) >= 3
    assert [s.get_session_options().get_session_config_entry(SPINNING) for s in sessions] == ["0"] * len(sessions)
