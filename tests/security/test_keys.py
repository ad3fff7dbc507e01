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


def _admin_cli(*args: str) -> str:
    from typer.testing import CliRunner

    from faceatlas.cli.main import app

    result = CliRunner().invoke(app, ["admin", "tenant", *args])
    assert result.exit_code == 0, result.output
    return result.output


def test_the_operator_sets_a_tenants_own_key_rate_ceiling(api, limited):
    """Finding 4 of the noisy-tenant probe: a tenant's admin issued itself keys up to the one
    server-wide ceiling (FACEATLAS_MAX_KEY_RATE_PER_TENANT, here 100/s), whatever the operator meant
    for that tenant. ``faceatlas admin tenant create/update --max-rate N`` sets the tenant's own:
    creating or rotating a key past it is refused as the server's ceiling is (409 key_limit)."""
    tenant = f"capped{uuid.uuid4().hex[:8]}"
    assert "key rate ceiling 30/s" in _admin_cli("create", tenant, "--max-rate", "30", "--db", api.database_url)
    token = api.accounts.create_key(tenant, ["admin"], rate_per_second=10, burst=100).token  # the operator's
    headers = {"Authorization": f"Bearer {token}"}

    def create(rate: float):
        return limited.post("/v1/keys", json={"scopes": ["read"], "rate_per_second": rate}, headers=headers)

    over = create(25)  # 35/s: within the server's 100/s, past the tenant's 30/s
    assert over.status_code == 409 and over.json()["error"]["code"] == "key_limit"
    assert "ceiling of 30" in over.json()["error"]["message"]
    issued = create(20)  # 30/s
    assert issued.status_code == 201
    assert "key rate ceiling 15/s" in _admin_cli("update", tenant, "--max-rate", "15", "--db", api.database_url)
    assert api.accounts.get_tenant(tenant).max_key_rate == 15
    assert create(1).status_code == 409  # the keys issued before stay as they are; no new one past it
    # a rotation replaces a key by its like (10 + 20 > 15 still): a leaked key stays replaceable
    rotated = limited.post(f"/v1/keys/{issued.json()['prefix']}/rotate", headers=headers)
    assert rotated.status_code == 201, rotated.text
    assert create(1).status_code == 409
    assert limited.delete(f"/v1/keys/{rotated.json()['prefix']}", headers=headers).status_code == 204
    assert create(5).status_code == 201  # 15/s


def test_a_tenant_without_its_own_ceiling_has_the_servers(api, limited):
    tenant = f"plain{uuid.uuid4().hex[:8]}"
    assert "key rate ceiling the server's" in _admin_cli("create", tenant, "--db", api.database_url)
    token = api.accounts.create_key(tenant, ["admin"], rate_per_second=10, burst=100).token
    headers = {"Authorization": f"Bearer {token}"}
    create = lambda rate: limited.post("/v1/keys", json={"scopes": ["read"], "rate_per_second": rate},  # noqa: E731
                                       headers=headers)
    assert create(95).status_code == 409  # past the server's 100/s
    _admin_cli("update", tenant, "--max-rate", "500", "--db", api.database_url)
    assert create(95).status_code == 201  # the operator gave this tenant more
    assert "the server's" in _admin_cli("update", tenant, "--default-max-rate", "--db", api.database_url)
    assert create(1).status_code == 409  # 105/s: the server's ceiling again
