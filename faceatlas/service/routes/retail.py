"""Retail for the store's owner tenant (no other tenant sees the store: 404): analytics as JSON,
CSV or a PNG chart; members (consent, enrolment by upload, erasure), products, carts, face pay
and refunds, staff alerts and live occupancy. A store is reachable once `faceatlas retail run`
(or ``RetailStore.open``) saved its config."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict
from datetime import date
from typing import Annotated, Any, Literal, TypeVar

from fastapi import APIRouter, Depends, Query, Request
from fastapi import Path as PathParam
from fastapi.responses import PlainTextResponse, Response
from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool

from faceatlas.apps.retail import (
    CHARTS,
    Cart,
    ConsentRecord,
    Exit,
    MemberInfo,
    RetailStore,
    chart_png,
    csv_text,
    report_window,
    store_report,
)
from faceatlas.db import utcnow
from faceatlas.errors import InvalidArgument
from faceatlas.service.deps import (
    AnalyzerDep,
    DbDep,
    GalleryDep,
    Meter,
    image_request_body,
    metered,
    read_images,
)
from faceatlas.service.schemas import RetailReportOut

router = APIRouter(tags=["retail"])
Chart = Literal[CHARTS]  # type: ignore[valid-type]


@router.get(
    "/retail/stores/{store_id}/analytics",
    response_model=RetailReportOut,
    responses={200: {"content": {"text/csv": {}, "image/png": {}}}},
)
async def store_analytics(
    store_id: str,
    db: DbDep,
    meter: Annotated[Meter, Depends(metered("retail.analytics", "read", billable=False))],
    start: Annotated[date | None, Query(alias="from", description="first day (default: 30 days ago)")] = None,
    end: Annotated[date | None, Query(alias="to", description="last day, inclusive (default: today)")] = None,
    format: Annotated[Literal["json", "csv", "png"], Query()] = "json",
    chart: Annotated[Chart, Query(description="the chart drawn when format=png")] = "visits_per_hour",
) -> dict | Response:
    """Visitors, returning visitors, conversion, dwell, zone heat, basket size and demographics."""
    first, last = report_window(start, end)
    report = await run_in_threadpool(store_report, db, meter.principal.tenant_id, store_id, first, last)
    if format == "csv":
        return PlainTextResponse(csv_text(report), media_type="text/csv")
    if format == "png":
        return Response(await run_in_threadpool(chart_png, report, chart), media_type="image/png")
    return {
        "store": store_id,
        "from": first.isoformat(),
        "to": last.isoformat(),
        "summary": report.summary(),
        "sections": [{"metric": m, "key": k, "value": v} for m, k, v in report.rows() if m != "summary"],
    }


# -- store operations: the owner tenant's members, products, carts, face pay, alerts, occupancy ------

StoreId = Annotated[str, PathParam(min_length=1, max_length=100)]
T = TypeVar("T")


class PickRequest(BaseModel):
    sku: str = Field(min_length=1, max_length=100)
    quantity: int = Field(default=1, ge=-1000, le=1000)


class RefundRequest(BaseModel):
    amount_cents: int | None = Field(default=None, ge=1)
    reason: str = Field(default="", max_length=400)
    key: str | None = Field(default=None, min_length=1, max_length=200, description="idempotency key")


async def _store(store_id: str, meter: Meter, analyzer: Any, gallery: Any, db: Any,
                 use: Callable[[RetailStore], T]) -> T:
    def run() -> T:
        store = RetailStore.attach(store_id, meter.principal.tenant_id, analyzer, gallery, db)
        try:
            return use(store)
        finally:
            store.close()
    return await run_in_threadpool(run)


def _member(info: MemberInfo) -> dict[str, Any]:
    return {"id": info.id, "name": info.name, "enrolled_at": info.enrolled_at.isoformat(),
            "purposes": list(info.purposes), "faces": info.faces, "has_payment_method": info.has_payment_method}


@router.get("/retail/stores/{store_id}/members")
async def list_members(store_id: StoreId, analyzer: AnalyzerDep, gallery: GalleryDep, db: DbDep,
                       meter: Annotated[Meter, Depends(metered("retail.members", "read", billable=False))]) -> dict:
    """The store's members (no payment reference is ever echoed)."""
    members = await _store(store_id, meter, analyzer, gallery, db, lambda s: s.members.list())
    return {"members": [_member(m) for m in members]}


