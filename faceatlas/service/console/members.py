"""A store's members and products, for the store's owner tenant: the members listed with their
consent and enrolled faces, enrolment by uploaded photos under the consent purposes chosen (each
photo's outcome shown), consent withdrawal and a new grant with a new photo, erasure after a
confirm step; the product catalogue (add, rename, reprice, take off sale). Each action passes the
API's gate (:func:`base.gate`) with the operation and scope of its ``/v1/retail/stores/...`` route
and calls the same retail layer use case (``store.members``, ``store.products``), audited alike."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from decimal import Decimal, InvalidOperation
from typing import Annotated, Any, TypeVar

from fastapi import APIRouter, File, Form, Path, Request, UploadFile
from fastapi.responses import Response
from starlette.concurrency import run_in_threadpool

from faceatlas.apps.retail import (
    BIOMETRIC_PURPOSES,
    MAX_PRICE_CENTS,
    PURPOSES,
    ConsentRecord,
    FaceMismatch,
    MemberInfo,
    NoUsableFace,
    RetailStore,
)
from faceatlas.errors import Forbidden, InvalidArgument, NoFace
from faceatlas.gallery import Rejection
from faceatlas.service.accounts import Principal
from faceatlas.service.console.base import (
    PREFIX,
    Confirmed,
    ConsoleRoute,
    Once,
    PostingUserDep,
    UserDep,
    ask_first,
    first_sending,
    gate,
    is_htmx,
    metered,
    redirect,
    render,
    seg,
)
from faceatlas.service.console.uploads import MAX_PHOTOS, audit
from faceatlas.service.deps import AccountsDep, AnalyzerDep, DbDep, GalleryDep, SettingsDep, charge_pixels
from faceatlas.service.paths import API_PREFIX
from faceatlas.service.tenants import erase_retail_member

router = APIRouter(route_class=ConsoleRoute)
StoreId = Annotated[str, Path(min_length=1, max_length=100)]
MemberId = Annotated[str, Path(min_length=1, max_length=64)]
Sku = Annotated[str, Path(min_length=1, max_length=100)]
Photos = Annotated[list[UploadFile], File()]
Purposes = Annotated[list[str] | None, Form(max_length=len(PURPOSES))]
Text = Annotated[str, Form(max_length=400)]
T = TypeVar("T")
# what each purpose lets the store do, as the enrolment form states it (docs/retail.md, "Consent")
PURPOSE_HELP = {
    "face_pay": "recognised at the door and the checkout to charge their cart (needs a payment method)",
    "visit_recognition": "their visits kept as theirs (returning visits, named in the store's events)",
    "analytics": "their declared age band and gender counted in the store's reports",
    "marketing": "offers (not biometric: never enough on its own)",
}
def erasure_promise(keeps_ids: bool) -> str:
    """What an erasure does, stated before it is confirmed (``keeps_ids``: the server's
    ``audit_keeps_subject_ids``)."""
    trail = ("their id stays in the audit trail (this server keeps subject ids)" if keeps_ids
             else "their id is removed from the audit trail")
    return ("Erasing a member deletes at once every face, vector and stored crop of theirs (the gallery index is "
            "rewritten), their consent records and the member record; their visits and charges stay only as "
            f"anonymous counts, the payment backend forgets their payment method, and {trail}. "
            "This cannot be undone.")


async def _store(request: Request, principal: Principal, operation: str, scope: str, store_id: str,
                 analyzer: Any, gallery: Any, db: Any, use: Callable[[RetailStore], T], *,
                 billable: bool = False) -> T:
    """``use`` on the tenant's store after the gate, off the event loop (another tenant's store: 404)."""
    tenant = (await gate(request, principal, operation, scope, billable=billable)).principal.tenant_id

    def run() -> T:
        store = RetailStore.attach(store_id, tenant, analyzer, gallery, db)
        try:
            return use(store)
        finally:
            store.close()

    return await run_in_threadpool(run)


def _consent(principal: Principal, purposes: Sequence[str] | None, granted_by: str) -> ConsentRecord:
    """The consent the form gave; its ``granted_by`` left empty is not given (the layer's default,
    or refusal), as every text is checked there."""
    return ConsentRecord(tuple(purposes or ()), granted_by=granted_by or None,
                         recorded_by=f"console:{principal.key_id}")


async def _photos(request: Request, photos: Sequence[UploadFile]) -> list[bytes]:
    """The first :data:`MAX_PHOTOS` photos' bytes; large images spend more of the key's rate."""
    images = [await upload.read() for upload in photos[:MAX_PHOTOS]]
    await run_in_threadpool(charge_pixels, request, images)
    return images


UNUSABLE = (NoFace.code, "no usable face")  # (code, message): a photo not rejected when nothing was recorded


def _outcomes(photos: Sequence[UploadFile], info: MemberInfo | None, rejected: Sequence[Rejection],
              found: Sequence[tuple[str, int]], *, unlisted: tuple[str, str] = UNUSABLE) -> list[dict[str, Any]]:
    """Each photo's outcome from what the layer rejected and how many faces it found in each
    (``image#N``: the N-th photo); ``unlisted``: the outcome (code, message) of a photo not
    rejected when nothing was recorded."""
    why, faces = {rejection.source: rejection for rejection in rejected}, dict(found)
    outcomes = []
    for number, upload in enumerate(photos[:MAX_PHOTOS]):
        rejection = why.get(f"image#{number}")
        if rejection is None and info is not None:
            outcomes.append({"file": upload.filename, "ok": True, "found": faces.get(f"image#{number}", 1)})
        else:
            code, message = unlisted if rejection is None else (rejection.code, rejection.message)
            outcomes.append({"file": upload.filename, "ok": False, "code": code, "message": message})
    return outcomes


def _money(price: str) -> int:
    """A price typed as a decimal (``12.50``) in minor units (1250)."""
    try:
        cents = Decimal(price.strip()) * 100
    except InvalidOperation:
        cents = Decimal("NaN")
    if not cents.is_finite():  # NaN and Infinity are decimals too, not prices
        raise InvalidArgument(f"'{price[:40]}' is not a price: a number such as 12.50")
    if cents != cents.to_integral_value():
        raise InvalidArgument("a price has at most two decimals")
    if not 0 <= cents <= MAX_PRICE_CENTS:  # said in the form's unit (the catalogue says price_cents)
        raise InvalidArgument(f"a price is 0 to {MAX_PRICE_CENTS / 100:,.2f} (got {price.strip()[:20]})")
    return int(cents)


# -- members ---------------------------------------------------------------------------------------

@router.get("/store/{store_id}/members", include_in_schema=False)
async def members(request: Request, user: UserDep, analyzer: AnalyzerDep, gallery: GalleryDep, db: DbDep,
                  store_id: StoreId) -> Response:
    """The store's members: consent purposes and enrolled faces (no payment reference is shown)."""
    found = await _store(request, user.principal, "retail.members", "read", store_id, analyzer, gallery, db,
                         lambda s: s.members.list())
    return render(request, "members.html", user, store_id=store_id, members=found, purposes=PURPOSES,
                  purpose_help=PURPOSE_HELP, can_write=user.principal.allows("write"), max_photos=MAX_PHOTOS)


@router.post("/store/{store_id}/members", include_in_schema=False)
@metered("retail.enrol", "write")
async def enrol(request: Request, user: PostingUserDep, analyzer: AnalyzerDep, gallery: GalleryDep, db: DbDep,
                store_id: StoreId, name: Annotated[str, Form(min_length=1, max_length=400)], photos: Photos,
                purposes: Purposes = None, granted_by: Text = "", payment_ref: Text = "", once: Once = "") -> Response:
    """Enrol a member from the uploaded photos under the consent given (``members.enrol``, one
    ``retail.enrol`` call as the API's ``POST .../members``): the face of each photo that shows
    the member alone (a photo of several people is refused, and said so)."""
    consent = _consent(user.principal, purposes, granted_by)
    page, _ = await _enrolment(request, user, store_id, analyzer, gallery, db, photos,
                               lambda s, images: s.members.enrol(name, images, consent, payment_ref=payment_ref),
                               once=once)
    return page


async def _enrolment(request: Request, user: Any, store_id: str, analyzer: Any, gallery: Any, db: Any,
                     photos: Sequence[UploadFile], use: Callable[[RetailStore, list[bytes]], MemberInfo], *,
                     once: str, member: str | None = None) -> tuple[Response, MemberInfo | None]:
    """One metered ``retail.enrol`` call (an enrolment or a new grant, as the API bills one
    request) with every photo given, and the page of each photo's outcome. The form's one-time
    token ``once``: sent again (a double click), nothing is enrolled or billed again, and the page
    is the first sending's outcomes with the member as they are now (no member: the second
    sending's ``info`` is None, so nothing is audited twice)."""
    principal = user.principal
    if not principal.allows("write"):  # before a second sending's outcome is shown, too
        raise Forbidden("this key lacks the 'write' scope")
    first: list[MemberInfo] = []

    async def enrol() -> dict[str, Any]:
        meter = await gate(request, principal, "retail.enrol", "write")
        images = await _photos(request, photos)
        tenant = meter.principal.tenant_id

        def run() -> MemberInfo:
            store = RetailStore.attach(store_id, tenant, analyzer, gallery, db)
            try:
                return use(store, images)
            finally:
                store.close()

        status, info, refusal, unlisted = 200, None, None, UNUSABLE
        try:
            info = await run_in_threadpool(run)
            meter.faces, rejected, found = info.faces, info.rejected, info.faces_in_image
            first.append(info)
        except (NoUsableFace, FaceMismatch) as refused:  # each photo's reason, as the galleries page shows them
            status, rejected, found, refusal = refused.status, refused.rejected, refused.faces_in_image, refused.code
            if isinstance(refused, FaceMismatch):  # a photo of the member's, refused with another's
                unlisted = ("not_recorded", "the member's face, not recorded as another photo is not theirs")
        # "id": the member's, as the API's create answers it, so that their erasure replaces this outcome
        return {"status": status, "refusal": refusal, "member": info.id if info else None,
                "id": info.id if info else None,
                "outcomes": _outcomes(photos, info, rejected, found, unlisted=unlisted),
                "skipped": max(0, len(photos) - MAX_PHOTOS)}

    members_path = f"{API_PREFIX}/retail/stores/{store_id}/members"
    done = await first_sending(request, principal.tenant_id, once,
                               members_path if member is None else f"{members_path}/{member}/consent", enrol)
    info = first[0] if first else None
    shown = info
    if done.get("sent_before") and done["member"]:  # the member as they are now (erased since: 404)
        shown = await _store(request, principal, "retail.members", "read", store_id, analyzer, gallery, db,
                             lambda s: s.members.get(done["member"]))
    context: dict[str, Any] = {"store_id": store_id, "info": shown, "member": member, "refusal": done["refusal"],
                               "outcomes": done["outcomes"], "skipped": done["skipped"],
                               "sent_before": done.get("sent_before", False)}
    if is_htmx(request):
        return render(request, "_member_enrol.html", user, status_code=done["status"], next_once=True, **context), info
    return render(request, "member_enrolled.html", user, status_code=done["status"], **context), info


@router.get("/store/{store_id}/members/{member_id}", include_in_schema=False)
async def member_page(request: Request, user: UserDep, analyzer: AnalyzerDep, gallery: GalleryDep, db: DbDep,
                      store_id: StoreId, member_id: MemberId) -> Response:
    info = await _store(request, user.principal, "retail.members", "read", store_id, analyzer, gallery, db,
                        lambda s: s.members.get(member_id))
    return render(request, "member.html", user, store_id=store_id, member=info, purposes=PURPOSES,
                  purpose_help=PURPOSE_HELP, biometric=BIOMETRIC_PURPOSES, can_write=user.principal.allows("write"),
                  max_photos=MAX_PHOTOS)


@router.post("/store/{store_id}/members/{member_id}/withdraw", include_in_schema=False)
async def withdraw(request: Request, user: PostingUserDep, accounts: AccountsDep, analyzer: AnalyzerDep,
                   gallery: GalleryDep, db: DbDep, store_id: StoreId, member_id: MemberId,
                   purposes: Purposes = None) -> Response:
    """Withdraw the purposes ticked (``members.withdraw``, as ``PATCH .../members/{member}``): with
    no biometric purpose left, every face of the member leaves the gallery at once."""
    if not purposes:
        raise InvalidArgument("tick the purposes to withdraw")
    report = await _store(request, user.principal, "retail.consent", "write", store_id, analyzer, gallery, db,
                          lambda s: s.members.withdraw(member_id, purposes))
    if report.withdrawn:  # a withdrawal that changed nothing writes no record, as the API's
        await audit(accounts, user.principal, "retail.consent.withdraw", f"{store_id}/{member_id}",
                    {"withdrawn": list(report.withdrawn), "faces_deleted": report.faces_deleted})
    return render(request, "member_withdrawn.html", user, store_id=store_id, report=report)


@router.post("/store/{store_id}/members/{member_id}/consent", include_in_schema=False)
@metered("retail.enrol", "write")
async def grant(request: Request, user: PostingUserDep, accounts: AccountsDep, analyzer: AnalyzerDep,
                gallery: GalleryDep, db: DbDep, store_id: StoreId, member_id: MemberId, photos: Photos,
                purposes: Purposes = None, granted_by: Annotated[str, Form(min_length=1, max_length=400)] = "",
                payment_ref: Text = "", once: Once = "") -> Response:
    """A new consent with new photos (``members.grant``, as ``POST .../members/{member}/consent``)."""
    principal = user.principal
    consent = _consent(principal, purposes, granted_by)
    page, info = await _enrolment(request, user, store_id, analyzer, gallery, db, photos,
                                  lambda s, images: s.members.grant(member_id, images, consent,
                                                                    payment_ref=payment_ref),
                                  once=once, member=member_id)
    if info is not None:
        await audit(accounts, principal, "retail.consent.grant", f"{store_id}/{member_id}",
                    {"purposes": list(info.purposes)})
    return page


@router.get("/store/{store_id}/members/{member_id}/erase", include_in_schema=False)
async def erase_confirm(request: Request, user: UserDep, settings: SettingsDep, analyzer: AnalyzerDep,
                        gallery: GalleryDep, db: DbDep, store_id: StoreId, member_id: MemberId) -> Response:
    """The confirm step of an erasure: what it removes, stated before it is done."""
    if not user.principal.allows("write"):
        raise Forbidden("this key lacks the 'write' scope")
    info = await _store(request, user.principal, "retail.members", "read", store_id, analyzer, gallery, db,
                        lambda s: s.members.get(member_id))
    return render(request, "member_erase.html", user, store_id=store_id, member=info,
                  promise=erasure_promise(settings.audit_keeps_subject_ids))


@router.post("/store/{store_id}/members/{member_id}/erase", include_in_schema=False)
async def erase(request: Request, user: PostingUserDep, accounts: AccountsDep, settings: SettingsDep,
                analyzer: AnalyzerDep, gallery: GalleryDep, db: DbDep, store_id: StoreId, member_id: MemberId,
                confirm: Annotated[str, Form(max_length=10)] = "") -> Response:
    """Erase a member (``members.erase``, as ``DELETE .../members/{member}``), once confirmed."""
    if confirm != "erase":
        raise InvalidArgument("an erasure needs its confirmation (the confirm step)")
    principal = user.principal
    # the stored outcomes of forms (and API calls) that named the member name them no more, as the API's erasure
    erased = await _store(request, principal, "retail.erase", "write", store_id, analyzer, gallery, db,
                          lambda s: erase_retail_member(s, accounts, principal.tenant_id, member_id,
                                                        keep_ids=settings.audit_keeps_subject_ids,
                                                        answers=request.app.state.shared))
    report = erased.report
    await audit(accounts, principal, "retail.erase", erased.target, {"faces": report.faces_deleted})
    return render(request, "member_erased.html", user, store_id=store_id, report=report,
                  promise=erasure_promise(settings.audit_keeps_subject_ids))


# -- products --------------------------------------------------------------------------------------

@router.get("/store/{store_id}/products", include_in_schema=False)
async def products(request: Request, user: UserDep, analyzer: AnalyzerDep, gallery: GalleryDep, db: DbDep,
                   store_id: StoreId) -> Response:
    currency, found = await _store(request, user.principal, "retail.products", "read", store_id, analyzer,
                                   gallery, db, lambda s: (s.config.currency, s.products.list()))
    return render(request, "products.html", user, store_id=store_id, currency=currency, products=found,
                  can_write=user.principal.allows("write"))


@router.post("/store/{store_id}/products", include_in_schema=False)
async def create_product(request: Request, user: PostingUserDep, accounts: AccountsDep, analyzer: AnalyzerDep,
                         gallery: GalleryDep, db: DbDep, store_id: StoreId,
                         sku: Annotated[str, Form(min_length=1, max_length=100)],
                         name: Annotated[str, Form(min_length=1, max_length=400)],
                         price: Annotated[str, Form(min_length=1, max_length=20)]) -> Response:
    cents = _money(price)
    product = await _store(request, user.principal, "retail.products", "write", store_id, analyzer, gallery, db,
                           lambda s: s.products.create(sku, name, cents))
    await audit(accounts, user.principal, "retail.product.create", f"{store_id}/products",
                {"sku": product.sku, "price_cents": product.price_cents})
    return redirect(request, f"{PREFIX}/store/{seg(store_id)}/products")


@router.post("/store/{store_id}/products/{sku}", include_in_schema=False)
async def update_product(request: Request, user: PostingUserDep, accounts: AccountsDep, analyzer: AnalyzerDep,
                         gallery: GalleryDep, db: DbDep, store_id: StoreId, sku: Sku,
                         name: Annotated[str, Form(min_length=1, max_length=400)],
                         price: Annotated[str, Form(min_length=1, max_length=20)]) -> Response:
    """Rename and/or reprice (a new price applies to picks after it; carts keep the price picked)."""
    cents = _money(price)
    await _store(request, user.principal, "retail.products", "write", store_id, analyzer, gallery, db,
                 lambda s: s.products.update(sku, name=name, price_cents=cents))
    await audit(accounts, user.principal, "retail.product.update", f"{store_id}/products",
                {"sku": sku, "name": name, "price_cents": cents})
    return redirect(request, f"{PREFIX}/store/{seg(store_id)}/products")


@router.post("/store/{store_id}/products/{sku}/delete", include_in_schema=False)
async def delete_product(request: Request, user: PostingUserDep, accounts: AccountsDep, analyzer: AnalyzerDep,
                         gallery: GalleryDep, db: DbDep, store_id: StoreId, sku: Sku,
                         confirmed: Confirmed = "") -> Response:
    """Take a product off sale, once confirmed."""
    if asked := await ask_first(request, user, confirmed, "write", f"Take {sku} off sale? Open carts keep it at the "
                                "price picked.", f"{PREFIX}/store/{seg(store_id)}/products"):
        return asked
    removal = await _store(request, user.principal, "retail.products", "write", store_id, analyzer, gallery, db,
                           lambda s: s.products.delete(sku))
    await audit(accounts, user.principal, "retail.product.delete", f"{store_id}/products",
                {"sku": sku, "open_carts": removal.open_carts})
    return redirect(request, f"{PREFIX}/store/{seg(store_id)}/products")
