"""``analyze_many`` on several images side by side (``FACEATLAS_PARALLEL_IMAGES``): each lane runs
one-thread sessions of the same model files, so the answer is the one-image-after-the-other answer
(same faces, same order, same vectors), a bad image fails the call as before, and packs with a dlib
part stay on one lane."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from faceatlas.engine import FaceAnalyzer, get_pack
from faceatlas.errors import InvalidImage
from faceatlas.settings import EngineSettings

LFW = Path("data") / "lfw" / "images"
GROUP = ("examples/two_people.jpg", "examples/knn_examples/test/obama_and_biden.jpg",
         "examples/knn_examples/test/kit_with_rose.jpg")


@pytest.fixture(scope="module")
def photos(shared: Path, examples: Path) -> list[Path]:
    people = sorted((shared / LFW).iterdir())[:40:4]
    return [next(p.glob("*.jpg")) for p in people] + [examples / name for name in GROUP]


def _analyzer(lanes: int) -> FaceAnalyzer:
    return FaceAnalyzer(get_pack("scrfd-mbf"), threads=2, announce_license=False,
                        settings=EngineSettings(parallel_images=lanes))


def test_lanes_give_the_same_faces_in_the_same_order(photos: list[Path]) -> None:
    one, lanes = _analyzer(1), _analyzer(3)
    assert one.lane_count(len(photos)) == 1 and lanes.lane_count(len(photos)) == 3
    expected = one.analyze_many(photos, with_crop=True)
    found = lanes.analyze_many(photos, with_crop=True)
    assert [len(f) for f in found] == [len(f) for f in expected]
    assert sum(len(f) for f in found) >= len(photos) + 4  # the group photos hold several faces each
    for got, want in zip(found, expected, strict=True):
        for a, b in zip(got, want, strict=True):
            assert a.recognizer_id == b.recognizer_id
            assert float(a.embedding @ b.embedding) > 0.99999
            np.testing.assert_allclose(a.bbox, b.bbox, atol=1e-3)
            assert a.crop is not None and a.crop.shape == b.crop.shape


def test_a_bad_image_fails_the_call_in_any_lane(photos: list[Path]) -> None:
    with pytest.raises(InvalidImage):
        _analyzer(2).analyze_many([*photos[:5], b"not an image", *photos[5:]])


def test_lane_count_rules() -> None:
    analyzer = _analyzer(4)
    assert analyzer.lane_count(1) == 1  # one image: nothing to split
    assert analyzer.lane_count(3) == 3  # at most one lane per image
    assert analyzer.lane_count(100) == 4
    default = FaceAnalyzer(get_pack("scrfd-mbf"), threads=2, announce_license=False, settings=EngineSettings())
    assert default.lane_count(100) == 2  # default: the intra-op threads
    single = FaceAnalyzer(get_pack("scrfd-mbf"), threads=1, announce_license=False, settings=EngineSettings())
    assert single.lane_count(100) == 1  # Ray actors and one-core processes work on one image at a time


def test_packs_with_a_dlib_part_stay_on_one_lane(shared: Path) -> None:
    for name in ("yunet-dlib", "dlib"):
        analyzer = FaceAnalyzer(get_pack(name), threads=2, announce_license=False,
                                settings=EngineSettings(parallel_images=2))
        assert analyzer.lane_count(10) == 1


def test_openvino_stays_on_one_lane() -> None:
    analyzer = FaceAnalyzer(get_pack("scrfd-mbf"), threads=2, announce_license=False,
                            settings=EngineSettings(parallel_images=2, provider="openvino"))
    assert analyzer.lane_count(10) == 1
