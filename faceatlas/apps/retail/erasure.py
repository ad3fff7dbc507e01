"""Erasing the stores of a tenant that goes away: no face, vector, crop or personal record stays;
the money records stay as the store's books, linked to no one."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import delete, select, update
from sqlalchemy.engine import Engine
from sqlalchemy.orm import sessionmaker

from faceatlas.apps.retail.db import (
    Alert,
    AnonymousVisitor,
    CartItem,
    CatalogueProduct,
    Charge,
    Consent,
    DemographicCount,
    Member,
    StoreRecord,
    Visit,
    ZoneTrack,
    ZoneVisitRecord,
    migrate,
)
from faceatlas.apps.retail.payments import LedgerPayments
from faceatlas.db import rowcount, utcnow
from faceatlas.gallery import Gallery


def purge_anonymous_visitors(engine: Engine, now: datetime | None = None) -> int:
    """Delete the anonymous visitors' face vectors past their retention (``anonymous_retention_hours``)
    in every store of the database; returns how many. A store deletes its own on each entry
    (``RetailStore.purge_anonymous``); this runs without any (the service's retention sweep)."""
    expired = delete(AnonymousVisitor).where(AnonymousVisitor.expires_at <= (now or utcnow()))
    with sessionmaker(engine).begin() as session:
        return rowcount(session.execute(expired))


def erase_stores(engine: Engine, gallery: Gallery, tenant: str, *, migrated: bool = True) -> int:
    """Erase every store ``tenant`` owns; returns how many. Per store, in this order:

    1. its gallery space ``app:retail:<store>``: every member's face, vector, crop and index file,
       and the space's row;
    2. the anonymous visitors' vectors;
    3. the members' payment references in the ledger (replaced by ``erased``, as member erasure does);
    4. in one transaction: members, consents, visits with their zones and cart items, zone tracks,
       alerts, demographic counts, the catalogue and, last, the store's row (so a run cut short
       leaves the store findable and running this again finishes the job).

    What stays: the charges (amount, currency, item count, transaction reference; member and visit
    unlinked), their refunds and the ledger's entries: money records that hold no face, vector,
    photo or member identity, kept for the operator's books. ``migrated`` False: bring the
    retail tables up first (a database the service never opened)."""
    if not migrated:
        migrate(engine)
    sessions = sessionmaker(engine)
    with sessions() as session:
        stores = list(session.scalars(select(StoreRecord.id).where(StoreRecord.tenant == tenant)))
    for store_id in stores:
        gallery.delete_tenant_space(f"app:retail:{store_id}")  # with its row, which names the store
        with sessions.begin() as session:
            session.execute(delete(AnonymousVisitor).where(AnonymousVisitor.store_id == store_id))
        with sessions() as session:
            refs = set(session.scalars(select(Member.payment_ref).where(Member.store_id == store_id,
                                                                        Member.payment_ref.is_not(None))))
        ledger = LedgerPayments(sessions)
        for ref in refs:
            if ref:
                ledger.forget(ref)
        with sessions.begin() as session:
            members = select(Member.id).where(Member.store_id == store_id)
            visits = select(Visit.id).where(Visit.store_id == store_id)
            session.execute(update(Charge).where(Charge.store_id == store_id).values(member_id=None, visit_id=None))
            session.execute(delete(Alert).where(Alert.store_id == store_id))
            session.execute(delete(ZoneTrack).where(ZoneTrack.store_id == store_id))
            session.execute(delete(ZoneVisitRecord).where(ZoneVisitRecord.visit_id.in_(visits)))
            session.execute(delete(CartItem).where(CartItem.visit_id.in_(visits)))
            session.execute(delete(Visit).where(Visit.store_id == store_id))
            session.execute(delete(Consent).where(Consent.member_id.in_(members)))
            session.execute(delete(Member).where(Member.store_id == store_id))
            session.execute(delete(DemographicCount).where(DemographicCount.store_id == store_id))
            session.execute(delete(CatalogueProduct).where(CatalogueProduct.store_id == store_id))
            session.execute(delete(StoreRecord).where(StoreRecord.id == store_id))
    return len(stores)
