"""Retail for the store's owner tenant (no other tenant sees the store: 404): analytics as JSON,
CSV or a PNG chart; members (consent, its withdrawal and a new grant by upload, enrolment by
upload, erasure), the product catalogue, carts, face pay and refunds, staff alerts and live
occupancy. A store is reachable once `faceatlas retail run`
(or ``RetailStore.open``) saved its config."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import asdict
from typing import Annotated, Any, Literal, TypeVar

from fastapi import APIRouter, Depends, Query, Request
from fastapi import Path as PathParam
from fastapi.responses import PlainTextResponse, Response
from pydantic import Field
from starlette.concurrency import run_in_threadpool

from faceatlas.apps.retail import (
    CHARTS,
    MAX_PRICE_CENTS,
    PURPOSES,
    REFUND_REASON_MAX_LENGTH,
    Cart,
    ConsentRecord,
    Exit,
    MemberInfo,
    Product,
    RetailStore,
    csv_text,
    report_window,
    store_report,
)
from faceatlas.db import utcnow
from faceatlas.errors import InvalidArgument
from faceatlas.gallery import ROW_ID_MAX
from faceatlas.service.deps import (
    AccountsDep,
    AnalyzerDep,
    AuditEntry,
    DbDep,
    GalleryDep,
    Meter,
    MeteredRoute,
    PoolDep,
    PrincipalDep,
    SettingsDep,
    StoreChartsDep,
    audited,
    image_request_body,
    metered,
    read_images,
)
from faceatlas.service.idempotency import store_answer_at
from faceatlas.service.inference import InferencePool
from faceatlas.service.schemas import (
    JSON_INTEGER,
    IsoDate,
    RequestBody,
    RetailAlertList,
    RetailAlertResolvedOut,
    RetailCartOut,
    RetailEnrolOut,
    RetailErasureOut,
    RetailExitOut,
    RetailMemberOut,
    RetailOccupancyOut,
    RetailProductList,
    RetailProductOut,
    RetailProductRemovedOut,
    RetailRefundOut,
    RetailReportOut,
    RetailWithdrawalOut,
)
from faceatlas.service.tenants import erase_retail_member

router = APIRouter(tags=["retail"], route_class=MeteredRoute)
Chart = Literal[CHARTS]  # type: ignore[valid-type]


@router.get(
    "/retail/stores/{store_id}/analytics",
    response_model=RetailReportOut,
    responses={200: {"content": {"text/csv": {}, "image/png": {}}}},
)
async def store_analytics(
    store_id: str,
    db: DbDep,
    charts: StoreChartsDep,
    meter: Annotated[Meter, Depends(metered("retail.analytics", "read", billable=False))],
    start: Annotated[IsoDate | None, Query(alias="from", description="first day, YYYY-MM-DD (default: 29 days "
                                                                     "before to: 30 days in all)")] = None,
    end: Annotated[IsoDate | None, Query(alias="to", description="last day, inclusive, YYYY-MM-DD (default: "
                                                                 "today)")] = None,
    format: Annotated[Literal["json", "csv", "png"], Query()] = "json",
    chart: Annotated[Chart, Query(description="the chart drawn when format=png")] = "visits_per_hour",
) -> dict | Response:
    """Visitors, returning visitors, conversion, dwell, zone heat, basket size and demographics. A
    PNG chart is drawn only when its figures changed since it was last drawn for this tenant's store
    (the dashboard's :class:`ChartCache`): it was drawn on every request."""
    first, last = report_window(start, end)
    tenant = meter.principal.tenant_id
    report = await run_in_threadpool(store_report, db, tenant, store_id, first, last)
    if format == "csv":
        return PlainTextResponse(csv_text(report), media_type="text/csv")
    if format == "png":
        return Response(await run_in_threadpool(charts.png, tenant, store_id, report, chart), media_type="image/png")
    return {
        "store": store_id,
        "from": first.isoformat(),
        "to": last.isoformat(),
        "summary": report.summary(),
        "sections": [{"metric": m, "key": k, "value": v} for m, k, v in report.rows() if m != "summary"],
    }


# -- store operations: the owner tenant's members, products, carts, face pay, alerts, occupancy ------

StoreId = Annotated[str, PathParam(min_length=1, max_length=100)]
MemberId = Annotated[str, PathParam(min_length=1, max_length=64)]
Sku = Annotated[str, PathParam(min_length=1, max_length=100)]
# A visit's, charge's or alert's id: beyond a BIGINT the database would fail on it (a 500), so 422 here.
RowId = Annotated[int, PathParam(ge=1, le=ROW_ID_MAX)]
MEMBER = "{store_id}/{member_id}"  # the audit target of a member (erasure blanks the member id)
T = TypeVar("T")
Price = Annotated[int, Field(ge=0, le=MAX_PRICE_CENTS, strict=True, description=f"minor units (cents), {JSON_INTEGER}")]


class ProductCreate(RequestBody):
    sku: str = Field(min_length=1, max_length=100)
    name: str = Field(min_length=1, max_length=400)
    price_cents: Price


class ProductChange(RequestBody):
    name: str | None = Field(default=None, min_length=1, max_length=400)
    price_cents: Price | None = None


class ConsentChange(RequestBody):
    consent: bool = Field(strict=True, description="false: withdraw (a new consent is POST .../consent with a "
                                                   "new photo); JSON true or false ('false' or 0 withdrew)")
    purposes: list[str] | None = Field(default=None, max_length=10,
                                       description="the purposes withdrawn (default: every one; [] is 422)")


class PickRequest(RequestBody):
    sku: str = Field(min_length=1, max_length=100)
    quantity: int = Field(default=1, ge=-1000, le=1000, strict=True, description=JSON_INTEGER)  # true added 1


class RefundRequest(RequestBody):
    amount_cents: int | None = Field(default=None, ge=1, le=MAX_PRICE_CENTS * 1000, strict=True,  # true refunded 1
                                     description=JSON_INTEGER)
    reason: str = Field(default="", max_length=REFUND_REASON_MAX_LENGTH)
    key: str | None = Field(default=None, min_length=1, max_length=200, description="idempotency key")


async def _store(store_id: str, meter: Meter, analyzer: Any, gallery: Any, db: Any,
                 use: Callable[[RetailStore], T], *, pool: InferencePool | None = None) -> T:
    """``use`` on the tenant's store in a worker thread; with ``pool`` (a use that reads a face photo),
    as one job of the tenant's in the inference pool: bounded and in the tenants' turn, as a detect."""
    def run() -> T:
        store = RetailStore.attach(store_id, meter.principal.tenant_id, analyzer, gallery, db)
        try:
            return use(store)
        finally:
            store.close()
    if pool is not None:
        result: T = await pool.run(run, tenant=meter.principal.tenant_id)
        return result
    return await run_in_threadpool(run)


def _member(info: MemberInfo) -> dict[str, Any]:
    return {"id": info.id, "name": info.name, "enrolled_at": info.enrolled_at.isoformat(),
            "purposes": list(info.purposes), "faces": info.faces, "has_payment_method": info.has_payment_method}


def _enrolled(info: MemberInfo) -> dict[str, Any]:
    """A member after an enrolment or a new grant of one photo, with how many faces it held."""
    return {**_member(info), "faces_in_image": info.faces_in_image[0][1] if info.faces_in_image else None}


@router.get("/retail/stores/{store_id}/members", response_model=dict[str, list[RetailMemberOut]])
async def list_members(store_id: StoreId, analyzer: AnalyzerDep, gallery: GalleryDep, db: DbDep,
                       meter: Annotated[Meter, Depends(metered("retail.members", "read", billable=False))]) -> dict:
    """The store's members (no payment reference is ever echoed)."""
    members = await _store(store_id, meter, analyzer, gallery, db, lambda s: s.members.list())
    return {"members": [_member(m) for m in members]}


# The consent's fields of an enrolment (with the member's name) or a new grant: the multipart form
# takes ``purposes`` once per purpose or comma-separated (only the latter worked, said in the JSON
# schema alone; the form's schema listed the image and none of these), a JSON body comma-separated.
_PURPOSES = f"of {', '.join(PURPOSES)}"
_CONSENT_JSON = {"purposes": {"type": "string", "description": f"comma-separated, {_PURPOSES}"},
                 "granted_by": {"type": "string", "description": "who gave the consent (default: the member)"},
                 "payment_ref": {"type": "string", "description": "the card's reference (face_pay needs it)"}}
_CONSENT_FORM = {**_CONSENT_JSON, "purposes": {
    "type": "array", "items": {"type": "string"},
    "description": f"the purposes consented to, {_PURPOSES}: the field once per purpose "
                   "(purposes=face_pay, purposes=visit_recognition), or once, comma-separated"}}
_NAME = {"name": {"type": "string", "description": "the member's name"}}


@router.post("/retail/stores/{store_id}/members", status_code=201, response_model=RetailEnrolOut,
             openapi_extra=image_request_body("image", extra=_NAME | _CONSENT_JSON, form=_NAME | _CONSENT_FORM))
async def enrol_member(store_id: StoreId, request: Request, analyzer: AnalyzerDep, pool: PoolDep, gallery: GalleryDep,
                       db: DbDep,
                       meter: Annotated[Meter, Depends(metered("retail.enrol", "write", idempotent=True))]) -> dict:
    """Enrol a member from an uploaded face photo under the consent given (``purposes`` of
    face_pay, visit_recognition, analytics, marketing; ``granted_by`` the person or guardian). The
    photo shows the member alone: one of several people is refused (422 ``too_many_faces``), a
    consent being one person's; ``faces_in_image`` says how many faces it held."""
    image, name, consent, payment = await _consent_form(request, meter, ENROL_FIELDS)
    info = await _store(store_id, meter, analyzer, gallery, db, lambda s: s.members.enrol(
        name, [image], consent, payment_ref=payment), pool=pool)
    meter.faces = info.faces
    return _enrolled(info)


ENROL_FIELDS = ("name", "purposes", "granted_by", "payment_ref")
GRANT_FIELDS = ("purposes", "granted_by", "payment_ref")  # a new consent names no member: granted_by says who


async def _consent_form(request: Request, meter: Meter,
                        fields: tuple[str, ...]) -> tuple[bytes, str, ConsentRecord, str | None]:
    """The photo, name (an enrolment's), consent and payment reference of an enrolment or a new
    consent, as sent (the layer checks them: blanks, ``granted_by``'s default); a field of
    ``fields`` only (another, a new consent's ``name`` taken as who granted it, is 422). The
    ``purposes`` are comma-separated, in one field or several (a form's ``purposes`` given once per
    purpose was refused as given more than once)."""
    images, given = await read_images(request, "image", fields=fields, repeated=("purposes",))
    listed = given.pop("purposes", [])  # its values, one or several
    form = {key: value for key, value in given.items() if isinstance(value, (str, int, float))}
    untexted = set(given) - set(form) | {"purposes" for value in listed if not isinstance(value, (str, int, float))}
    if untexted:
        raise InvalidArgument(f"{', '.join(sorted(untexted))}: text expected")
    purposes = tuple(p.strip() for value in listed for p in str(value).split(",") if p.strip())
    granted_by, payment = form.get("granted_by"), form.get("payment_ref")
    consent = ConsentRecord(purposes, granted_by=None if granted_by is None else str(granted_by),
                            recorded_by=f"api:{meter.principal.key_id}")
    return images["image"], str(form.get("name", "")), consent, None if payment is None else str(payment)


@router.patch("/retail/stores/{store_id}/members/{member_id}", response_model=RetailWithdrawalOut)
async def change_consent(store_id: StoreId, member_id: MemberId, body: ConsentChange, analyzer: AnalyzerDep,
                         gallery: GalleryDep, db: DbDep,
                         meter: Annotated[Meter, Depends(metered("retail.consent", "write", billable=False,
                                                                 idempotent=True))],
                         accounts: AccountsDep) -> dict:
    """Withdraw a member's consent (``purposes``: some of it, not none) at once: with no biometric
    purpose left, every face vector of theirs leaves the store's gallery and they are recognised
    nowhere, face pay included; the member, consent history, visits and charges stay (DELETE
    erases). A withdrawal that withdraws nothing (asked again) writes no audit record."""
    if body.consent:
        raise InvalidArgument("a new consent needs a new photo: POST "
                              f"/v1/retail/stores/{store_id}/members/{member_id}/consent")
    report = await _store(store_id, meter, analyzer, gallery, db,
                          lambda s: s.members.withdraw(member_id, body.purposes))
    if report.withdrawn:  # audited as `audited` does (a replay never runs this), only when it changed something
        await run_in_threadpool(accounts.audit_committed, "retail.consent.withdraw", MEMBER.format(
            store_id=store_id, member_id=member_id), meter.principal.tenant_id, meter.principal.key_id,
            {"withdrawn": list(report.withdrawn), "faces_deleted": report.faces_deleted})
    return {"member": report.member_id, "withdrawn": list(report.withdrawn), "purposes": list(report.purposes),
            "faces_deleted": report.faces_deleted, "payment_method_removed": report.payment_method_removed,
            "demographics_removed": report.demographics_removed}


@router.post("/retail/stores/{store_id}/members/{member_id}/consent", response_model=RetailEnrolOut,
             openapi_extra=image_request_body("image", extra=_CONSENT_JSON, form=_CONSENT_FORM))
async def grant_consent(store_id: StoreId, member_id: MemberId, request: Request, analyzer: AnalyzerDep,
                        pool: PoolDep, gallery: GalleryDep, db: DbDep,
                        meter: Annotated[Meter, Depends(metered("retail.enrol", "write", idempotent=True))],
                        audit: Annotated[AuditEntry, audited("retail.consent.grant", MEMBER)]) -> dict:
    """A new consent of a member, with a new face photo (the faces of a withdrawn consent are gone
    for good): the same rules as enrolment (a biometric purpose; face_pay needs ``payment_ref``;
    a photo of the member alone, ``too_many_faces`` else). While the member holds faces the photo
    must be theirs, matched at the store's face pay FAR: another person's is 409 ``face_mismatch``,
    nothing recorded and no grant audited."""
    image, _, consent, payment = await _consent_form(request, meter, GRANT_FIELDS)
    info = await _store(store_id, meter, analyzer, gallery, db, lambda s: s.members.grant(
        member_id, [image], consent, payment_ref=payment), pool=pool)
    meter.faces = 1
    audit.details["purposes"] = list(info.purposes)
    return _enrolled(info)


@router.delete("/retail/stores/{store_id}/members/{member_id}", response_model=RetailErasureOut)
async def erase_member(store_id: StoreId, member_id: MemberId, analyzer: AnalyzerDep, gallery: GalleryDep,
                       db: DbDep, meter: Annotated[Meter, Depends(metered("retail.erase", "write", billable=False,
                                                                          idempotent=True))],
                       audit: Annotated[AuditEntry, audited("retail.erase", MEMBER)], principal: PrincipalDep,
                       accounts: AccountsDep, settings: SettingsDep, request: Request) -> dict[str, Any]:
    """Erase a member: faces, vectors, consents, the stored answers of calls on them
    (Idempotency-Key); visits and charges stay as anonymous counts, and (unless the server keeps
    them) the member id leaves the audit trail."""
    erased = await _store(store_id, meter, analyzer, gallery, db, lambda s: erase_retail_member(
        s, accounts, principal.tenant_id, member_id, keep_ids=settings.audit_keeps_subject_ids,
        answers=request.app.state.shared))
    report = erased.report
    audit.details["faces"], audit.target = report.faces_deleted, erased.target
    # its own stored answer, kept under the members' path without the member's id, names them no more either
    store_answer_at(request, request.url.path.rsplit("/", 1)[0], drop=("member",))
    return {"member": report.member_id, "faces_deleted": report.faces_deleted,
            "consents_deleted": report.consents_deleted, "visits_anonymised": report.visits_anonymised,
            "charges_anonymised": report.charges_anonymised}


@router.get("/retail/stores/{store_id}/products", response_model=RetailProductList)
async def list_products(store_id: StoreId, analyzer: AnalyzerDep, gallery: GalleryDep, db: DbDep,
                        meter: Annotated[Meter, Depends(metered("retail.products", "read", billable=False))]) -> dict:
    """The products on sale, by SKU (prices in minor units)."""
    currency, products = await _store(store_id, meter, analyzer, gallery, db,
                                      lambda s: (s.config.currency, s.products.list()))
    return {"currency": currency, "products": [p.model_dump() for p in products]}


@router.post("/retail/stores/{store_id}/products", status_code=201, response_model=RetailProductOut)
async def create_product(store_id: StoreId, body: ProductCreate, analyzer: AnalyzerDep, gallery: GalleryDep,
                         db: DbDep, meter: Annotated[Meter, Depends(metered("retail.products", "write",
                                                                             billable=False, idempotent=True))],
                         audit: Annotated[AuditEntry, audited("retail.product.create", "{store_id}/products")]) -> dict:
    """Put a product on sale (409 when the SKU is on sale already)."""
    product: Product = await _store(store_id, meter, analyzer, gallery, db,
                                    lambda s: s.products.create(body.sku, body.name, body.price_cents))
    audit.details.update(sku=product.sku, price_cents=product.price_cents)
    return product.model_dump()


@router.patch("/retail/stores/{store_id}/products/{sku}", response_model=RetailProductOut)
async def update_product(store_id: StoreId, sku: Sku, body: ProductChange, analyzer: AnalyzerDep,
                         gallery: GalleryDep, db: DbDep,
                         meter: Annotated[Meter, Depends(metered("retail.products", "write", billable=False,
                                                                 idempotent=True))],
                         audit: Annotated[AuditEntry, audited("retail.product.update", "{store_id}/products")]) -> dict:
    """Rename or reprice a product; a new price applies to picks after it (carts keep the price picked)."""
    product: Product = await _store(store_id, meter, analyzer, gallery, db, lambda s: s.products.update(
        sku, name=body.name, price_cents=body.price_cents))
    audit.details.update(sku=sku, **body.model_dump(exclude_none=True))
    return product.model_dump()


@router.delete("/retail/stores/{store_id}/products/{sku}", response_model=RetailProductRemovedOut)
async def delete_product(store_id: StoreId, sku: Sku, analyzer: AnalyzerDep, gallery: GalleryDep, db: DbDep,
                         meter: Annotated[Meter, Depends(metered("retail.products", "write", billable=False,
                                                                 idempotent=True))],
                         audit: Annotated[AuditEntry, audited("retail.product.delete", "{store_id}/products")]) -> dict:
    """Take a product off sale. Open carts that hold it keep it at the price picked (``open_carts``
    says how many); it can be put back but no longer picked."""
    removal = await _store(store_id, meter, analyzer, gallery, db, lambda s: s.products.delete(sku))
    audit.details.update(sku=sku, open_carts=removal.open_carts)
    return {"sku": removal.sku, "deleted": True, "open_carts": removal.open_carts}


@router.get("/retail/stores/{store_id}/visits/{visit_id}/cart", response_model=RetailCartOut)
async def get_cart(store_id: StoreId, visit_id: RowId, analyzer: AnalyzerDep,
                   gallery: GalleryDep, db: DbDep,
                   meter: Annotated[Meter, Depends(metered("retail.carts", "read", billable=False))]) -> dict[str, Any]:
    """A visit's cart."""
    cart = await _store(store_id, meter, analyzer, gallery, db, lambda s: s.cart(visit_id))
    return _cart(cart)


@router.post("/retail/stores/{store_id}/visits/{visit_id}/cart", response_model=RetailCartOut)
async def add_to_cart(store_id: StoreId, visit_id: RowId, body: PickRequest,
                      analyzer: AnalyzerDep, gallery: GalleryDep, db: DbDep,
                      meter: Annotated[Meter, Depends(metered("retail.carts", "write", billable=False,
                                                              idempotent=True))]) -> dict[str, Any]:
    """Put ``quantity`` of ``sku`` into an open visit's cart (negative: put back)."""
    cart = await _store(store_id, meter, analyzer, gallery, db,
                        lambda s: s.cart(s.add_item(visit_id, body.sku, body.quantity)))
    return _cart(cart)


@router.post("/retail/stores/{store_id}/pay", response_model=RetailExitOut, openapi_extra=image_request_body("image"))
async def face_pay(store_id: StoreId, request: Request, analyzer: AnalyzerDep, pool: PoolDep, gallery: GalleryDep,
                   db: DbDep,
                   meter: Annotated[Meter, Depends(metered("retail.pay", "write", idempotent=True))],
                   camera: Annotated[str, Query(min_length=1, max_length=100, description="checkout camera")],
                   event: Annotated[str, Query(min_length=1, max_length=200,
                                               description="the payment's id: its idempotency key")]) -> dict[str, Any]:
    """Face pay at a checkout: the uploaded face must be live and match a member at the pay FAR;
    their open visit's cart is charged once per ``event`` (not ``key``: the server redacts a
    query parameter of that name from every URL, as it may be an API key)."""
    images, _ = await read_images(request, "image")
    exit_id = "api:" + hashlib.sha256(f"{store_id}\x00{event}".encode()).hexdigest()[:40]  # one store's ids
    outcome = await _store(store_id, meter, analyzer, gallery, db, lambda s: s.exit(
        Exit(camera, utcnow(), image=images["image"], id=exit_id)), pool=pool)  # liveness, match: a job of the pool
    meter.faces = outcome.faces  # a photo without a face (or a repeated event) analysed none
    return asdict(outcome)


@router.post("/retail/stores/{store_id}/charges/{charge_id}/refund", response_model=RetailRefundOut)
async def refund(store_id: StoreId, charge_id: RowId, body: RefundRequest,
                 analyzer: AnalyzerDep, gallery: GalleryDep, db: DbDep,
                 meter: Annotated[Meter, Depends(metered("retail.refund", "write", billable=False,
                                                         idempotent=True))]) -> dict[str, Any]:
    """Refund a settled charge (default: what is left), once per ``key``."""
    refund_id = await _store(store_id, meter, analyzer, gallery, db, lambda s: s.refund(
        charge_id, body.amount_cents, reason=body.reason, key=body.key))
    return {"refund_id": refund_id, "charge_id": charge_id}


@router.get("/retail/stores/{store_id}/alerts", response_model=RetailAlertList)
async def list_alerts(store_id: StoreId, analyzer: AnalyzerDep, gallery: GalleryDep, db: DbDep,
                      meter: Annotated[Meter, Depends(metered("retail.alerts", "read", billable=False))],
                      open_only: Annotated[bool, Query(alias="open")] = True) -> dict[str, Any]:
    """Staff alerts, oldest first (``open=false``: resolved ones too)."""
    return {"alerts": await _store(store_id, meter, analyzer, gallery, db, lambda s: s.alerts(open_only=open_only))}


@router.post("/retail/stores/{store_id}/alerts/{alert_id}/resolve", response_model=RetailAlertResolvedOut)
async def resolve_alert(store_id: StoreId, alert_id: RowId, analyzer: AnalyzerDep,
                        gallery: GalleryDep, db: DbDep,
                        meter: Annotated[Meter, Depends(metered("retail.alerts", "write", billable=False,
                                                                idempotent=True))]) -> dict[str, Any]:
    """Mark an alert as dealt with, once: resolving it again changes nothing and says
    ``already_resolved``, with the first resolution's ``resolved_at``."""
    done = await _store(store_id, meter, analyzer, gallery, db, lambda s: s.resolve_alert(alert_id))
    return {"id": done.id, "resolved": True, "already_resolved": done.already,
            "resolved_at": done.resolved_at.isoformat()}


@router.get("/retail/stores/{store_id}/occupancy", response_model=RetailOccupancyOut)
async def occupancy(
    store_id: StoreId, analyzer: AnalyzerDep, gallery: GalleryDep, db: DbDep,
    meter: Annotated[Meter, Depends(metered("retail.occupancy", "read", billable=False))],
) -> dict[str, Any]:
    """Live occupancy: the visits inside now (entered within the store's ``privacy.max_visit_hours``,
    12 by default, and not left: an older open visit is one whose exit was missed)."""
    return await _store(store_id, meter, analyzer, gallery, db, lambda s: s.observations.occupancy(utcnow()))


def _cart(cart: Cart) -> dict[str, Any]:
    return {"visit_id": cart.visit_id, "items": cart.items, "total_cents": cart.total_cents,
            "lines": [asdict(line) for line in cart.lines]}
