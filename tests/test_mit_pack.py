"""The commercially usable pack `yunet-frfeature` (YuNet MIT + Faceplugin fr_feature MIT + MiniFASNet
Apache-2.0): it loads from pinned files, says its licences, embeds real LFW faces, and its shipped
calibration decides real pairs at FAR 1e-4."""

from __future__ import annotations

import logging

import pytest

from faceatlas.engine import FaceAnalyzer, get_pack
from faceatlas.settings import DEFAULT_PACK
from tests.lfw_pairs import decide_known_pairs

PACK = "yunet-frfeature"


@pytest.fixture(scope="module")
def mit(shared) -> FaceAnalyzer:
    return FaceAnalyzer(PACK, announce_license=False)


def test_every_file_is_pinned_and_commercially_usable():
    pack = get_pack(PACK)
    assert pack.recognizer.embedding_size == 512
    for model in pack.files:
        assert model.sha256 is not None and len(model.sha256) == 64, model.name
        assert model.url is not None or model.name.startswith("attributes/"), model.name
        assert model.license.startswith(("MIT", "Apache-2.0")), model.license
    assert pack.attributes is not None and pack.attributes.age is None  # no commercially usable age model here
    assert DEFAULT_PACK == PACK  # it beats dlib on LFW and speed (README's pack table, bench/pack_speed.py)


def test_the_licences_are_shown_at_load(shared, caplog):
    from faceatlas.engine import analyzer as analyzer_module

    analyzer_module._announced.discard(PACK)
    with caplog.at_level(logging.INFO, logger="faceatlas"):
        FaceAnalyzer(PACK)
    shown = " ".join(r.getMessage() for r in caplog.records if PACK in r.getMessage())
    assert "MIT (Faceplugin" in shown and "MIT (OpenCV Zoo YuNet)" in shown and "Apache-2.0" in shown
    assert not any(r.levelno >= logging.WARNING for r in caplog.records if PACK in r.getMessage())


def test_real_lfw_pairs_are_decided_right_at_far_1e4(mit, shared):
    face, same, different = decide_known_pairs(mit, shared)
    for other in different:
        assert same.similarity > other.similarity
        assert other.match is False
    assert same.match is True and len(face.embedding) == 512


def test_liveness_tells_silent_face_samples_apart(mit, shared):
    samples = shared / "data" / "antispoof_samples"
    assert mit.check_liveness(samples / "image_T1.jpg").is_real()
    assert not mit.check_liveness(samples / "image_F2.jpg").is_real()


def test_fr_liveness_reads_its_real_class_first(mit, shared):
    """fr_liveness (MIT; class 0 = live, 128x128 raw BGR) is wired like MiniFASNet; it lost the
    comparison (bench/liveness_compare.py) but stays usable: it tells Silent-Face's samples apart."""
    from faceatlas.engine import resolve
    from faceatlas.engine.liveness import LivenessMember, MiniFASNet
    from faceatlas.engine.packs import FACEPLUGIN_LIVENESS

    model = MiniFASNet([LivenessMember(resolve(s.file), s.scale, s.size, s.real_class) for s in FACEPLUGIN_LIVENESS])
    samples = shared / "data" / "antispoof_samples"
    verdicts = {}
    for name in ("image_F1.jpg", "image_F2.jpg", "image_T1.jpg"):
        image = mit.load(samples / name)
        verdicts[name] = model.predict(image, mit.detect(image).boxes[0]).is_real()
    assert verdicts == {"image_F1.jpg": False, "image_F2.jpg": False, "image_T1.jpg": True}


def test_yunet_detects_from_two_threads_at_different_sizes(mit, examples):
    """cv2.FaceDetectorYN keeps its last input size: two cameras (threads) at different sizes
    once broke it; each thread now has its own."""
    from concurrent.futures import ThreadPoolExecutor

    images = [mit.load(examples / "examples" / "two_people.jpg"),
              mit.load(examples / "examples" / "knn_examples" / "test" / "kit_with_rose.jpg")]
    assert images[0].shape != images[1].shape
    with ThreadPoolExecutor(2) as pool:
        counts = list(pool.map(lambda image: len(mit.detect(image)), images * 10))
    assert counts == [2, 2] * 10
