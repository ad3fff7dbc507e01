"""RetailStore: visits from entrance/exit events, carts, checkout-free face pay, refunds, alerts.

Face pay at the exit needs a live face (MiniFASNet) that matches a member at the strict FAR of
the pack calibration (1e-6 by default); otherwise nobody is charged and a staff alert is stored.
A retried exit event (same id) never charges twice: the exit event id is unique on the visit
and on the charge, and the payment backend is called with it as idempotency key.
"""

from __future__ import annotations

import hashlib
import uuid
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, Literal

import numpy as np
from sqlalchemy import delete, func, select, update
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from faceatlas.apps.retail.analytics import Report, compute_report
from faceatlas.apps.retail.config import Camera, CameraRole, StoreConfig
from faceatlas.apps.retail.db import (
    Alert,
    AnonymousVisitor,
    CartItem,
    Charge,
    Member,
    Refund,
    StoreRecord,
    Visit,
    ZoneVisitRecord,
    migrate,
    utcnow,
)
from faceatlas.apps.retail.events import Entry, Exit, Pick, Sighting, ZoneVisit
from faceatlas.apps.retail.members import MemberRegistry, active_purposes
from faceatlas.apps.retail.observations import Observations
from faceatlas.apps.retail.payments import LedgerPayments, PaymentBackend
from faceatlas.apps.retail.products import Catalogue
from faceatlas.db import create_database_engine, default_database_url, normalize_url, rowcount
from faceatlas.engine import Cut, Embedding, Face, FaceAnalyzer, NotCalibrated, l2_normalize, top_k
from faceatlas.errors import Conflict, InvalidArgument, ModelMismatch
from faceatlas.gallery import Gallery, NotFound, check_stored, check_text, mismatch_message, name_key

REFUND_REASON_MAX_LENGTH = 400  # its column's width (characters)

COLLECTION = "members"
ExitStatus = Literal["charged", "no_purchase", "unpaid", "refused", "no_visit"]


class UnknownShopper(Conflict):
    """An event names a shopper with no open visit."""

    code = "unknown_shopper"


@dataclass(frozen=True)
class CartLine:
    """One product in a cart at one price: net quantity and the price when picked (a product
    picked before and after a price change is two lines)."""

    sku: str
    quantity: int
    unit_price_cents: int


@dataclass(frozen=True)
class Cart:
    """The items of one visit."""

    visit_id: int
    lines: list[CartLine]

    @property
    def items(self) -> int:
        return sum(line.quantity for line in self.lines)

    @property
    def total_cents(self) -> int:
        return sum(line.quantity * line.unit_price_cents for line in self.lines)


@dataclass(frozen=True)
class AlertResolution:
    """An alert dealt with: when it was (``resolved_at``, the first resolution's) and whether it
    was ``already`` resolved before this call, which then changed nothing."""

    id: int
    resolved_at: datetime
    already: bool


@dataclass(frozen=True)
class ExitOutcome:
    """What an exit did. ``repeated`` is True when the event had been handled already; ``faces``:
    how many faces this exit analysed (0 for a photo without one, or a repeated event)."""

    status: ExitStatus
    visit_id: int | None
    member_id: str | None = None
    amount_cents: int = 0
    charge_id: int | None = None
    alert: str | None = None
    repeated: bool = False
    faces: int = 0


