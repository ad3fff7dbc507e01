"""Issue 15 (11): a key rotates once (a revoked or already rotated key is refused, also when
rotations race), and a tenant's active keys stay under the ceilings of the service settings."""

from __future__ import annotations

import uuid
from concurrent.futures import ThreadPoolExecutor

import pytest
from fastapi.testclient import TestClient

from faceatlas.service import create_app
from faceatlas.settings import ServiceSettings


def _admin(api, rate: float = 10.0) -> tuple[str, TestClient]:
    tenant = f"keys{uuid.uuid4().hex[:8]}"
    api.accounts.create_tenant(tenant)
    token = api.accounts.create_key(tenant, ["admin"], rate_per_second=rate, burst=1000).token
    return tenant, TestClient(api.app, raise_server_exceptions=False, headers={"Authorization": f"Bearer {token}"})


def _active(api, tenant: str) -> int:
    return sum(k.revoked_at is None for k in api.accounts.list_keys(tenant))


def test_a_key_rotates_once(api):
    tenant, admin = _admin(api)
    issued = admin.post("/v1/keys", json={"scopes": ["read"]}).json()
    first = admin.post(f"/v1/keys/{issued['prefix']}/rotate")
    again = admin.post(f"/v1/keys/{issued['prefix']}/rotate")
    assert first.status_code == 201
    assert again.status_code == 409 and again.json()["error"]["code"] == "key_revoked"
    assert _active(api, tenant) == 2  # the admin key and the one replacement
    replacement = TestClient(api.app, headers={"Authorization": f"Bearer {first.json()['key']}"})  # no `with`:
    assert replacement.get("/v1/collections").status_code == 200  # entering would restart the shared app


def test_a_revoked_key_cannot_be_rotated(api):
    tenant, admin = _admin(api)
    issued = admin.post("/v1/keys", json={"scopes": ["read"]}).json()
    assert admin.delete(f"/v1/keys/{issued['prefix']}").status_code == 204
    response = admin.post(f"/v1/keys/{issued['prefix']}/rotate")
    assert response.status_code == 409 and response.json()["error"]["code"] == "key_revoked"
    assert _active(api, tenant) == 1


def test_racing_rotations_of_one_key_mint_one_replacement(api):
    tenant, admin = _admin(api)
    prefix = admin.post("/v1/keys", json={"scopes": ["read"]}).json()["prefix"]
    with ThreadPoolExecutor(6) as pool:
        statuses = sorted(pool.map(lambda _: admin.post(f"/v1/keys/{prefix}/rotate").status_code, range(6)))
    assert statuses == [201] + [409] * 5
    assert _active(api, tenant) == 2


@pytest.fixture
def limited(api, fast_analyzer, tmp_path):
    """The service with ceilings of 3 active keys and 100 calls/s per tenant."""
    settings = ServiceSettings(database_url=api.database_url, index_dir=tmp_path / "idx", pack="scrfd-mbf",
                               workers=1, max_keys_per_tenant=3, max_key_rate_per_tenant=100)
    with TestClient(create_app(settings, analyzer=fast_analyzer)) as http:
        yield http


def test_a_tenant_cannot_pass_its_key_ceilings(api, limited):
    tenant, _ = _admin(api, rate=10)  # 1 key, 10 calls/s
    admin_token = api.accounts.list_keys(tenant)[0]
    token = api.accounts.rotate_key(admin_token.prefix, tenant).token
    headers = {"Authorization": f"Bearer {token}"}

    def create(rate: float):
        return limited.post("/v1/keys", json={"scopes": ["read"], "rate_per_second": rate}, headers=headers)

    assert create(50).status_code == 201  # 2 keys, 60/s
    over_rate = create(50)  # would be 110/s
    assert over_rate.status_code == 409 and over_rate.json()["error"]["code"] == "key_limit"
    third = create(10)  # 3 keys, 70/s
    assert third.status_code == 201
    over_count = create(1)
    assert over_count.status_code == 409 and over_count.json()["error"]["code"] == "key_limit"
    assert limited.delete(f"/v1/keys/{third.json()['prefix']}", headers=headers).status_code == 204
    assert create(1).status_code == 201  # a revoked key frees its place
    assert _active(api, tenant) == 3


def test_key_ceilings_are_settings_with_documented_defaults(monkeypatch):
    defaults = ServiceSettings()
    assert (defaults.max_keys_per_tenant, defaults.max_key_rate_per_tenant) == (50, 20_000.0)
    monkeypatch.setenv("FACEATLAS_MAX_KEYS_PER_TENANT", "7")
    monkeypatch.setenv("FACEATLAS_MAX_KEY_RATE_PER_TENANT", "250")
    configured = ServiceSettings()
    assert (configured.max_keys_per_tenant, configured.max_key_rate_per_tenant) == (7, 250.0)
