"""KYC: the tenant's identity verification sessions with their decisions and reasons in words,
and one session's audit (scores, thresholds, model versions) with, for an admin key, the reference
frames it still keeps under its retention (each view audited); the same layer calls as
``/v1/kyc/sessions``."""

from __future__ import annotations

import base64
from typing import Annotated, Any

from fastapi import APIRouter, Path, Query, Request
from fastapi.responses import Response
from starlette.concurrency import run_in_threadpool

from faceatlas.apps.kyc import REASON_WORDS, STATUSES, SessionInfo
from faceatlas.service.console.base import ConsoleRoute, UserDep, gate, label, render, words
from faceatlas.service.console.uploads import audit
from faceatlas.service.deps import AccountsDep, KycDep
from faceatlas.service.tenants import gallery_tenant

router = APIRouter(route_class=ConsoleRoute)
SESSIONS_PAGE = 200  # sessions a page of the list shows


@router.get("/kyc", include_in_schema=False)
async def sessions(request: Request, user: UserDep, kyc: KycDep,
                   status: Annotated[str | None, Query(max_length=20)] = None,
                   after: Annotated[str | None, Query(max_length=100)] = None) -> Response:
    """The sessions, :data:`SESSIONS_PAGE` a page, newest first (``after``: the previous page's cursor)."""
    tenant = (await gate(request, user.principal, "kyc.session", "read", billable=False)).principal.tenant_id
    wanted = status or None  # the form's "any"; a status no session has is refused (422), as the API refuses it
    page = await run_in_threadpool(lambda: kyc.list(gallery_tenant(tenant), status=wanted, limit=SESSIONS_PAGE,
                                                    after=after))
    return render(request, "kyc.html", user, sessions=page.items, statuses=STATUSES, status=wanted or "",
                  words=REASON_WORDS, next_cursor=page.next_cursor, paged=bool(after))


@router.get("/kyc/{session_id}", include_in_schema=False)
async def session(request: Request, user: UserDep, kyc: KycDep,
                  session_id: Annotated[str, Path(min_length=32, max_length=32, pattern="^[0-9a-f]{32}$")],
                  accounts: AccountsDep) -> Response:
    """A session's decision and audit; its reference face images only for an admin key (keeping
    them is the admin's retention setting, and no API call returns them), each view of them in the
    tenant's audit trail (``kyc.references.view``). A read key is told they exist for admin keys."""
    principal = (await gate(request, user.principal, "kyc.session", "read", billable=False)).principal
    tenant, shows_images = principal.tenant_id, principal.allows("admin")

    def read() -> tuple[SessionInfo, dict[str, bytes]]:
        info = kyc.get(gallery_tenant(tenant), session_id)
        return info, kyc.references(gallery_tenant(tenant), session_id) if shows_images else {}

    info, kept = await run_in_threadpool(read)
    images = [(kind, base64.b64encode(image).decode()) for kind, image in sorted(kept.items())]
    if images:
        await audit(accounts, principal, "kyc.references.view", session_id, {"images": sorted(kept)})
    return render(request, "kyc_session.html", user, info=info, images=images, words=REASON_WORDS,
                  audit=audit_rows(info.details), shows_images=shows_images)


def audit_rows(details: dict[str, Any]) -> list[tuple[str, str]]:
    """A decision's audit (scores, thresholds, model versions, timings) as (what, in words) rows:
    only the values present (``"threshold": null`` and empty entries left out), no JSON."""
    rows = [(label(key), words(value)) for key, value in sorted(details.items())]
    return [(label, text) for label, text in rows if text]
