"""POST /v1/ar/effects: one image in, the image with AR effects out (metered like /v1/detect)."""

from __future__ import annotations

import cv2
import numpy as np


def test_ar_effects_returns_the_image_with_glasses(api, examples):
    photo = examples / "examples" / "obama-480p.jpg"
    with api.client("acme_detect") as client:
        response = client.post("/v1/ar/effects", params=[("effect", "glasses"), ("effect", "smooth"),
                                                          ("format", "png")],
                               files={"image": (photo.name, photo.read_bytes(), "image/jpeg")})
        unknown = client.post("/v1/ar/effects", params={"effect": "sparkles"},
                              files={"image": (photo.name, photo.read_bytes(), "image/jpeg")})
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "image/png"
    assert response.headers["x-faces"] == "1"
    out = cv2.imdecode(np.frombuffer(response.content, np.uint8), cv2.IMREAD_COLOR)
    original = cv2.imread(str(photo))
    assert out.shape == original.shape
    assert (np.abs(out.astype(int) - original).max(axis=2) > 60).sum() > 300
    assert unknown.status_code == 422  # an argument's unknown value, as every other (it was 400)
    assert unknown.json()["error"]["code"] == "unknown_effect"
    jpeg = api.api_client("acme_detect").ar_effects(photo, ["glasses"])  # the Python client: the JPEG's bytes
    assert cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_COLOR).shape == original.shape


def test_ar_effects_needs_a_key(api, examples):
    photo = examples / "examples" / "obama-480p.jpg"
    with api.client() as client:
        response = client.post("/v1/ar/effects", params={"effect": "glasses"},
                               files={"image": (photo.name, photo.read_bytes(), "image/jpeg")})
    assert response.status_code == 401