@router.post("/retail/stores/{store_id}/members", status_code=201,
             openapi_extra=image_request_body("image", extra={
                 "name": {"type": "string"}, "purposes": {"type": "string", "description": "comma-separated"},
                 "granted_by": {"type": "string"}, "payment_ref": {"type": "string"}}))
async def enrol_member(store_id: StoreId, request: Request, analyzer: AnalyzerDep, gallery: GalleryDep, db: DbDep,
                       meter: Annotated[Meter, Depends(metered("retail.enrol", "write"))]) -> dict:
    """Enrol a member from an uploaded face photo under the consent given (``purposes`` of
    face_pay, visit_recognition, analytics, marketing; ``granted_by`` the person or guardian)."""
    images, fields = await read_images(request, "image")
    form = fields or {k: v for k, v in (await request.form()).items() if isinstance(v, str)}
    purposes = tuple(p.strip() for p in str(form.get("purposes", "")).split(",") if p.strip())
    name, granted_by = str(form.get("name", "")), str(form.get("granted_by", form.get("name", "")))
    if not name or not granted_by:
        raise InvalidArgument("a member needs a name and who granted the consent")
    consent = ConsentRecord(purposes, granted_by=granted_by, recorded_by=f"api:{meter.principal.key_id}")
    payment = form.get("payment_ref")
    info = await _store(store_id, meter, analyzer, gallery, db, lambda s: s.members.enrol(
        name, [images["image"]], consent, payment_ref=str(payment) if payment else None))
    meter.faces = info.faces
    return _member(info)


@router.delete("/retail/stores/{store_id}/members/{member_id}")
async def erase_member(store_id: StoreId, member_id: Annotated[str, PathParam(min_length=1, max_length=64)],
                       analyzer: AnalyzerDep, gallery: GalleryDep, db: DbDep,
                       meter: Annotated[Meter, Depends(metered("retail.erase", "write", billable=False))]) -> dict:
    """Erase a member: faces, vectors, consents; visits and charges stay as anonymous counts."""
    report = await _store(store_id, meter, analyzer, gallery, db, lambda s: s.members.erase(member_id))
    return {"member": report.member_id, "faces_deleted": report.faces_deleted,
            "consents_deleted": report.consents_deleted, "visits_anonymised": report.visits_anonymised,
            "charges_anonymised": report.charges_anonymised}


@router.get("/retail/stores/{store_id}/products")
async def list_products(store_id: StoreId, analyzer: AnalyzerDep, gallery: GalleryDep, db: DbDep,
                        meter: Annotated[Meter, Depends(metered("retail.products", "read", billable=False))]) -> dict:
    """The catalogue of the store's config (prices in minor units)."""
    store = await _store(store_id, meter, analyzer, gallery, db, lambda s: s.config)
    return {"currency": store.currency, "products": [p.model_dump() for p in store.products]}


@router.get("/retail/stores/{store_id}/visits/{visit_id}/cart")
async def get_cart(store_id: StoreId, visit_id: Annotated[int, PathParam(ge=1)], analyzer: AnalyzerDep,
                   gallery: GalleryDep, db: DbDep,
                   meter: Annotated[Meter, Depends(metered("retail.carts", "read", billable=False))]) -> dict:
    """A visit's cart."""
    cart = await _store(store_id, meter, analyzer, gallery, db, lambda s: s.cart(visit_id))
    return _cart(cart)


