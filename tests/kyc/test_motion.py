"""The active challenge on real motion: the night clip's labelled blink and head turn, asked in
the order the driver did them and in the other order (a replayed clip does not follow it)."""

from __future__ import annotations

from pathlib import Path

import pytest

from faceatlas.apps.kyc import KycConfig, decode_video
from faceatlas.apps.kyc.motion import Sample, check_challenge, mesh_samples

from .media import clip, encode_mp4

CONFIG = KycConfig()


@pytest.fixture(scope="module")
def wide_shot(night: Path) -> list[Sample]:
    """Frames 940-999, the driver's half of the wide shot: a blink (953-958), then a turn to his left."""
    selfie = decode_video(encode_mp4(clip(night, 940, 1000, (0.0, 0.0, 0.5, 1.0))), CONFIG)
    return mesh_samples(selfie.frames, selfie.times, CONFIG)


def test_the_labelled_actions_are_seen_in_order(wide_shot: list[Sample]) -> None:
    seen = check_challenge(wide_shot, [], CONFIG).seen
    assert [e.action for e in seen] == ["blink", "turn_left"]
    blink, turn = seen
    assert 12 / 25 <= blink.start <= 16 / 25  # the eyes close on frames 953-955
    assert 24 / 25 <= turn.start <= 35 / 25  # the head turns from frame 966 and is turned by 975
    assert all(s.faces >= 1 for s in wide_shot)


def test_the_order_asked_is_the_order_done(wide_shot: list[Sample]) -> None:
    assert check_challenge(wide_shot, ["blink", "turn_left"], CONFIG).passed
    replayed = check_challenge(wide_shot, ["turn_left", "blink"], CONFIG)  # the clip does not follow this order
    assert not replayed.passed and replayed.failed_step == 1
    assert not check_challenge(wide_shot, ["turn_right"], CONFIG).passed
    assert not check_challenge(wide_shot, ["look_up"], CONFIG).passed
    assert not check_challenge(wide_shot, ["open_mouth"], CONFIG).passed


def test_time_allowed_and_mirrored_camera(wide_shot: list[Sample]) -> None:
    hurried = KycConfig(step_s=0.3)  # the blink comes 0.5 s after the first frame
    assert check_challenge(wide_shot, ["blink", "turn_left"], hurried).failed_step == 0
    mirrored = KycConfig(mirrored=True)  # a mirrored selfie camera: the same turn is the person's right
    assert check_challenge(wide_shot, ["blink", "turn_right"], mirrored).passed
