"""Fixtures of the verification tests: the clips and cards made from the shared assets."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import cv2
import pytest

pytest.importorskip("mediapipe")

from faceatlas.apps.kyc import KycConfig, KycService
from faceatlas.db import create_database_engine

from .media import clip, encode_mp4, render_card

# Labels of driver_night_cabin.mp4 (tests/drive/test_video.py, read off the frames): a blink with
# eyes shut on 362-363 in the night close-up (150-520); in the wide shot (940-1000, the driver in
# the left half) a squinting blink on 953-958, then a head turn towards the image's right (the
# driver's own left) from 966, held from 975; people sit behind him.
NIGHT = "data/videos/driver_night_cabin.mp4"
HAMILTON = "data/face_recognition_examples/examples/short_hamilton_clip.mp4"
MIRANDA = "data/face_recognition_examples/examples/lin-manuel-miranda.png"
LFW_PERSON = "data/lfw/images/George_W_Bush/George_W_Bush_0007.jpg"  # another person than the night driver
CARS = "data/videos/car-detection.mp4"  # a street seen from above: no face


@pytest.fixture(scope="session")
def night(shared: Path) -> Path:
    return shared / NIGHT


@pytest.fixture(scope="session")
def night_card(night: Path) -> bytes:
    """The driver's ID card, printed from a frame of another part of the close-up (frame 200)."""
    return render_card(clip(night, 200, 201, max_side=1280)[0], "Night_Driver", 2, photo_crop=(0.3, 0.05, 0.7, 0.95))


@pytest.fixture(scope="session")
def night_blink(night: Path) -> bytes:
    """2 s of the close-up with one blink (eyes shut on 362-363)."""
    return encode_mp4(clip(night, 345, 395))


@pytest.fixture(scope="session")
def miranda_card(shared: Path) -> bytes:
    return render_card(shared / MIRANDA, "Lin_Manuel_Miranda", 1)


@pytest.fixture(scope="session")
def lfw_card(shared: Path) -> bytes:
    """The ID card of an LFW person (not the night driver): the document of an impostor's session."""
    return render_card(shared / LFW_PERSON, "George_W_Bush", 7)


@pytest.fixture
def service(tmp_path: Path, fast_analyzer) -> Iterator[KycService]:
    engine = create_database_engine(f"sqlite:///{tmp_path / 'kyc.db'}")
    yield KycService(engine, fast_analyzer, KycConfig())
    engine.dispose()


def still(path: Path) -> cv2.typing.MatLike:
    image = cv2.imread(str(path))
    assert image is not None, path
    return image
