"""POST /v1/ar/effects limits: at most MAX_EFFECTS effects (422 beyond), and without the [ar] extra
(MediaPipe) a clear 503 with the install hint instead of a 500. The app in process over SQLite."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from types import SimpleNamespace

import pytest
from fastapi.testclient import TestClient

from faceatlas.apps.ar import MAX_EFFECTS, apply_effects
from faceatlas.db import create_database_engine
from faceatlas.errors import InvalidArgument
from faceatlas.service import create_app
from faceatlas.service.accounts import Accounts
from faceatlas.service.db import migrate
from faceatlas.settings import ServiceSettings


@pytest.fixture(scope="module")
def service(new_database, fast_analyzer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[SimpleNamespace]:
    folder = tmp_path_factory.mktemp("ar_api")
    with new_database("sqlite", folder) as database_url:
        engine = create_database_engine(database_url)
        migrate(engine)
        accounts = Accounts(engine)
        accounts.create_tenant("acme", "Acme")
        key = accounts.create_key("acme", ["detect"], rate_per_second=500, burst=500).token
        settings = ServiceSettings(database_url=database_url, index_dir=folder / "indexes", pack="scrfd-mbf",
                                   workers=1)
        with TestClient(create_app(settings, analyzer=fast_analyzer),
                        headers={"Authorization": f"Bearer {key}"}) as http:
            yield SimpleNamespace(http=http)
        engine.dispose()


@pytest.fixture(scope="module")
def photo(examples) -> tuple[str, bytes, str]:
    path = examples / "examples" / "obama-480p.jpg"
    return path.name, path.read_bytes(), "image/jpeg"


def test_the_effect_list_is_capped(service, photo):
    at_cap = service.http.post("/v1/ar/effects", params=[("effect", "glasses")] * MAX_EFFECTS,
                               files={"image": photo})
    over = service.http.post("/v1/ar/effects", params=[("effect", "glasses")] * (MAX_EFFECTS + 1),
                             files={"image": photo})
    assert at_cap.status_code == 200, at_cap.text
    assert at_cap.headers["x-faces"] == "1"
    assert over.status_code == 422, over.text[:300]
    assert over.json()["error"]["code"] == "validation_error"
    assert "effect" in over.json()["error"]["message"]
    with pytest.raises(InvalidArgument, match=f"at most {MAX_EFFECTS} effects"):  # the use case itself
        apply_effects(photo[1], ["glasses"] * (MAX_EFFECTS + 1))


def test_without_mediapipe_the_answer_is_503_with_the_install_hint(service, photo, monkeypatch):
    # MediaPipe is installed here (the [test] extra pulls in [ar]); the only way to take it away in this
    # process is to make its import fail: a None in sys.modules raises ImportError on import.
    for name in [n for n in sys.modules if n == "mediapipe" or n.startswith("mediapipe.")] + ["mediapipe"]:
        monkeypatch.setitem(sys.modules, name, None)
    for effects in (["glasses"], ["blur-background"]):
        response = service.http.post("/v1/ar/effects", params=[("effect", e) for e in effects],
                                     files={"image": photo})
        assert response.status_code == 503, response.text[:300]
        error = response.json()["error"]
        assert error["code"] == "provider_missing"
        assert "pip install 'faceatlas[ar]'" in error["message"] and "MediaPipe" in error["message"]


def test_a_very_wide_image_has_no_face_not_a_500(service, examples):
    """A 5000x1 PNG was downscaled to 0 pixel rows for Face Mesh: a cv2.error and a 500."""
    import cv2

    photo = cv2.imread(str(examples / "examples" / "obama-480p.jpg"))
    for size in ((5000, 1), (5000, 4)):
        ok, png = cv2.imencode(".png", cv2.resize(photo, size, interpolation=cv2.INTER_AREA))
        response = service.http.post("/v1/ar/effects", params=[("effect", "glasses"), ("effect", "blur-background")],
                                     files={"image": ("wide.png", png.tobytes(), "image/png")})
        assert response.status_code == 200, response.text[:300]
        assert response.headers["x-faces"] == "0"
