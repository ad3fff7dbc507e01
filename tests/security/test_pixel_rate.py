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
    key = api.accounts.create_key("pixels2", ["detect"], rate_per_second=0.001, burst=12).token
    with api.client(key) as http:
        assert [http.post("/v1/detect", files={"image": ("s.jpg", small, "image/jpeg")}).status_code
                for _ in range(4)] == [200] * 4  # 8 tokens left of 12
        refused = http.post("/v1/detect", files={"image": ("b.jpg", _bomb(), "image/jpeg")})
        assert refused.status_code == 429 and refused.json()["error"]["code"] == "rate_limited"  # payable later
        assert "36,000,000" not in refused.text and "cost 9 calls" in refused.text
        assert [http.post("/v1/detect", files={"image": ("s.jpg", small, "image/jpeg")}).status_code
                for _ in range(8)] == [200] * 7 + [429]  # the refused call's own token was spent
    assert api.accounts.calls_this_month("pixels2") == 11


def test_an_image_costing_more_than_the_key_s_burst_is_413_not_a_429_forever(api, examples) -> None:
    """A call whose pixels cost more tokens than the key's bucket can hold answered 429 with
    Retry-After to every retry (the bucket never holds more than the burst): it is refused as too
    large, unbilled, and the tokens stay for the next calls."""
    small = (examples / "tests" / "test_images" / "obama.jpg").read_bytes()
    api.accounts.create_tenant("pixels3")
    key = api.accounts.create_key("pixels3", ["detect"], rate_per_second=1000, burst=4).token
    with api.client(key) as http:
        for _ in range(3):  # a full bucket each time (1000 tokens a second): a retry changed nothing
            refused = http.post("/v1/detect", files={"image": ("b.jpg", _bomb(), "image/jpeg")})
            assert refused.status_code == 413 and refused.json()["error"]["code"] == "image_too_large", refused.text
            assert "retry-after" not in refused.headers
            assert "cost 9 calls" in refused.text and "burst (4)" in refused.text
        assert http.post("/v1/detect", files={"image": ("s.jpg", small, "image/jpeg")}).status_code == 200
    assert api.accounts.calls_this_month("pixels3") == 1


def test_an_image_over_the_pixel_limit_is_refused_unbilled_as_one_over_the_burst(api, examples) -> None:
    """Two 413s for oversized images were billed differently: one costing more than the key's burst
    was neither recorded nor counted, one over the server's pixel limit (81 MP, found while reading
    its header) was billed as a call with an error. A call refused for its size is never billed."""
    small = (examples / "tests" / "test_images" / "obama.jpg").read_bytes()
    out = io.BytesIO()
    Image.new("L", (9000, 9000), 128).save(out, format="PNG")
    assert len(out.getvalue()) < 1_000_000
    api.accounts.create_tenant("pixels4")
    key = api.accounts.create_key("pixels4", ["detect"], rate_per_second=0.001, burst=3).token
    with api.client(key) as http:
        over_limit = http.post("/v1/detect", files={"image": ("b.png", out.getvalue(), "image/png")})
        over_burst = http.post("/v1/detect", files={"image": ("b.jpg", _bomb(), "image/jpeg")})
        assert over_limit.status_code == 413 and "81.0 MP" in over_limit.text, over_limit.text
        assert over_burst.status_code == 413 and "burst (3)" in over_burst.text, over_burst.text
        assert http.post("/v1/detect", files={"image": ("s.jpg", small, "image/jpeg")}).status_code == 200
    with api.client(api.accounts.create_key("pixels4", ["admin"], rate_per_second=100, burst=100).token) as admin:
        rows = admin.get("/v1/usage").json()["rows"]
    assert api.accounts.calls_this_month("pixels4") == 1
    assert [(row["operation"], row["calls"], row["errors"]) for row in rows] == [("detect", 1, 0)]
