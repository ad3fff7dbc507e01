"""Issue 15 (12): what the service exposes. A key put in the URL never reaches a log line; the
Swagger UI (scripts from a CDN) is off unless enabled; /metrics needs its token when one is set."""

from __future__ import annotations

import uuid

import httpx
import pytest
from fastapi.testclient import TestClient

from faceatlas.db import create_database_engine
from faceatlas.service import create_app
from faceatlas.service.accounts import Accounts
from faceatlas.service.db import migrate
from faceatlas.service.redact import redact_query
from faceatlas.settings import ServiceSettings


@pytest.fixture
def app_with(api, fast_analyzer, tmp_path):
    """``app_with(**settings)``: a running app over the ``api`` database with these settings."""
    clients = []

    def _make(**overrides) -> TestClient:
        settings = ServiceSettings(database_url=api.database_url, index_dir=tmp_path / "idx", pack="scrfd-mbf",
                                   workers=1, **overrides)
        client = TestClient(create_app(settings, analyzer=fast_analyzer), raise_server_exceptions=False)
        clients.append(client.__enter__())
        return client

    yield _make
    for client in clients:
        client.__exit__(None, None, None)


def test_docs_are_off_by_default_and_on_when_enabled(api, app_with):
    with api.client() as anonymous:
        assert anonymous.get("/docs").status_code == 404
        assert anonymous.get("/redoc").status_code == 404
        assert "/v1/detect" in anonymous.get("/openapi.json").json()["paths"]  # the schema stays
    assert app_with(docs=True).get("/docs").status_code == 200


def test_metrics_need_the_token_when_one_is_configured(api, app_with):
    guarded = app_with(metrics_token="m3trics-s3cret")
    anonymous = guarded.get("/metrics")
    wrong = guarded.get("/metrics", headers={"Authorization": "Bearer nope"})
    right = guarded.get("/metrics", headers={"Authorization": "Bearer m3trics-s3cret"})
    assert anonymous.status_code == 401 and anonymous.json()["error"]["code"] == "unauthorized"
    assert wrong.status_code == 401
    assert right.status_code == 200 and "faceatlas_requests_total" in right.text
    with api.client() as open_metrics:  # no token configured: open, as before
        assert open_metrics.get("/metrics").status_code == 200


def test_redact_query_replaces_credentials_by_name_and_by_shape():
    key = "fa_0123456789ab_SECRETsecret-_x"
    query = f"limit=5&api_key={key}&x={key}&{key}&token=t0k&after=12".encode()
    redacted = redact_query(query)
    assert b"SECRET" not in redacted and b"t0k" not in redacted
    assert redacted == b"limit=5&api_key=REDACTED&x=REDACTED&REDACTED&token=REDACTED&after=12"
    assert redact_query(b"after=12&limit=3") == b"after=12&limit=3"
    odd = b"%C3%BC%F2%A6%AC%8E=%19%C2%9D&%FF%FE=1&=&&x"  # non-Latin-1 names, bad UTF-8, empty parts
    assert redact_query(odd) == odd


def test_a_key_in_the_query_string_is_refused_and_never_logged(launch, shared, tmp_path):
    """A real uvicorn server with its access log: the key put in the URL appears on no line."""
    database_url = f"sqlite:///{tmp_path / 'exposure.db'}"
    engine = create_database_engine(database_url)
    migrate(engine)
    accounts = Accounts(engine)
    tenant = f"exp{uuid.uuid4().hex[:6]}"
    accounts.create_tenant(tenant)
    key = accounts.create_key(tenant, ["admin"]).token
    secret = key.split("_", 2)[2]
    log = tmp_path / "server.log"
    _, url = launch(database_url, shared, log)
    for query in (f"api_key={key}", f"key={key}", f"token={key}", f"x={key}", key):
        response = httpx.get(f"{url}/v1/collections?{query}", timeout=30)
        assert response.status_code == 401 and response.json()["error"]["code"] == "unauthorized"
    ok = httpx.get(f"{url}/v1/collections", headers={"Authorization": f"Bearer {key}"}, timeout=30)
    assert ok.status_code == 200
    engine.dispose()
    text = log.read_text()
    assert "/v1/collections?api_key=REDACTED" in text  # the access log is on, and redacted
    assert secret not in text and key not in text
