"""The active challenge on real motion: the night clip's labelled blink and head turn, asked in
the order the driver did them and in the other order (a replayed clip does not follow it)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from faceatlas.apps.kyc import KycConfig, decode_video
from faceatlas.apps.kyc.motion import Sample, check_challenge, mesh_samples
from faceatlas.engine.image import decode_image
from faceatlas.errors import FaceAtlasError, ImageTooLarge

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


def test_a_clip_that_starts_later_than_0_is_read_from_its_first_frame(night: Path) -> None:
    """A clip cut from a longer recording (its first frame at 15 s) was "the selfie video has no
    frames" (frame times were compared with max_video_s as they came)."""
    frames = clip(night, 940, 1000, (0.0, 0.0, 0.5, 1.0))
    later = decode_video(encode_mp4(frames, first_s=15.0), CONFIG)
    at_zero = decode_video(encode_mp4(frames), CONFIG)
    assert len(later.frames) == len(at_zero.frames) == 60
    assert later.times == pytest.approx(at_zero.times, abs=1e-3) and later.times[0] == 0.0
    assert [e.action for e in check_challenge(mesh_samples(later.frames, later.times, CONFIG), [], CONFIG).seen] \
        == ["blink", "turn_left"]


def test_a_video_of_more_frames_than_a_camera_gives_is_refused_early() -> None:
    """A small file of a flat 1080p picture at 90,000 frames a second (1.4 MB) was decoded frame by
    frame, 13 s of a worker for 7 frames kept; a 15 MB one minutes. Decoding stops at the bound."""
    flat = np.full((1080, 1920, 3), 128, np.uint8)
    flat[::8] = 100
    config = KycConfig(max_video_s=1.0)  # bound: 1 s of 4K at 30 fps in pixels, 128 frames of 1080p
    crowded = encode_mp4([flat] * 300, ticks=1)  # 300 frames in 3.3 ms
    with pytest.raises(ImageTooLarge, match=r"more frames than FaceAtlas decodes \(129 of 1920x1080"):
        decode_video(crowded, config)
    usual = decode_video(encode_mp4([flat] * 30, fps=30), config)  # a camera's rate: read whole
    assert len(usual.frames) == 30


@pytest.mark.parametrize("data", [b"", b"not a video at all" * 100, b"\x00" * 64])
def test_a_selfie_video_that_does_not_decode_is_refused_as_a_photo_that_does_not(data: bytes) -> None:
    """An empty selfie video was `invalid_image` and an undecodable one `bad_request`, while the same
    bytes sent as a photo are `empty_image` / `invalid_image`: one code per failure, whatever the medium."""
    with pytest.raises(FaceAtlasError) as as_photo:
        decode_image(data)
    with pytest.raises(FaceAtlasError) as as_video:
        decode_video(data, CONFIG)
    assert as_video.value.code == as_photo.value.code, str(as_video.value)
