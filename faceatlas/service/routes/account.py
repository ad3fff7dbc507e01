"""The caller's own account: usage (the bill), API keys of its tenant, the audit trail, its settings."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Query
from fastapi.responses import PlainTextResponse, Response
from pydantic import Field
from starlette.concurrency import run_in_threadpool

from faceatlas.db import day_range
from faceatlas.gallery import PAGE_MAX
from faceatlas.service.accounts import MAX_RETENTION_DAYS, Accounts, usage_csv
from faceatlas.service.db import Tenant
from faceatlas.service.deps import (
    AccountsDep,
    KycDep,
    Meter,
    MeteredRoute,
    NoIdempotencyKey,
    SettingsDep,
    metered,
)
from faceatlas.service.schemas import (
    JSON_INTEGER,
    AuditList,
    IsoDate,
    IssuedKeyOut,
    KeyList,
    RequestBody,
    TenantSettingsOut,
    UsageOut,
)
from faceatlas.service.tenants import gallery_tenant
from faceatlas.settings import ServiceSettings

router = APIRouter(tags=["account"], route_class=MeteredRoute)


class KeyRequest(RequestBody):
    scopes: list[Literal["admin", "write", "read", "detect"]] = Field(min_length=1)
    name: str = Field(default="", max_length=200)
    rate_per_second: float = Field(default=20.0, ge=0.001, le=10_000)  # 1e-300 said Retry-After in 300 digits
    burst: int = Field(default=40, ge=1, le=100_000)


class SettingsRequest(RequestBody):
    kyc_retention_days: int | None = Field(
        default=None, ge=0, le=MAX_RETENTION_DAYS, strict=True,
        description="days a verification's reference face images are kept (0: none written); shortening it "
                    f"shortens the images kept already, lengthening it does not lengthen them; {JSON_INTEGER}")


def _settings(accounts: Accounts, settings: ServiceSettings, tenant: Tenant) -> dict[str, Any]:
    """The answer of the settings routes: what the tenant sets, and the ceilings the operator sets
    for it (read-only: its quota, its keys' count and summed rate), with what its keys hold of them."""
    return {"tenant": tenant.id, "kyc_retention_days": tenant.kyc_retention_days,
            **accounts.tenant_ceilings(tenant.id, settings.default_monthly_quota)}


@router.get("/settings", response_model=TenantSettingsOut)
def get_settings(
    accounts: AccountsDep, settings: SettingsDep,
    meter: Annotated[Meter, Depends(metered("settings.get", "admin", billable=False))]
) -> dict[str, Any]:
    """The tenant's settings, and its ceilings, read-only (set by the operator: ``faceatlas admin
    tenant update --quota/--max-rate``, the server's FACEATLAS_MAX_KEYS_PER_TENANT, ...): its monthly
    call quota, the most active keys and the most calls/s they may allow summed, and what its active
    keys hold of them."""
    return _settings(accounts, settings, accounts.get_tenant(meter.principal.tenant_id))


@router.patch("/settings", response_model=TenantSettingsOut)
async def update_settings(
    body: SettingsRequest,
    accounts: AccountsDep,
    settings: SettingsDep,
    kyc: KycDep,
    meter: Annotated[Meter, Depends(metered("settings.update", "admin", billable=False, idempotent=True))],
) -> dict[str, Any]:
    """Change the tenant's settings (audited when something changed). A shorter KYC retention deletes
    the reference images kept past it at once. The ceilings the answer shows are the operator's: a
    field naming one is refused (422)."""
    caller = meter.principal
    days = body.kyc_retention_days
    tenant = await run_in_threadpool(lambda: accounts.update_tenant(
        caller.tenant_id, kyc_retention_days=days, actor_key_id=caller.key_id))
    if days is not None:
        await run_in_threadpool(kyc.apply_retention, gallery_tenant(caller.tenant_id), days)
    return await run_in_threadpool(_settings, accounts, settings, tenant)


@router.get("/usage", response_model=UsageOut, responses={200: {"content": {"text/csv": {}}}})
def usage(
    accounts: AccountsDep,
    meter: Annotated[Meter, Depends(metered("usage", "read", billable=False))],
    start: Annotated[IsoDate | None, Query(alias="from", description="first day, YYYY-MM-DD")] = None,
    end: Annotated[IsoDate | None, Query(alias="to", description="last day, inclusive, YYYY-MM-DD")] = None,
    format: Annotated[Literal["json", "csv"], Query()] = "json",
) -> dict | PlainTextResponse:
    """Calls, faces and errors of the caller's tenant per day and operation."""
    rows = accounts.usage_report(meter.principal.tenant_id, *day_range(start, end))
    if format == "csv":
        return PlainTextResponse(usage_csv(rows), media_type="text/csv")
    return {"tenant": meter.principal.tenant_id, "rows": rows}


@router.get("/keys", response_model=KeyList)
def list_keys(
    accounts: AccountsDep, meter: Annotated[Meter, Depends(metered("keys.list", "admin", billable=False))]
) -> dict[str, Any]:
    """The tenant's keys (prefix, scopes, limits, revocation); never the secrets."""
    keys = accounts.list_keys(meter.principal.tenant_id)
    return {
        "keys": [
            {
                "prefix": k.prefix,
                "name": k.name,
                "scopes": k.scopes,
                "rate_per_second": k.rate_per_second,
                "burst": k.burst,
                "created_at": k.created_at.isoformat(),
                "revoked": k.revoked_at is not None,
            }
            for k in keys
        ]
    }


@router.post("/keys", status_code=201, response_model=IssuedKeyOut, responses={409: {"description": (
    "key_limit: the tenant has its most active keys, or their calls/s summed would pass its ceiling")}})
def create_key(
    body: KeyRequest,
    accounts: AccountsDep,
    meter: Annotated[Meter, Depends(metered("keys.create", "admin", billable=False))],
    _once: NoIdempotencyKey,
) -> dict[str, Any]:
    """A new key of the caller's tenant; the returned ``key`` is shown only this once (audited). An
    ``Idempotency-Key`` header is refused (422): the answer holds the new key's secret, kept nowhere,
    so a retry could not be answered again (after a lost answer, list the keys and revoke any unknown)."""
    caller = meter.principal
    issued = accounts.create_key(
        caller.tenant_id, list(body.scopes), body.name, body.rate_per_second, body.burst, caller.key_id
    )
    return {"key": issued.token, "prefix": issued.prefix, "scopes": issued.scopes}


@router.delete("/keys/{prefix}", status_code=204, response_class=Response)  # no body: no content-type
def revoke_key(
    prefix: str,
    accounts: AccountsDep,
    meter: Annotated[Meter, Depends(metered("keys.revoke", "admin", billable=False, idempotent=True))],
) -> None:
    """Revoke one of the tenant's keys (audited): refused from the next call, by every process sharing
    Redis too (their cached key lookups are dropped: ``SharedState.forget_keys``). A revoked key's
    revocation changes nothing: 204 again, and no second audit record."""
    accounts.revoke_key(prefix, meter.principal.tenant_id, meter.principal.key_id)


@router.post("/keys/{prefix}/rotate", status_code=201, response_model=IssuedKeyOut)
def rotate_key(
    prefix: str,
    accounts: AccountsDep,
    meter: Annotated[Meter, Depends(metered("keys.rotate", "admin", billable=False))],
    _once: NoIdempotencyKey,
) -> dict[str, Any]:
    """Revoke a key and issue its replacement (same scopes and limits; audited). An ``Idempotency-Key``
    header is refused (422), as for a new key: the answer holds the new key's secret."""
    issued = accounts.rotate_key(prefix, meter.principal.tenant_id, meter.principal.key_id)
    return {"key": issued.token, "prefix": issued.prefix, "scopes": issued.scopes}


@router.get("/audit", response_model=AuditList)
def audit(
    accounts: AccountsDep,
    meter: Annotated[Meter, Depends(metered("audit", "admin", billable=False))],
    limit: Annotated[int, Query(ge=1, le=PAGE_MAX)] = 100,
) -> dict[str, Any]:
    """The tenant's audit trail, newest first."""
    rows = accounts.audit_log(meter.principal.tenant_id, limit)
    return {
        "events": [
            {"at": r.at.isoformat(), "action": r.action, "target": r.target, "key_id": r.key_id, "details": r.details}
            for r in rows
        ]
    }