class RetailStore:
    """One store: members, visits, carts, face pay and alerts over the gallery's database."""

    def __init__(self, config: StoreConfig, analyzer: FaceAnalyzer, gallery: Gallery, engine: Engine,
                 payments: PaymentBackend | None = None, *, owns: bool = True) -> None:
        self.config = config
        self._owns = owns
        self.analyzer = analyzer
        self.gallery = gallery
        self._engine = engine
        self._sessions = sessionmaker(engine, expire_on_commit=False)
        self.payments: PaymentBackend = payments or LedgerPayments(self._sessions)
        try:
            members = gallery.get_collection(COLLECTION)
        except NotFound:
            gallery.create_collection(COLLECTION, analyzer, keep_crops=config.privacy.keep_face_crops)
        else:  # crops follow the setting of now: turned off, the crops kept before are deleted
            if members.keep_crops != config.privacy.keep_face_crops:
                gallery.set_keep_crops(COLLECTION, config.privacy.keep_face_crops)
        self.members = MemberRegistry(config.id, self._sessions, gallery, COLLECTION, analyzer, self.payments,
                                      pay_far=config.recognition.pay_far)
        self.products = Catalogue(config.id, self._sessions)
        if owns:  # opened by its runner: the config's products seed the catalogue (SKUs it never had)
            self.products.seed(config.products)
        self.observations = Observations(config.id, self._sessions,
                                         max_visit_hours=config.privacy.max_visit_hours)

    @classmethod
    def open(cls, config: StoreConfig, analyzer: FaceAnalyzer, url: str | None = None, *,
             index_dir: Path | None = None, payments: PaymentBackend | None = None) -> RetailStore:
        """Open the store on ``url`` (default: the gallery's default database), migrating the
        gallery and retail tables. Members' faces go to the gallery tenant ``app:retail:<store id>``,
        a space the service's API cannot reach."""
        url = normalize_url(url or default_database_url())
        gallery = Gallery.open(url, tenant=f"app:retail:{config.id}", index_dir=index_dir)
        engine = create_database_engine(url)
        try:
            migrate(engine)
            with sessionmaker(engine)() as session:
                owner = session.scalar(select(StoreRecord.tenant).where(StoreRecord.id == config.id))
            if owner is not None and owner != config.tenant:
                # the store, its members and their faces are one tenant's: a config naming another (or
                # none: "default") moved them all to it, the owner's key then answered 404
                raise Conflict(f"store '{config.id}' belongs to tenant '{owner}', not '{config.tenant}' as its "
                               f"config says: set tenant: {owner} (a store never moves to another tenant; "
                               "another tenant's store takes another id)")
            _check_pack(config.id, gallery, analyzer)
            with sessionmaker(engine).begin() as session:
                # what the API needs (roles, catalogue, rules), never a stream URL's or a sink's credentials
                # and not the products: the catalogue of record is retail_products (seeded below)
                saved = config.model_dump(mode="json", exclude={"events": True, "webhook": True, "mqtt": True,
                                                                "products": True,
                                                                "cameras": {"__all__": {"source", "video"}}})
                session.merge(StoreRecord(id=config.id, tenant=config.tenant, name=config.name, config=saved))
            return cls(config, analyzer, gallery, engine, payments)
        except BaseException:
            gallery.close()
            engine.dispose()
            raise

    @classmethod
    def attach(cls, store_id: str, tenant: str, analyzer: FaceAnalyzer, gallery: Gallery,
               engine: Engine) -> RetailStore:
        """The store ``store_id`` as last opened by `retail run` (its saved config), over a gallery and
        engine the caller owns (the service's), for the tenant that owns it: another tenant's store
        is :class:`NotFound`, as a missing one. Closing it closes neither."""
        with sessionmaker(engine).begin() as session:
            record = session.get(StoreRecord, store_id)
            if record is None or record.tenant != tenant or record.config is None:
                raise NotFound(f"store '{store_id}' not found")
            config = StoreConfig.model_validate(record.config, context={"stored": True})
        return cls(config, analyzer, gallery.for_tenant(f"app:retail:{store_id}"), engine, owns=False)

    def close(self) -> None:
        """Release the database and persist the gallery index (only flush the index when attached)."""
        if not self._owns:
            self.gallery.flush()
            return
        self.gallery.close()
        self._engine.dispose()

    def __enter__(self) -> RetailStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def sessions(self) -> sessionmaker[Session]:
        """Sessions on the store's database (analytics and tests read through them)."""
        return self._sessions

    # -- events ----------------------------------------------------------------------------
    def handle(self, event: Entry | ZoneVisit | Pick | Exit) -> Any:
        """Dispatch one event to :meth:`entry`, :meth:`zone_visit`, :meth:`pick` or :meth:`exit`."""
        if isinstance(event, Entry):
            return self.entry(event)
        if isinstance(event, ZoneVisit):
            return self.zone_visit(event)
        if isinstance(event, Pick):
            return self.pick(event)
        return self.exit(event)

    def entry(self, event: Entry) -> int:
        """Open a visit; returns its id. A member is recognised at the visit FPIR; a non-member is
        anonymous (with a short-lived anonymous id only when anonymous tracking is on)."""
        self._check_role(event.camera, "entrance", "door")
        with self._sessions() as session:
            done = session.scalar(select(Visit.id).where(Visit.entry_event_id == event.id))
        if done is not None:
            return done
        vector = self._embedding(event)
        member_id = self._identify(vector, Cut(fpir=self.config.recognition.visit_fpir)) if vector is not None \
            else self._member(event.subject)
        self.close_abandoned(event.at)
        with self._sessions.begin() as session:
            anonymous_id, returning = None, False
            if member_id is not None:
                returning = bool(session.scalar(select(func.count()).select_from(Visit).where(
                    Visit.member_id == member_id, Visit.entry_at < event.at)))
            elif vector is not None and self.config.privacy.anonymous_tracking:
                anonymous_id, returning = self._anonymous(session, vector, event.at)
            visit = Visit(store_id=self.config.id, member_id=member_id, anonymous_id=anonymous_id,
                          track=event.track, is_returning=returning, entry_event_id=event.id,
                          entry_camera=event.camera, entry_at=event.at)
            session.add(visit)
            session.flush()
            return visit.id

    def zone_visit(self, event: ZoneVisit) -> int | None:
        """Record that the shopper's visit reached the camera's zone; None when no open visit
        matches the shopper."""
        zone = self._check_role(event.camera, "zone").zone or ""
        member_id = self._shopper(event)
        with self._sessions.begin() as session:
            visit = self._open_visit(session, member_id, event.track)
            if visit is None:
                return None
            if session.scalar(select(ZoneVisitRecord.id).where(ZoneVisitRecord.event_id == event.id)) is None:
                session.add(ZoneVisitRecord(visit_id=visit.id, zone=zone, camera=event.camera, event_id=event.id,
                                            at=event.at))
            return visit.id

    def pick(self, event: Pick) -> int:
        """Put an item in the shopper's cart (a negative quantity puts it back); returns the visit id."""
        if event.quantity == 0:
            raise InvalidArgument("a pick needs a non-zero quantity")
        if event.quantity > 0:
            self.products.get(event.sku)  # NotFound before the face is analysed
        member_id = self._shopper(event)
        with self._sessions.begin() as session:
            visit = self._open_visit(session, member_id, event.track)
            if visit is None:
                raise UnknownShopper(f"no open visit for the shopper of pick {event.id}")
            if session.scalar(select(CartItem.id).where(CartItem.event_id == event.id)) is None:
                self._cart_rows(session, visit.id, event.sku, event.quantity, event.id, event.at)
            return visit.id

    def add_item(self, visit_id: int, sku: str, quantity: int = 1, *, key: str | None = None) -> int:
        """Put ``quantity`` of ``sku`` into the cart of the open visit ``visit_id`` (staff or a till
        scan; once per ``key``); returns the visit id."""
        if quantity == 0:
            raise InvalidArgument("a pick needs a non-zero quantity")
        with self._sessions.begin() as session:
            visit = session.get(Visit, visit_id)
            if visit is None or visit.store_id != self.config.id or visit.exit_event_id is not None:
                raise NotFound(f"no open visit {visit_id}")
            event_id = key or uuid.uuid4().hex
            if session.scalar(select(CartItem.id).where(CartItem.event_id == event_id)) is None:
                self._cart_rows(session, visit_id, sku, quantity, event_id, utcnow())
        return visit_id

    def _cart_rows(self, session: Session, visit_id: int, sku: str, quantity: int, event_id: str,
                   at: datetime) -> None:
        """The cart rows of one pick: items picked at the catalogue's price now (a product on
        sale); items put back at the prices the cart holds them at, the dearest first, never more
        than it holds (a product taken off sale can still be put back)."""
        if quantity > 0:
            product = self.products.get(sku)  # its SKU as kept (composed: one line for one product)
            session.add(CartItem(visit_id=visit_id, sku=product.sku, quantity=quantity,
                                 unit_price_cents=product.price_cents, event_id=event_id, at=at))
            return
        held = sorted((line for line in _cart(session, visit_id).lines if name_key(line.sku) == name_key(sku)),
                      key=lambda line: -line.unit_price_cents)
        if not held:
            self.products.get(sku)  # NotFound for a product the store does not sell
            raise Conflict(f"the cart of visit {visit_id} holds no '{sku}' to put back")
        left = -quantity
        for number, line in enumerate(held):
            take = min(left, line.quantity)
            if take <= 0:
                break
            session.add(CartItem(visit_id=visit_id, sku=line.sku, quantity=-take,  # the SKU as the cart holds it
                                 unit_price_cents=line.unit_price_cents,
                                 event_id=event_id if number == 0 else uuid.uuid4().hex, at=at))
            left -= take

    def cart(self, visit_id: int) -> Cart:
        """The net contents of a visit's cart: a visit of this store (another store's, of any
        tenant, answered its cart; a visit that never was, an empty one), else :class:`NotFound`."""
        with self._sessions() as session:
            if session.scalar(select(Visit.id).where(Visit.id == visit_id, Visit.store_id == self.config.id)) is None:
                raise NotFound(f"no visit {visit_id} in store '{self.config.id}'")
            return _cart(session, visit_id)

    def exit(self, event: Exit) -> ExitOutcome:
        """Close the shopper's visit and run face pay on its cart.

        The face must be live and match a member with face pay at the pay FAR; a spoof is
        refused and an unidentified shopper with items is not charged, both with a staff alert.
        Raises :class:`NotCalibrated` (nothing changed) when the pack has no threshold for the
        pay FAR: face pay is refused rather than run on a guessed threshold."""
        self._check_role(event.camera, "exit", "door", "checkout")
        with self._sessions() as session:
            done = session.scalar(select(Visit).where(Visit.exit_event_id == event.id))
            if done is not None:
                return self._replay(session, done, event.id)
        try:
            self.analyzer.threshold(self.config.recognition.pay_far)
        except NotCalibrated as exc:
            raise NotCalibrated(f"face pay refused: {exc}") from exc
        face = self._exit_face(event)
        live = face is not None and face.liveness is not None and face.liveness.is_real(
            self.config.recognition.min_liveness)
        pay = Cut(far=self.config.recognition.pay_far)
        member_id, matched = self._payer(face, pay) if face is not None and live else (None, 0)
        try:
            with self._sessions.begin() as session:
                outcome = self._close(session, event, face is not None, live, member_id, matched)
        except IntegrityError:
            with self._sessions() as session:
                done = session.scalar(select(Visit).where(Visit.exit_event_id == event.id))
                if done is not None:  # this exit, recorded by a retry of it meanwhile
                    return self._replay(session, done, event.id)
            # another exit closed the visit (and charged it) meanwhile: closed again, this exit finds
            # it closed (no_visit) instead of the unique charge per visit answering a 500
            try:
                with self._sessions.begin() as session:
                    outcome = self._close(session, event, face is not None, live, member_id, matched)
            except IntegrityError as exc:
                raise Conflict("another exit of this shopper is being recorded; try again") from exc
        if outcome.charge_id is not None:
            self._settle(outcome.charge_id)
        return replace(outcome, faces=int(face is not None))

    def _close(self, session: Session, event: Exit, has_face: bool, live: bool,
               member_id: str | None, matched: int = 0) -> ExitOutcome:
        """Close the exit's visit; ``matched``: how many members the face matched at the pay FAR
        (``member_id`` is the one when it is 1)."""
        visit = self._open_visit(session, member_id, event.track)
        alert: str | None = None
        if has_face and not live:
            alert = "spoof"
        if visit is None:
            if alert:
                self._alert(session, alert, event, None, {})
            return ExitOutcome("no_visit", None, member_id, alert=alert)
        if member_id is not None and visit.member_id is None:
            visit.member_id = member_id
        cart = _cart(session, visit.id)
        status: ExitStatus
        charge_id = None
        if alert:
            status = "refused"
        elif cart.items <= 0:
            status = "no_purchase"
        elif matched > 1:
            status, alert = "unpaid", "ambiguous_identity"
        elif member_id is None:
            status, alert = "unpaid", "unidentified_shopper"
        elif visit.member_id != member_id:
            status, alert = "unpaid", "identity_mismatch"
        elif not self.members.payment_ref(member_id):
            status, alert = "unpaid", "no_payment_method"
        else:
            status = "charged"
        visit.exit_event_id, visit.exit_camera, visit.exit_at = event.id, event.camera, event.at
        visit.outcome = "purchased" if status == "charged" else status
        if status == "charged":
            charge = Charge(store_id=self.config.id, event_id=event.id, visit_id=visit.id, member_id=member_id,
                            amount_cents=cart.total_cents, currency=self.config.currency, items=cart.items,
                            status="pending", at=event.at)
            session.add(charge)
            session.flush()
            charge_id = charge.id
        if alert:
            details = {"items": cart.items, "amount_cents": cart.total_cents, "face_seen": has_face}
            if matched > 1:
                details["members_matched"] = matched
            self._alert(session, alert, event, visit.id, details)
        shopper = visit.member_id
        _keep_history_by_consent(session, visit)
        return ExitOutcome(status, visit.id, shopper, cart.total_cents if charge_id else 0, charge_id, alert)

    def _settle(self, charge_id: int) -> None:
        """Ask the payment backend for a pending charge (idempotent on the exit event id)."""
        with self._sessions() as session:
            charge = session.get(Charge, charge_id)
            if charge is None or charge.status != "pending":
                return
            account = session.scalar(select(Member.payment_ref).where(Member.id == charge.member_id))
        if account is None:
            raise UnknownShopper(f"charge {charge_id} has no payment account")
        ref = self.payments.charge(account, charge.amount_cents, charge.currency,
                                   idempotency_key=f"{self.config.id}:charge:{charge.event_id}")
        with self._sessions.begin() as session:
            row = session.get(Charge, charge_id)
            if row is not None and row.status == "pending":
                row.status, row.transaction_ref = "charged", ref

    def _replay(self, session: Session, visit: Visit, event_id: str) -> ExitOutcome:
        charge = session.scalar(select(Charge).where(Charge.event_id == event_id))
        alert = session.scalar(select(Alert.kind).where(Alert.event_id == event_id))
        if charge is not None and charge.status == "pending":
            self._settle(charge.id)
        status: ExitStatus = "charged" if visit.outcome == "purchased" else visit.outcome  # type: ignore[assignment]
        return ExitOutcome(status, visit.id, charge.member_id if charge else visit.member_id,
                           charge.amount_cents if charge else 0,
                           charge.id if charge else None, alert, repeated=True)

    def report(self, start: datetime, end: datetime) -> Report:
        """Customer analytics of the visits that entered in ``[start, end)`` (naive UTC), demographic
        cells under ``privacy.demographics_min_count`` suppressed."""
        return compute_report(self._sessions, self.config.id, start, end,
                              min_count=self.config.privacy.demographics_min_count)

    # -- refunds and alerts ----------------------------------------------------------------
    def refund(self, charge_id: int, amount_cents: int | None = None, *, reason: str = "",
               key: str | None = None) -> int:
        """Refund ``amount_cents`` (default: what is left) of a charge, once per ``key``; returns
        the refund id. The amount is reserved on the charge first, by one conditional update (the
        refunds of a charge never pass its amount, however many run at once: ten parallel refunds
        paid back seven times the charge), then paid back, then confirmed; a payment that fails
        gives the reservation back. A ``key`` used for another charge or amount is
        :class:`InvalidArgument`; the same refund asked again (its key) is answered by its id; a new
        refund of a charge refunded in full is :class:`Conflict`. ``reason`` is one line of text
        (:func:`~faceatlas.gallery.check_text`); ``key`` any text without NUL (PostgreSQL's text
        refuses it: the API answered 500)."""
        reason = check_text(reason, "refund reason", max_length=REFUND_REASON_MAX_LENGTH) or ""
        key = check_stored(key, "refund key") if key else uuid.uuid4().hex
        scoped = hashlib.sha256(f"{self.config.id}\x00{key}".encode()).hexdigest()  # keys are per store
        with self._sessions() as session:
            existing = session.execute(select(Refund.id, Refund.charge_id, Refund.amount_cents, Refund.transaction_ref)
                                       .join(Charge, Charge.id == Refund.charge_id)
                                       .where(Refund.key.in_((scoped, key)), Charge.store_id == self.config.id)).first()
            charge = session.get(Charge, charge_id)
            if charge is None or charge.store_id != self.config.id or charge.status == "pending" \
                    or charge.transaction_ref is None:  # another store's charge is not found here
                raise NotFound(f"no settled charge {charge_id}")
            charge_ref, currency, total = charge.transaction_ref, charge.currency, charge.amount_cents
        if existing is not None:
            if existing.charge_id != charge_id or (amount_cents is not None and amount_cents != existing.amount_cents):
                raise InvalidArgument("this refund key was used for another refund (another charge or amount): "
                                      "a new refund takes a new key")
            if existing.transaction_ref is not None:
                return int(existing.id)
            return self._pay_back(int(existing.id), charge_ref, int(existing.amount_cents), currency, scoped)
        try:
            with self._sessions.begin() as session:
                left = total - int(session.scalar(select(Charge.refunded_cents).where(Charge.id == charge_id)) or 0)
                amount = left if amount_cents is None else amount_cents
                if left <= 0:  # said "refund of 0 outside 1..0 cents"
                    raise Conflict(f"charge {charge_id} is fully refunded: nothing is left to refund")
                if not 0 < amount <= left:
                    raise InvalidArgument(f"refund of {amount} outside 1..{left} cents")
                reserved = session.execute(
                    update(Charge).where(Charge.id == charge_id, Charge.refunded_cents + amount <= Charge.amount_cents)
                    .values(refunded_cents=Charge.refunded_cents + amount))
                if rowcount(reserved) != 1:  # another refund reserved what was left meanwhile
                    raise InvalidArgument(f"refund of {amount} cents is more than is left of charge {charge_id}")
                refund = Refund(charge_id=charge_id, key=scoped, amount_cents=amount, reason=reason)
                session.add(refund)
                session.flush()
                refund_id = refund.id
        except IntegrityError:  # the same key, sent twice at once: the other call refunds
            raise Conflict("a refund with this key is being made; ask again for its answer") from None
        return self._pay_back(refund_id, charge_ref, amount, currency, scoped)

    def _pay_back(self, refund_id: int, charge_ref: str, amount: int, currency: str, scoped: str) -> int:
        """The payment of a reserved refund (idempotent by its key), then its confirmation; a failed
        payment gives the reservation back and leaves no refund row."""
        try:
            ref = self.payments.refund(charge_ref, amount, currency,
                                       idempotency_key=f"{self.config.id}:refund:{scoped}")
        except BaseException:
            with self._sessions.begin() as session:
                refund = session.get(Refund, refund_id)
                if refund is not None and refund.transaction_ref is None:
                    session.execute(update(Charge).where(Charge.id == refund.charge_id)
                                    .values(refunded_cents=Charge.refunded_cents - refund.amount_cents))
                    session.delete(refund)
            raise
        with self._sessions.begin() as session:
            refund = session.get(Refund, refund_id)
            if refund is None:
                raise NotFound(f"refund {refund_id} is gone")
            refund.transaction_ref = ref
            row = session.get(Charge, refund.charge_id)
            if row is not None:
                row.status = "refunded" if row.refunded_cents >= row.amount_cents else "charged"
        return refund_id

    def alerts(self, *, open_only: bool = True) -> list[dict[str, Any]]:
        """Staff alerts, oldest first."""
        with self._sessions() as session:
            query = select(Alert).where(Alert.store_id == self.config.id)
            if open_only:
                query = query.where(Alert.resolved_at.is_(None))
            return [{"id": a.id, "kind": a.kind, "camera": a.camera, "visit_id": a.visit_id, "details": a.details,
                     "at": a.at.isoformat(), "resolved": a.resolved_at is not None}
                    for a in session.scalars(query.order_by(Alert.at, Alert.id))]

    def resolve_alert(self, alert_id: int) -> AlertResolution:
        """Mark an alert as dealt with, once: resolving it again keeps the first resolution's time
        (it was overwritten, so the record said it was dealt with when it was only looked at again)
        and says it was ``already`` resolved. Every door answers from this."""
        with self._sessions.begin() as session:
            alert = session.get(Alert, alert_id, with_for_update=True)
            if alert is None or alert.store_id != self.config.id:  # another store's alert is not found here
                raise NotFound(f"alert {alert_id} not found")
            if alert.resolved_at is not None:
                return AlertResolution(alert.id, alert.resolved_at, already=True)
            alert.resolved_at = utcnow()
            return AlertResolution(alert.id, alert.resolved_at, already=False)

    def close_abandoned(self, now: datetime | None = None) -> int:
        """Close the visits open longer than ``privacy.max_visit_hours`` (their exit was never
        seen) as ``abandoned`` (each entry does it too); returns how many (0 when another
        process closed them at the same moment)."""
        try:
            with self._sessions.begin() as session:
                return self._close_abandoned(session, now or utcnow())
        except IntegrityError:  # the same visits' abandonment ids or alerts, written by the other
            return 0

    def purge_anonymous(self, now: datetime | None = None) -> int:
        """Delete the anonymous visitors whose retention window has passed; returns how many."""
        with self._sessions.begin() as session:
            return self._purge(session, now or utcnow())

    # -- internals -------------------------------------------------------------------------
    def _check_role(self, camera_id: str, *roles: CameraRole) -> Camera:
        camera = self.config.camera(camera_id)
        if camera.role not in roles:
            raise InvalidArgument(f"camera '{camera_id}' is a {camera.role} camera, not {' or '.join(roles)}")
        return camera

    def _member(self, subject: str | None) -> str | None:
        """``subject`` when it is a member of this store (a name the video layer recognised)."""
        if subject is None:
            return None
        with self._sessions() as session:
            return session.scalar(select(Member.id).where(Member.id == subject, Member.store_id == self.config.id))

    def _embedding(self, event: Sighting | Pick) -> Embedding | None:
        embedding = getattr(event, "embedding", None)
        if embedding is not None:
            return self.analyzer.own_embedding(embedding)
        if event.image is None:
            return None
        faces = self.analyzer.analyze(event.image, max_faces=1)
        return faces[0].as_embedding() if faces else None

    def _exit_face(self, event: Exit) -> Face | None:
        if event.image is None:
            return None
        faces = self.analyzer.analyze(event.image, max_faces=1, liveness=True)
        return faces[0] if faces else None

    def _identify(self, vector: Embedding | Face, cut: Cut) -> str | None:
        matches = self.gallery.search(COLLECTION, vector, k=1, calibration=self.analyzer.calibration,
                                      **cut.search_options())
        return matches[0].external_id if matches else None

    def _payer(self, face: Face, cut: Cut) -> tuple[str | None, int]:
        """The member face pay charges and how many members the face matches at the pay FAR: the
        member only when it is the one (one person enrolled twice, or look-alikes, would have the
        cart charged to whichever is nearer by chance)."""
        matches = self.gallery.search(COLLECTION, face, k=2, calibration=self.analyzer.calibration,
                                      **cut.search_options())
        return (matches[0].external_id if len(matches) == 1 else None), len(matches)

    def _shopper(self, event: Sighting | Pick) -> str | None:
        """The member recognised in the event's face at the visit FPIR (or named by the video layer), if any."""
        vector = self._embedding(event)
        if vector is None:
            return self._member(getattr(event, "subject", None))
        return self._identify(vector, Cut(fpir=self.config.recognition.visit_fpir))

    def _open_visit(self, session: Session, member_id: str | None, track: str | None) -> Visit | None:
        base = select(Visit).where(Visit.store_id == self.config.id, Visit.exit_event_id.is_(None))
        found = None
        if member_id is not None:
            found = session.scalar(base.where(Visit.member_id == member_id).order_by(Visit.entry_at.desc()))
        if found is None and track is not None:
            found = session.scalar(base.where(Visit.track == track).order_by(Visit.entry_at.desc()))
        return found

    def _anonymous(self, session: Session, embedding: Embedding, at: datetime) -> tuple[str, bool]:
        """The anonymous id of a non-member within the retention window, and whether it was known."""
        self._purge(session, at)
        rows = session.execute(select(AnonymousVisitor.id, AnonymousVisitor.embedding)
                               .where(AnonymousVisitor.store_id == self.config.id)).all()
        unit = l2_normalize(embedding.vector)[0]
        if rows:
            matrix = np.frombuffer(b"".join(r.embedding for r in rows), np.float32).reshape(len(rows), -1)
            (best_sim,), (best,) = top_k(matrix @ unit, np.arange(len(rows)), 1)
            known = Cut(fpir=self.config.recognition.visit_fpir).similarity(self.analyzer.calibration, len(rows))
            if best_sim[0] >= float(known or 0.0):
                return rows[int(best[0])].id, True
        new_id = uuid.uuid4().hex
        hours = self.config.privacy.anonymous_retention_hours
        session.add(AnonymousVisitor(id=new_id, store_id=self.config.id, embedding=unit.astype(np.float32).tobytes(),
                                     first_seen=at, expires_at=at + timedelta(hours=hours)))
        return new_id, False

    def _close_abandoned(self, session: Session, now: datetime) -> int:
        cutoff = now - timedelta(hours=self.config.privacy.max_visit_hours)
        stale = list(session.scalars(select(Visit).where(Visit.store_id == self.config.id,
                                                         Visit.exit_event_id.is_(None), Visit.entry_at <= cutoff)))
        for visit in stale:
            visit.exit_event_id, visit.outcome = f"abandoned:{visit.id}", "abandoned"
            cart = _cart(session, visit.id)
            if cart.items > 0:
                session.add(Alert(store_id=self.config.id, kind="abandoned_cart", camera=visit.entry_camera or "",
                                  event_id=visit.exit_event_id, visit_id=visit.id, at=now,
                                  details={"items": cart.items, "amount_cents": cart.total_cents}))
            _keep_history_by_consent(session, visit)
        return len(stale)

    def _purge(self, session: Session, now: datetime) -> int:
        return rowcount(session.execute(delete(AnonymousVisitor).where(AnonymousVisitor.store_id == self.config.id,
                                                              AnonymousVisitor.expires_at <= now)))

    def _alert(self, session: Session, kind: str, event: Exit, visit_id: int | None, details: dict[str, Any]) -> None:
        session.add(Alert(store_id=self.config.id, kind=kind, camera=event.camera, event_id=event.id,
                          visit_id=visit_id, details=details, at=event.at))


