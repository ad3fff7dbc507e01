"""Decode bombs in a submission (audit 14): small files of huge images as the selfie's frames or the
document are counted from their headers and refused before any is decoded; frames within the
bound decode reduced to the size the checks use."""

from __future__ import annotations

import io
from functools import lru_cache

import cv2
import numpy as np
import pytest
from PIL import Image

from faceatlas.apps.kyc import KycConfig, KycService, decode_frames
from faceatlas.apps.kyc.checks import check_pixels
from faceatlas.apps.kyc.selfie import MAX_SIDE, frames_pixels
from faceatlas.errors import ImageTooLarge


@lru_cache
def bomb(side: int = 6000, kind: str = "PNG") -> bytes:
    """One grey ``side`` x ``side`` image: 36 MP in about 50 kB as a PNG."""
    out = io.BytesIO()
    Image.new("L", (side, side), 128).save(out, format=kind)
    return out.getvalue()


def _jpeg(width: int, height: int, seed: int = 0) -> bytes:
    """A JPEG with detail (smooth blobs), so that reduced and full decodes can be compared."""
    rng = np.random.default_rng(seed)
    small = rng.integers(0, 255, (height // 40, width // 40, 3), dtype=np.uint8)
    image = cv2.resize(small, (width, height), interpolation=cv2.INTER_CUBIC)
    return cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, 90])[1].tobytes()


def test_bomb_frames_are_refused_before_any_is_decoded(service: KycService, loads: list) -> None:
    document = _jpeg(800, 560)
    created = service.create("acme", ["blink"])
    assert len(bomb()) < 200_000  # 4 of them are well within an upload limit
    with pytest.raises(ImageTooLarge, match="120 MP one submission may") as refused:
        service.submit("acme", created.id, document, frames=[bomb()] * 4, fps=10)
    assert refused.value.code == "image_too_large" and refused.value.status == 413
    assert loads == []  # nothing decoded: the headers said it all
    assert service.get("acme", created.id).status == "pending"  # not used up


def test_a_frame_above_the_engines_limit_is_refused_before_the_others_decode(
        service: KycService, loads: list, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(service.analyzer, "max_pixels", 20_000_000)  # the analyzer's limit, not the environment's
    small = [_jpeg(640, 360, seed) for seed in range(5)]
    created = service.create("acme", ["blink"])
    with pytest.raises(ImageTooLarge, match="36.0 MP is more than the 20.0 MP"):
        service.submit("acme", created.id, _jpeg(800, 560), frames=[*small, bomb()], fps=10)
    assert loads == []


def test_frames_decode_reduced_to_what_the_checks_use(loads: list) -> None:
    config = KycConfig()
    frames = [_jpeg(2560, 1440), _jpeg(1280, 720, 1), _jpeg(640, 360, 2), bomb(6000, "JPEG")]
    # What decoding costs, from the headers: a JPEG at its codec's 1/4 and 1/2 scale, the bomb at 1/8.
    assert list(frames_pixels(frames, config)) == [640 * 360, 640 * 360, 640 * 360, 750 * 750]
    selfie = decode_frames(frames, config)
    assert set(loads) == {(640, 360), (750, 750)}  # decoded no larger than that
    assert [f.shape for f in selfie.frames] == [(360, 640, 3)] * 3 + [(640, 640, 3)]
    # The same pictures as a full decode shrunk to MAX_SIDE (what the checks saw before).
    full = cv2.imdecode(np.frombuffer(frames[0], np.uint8), cv2.IMREAD_COLOR)
    shrunk = cv2.resize(full, (MAX_SIDE, 360), interpolation=cv2.INTER_AREA)
    assert np.abs(selfie.frames[0].astype(int) - shrunk).mean() < 3.0
    # A PNG cannot decode reduced: it counts at full size; the document as the engine reduces it (16 MP).
    assert list(frames_pixels([bomb()], config)) == [36_000_000]


def test_the_document_counts_as_the_engine_decodes_it(fast_analyzer) -> None:
    config = KycConfig()
    assert check_pixels(fast_analyzer, bomb(6000, "JPEG"), config) == 3000 * 3000  # above work_pixels: 1/2
    assert check_pixels(fast_analyzer, bomb(), config, [bomb()] * 2) == 3 * 36_000_000
    with pytest.raises(ImageTooLarge):
        check_pixels(fast_analyzer, bomb(), config, [bomb()] * 3)
    assert check_pixels(fast_analyzer, bomb(), KycConfig(max_submission_pixels=200_000_000), [bomb()] * 3) == 144e6


@pytest.mark.parametrize(("width", "height"), [(40000, 2), (1, 1400), (20000, 3)])
def test_a_very_thin_selfie_decodes_to_frames_of_at_least_a_pixel(width: int, height: int) -> None:
    """A 40000x2 PNG sent as the selfie video (one frame) was resized to 640x0: an OpenCV error, a 500
    from the API and a traceback (exit 1, "refused") from `kyc verify`. Its frames now keep a pixel on
    each side and the checks refuse it as a selfie without a face."""
    from faceatlas.apps.kyc.selfie import decode_video

    out = io.BytesIO()
    Image.new("RGB", (width, height), (90, 120, 150)).save(out, format="PNG")
    selfie = decode_video(out.getvalue(), KycConfig())
    assert len(selfie.frames) == 1 and min(selfie.frames[0].shape[:2]) >= 1
    assert max(selfie.frames[0].shape[:2]) == min(MAX_SIDE, max(width, height))
