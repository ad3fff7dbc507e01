"""Store (retail) dashboards of the tenant's stores: today's visits and conversion, charts, live
occupancy and the open alerts to resolve, from the same layer calls as ``/v1/retail/stores/...``."""

from __future__ import annotations

import base64
from typing import Annotated, Any

from fastapi import APIRouter, Path, Request
from fastapi.responses import Response
from starlette.concurrency import run_in_threadpool

from faceatlas.apps.retail import (
    REPORT_DAYS,
    AlertResolution,
    RetailStore,
    list_stores,
    report_window,
    store_report,
)
from faceatlas.db import utcnow
from faceatlas.service.console.base import PREFIX, ConsoleRoute, PostingUserDep, UserDep, gate, redirect, render, seg
from faceatlas.service.console.uploads import audit
from faceatlas.service.deps import AccountsDep, AnalyzerDep, DbDep, GalleryDep, StoreChartsDep

router = APIRouter(route_class=ConsoleRoute)
StoreId = Annotated[str, Path(min_length=1, max_length=100)]
# (chart, its section in Report.rows(), title): a chart is shown when its section has figures
CHARTS = (("visits_per_hour", "visits_per_hour", "Visits per hour of day"),
          ("dwell", "dwell_minutes", "Time in the store"),
          ("zone_heat", "zone_heat", "Zone visits (shelf cameras)"),
          ("zone_tracks", "zone_tracks", "Shoppers tracked per zone (zone cameras)"),
          ("estimated_age_band", "estimated_age_band", "Estimated age bands (counts only)"))


@router.get("/store", include_in_schema=False)
async def stores(request: Request, user: UserDep, db: DbDep) -> Response:
    meter = await gate(request, user.principal, "retail.analytics", "read", billable=False)
    found = await run_in_threadpool(list_stores, db, meter.principal.tenant_id)
    return render(request, "stores.html", user, stores=found)


@router.get("/store/{store_id}", include_in_schema=False)
async def dashboard(request: Request, user: UserDep, analyzer: AnalyzerDep, gallery: GalleryDep, db: DbDep,
                    charts_drawn: StoreChartsDep, store_id: StoreId) -> Response:
    """Today's and the last :data:`REPORT_DAYS` days' headline numbers (today included: the API's
    default report window), today's charts, occupancy and open alerts. Two reports (today's and
    the window's: different days, not the same one twice); today's charts are drawn only when
    their figures changed since this tenant's store was last viewed (:class:`ChartCache`)."""
    tenant = (await gate(request, user.principal, "retail.analytics", "read", billable=False)).principal.tenant_id
    first, today = report_window(None, None)  # the API's default window: its last day is today (UTC)

    def read() -> dict[str, Any]:
        now = store_report(db, tenant, store_id, today, today)  # NotFound for another tenant's store
        month = store_report(db, tenant, store_id, first, today)
        store = RetailStore.attach(store_id, tenant, analyzer, gallery, db)
        try:
            inside, alerts = store.observations.occupancy(utcnow()), store.alerts(open_only=True)
        finally:
            store.close()
        shown = {metric for metric, _, _ in now.rows()}
        charts = [(title, base64.b64encode(charts_drawn.png(tenant, store_id, now, name)).decode())
                  for name, section, title in CHARTS if section in shown]
        currency = store.config.currency
        return {"today": now.summary(), "month": month.summary(), "occupancy": inside, "charts": charts,
                "alerts": [{**alert, "words": alert_words(alert["details"], currency)} for alert in alerts],
                "currency": currency}

    context = await run_in_threadpool(read)
    return render(request, "store.html", user, store_id=store_id, day=today.isoformat(), days=REPORT_DAYS,
                  can_write=user.principal.allows("write"), **context)


def money(cents: int, currency: str) -> str:
    """An amount in minor units as a person reads it: 537 → "5.37 EUR"."""
    return f"{cents / 100:,.2f} {currency}"


def alert_words(details: dict[str, Any], currency: str) -> str:
    """An alert's details in words ("3 items, 5.37 EUR, face seen"), not JSON; what the page does
    not know is shown as "name: value", None left out."""
    words = []
    for key, value in details.items():
        if value is None:
            continue
        if key == "items":
            words.append(f"{value} item{'' if value == 1 else 's'}")
        elif key == "amount_cents":
            words.append(money(int(value), currency))
        elif key == "face_seen":
            words.append("face seen" if value else "no face seen")
        else:
            words.append(f"{key.replace('_', ' ')}: {value}")
    return ", ".join(words) or "—"


@router.post("/store/{store_id}/alerts/{alert_id}/resolve", include_in_schema=False)
async def resolve(request: Request, user: PostingUserDep, accounts: AccountsDep, analyzer: AnalyzerDep,
                  gallery: GalleryDep, db: DbDep, store_id: StoreId,
                  alert_id: Annotated[int, Path(ge=1, le=2**31 - 1)]) -> Response:
    tenant = (await gate(request, user.principal, "retail.alerts", "write", billable=False)).principal.tenant_id

    def run() -> AlertResolution:
        store = RetailStore.attach(store_id, tenant, analyzer, gallery, db)
        try:
            return store.resolve_alert(alert_id)
        finally:
            store.close()

    done = await run_in_threadpool(run)
    if done.already:  # the first resolution stays; nothing was done, nothing is audited
        return render(request, "alert_resolved.html", user, store_id=store_id, resolution=done)
    await audit(accounts, user.principal, "retail.alert.resolve", f"{store_id}/{alert_id}")
    return redirect(request, f"{PREFIX}/store/{seg(store_id)}")
