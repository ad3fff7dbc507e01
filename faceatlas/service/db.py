"""The service's own tables: tenants, API keys, usage records (the bill) and the audit trail.

They live in the same database as the galleries but have their own Alembic history
(version table ``faceatlas_service_alembic_version``), so each layer migrates independently.
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

from sqlalchemy import JSON, DateTime, Float, ForeignKey, Index, Integer, MetaData, String
from sqlalchemy.engine import Engine
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from faceatlas.db import create_database_engine, upgrade, utcnow
from faceatlas.gallery import ID_MAX_LENGTH, database_identity

VERSION_TABLE = "faceatlas_service_alembic_version"
# An album person as a path or form names it (its id ``p12`` or its name): the album's name column.
PERSON_REF_MAX_LENGTH = 400
# The longest audit target a route or console action builds: ``{album}/{person}`` (a collection's
# ``{collection}/{subject}`` is 401, a store's ``{store}/{member}`` 165, a key's ``key:{prefix}`` 36).
AUDIT_TARGET_MAX_LENGTH = ID_MAX_LENGTH + 1 + PERSON_REF_MAX_LENGTH


class Base(DeclarativeBase):
    metadata = MetaData()


class Tenant(Base):
    """A customer of the platform: owns collections, keys, a monthly call quota and its settings."""

    __tablename__ = "svc_tenants"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    monthly_quota: Mapped[int | None] = mapped_column(Integer, nullable=True)
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    # Days a verification's reference face images (document crop, best selfie frame) are kept
    # after its decision; 0 (the default): none is ever written. Set by the tenant's admin.
    kyc_retention_days: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    # The most calls/s its active keys may allow summed (the tenant's admin sets each key's rate
    # within it); None: the server's FACEATLAS_MAX_KEY_RATE_PER_TENANT. Set by the operator only.
    max_key_rate: Mapped[float | None] = mapped_column(Float, nullable=True)


class DeletedTenant(Base):
    """The id of a deleted tenant: never given to a new tenant, since its usage rows (the bill) stay
    under it, and a new tenant of that id inherited them (its quota spent) and its cached state."""

    __tablename__ = "svc_deleted_tenants"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    deleted_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)


class ApiKey(Base):
    """An API key: only a sha256 of its secret is stored; ``prefix`` is the visible lookup part."""

    __tablename__ = "svc_api_keys"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    tenant_id: Mapped[str] = mapped_column(ForeignKey("svc_tenants.id", ondelete="CASCADE"), index=True)
    prefix: Mapped[str] = mapped_column(String(32), unique=True)
    secret_hash: Mapped[str] = mapped_column(String(64))
    name: Mapped[str] = mapped_column(String(200), default="")
    scopes: Mapped[list[str]] = mapped_column(JSON)
    rate_per_second: Mapped[float] = mapped_column(default=20.0)
    burst: Mapped[int] = mapped_column(Integer, default=40)
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    revoked_at: Mapped[datetime | None] = mapped_column(DateTime, nullable=True)


class UsageRecord(Base):
    """One metered call: who, which operation, how many faces, outcome and latency."""

    __tablename__ = "svc_usage"
    __table_args__ = (Index("ix_svc_usage_tenant_at", "tenant_id", "at"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    tenant_id: Mapped[str] = mapped_column(String(64))
    key_id: Mapped[int | None] = mapped_column(Integer, nullable=True)
    operation: Mapped[str] = mapped_column(String(64))
    faces: Mapped[int] = mapped_column(Integer, default=0)
    status: Mapped[int] = mapped_column(Integer)
    latency_ms: Mapped[float] = mapped_column(default=0.0)
    at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)


class AuditRecord(Base):
    """Who created, changed or deleted what (never the biometric data itself)."""

    __tablename__ = "svc_audit"
    __table_args__ = (Index("ix_svc_audit_tenant_at", "tenant_id", "at"),
                      Index("ix_svc_audit_tenant_target", "tenant_id", "target"))  # erasures match targets

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    tenant_id: Mapped[str | None] = mapped_column(String(64), nullable=True)
    key_id: Mapped[int | None] = mapped_column(Integer, nullable=True)
    action: Mapped[str] = mapped_column(String(64))
    target: Mapped[str] = mapped_column(String(AUDIT_TARGET_MAX_LENGTH), default="")
    details: Mapped[dict] = mapped_column(JSON, default=dict)
    at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)


class ConsoleSession(Base):
    """A web console login: the session id's sha256 (the id itself lives only in the browser's
    cookie), the API key it was opened with (checked again on every request), its CSRF token and
    its end."""

    __tablename__ = "svc_console_sessions"

    id_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    key_id: Mapped[int] = mapped_column(ForeignKey("svc_api_keys.id", ondelete="CASCADE"), index=True)
    csrf_token: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    expires_at: Mapped[datetime] = mapped_column(DateTime)


def migrate(engine: Engine) -> None:
    """Bring the service tables to the latest Alembic revision."""
    upgrade(engine, Path(__file__).parent / "migrations")


def database_identity_at(url: str) -> str:
    """:func:`database_identity` of the database at ``url``."""
    engine = create_database_engine(url)
    try:
        return database_identity(engine)
    finally:
        engine.dispose()