def _check_pack(store_id: str, gallery: Gallery, analyzer: FaceAnalyzer) -> None:
    """:class:`ModelMismatch` when the store's members were enrolled with another pack than
    ``analyzer``'s: one store runs one pack, the one its first run set up (reembedding does not
    apply to a store, whose members keep no crops by default)."""
    try:
        members = gallery.get_collection(COLLECTION)
    except NotFound:
        return
    if members.recognizer_id == analyzer.pack.recognizer_id:
        return
    if members.recognizer_id.split("+")[0] == analyzer.pack.recognizer_id.split("+")[0]:
        # the same pack's int8 or flip variant: the setting to change
        raise ModelMismatch(mismatch_message(f"store '{store_id}'", members.pack_name, members.recognizer_id,
                                             analyzer.pack.recognizer_id))
    raise ModelMismatch(f"store '{store_id}' was set up with pack '{members.pack_name}' (its members hold "
                        f"embeddings of recognizer {members.recognizer_id}), not '{analyzer.pack.name}': open "
                        f"it with pack '{members.pack_name}' (`faceatlas retail run --pack {members.pack_name}`, "
                        f"or FACEATLAS_PACK={members.pack_name}, for `faceatlas serve` too)")


def _keep_history_by_consent(session: Session, visit: Visit) -> None:
    """Unlink a closed visit from a member who did not consent to ``visit_recognition``: face
    pay linked the cart for that visit only (the charge, if any, is the receipt)."""
    if visit.member_id is not None and "visit_recognition" not in active_purposes(session, visit.member_id):
        visit.member_id = None


def _cart(session: Session, visit_id: int) -> Cart:
    rows = session.execute(select(CartItem.sku, func.sum(CartItem.quantity), CartItem.unit_price_cents)
                           .where(CartItem.visit_id == visit_id)
                           .group_by(CartItem.sku, CartItem.unit_price_cents)
                           .order_by(CartItem.sku, CartItem.unit_price_cents.desc()))
    return Cart(visit_id, [CartLine(sku, int(qty), int(price)) for sku, qty, price in rows if qty > 0])
