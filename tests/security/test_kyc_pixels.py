"""Decode bombs through the verification route and the console's drawing (audit 14): every frame
of a KYC submission spends the rate of its pixels (not only the first), a submission whose images
would decode to more than ``KycConfig.max_submission_pixels`` is refused from the headers, and
the console decodes a photo only as large as it draws it."""

from __future__ import annotations

import base64
import io
import time
from functools import lru_cache

import cv2
import numpy as np
from PIL import Image

from faceatlas.engine import Face
from faceatlas.service.console.draw import BOX, faces_png


@lru_cache
def _bomb() -> bytes:
    out = io.BytesIO()
    Image.new("L", (6000, 6000), 128).save(out, format="PNG")
    return out.getvalue()  # 36 MP in about 50 kB: 9 tokens of 4 MP


def _document() -> bytes:
    return cv2.imencode(".jpg", np.full((560, 800, 3), 200, np.uint8))[1].tobytes()


def _files(frames: int) -> list:
    return [("document", ("id.jpg", _document(), "image/jpeg"))] + [
        ("frame", (f"{i}.png", _bomb(), "image/png")) for i in range(frames)]


def test_every_frame_spends_the_rate_of_its_pixels(api, loads) -> None:
    api.accounts.create_tenant("kycpixels")
    key = api.accounts.create_key("kycpixels", ["detect"], rate_per_second=0.001, burst=20).token
    with api.client(key) as http:
        session = http.post("/v1/kyc/sessions").json()  # 1 token
        refused = http.post(f"/v1/kyc/sessions/{session['id']}/submit", files=_files(3), data={"fps": "10"})
        assert refused.status_code == 413 and refused.json()["error"]["code"] == "image_too_large"  # > the burst
        assert "cost 25 calls" in refused.text  # 1 + 8 per 36 MP frame (the first frame alone was 9)
        assert http.get(f"/v1/kyc/sessions/{session['id']}").json()["status"] == "pending"
    assert (6000, 6000) not in loads
    assert api.accounts.calls_this_month("kycpixels") == 0


def test_a_submission_of_bomb_frames_is_refused_without_decoding(api, loads) -> None:
    api.accounts.create_tenant("kycbomb")
    key = api.accounts.create_key("kycbomb", ["detect"], rate_per_second=0.001, burst=1000).token
    with api.client(key) as http:
        session = http.post("/v1/kyc/sessions").json()
        started = time.perf_counter()
        refused = http.post(f"/v1/kyc/sessions/{session['id']}/submit", files=_files(4), data={"fps": "10"})
        seconds = time.perf_counter() - started
        assert refused.status_code == 413, refused.text
        error = refused.json()["error"]
        assert error["code"] == "image_too_large" and "120 MP one submission may" in error["message"]
        assert http.get(f"/v1/kyc/sessions/{session['id']}").json()["status"] == "pending"  # not used up
    assert (6000, 6000) not in loads  # the 144 MP were never decoded (about 2 s each here)
    assert seconds < 10, seconds  # not 4 decodes of 2 s (with a loaded machine's slack)


def test_the_console_decodes_a_photo_only_as_large_as_it_draws_it(loads) -> None:
    photo = np.full((3000, 4000, 3), 90, np.uint8)
    data = cv2.imencode(".jpg", photo)[1].tobytes()
    face = Face(bbox=np.array([1000.0, 500.0, 2000.0, 1500.0]), det_score=0.9,
                keypoints=np.array([[1300, 900], [1700, 900], [1500, 1100], [1350, 1300], [1650, 1300]], float))
    url = faces_png(data, [face])
    assert max(max(size) for size in loads) <= 1000  # a 4000 x 3000 JPEG decoded at 1/4 in its codec
    png = base64.b64decode(url.split(",", 1)[1])
    drawn = cv2.imdecode(np.frombuffer(png, np.uint8), cv2.IMREAD_COLOR)
    assert drawn.shape == (480, 640, 3)
    assert tuple(drawn[80 + 40, 160]) == BOX  # the box's left edge, at the original's (1000, 500..1500) / 6.25
    assert tuple(drawn[240, 120]) == (90, 90, 90)  # outside it, the photo
