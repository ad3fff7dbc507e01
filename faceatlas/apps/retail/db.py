"""The retail app's tables: the catalogue, members and consents, visits, carts, charges, the payment ledger,
staff alerts, short-lived anonymous visitors, zone tracks and aggregated demographics.

They share the gallery's database but have their own Alembic history (version table
``faceatlas_retail_alembic_version``); schema changes go through a new revision in
``migrations/versions``.
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Any

from sqlalchemy import (
    JSON,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    UniqueConstraint,
)
from sqlalchemy.engine import Engine
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from faceatlas.db import upgrade, utcnow

VERSION_TABLE = "faceatlas_retail_alembic_version"


class Base(DeclarativeBase):
    metadata = MetaData()


class StoreRecord(Base):
    """A store and the tenant that owns it (written when the store opens)."""

    __tablename__ = "retail_stores"

    id: Mapped[str] = mapped_column(String(100), primary_key=True)
    tenant: Mapped[str] = mapped_column(String(64), index=True)
    name: Mapped[str] = mapped_column(String(400), default="")
    config: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)  # the StoreConfig, for the API


class CatalogueProduct(Base):
    """A product of a store's catalogue (prices in minor units). The config's ``products`` seed it
    when the store opens; afterwards the REST API manages it. A deleted product keeps its row
    (``deleted_at``) so its SKU is not seeded again; carts keep the price of each pick."""

    __tablename__ = "retail_products"
    __table_args__ = (UniqueConstraint("store_id", "sku"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    store_id: Mapped[str] = mapped_column(String(100))
    sku: Mapped[str] = mapped_column(String(100))
    name: Mapped[str] = mapped_column(String(400))
    price_cents: Mapped[int] = mapped_column(Integer)
    updated_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    deleted_at: Mapped[datetime | None] = mapped_column(DateTime, nullable=True)


class Member(Base):
    """A shopper who enrolled for face pay; ``id`` is also their gallery subject id."""

    __tablename__ = "retail_members"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    store_id: Mapped[str] = mapped_column(String(100), index=True)
    name: Mapped[str] = mapped_column(String(400))
    email: Mapped[str | None] = mapped_column(String(400), nullable=True)
    payment_ref: Mapped[str | None] = mapped_column(String(400), nullable=True)
    age_band: Mapped[str | None] = mapped_column(String(20), nullable=True)
    gender: Mapped[str | None] = mapped_column(String(20), nullable=True)
    enrolled_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)


class Consent(Base):
    """An explicit consent record: who gave it, when, to whom, for which purposes."""

    __tablename__ = "retail_consents"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    member_id: Mapped[str] = mapped_column(ForeignKey("retail_members.id", ondelete="CASCADE"), index=True)
    purposes: Mapped[list[str]] = mapped_column(JSON)
    granted_by: Mapped[str] = mapped_column(String(400))
    recorded_by: Mapped[str] = mapped_column(String(200))
    notice_version: Mapped[str] = mapped_column(String(50))
    granted_at: Mapped[datetime] = mapped_column(DateTime)
    withdrawn_at: Mapped[datetime | None] = mapped_column(DateTime, nullable=True)


class Visit(Base):
    """One visit from entry to exit. Member visits point at the member; anonymous visits carry
    at most a short-lived anonymous id. ``outcome``: purchased, no_purchase, unpaid, refused,
    abandoned (closed after ``privacy.max_visit_hours`` without an exit)."""

    __tablename__ = "retail_visits"
    __table_args__ = (Index("ix_retail_visits_store_entry", "store_id", "entry_at"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    store_id: Mapped[str] = mapped_column(String(100))
    member_id: Mapped[str | None] = mapped_column(ForeignKey("retail_members.id", ondelete="SET NULL"),
                                                  nullable=True, index=True)
    anonymous_id: Mapped[str | None] = mapped_column(String(64), nullable=True)
    track: Mapped[str | None] = mapped_column(String(200), nullable=True, index=True)
    is_returning: Mapped[bool] = mapped_column(default=False)
    entry_event_id: Mapped[str | None] = mapped_column(String(100), unique=True, nullable=True)
    entry_camera: Mapped[str | None] = mapped_column(String(100), nullable=True)
    entry_at: Mapped[datetime] = mapped_column(DateTime)
    exit_event_id: Mapped[str | None] = mapped_column(String(100), unique=True, nullable=True)
    exit_camera: Mapped[str | None] = mapped_column(String(100), nullable=True)
    exit_at: Mapped[datetime | None] = mapped_column(DateTime, nullable=True)
    outcome: Mapped[str | None] = mapped_column(String(20), nullable=True)


class ZoneVisitRecord(Base):
    """A visit was seen in a zone."""

    __tablename__ = "retail_zone_visits"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    visit_id: Mapped[int] = mapped_column(ForeignKey("retail_visits.id", ondelete="CASCADE"), index=True)
    zone: Mapped[str] = mapped_column(String(100))
    camera: Mapped[str] = mapped_column(String(100))
    event_id: Mapped[str] = mapped_column(String(100), unique=True)
    at: Mapped[datetime] = mapped_column(DateTime)


class CartItem(Base):
    """An item picked during a visit, priced when picked."""

    __tablename__ = "retail_cart_items"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    visit_id: Mapped[int] = mapped_column(ForeignKey("retail_visits.id", ondelete="CASCADE"), index=True)
    sku: Mapped[str] = mapped_column(String(100))
    quantity: Mapped[int] = mapped_column(Integer)
    unit_price_cents: Mapped[int] = mapped_column(Integer)
    event_id: Mapped[str] = mapped_column(String(100), unique=True)
    at: Mapped[datetime] = mapped_column(DateTime)


class Charge(Base):
    """Face pay of one visit. ``event_id`` (the exit event) is unique: a retried exit never
    charges twice. ``status``: pending (backend not yet confirmed), charged, refunded."""

    __tablename__ = "retail_charges"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    store_id: Mapped[str] = mapped_column(String(100))
    event_id: Mapped[str] = mapped_column(String(100), unique=True)
    visit_id: Mapped[int | None] = mapped_column(ForeignKey("retail_visits.id", ondelete="SET NULL"),
                                                 nullable=True, unique=True)
    member_id: Mapped[str | None] = mapped_column(ForeignKey("retail_members.id", ondelete="SET NULL"),
                                                  nullable=True, index=True)
    amount_cents: Mapped[int] = mapped_column(Integer)
    refunded_cents: Mapped[int] = mapped_column(Integer, default=0)
    currency: Mapped[str] = mapped_column(String(3))
    items: Mapped[int] = mapped_column(Integer)
    transaction_ref: Mapped[str | None] = mapped_column(String(200), nullable=True)
    status: Mapped[str] = mapped_column(String(20))
    at: Mapped[datetime] = mapped_column(DateTime)


class Refund(Base):
    """Money given back on a charge, once per idempotency ``key``."""

    __tablename__ = "retail_refunds"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    charge_id: Mapped[int] = mapped_column(ForeignKey("retail_charges.id", ondelete="CASCADE"), index=True)
    key: Mapped[str] = mapped_column(String(200), unique=True)
    amount_cents: Mapped[int] = mapped_column(Integer)
    reason: Mapped[str] = mapped_column(String(400), default="")
    transaction_ref: Mapped[str | None] = mapped_column(String(200), nullable=True)
    at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)


class LedgerEntry(Base):
    """The default payment backend: one row per charge or refund, unique per idempotency key."""

    __tablename__ = "retail_ledger"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    idempotency_key: Mapped[str] = mapped_column(String(200), unique=True)
    account: Mapped[str] = mapped_column(String(400), index=True)
    kind: Mapped[str] = mapped_column(String(10))
    amount_cents: Mapped[int] = mapped_column(Integer)
    currency: Mapped[str] = mapped_column(String(3))
    reference: Mapped[str | None] = mapped_column(String(200), nullable=True)
    at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)


class Alert(Base):
    """Something staff must look at (an unidentified shopper leaving with items, a spoof)."""

    __tablename__ = "retail_alerts"
    __table_args__ = (Index("ix_retail_alerts_store_at", "store_id", "at"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    store_id: Mapped[str] = mapped_column(String(100))
    kind: Mapped[str] = mapped_column(String(40))
    camera: Mapped[str] = mapped_column(String(100))
    event_id: Mapped[str] = mapped_column(String(100), unique=True)
    visit_id: Mapped[int | None] = mapped_column(ForeignKey("retail_visits.id", ondelete="SET NULL"), nullable=True)
    details: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    at: Mapped[datetime] = mapped_column(DateTime)
    resolved_at: Mapped[datetime | None] = mapped_column(DateTime, nullable=True)


class AnonymousVisitor(Base):
    """A non-member's face vector, kept only when anonymous tracking is on and deleted once
    ``expires_at`` passes (so a return within the window is counted once)."""

    __tablename__ = "retail_anonymous"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    store_id: Mapped[str] = mapped_column(String(100), index=True)
    embedding: Mapped[bytes] = mapped_column(LargeBinary)
    first_seen: Mapped[datetime] = mapped_column(DateTime)
    expires_at: Mapped[datetime] = mapped_column(DateTime, index=True)


class ZoneTrack(Base):
    """One shopper track seen by a zone camera and how long it stayed (no face, no identity:
    ``visit_id`` links it to a visit only when the track was matched to one)."""

    __tablename__ = "retail_zone_tracks"
    __table_args__ = (Index("ix_retail_zone_tracks_store_at", "store_id", "at"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    store_id: Mapped[str] = mapped_column(String(100))
    zone: Mapped[str] = mapped_column(String(100))
    camera: Mapped[str] = mapped_column(String(100))
    track: Mapped[str] = mapped_column(String(200))
    event_id: Mapped[str] = mapped_column(String(100), unique=True)
    dwell_s: Mapped[float] = mapped_column(Float)
    visit_id: Mapped[int | None] = mapped_column(ForeignKey("retail_visits.id", ondelete="SET NULL"), nullable=True)
    at: Mapped[datetime] = mapped_column(DateTime)


class DemographicCount(Base):
    """Aggregated estimated demographics of the faces seen entering: a count per hour, age band
    and gender, never linked to a visit or a person."""

    __tablename__ = "retail_demographics"
    __table_args__ = (UniqueConstraint("store_id", "hour", "age_band", "gender"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    store_id: Mapped[str] = mapped_column(String(100))
    hour: Mapped[datetime] = mapped_column(DateTime)
    age_band: Mapped[str] = mapped_column(String(20))
    gender: Mapped[str] = mapped_column(String(20))
    count: Mapped[int] = mapped_column(Integer, default=0)


def migrate(engine: Engine) -> None:
    """Bring the retail tables to the latest Alembic revision."""
    upgrade(engine, Path(__file__).parent / "migrations")
