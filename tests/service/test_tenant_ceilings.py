"""A tenant reads the ceilings the operator sets for it (``faceatlas admin tenant update --quota
--max-rate``, the server's FACEATLAS_MAX_KEYS_PER_TENANT): its own admin key could not see them, only
meet them as refusals. ``GET /v1/settings`` shows them, read-only, with what its keys hold of them."""

from __future__ import annotations

import uuid


def test_a_tenant_reads_its_own_ceilings_and_cannot_change_them(api):
    tenant = f"own-{uuid.uuid4().hex[:12]}"
    api.accounts.create_tenant(tenant)
    admin = api.accounts.create_key(tenant, ["admin"], rate_per_second=30, burst=60).token
    settings = api.app.state.settings
    with api.client(admin) as http:
        before = http.get("/v1/settings")
        assert before.status_code == 200, before.text
        assert before.json() == {"tenant": tenant, "kyc_retention_days": before.json()["kyc_retention_days"],
                                 "monthly_quota": settings.default_monthly_quota,
                                 "max_keys": settings.max_keys_per_tenant, "active_keys": 1,
                                 "max_key_rate": settings.max_key_rate_per_tenant, "key_rate": 30.0}
        api.accounts.update_tenant(tenant, monthly_quota=1234, max_key_rate=100.0)  # the operator's
        assert http.post("/v1/keys", json={"scopes": ["read"], "rate_per_second": 12.5}).status_code == 201
        after = http.get("/v1/settings").json()
        assert (after["monthly_quota"], after["max_key_rate"], after["max_keys"]) == (
            1234, 100.0, settings.max_keys_per_tenant)
        assert (after["active_keys"], after["key_rate"]) == (2, 42.5)
        for field, value in (("monthly_quota", 10**6), ("max_key_rate", 10**6), ("max_keys", 500),
                             ("active_keys", 0), ("key_rate", 0)):
            refused = http.patch("/v1/settings", json={field: value})
            assert refused.status_code == 422 and refused.json()["error"]["code"] == "validation_error", refused.text
        assert http.get("/v1/settings").json() == after  # nothing changed
        changed = http.patch("/v1/settings", json={"kyc_retention_days": 3})
        assert changed.status_code == 200 and changed.json() == {**after, "kyc_retention_days": 3}, changed.text
    typed = api.api_client(admin).tenant_settings()  # the Python client types them
    assert (typed.monthly_quota, typed.max_keys, typed.active_keys, typed.max_key_rate, typed.key_rate) == (
        1234, settings.max_keys_per_tenant, 2, 100.0, 42.5)
    schema = api.app.openapi()["components"]["schemas"]["TenantSettingsOut"]
    assert {"monthly_quota", "max_keys", "active_keys", "max_key_rate", "key_rate"} <= set(schema["properties"])
    with api.client("acme_read") as reader:  # the admin's alone, as before
        assert reader.get("/v1/settings").status_code == 403
