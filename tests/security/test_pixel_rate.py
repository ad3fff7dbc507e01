"""Decoded pixels count against the key's rate (issue 15, item 6): a small file of a huge image
spends one rate-limit token per FACEATLAS_PIXELS_PER_TOKEN (4 MP) of it, read from the header."""

from __future__ import annotations

import io

from PIL import Image


def _bomb() -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (6000, 6000), (128, 128, 128)).save(out, format="JPEG", quality=50)
    return out.getvalue()  # 36 MP: 9 tokens


def test_a_huge_image_spends_the_rate_of_its_pixels(api, examples) -> None:
    small = (examples / "tests" / "test_images" / "obama.jpg").read_bytes()
    bomb = _bomb()
    assert len(bomb) < 1_000_000  # well under the upload limit
    api.accounts.create_tenant("pixels")
    key = api.accounts.create_key("pixels", ["detect"], rate_per_second=0.001, burst=20).token
    with api.client(key) as http:
        assert http.post("/v1/detect", files={"image": ("b.jpg", bomb, "image/jpeg")}).status_code == 200
        statuses = [http.post("/v1/detect", files={"image": ("s.jpg", small, "image/jpeg")}).status_code
                    for _ in range(12)]
    assert statuses == [200] * 11 + [429]  # 20 tokens: 9 for the bomb (36 MP), 1 each for 11 small calls


def test_a_huge_image_beyond_the_tokens_left_is_refused_and_not_billed(api, examples) -> None:
    small = (examples / "tests" / "test_images" / "obama.jpg").read_bytes()
    api.accounts.create_tenant("pixels2")
    key = api.accounts.create_key("pixels2", ["detect"], rate_per_second=0.001, burst=4).token
    with api.client(key) as http:
        refused = http.post("/v1/detect", files={"image": ("b.jpg", _bomb(), "image/jpeg")})
        assert refused.status_code == 429 and refused.json()["error"]["code"] == "rate_limited"
        assert "36,000,000" not in refused.text and "cost 9 calls" in refused.text
        assert [http.post("/v1/detect", files={"image": ("s.jpg", small, "image/jpeg")}).status_code
                for _ in range(4)] == [200, 200, 200, 429]
    assert api.accounts.calls_this_month("pixels2") == 3
