"""Score fusion as a pack (`scrfd-fusion`): MobileFaceNet and fr_feature embed the same SCRFD crop,
their unit vectors are joined (each scaled by 1/sqrt(2)), so the cosine of two joined vectors is
the mean of the two recognisers' cosines and every gallery, index and calibration works unchanged."""

from __future__ import annotations

import numpy as np
import pytest

from faceatlas.engine import FaceAnalyzer, get_pack
from faceatlas.errors import ModelMismatch, RuntimeUnavailable
from tests.lfw_pairs import PHOTOS, decide_known_pairs

PACK = "scrfd-fusion"


@pytest.fixture(scope="module")
def fused(shared) -> FaceAnalyzer:
    return FaceAnalyzer(PACK, announce_license=False)


def test_the_joined_vector_is_both_recognisers_on_the_same_crop(fused, fast_analyzer, shared):
    mit = FaceAnalyzer("yunet-frfeature", announce_license=False)  # the same fr_feature file and input scaling
    lfw = shared / "data" / "lfw" / "images"
    images = [fused.load(lfw / p) for p in PHOTOS]
    faces = [found[0] for found in fused.analyze_many(images, max_faces=1, with_crop=True)]
    crops = [face.crop for face in faces]
    mbf, frf = fast_analyzer.embed_aligned(crops), mit.embed_aligned(crops)
    joined = np.stack([face.embedding for face in faces])
    assert joined.shape == (4, 640)
    np.testing.assert_allclose(np.linalg.norm(joined, axis=1), 1.0, atol=1e-5)
    np.testing.assert_allclose(joined, np.hstack([mbf, frf]) / np.sqrt(2), atol=1e-5)
    # the fused score is the mean of the two recognisers' scores, pair by pair
    np.testing.assert_allclose(joined @ joined.T, ((mbf @ mbf.T) + (frf @ frf.T)) / 2, atol=1e-5)
    # SCRFD places the crop: the MobileFaceNet half is the scrfd-mbf pack's own embedding
    plain = [found[0].embedding for found in fast_analyzer.analyze_many(images, max_faces=1)]
    np.testing.assert_allclose(mbf, np.stack(plain), atol=1e-5)


def test_it_is_its_own_embedding_space(fused, fast_analyzer, examples):
    pack = get_pack(PACK)
    assert pack.embedding_size == 640 and fused.embedding_size == 640
    assert pack.recognizer_id.startswith(get_pack("scrfd-mbf").recognizer_id + "&fr_feature.onnx:")
    assert pack.recognizer_id not in {get_pack(p).recognizer_id for p in ("scrfd-mbf", "yunet-frfeature")}
    assert {f.name for f in pack.core_files} >= {"recognition/mobilefacenet_128d.onnx", "faceplugin/fr_feature.onnx"}
    photo = examples / "tests/test_images/obama.jpg"
    with pytest.raises(ModelMismatch):
        fused.compare(fused.analyze_one(photo), fast_analyzer.analyze_one(photo))
    with pytest.raises(RuntimeUnavailable, match="fused"):
        get_pack(PACK, runtime="int8")


def test_real_lfw_pairs_are_decided_right_at_far_1e4(fused, shared):
    face, same, different = decide_known_pairs(fused, shared)
    assert same.match is True and len(face.embedding) == 640
    for other in different:
        assert other.match is False and same.similarity > other.similarity
