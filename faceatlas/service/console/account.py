"""Usage and keys: calls per day and operation (chart, table, CSV), the month's quota, and the
tenant's keys (listed by prefix; create, shown once; rotate; revoke), as ``/v1/usage`` and ``/v1/keys``."""

from __future__ import annotations

import secrets
from collections.abc import Callable
from datetime import timedelta
from typing import Annotated, Literal

from fastapi import APIRouter, Form, Path, Request
from fastapi.responses import PlainTextResponse, Response
from starlette.concurrency import run_in_threadpool

from faceatlas.db import utcnow
from faceatlas.service.accounts import IssuedKey, usage_csv
from faceatlas.service.console.base import (
    PREFIX,
    Confirmed,
    ConsoleRoute,
    PostingUserDep,
    UserDep,
    ask_first,
    gate,
    redirect,
    render,
)
from faceatlas.service.console.draw import usage_chart
from faceatlas.service.console.sessions import ConsoleUser
from faceatlas.service.deps import AccountsDep, SettingsDep, get_shared
from faceatlas.service.shared_state import StoredAnswer

router = APIRouter(route_class=ConsoleRoute)
DAYS = 30
Prefix = Annotated[str, Path(min_length=1, max_length=32, pattern=r"^[0-9a-f]+$")]
# the one-time token of a form that makes a key: a reload of its answer sends the form again
Once = Annotated[str, Form(min_length=16, max_length=64, pattern=r"^[A-Za-z0-9_\-]+$")]


async def _first_sending(request: Request, tenant_id: str, once: str, make: Callable[[], IssuedKey]) -> IssuedKey | str:
    """The key ``make`` issues the first time its form (one-time token ``once``) is sent; a second
    sending (a reload of the answer, a double click) makes none and gives the prefix of the key
    the first one made (its secret was shown once, then). Kept as the API's idempotency keys are."""
    shared, scope = get_shared(request), f"console:{tenant_id}"
    first = await run_in_threadpool(shared.begin_idempotent, scope, once, "keys")
    if first is not None:
        return first.body.decode()
    try:
        issued = await run_in_threadpool(make)
    except BaseException:
        await run_in_threadpool(shared.finish_idempotent, scope, once, None, "keys")
        raise
    await run_in_threadpool(shared.finish_idempotent, scope, once, StoredAnswer(201, issued.prefix.encode(), ""),
                            "keys")
    return issued


async def _page(request: Request, user: ConsoleUser, accounts: AccountsDep, settings: SettingsDep,
                issued: IssuedKey | str | None = None, status_code: int = 200) -> Response:
    principal = user.principal
    meter = await gate(request, principal, "usage", "read", billable=False)
    start = (utcnow() - timedelta(days=DAYS - 1)).replace(hour=0, minute=0, second=0, microsecond=0)
    rows = await run_in_threadpool(accounts.usage_report, meter.principal.tenant_id, start)
    used = await run_in_threadpool(accounts.calls_this_month, principal.tenant_id)
    quota = principal.monthly_quota if principal.monthly_quota is not None else settings.default_monthly_quota
    keys = None
    if principal.allows("admin"):
        await gate(request, principal, "keys.list", "admin", billable=False)
        keys = await run_in_threadpool(accounts.list_keys, principal.tenant_id)
    return render(request, "usage.html", user, status_code, rows=rows, chart=usage_chart(rows), used=used,
                  quota=quota, keys=keys, days=DAYS, once=_token,
                  issued=issued if isinstance(issued, IssuedKey) else None,
                  sent_before=issued if isinstance(issued, str) else None)


def _token() -> str:
    """A form's own one-time token (the page calls it once per form): one token shared by "Create
    key" and every Rotate form answered a second form "this form was sent before" and did nothing."""
    return secrets.token_urlsafe(16)


@router.get("/usage", include_in_schema=False)
async def usage(request: Request, user: UserDep, accounts: AccountsDep, settings: SettingsDep) -> Response:
    return await _page(request, user, accounts, settings)


@router.get("/usage.csv", include_in_schema=False)
async def usage_download(request: Request, user: UserDep, accounts: AccountsDep) -> Response:
    meter = await gate(request, user.principal, "usage", "read", billable=False)
    rows = await run_in_threadpool(accounts.usage_report, meter.principal.tenant_id)
    return PlainTextResponse(usage_csv(rows), media_type="text/csv",
                             headers={"Content-Disposition": 'attachment; filename="usage.csv"'})


@router.post("/keys", include_in_schema=False)
async def create_key(
    request: Request, user: PostingUserDep, accounts: AccountsDep, settings: SettingsDep,
    scope: Annotated[Literal["admin", "write", "read", "detect"], Form()],
    once: Once,
    name: Annotated[str, Form(max_length=200)] = "",
) -> Response:
    """A new key of the tenant; its secret is on this one answer only (the form sent again makes none)."""
    caller = (await gate(request, user.principal, "keys.create", "admin", billable=False)).principal
    issued = await _first_sending(request, caller.tenant_id, once, lambda: accounts.create_key(
        caller.tenant_id, [scope], name, actor_key_id=caller.key_id))
    return await _page(request, user, accounts, settings, issued, 201 if isinstance(issued, IssuedKey) else 200)


@router.post("/keys/{prefix}/rotate", include_in_schema=False)
async def rotate_key(request: Request, user: PostingUserDep, accounts: AccountsDep, settings: SettingsDep,
                     prefix: Prefix, once: Once, confirmed: Confirmed = "") -> Response:
    """Replace a key by a new one with its scopes (the old one is refused at once), once confirmed."""
    if asked := await ask_first(request, user, confirmed, "admin", f"Rotate key {prefix}? It is revoked at once and "
                                "a new key replaces it: calls with the old key are refused.", f"{PREFIX}/usage"):
        return asked
    caller = (await gate(request, user.principal, "keys.rotate", "admin", billable=False)).principal
    issued = await _first_sending(request, caller.tenant_id, once,
                                  lambda: accounts.rotate_key(prefix, caller.tenant_id, caller.key_id))
    if not isinstance(issued, IssuedKey):
        return await _page(request, user, accounts, settings, issued)
    if prefix == user.key_prefix:  # the session's own key is revoked now: log in with its replacement
        return render(request, "rotated.html", None, 201, issued=issued)
    return await _page(request, user, accounts, settings, issued, 201)


@router.post("/keys/{prefix}/revoke", include_in_schema=False)
async def revoke_key(request: Request, user: PostingUserDep, accounts: AccountsDep, prefix: Prefix,
                     confirmed: Confirmed = "") -> Response:
    if asked := await ask_first(request, user, confirmed, "admin", f"Revoke key {prefix}? Calls with it are refused "
                                "at once.", f"{PREFIX}/usage"):
        return asked
    caller = (await gate(request, user.principal, "keys.revoke", "admin", billable=False)).principal
    await run_in_threadpool(lambda: accounts.revoke_key(prefix, caller.tenant_id, caller.key_id))
    return redirect(request, f"{PREFIX}/usage")
