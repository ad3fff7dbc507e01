"""Issue: a model file the server cannot use was answered with what only its operator should read:
a corrupt liveness model as 500 ``model_integrity`` naming the file's path, its sha256 and "Delete it
and fetch it again", a missing one as 503 ``model_missing`` listing the folders searched, the cache
and the download URL. The client gets the code with a generic message; the server log gets the
detail; the CLI still prints it (it is its user's installation)."""

from __future__ import annotations

import logging
import time
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from faceatlas.db import create_database_engine
from faceatlas.engine import FaceAnalyzer
from faceatlas.service import create_app
from faceatlas.service.accounts import Accounts
from faceatlas.service.db import migrate
from faceatlas.settings import EngineSettings, ServiceSettings

LIVENESS = "antispoof/2.7_80x80_MiniFASNetV2.onnx"


@pytest.fixture
def models(shared: Path, tmp_path: Path) -> Path:
    """The shared model folder as links, the first liveness model a file of garbage."""
    folder = tmp_path / "models"
    for source in (shared / "models").rglob("*"):
        if source.is_file():
            (folder / source.relative_to(shared / "models")).parent.mkdir(parents=True, exist_ok=True)
            (folder / source.relative_to(shared / "models")).symlink_to(source)
    (folder / LIVENESS).unlink()
    (folder / LIVENESS).write_bytes(b"not a model " * 100)
    return folder


def test_a_model_file_fault_answers_its_code_without_the_servers_paths(models, tmp_path, examples, caplog):
    settings = EngineSettings(model_dir=str(models), cache=tmp_path / "cache", offline=True)
    analyzer = FaceAnalyzer("scrfd-mbf", settings=settings, announce_license=False)
    database_url = f"sqlite:///{tmp_path / 'faceatlas.db'}"
    engine = create_database_engine(database_url)
    migrate(engine)
    accounts = Accounts(engine)
    accounts.create_tenant("acme", "Acme")
    key = accounts.create_key("acme", ["detect"], rate_per_second=100, burst=100).token
    app = create_app(ServiceSettings(database_url=database_url, index_dir=tmp_path / "indexes", pack="scrfd-mbf",
                                     workers=1), analyzer=analyzer)
    photo = (examples / "tests" / "test_images" / "obama.jpg").read_bytes()
    try:
        with TestClient(app, headers={"Authorization": f"Bearer {key}"}) as client, \
                caplog.at_level(logging.ERROR, logger="faceatlas.service.errors"):
            corrupt = client.post("/v1/liveness", files={"image": ("a.jpg", photo)})
            (models / LIVENESS).unlink()
            missing = client.post("/v1/liveness", files={"image": ("a.jpg", photo)})
    finally:
        engine.dispose()
    assert (corrupt.status_code, corrupt.json()["error"]["code"]) == (500, "model_integrity"), corrupt.text
    assert (missing.status_code, missing.json()["error"]["code"]) == (503, "model_missing"), missing.text
    for answer in (corrupt, missing):
        message = answer.json()["error"]["message"]
        assert str(tmp_path) not in answer.text and "MiniFASNet" not in message and "http" not in message
        assert "Delete it" not in message and "sha256" not in message and "server log" in message
    assert f"{models / LIVENESS}" in caplog.text  # the operator reads what the client is not told
    assert "model_integrity" in caplog.text and "model_missing" in caplog.text


def test_the_cli_still_says_which_file_and_what_to_do(models, tmp_path, examples, monkeypatch):
    from typer.testing import CliRunner

    from faceatlas.cli.main import app

    monkeypatch.setenv("FACEATLAS_MODEL_DIR", str(models))
    monkeypatch.setenv("FACEATLAS_CACHE", str(tmp_path / "cache"))
    photo = examples / "tests" / "test_images" / "obama.jpg"
    result = CliRunner().invoke(app, ["liveness", str(photo), "-p", "scrfd-mbf"])
    assert result.exit_code != 0
    output = " ".join(result.output.split())
    assert "model_integrity" in output and str(models / LIVENESS) in output and "Delete it" in output, output


def test_a_failed_model_download_is_answered_at_once_with_retry_after(shared, tmp_path, examples, failing_source):
    """Issue: a server without internet tried the missing liveness model's download on every request
    that needed it, each answer waiting on the download. Now the second answer is at once: 503
    model_missing, Retry-After the seconds until this server tries again, no second download."""
    from dataclasses import replace

    from faceatlas.engine import get_pack
    from faceatlas.engine.models import ModelFile

    failing_source.stall = 1.5  # a source that is slow to fail (an unreachable one waits a minute)
    pack = get_pack("scrfd-mbf")
    pack = replace(pack, liveness=tuple(
        replace(spec, file=ModelFile(f"test/absent_liveness_{i}.onnx", "0" * 64, failing_source.url, "test"))
        for i, spec in enumerate(pack.liveness)))
    settings = EngineSettings(model_dir=str(shared / "models"), cache=tmp_path / "cache")
    analyzer = FaceAnalyzer(pack, settings=settings, announce_license=False)
    database_url = f"sqlite:///{tmp_path / 'faceatlas.db'}"
    engine = create_database_engine(database_url)
    migrate(engine)
    accounts = Accounts(engine)
    accounts.create_tenant("acme", "Acme")
    key = accounts.create_key("acme", ["detect"], rate_per_second=100, burst=100).token
    app = create_app(ServiceSettings(database_url=database_url, index_dir=tmp_path / "indexes", pack="scrfd-mbf",
                                     workers=1), analyzer=analyzer)
    photo = (examples / "tests" / "test_images" / "obama.jpg").read_bytes()
    answers, seconds = [], []
    try:
        with TestClient(app, headers={"Authorization": f"Bearer {key}"}) as client:
            for _ in range(2):
                started = time.monotonic()
                answers.append(client.post("/v1/liveness", files={"image": ("a.jpg", photo)}))
                seconds.append(time.monotonic() - started)
    finally:
        engine.dispose()
    assert failing_source.requests == 1  # the second request did not download again
    assert seconds[0] >= 1.5 and seconds[1] < 1.5, seconds  # a second download would take 1.5 s again
    for answer in answers:
        assert (answer.status_code, answer.json()["error"]["code"]) == (503, "model_missing"), answer.text
        assert "server log" in answer.json()["error"]["message"] and "http" not in answer.json()["error"]["message"]
        assert 290 <= int(answer.headers["Retry-After"]) <= 300, answer.headers