@router.post("/retail/stores/{store_id}/visits/{visit_id}/cart")
async def add_to_cart(store_id: StoreId, visit_id: Annotated[int, PathParam(ge=1)], body: PickRequest,
                      analyzer: AnalyzerDep, gallery: GalleryDep, db: DbDep,
                      meter: Annotated[Meter, Depends(metered("retail.carts", "write", billable=False))]) -> dict:
    """Put ``quantity`` of ``sku`` into an open visit's cart (negative: put back)."""
    cart = await _store(store_id, meter, analyzer, gallery, db,
                        lambda s: s.cart(s.add_item(visit_id, body.sku, body.quantity)))
    return _cart(cart)


@router.post("/retail/stores/{store_id}/pay", openapi_extra=image_request_body("image"))
async def face_pay(store_id: StoreId, request: Request, analyzer: AnalyzerDep, gallery: GalleryDep, db: DbDep,
                   meter: Annotated[Meter, Depends(metered("retail.pay", "write"))],
                   camera: Annotated[str, Query(min_length=1, max_length=100, description="checkout camera")],
                   key: Annotated[str, Query(min_length=1, max_length=100, description="idempotency key")]) -> dict:
    """Face pay at a checkout: the uploaded face must be live and match a member at the pay FAR;
    their open visit's cart is charged once per ``key``."""
    images, _ = await read_images(request, "image")
    outcome = await _store(store_id, meter, analyzer, gallery, db, lambda s: s.exit(
        Exit(camera, utcnow(), image=images["image"], id=f"api:{key}")))
    meter.faces = 1
    return asdict(outcome)


@router.post("/retail/stores/{store_id}/charges/{charge_id}/refund")
async def refund(store_id: StoreId, charge_id: Annotated[int, PathParam(ge=1)], body: RefundRequest,
                 analyzer: AnalyzerDep, gallery: GalleryDep, db: DbDep,
                 meter: Annotated[Meter, Depends(metered("retail.refund", "write", billable=False))]) -> dict:
    """Refund a settled charge (default: what is left), once per ``key``."""
    refund_id = await _store(store_id, meter, analyzer, gallery, db, lambda s: s.refund(
        charge_id, body.amount_cents, reason=body.reason, key=body.key))
    return {"refund_id": refund_id, "charge_id": charge_id}


@router.get("/retail/stores/{store_id}/alerts")
async def list_alerts(store_id: StoreId, analyzer: AnalyzerDep, gallery: GalleryDep, db: DbDep,
                      meter: Annotated[Meter, Depends(metered("retail.alerts", "read", billable=False))],
                      open_only: Annotated[bool, Query(alias="open")] = True) -> dict:
    """Staff alerts, oldest first (``open=false``: resolved ones too)."""
    return {"alerts": await _store(store_id, meter, analyzer, gallery, db, lambda s: s.alerts(open_only=open_only))}


@router.post("/retail/stores/{store_id}/alerts/{alert_id}/resolve")
async def resolve_alert(store_id: StoreId, alert_id: Annotated[int, PathParam(ge=1)], analyzer: AnalyzerDep,
                        gallery: GalleryDep, db: DbDep,
                        meter: Annotated[Meter, Depends(metered("retail.alerts", "write", billable=False))]) -> dict:
    """Mark an alert as dealt with."""
    await _store(store_id, meter, analyzer, gallery, db, lambda s: s.resolve_alert(alert_id))
    return {"id": alert_id, "resolved": True}


@router.get("/retail/stores/{store_id}/occupancy")
async def occupancy(store_id: StoreId, analyzer: AnalyzerDep, gallery: GalleryDep, db: DbDep,
                    meter: Annotated[Meter, Depends(metered("retail.occupancy", "read", billable=False))]) -> dict:
    """Live occupancy: the visits inside now (entered within 12 h and not left)."""
    return await _store(store_id, meter, analyzer, gallery, db, lambda s: s.observations.occupancy(utcnow()))


def _cart(cart: Cart) -> dict[str, Any]:
    return {"visit_id": cart.visit_id, "items": cart.items, "total_cents": cart.total_cents,
            "lines": [asdict(line) for line in cart.lines]}
