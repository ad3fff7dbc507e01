"""The verification tables: sessions with their audited decision, the fingerprints of every
submitted selfie (replay), and reference face images kept only under a retention setting.

They share the one database but have their own Alembic history (version table
``faceatlas_kyc_alembic_version``); schema changes go through a new revision in ``migrations/versions``.
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Any

from sqlalchemy import JSON, DateTime, ForeignKey, Index, Integer, LargeBinary, MetaData, String
from sqlalchemy.engine import Engine
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from faceatlas.db import upgrade, utcnow
from faceatlas.gallery import ID_MAX_LENGTH as TENANT_MAX_LENGTH  # a tenant space, as the gallery holds it

VERSION_TABLE = "faceatlas_kyc_alembic_version"


class Base(DeclarativeBase):
    metadata = MetaData()


class KycSession(Base):
    """A verification session. ``status``: pending, processing (being decided), accepted,
    rejected, expired (undecided past its expiry; a ``processing`` one past it by
    ``KycConfig.processing_s``, its decision never written). ``details`` is the audit: scores,
    thresholds, model versions, timings."""

    __tablename__ = "kyc_sessions"
    __table_args__ = (Index("ix_kyc_sessions_tenant_created", "tenant", "created_at"),)

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    tenant: Mapped[str] = mapped_column(String(TENANT_MAX_LENGTH))
    challenge: Mapped[list[str]] = mapped_column(JSON)
    status: Mapped[str] = mapped_column(String(20), default="pending")
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    expires_at: Mapped[datetime] = mapped_column(DateTime)
    decided_at: Mapped[datetime | None] = mapped_column(DateTime, nullable=True)
    reasons: Mapped[list[str]] = mapped_column(JSON, default=list)
    details: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    retention_days: Mapped[int] = mapped_column(Integer, default=0)


class KycFingerprint(Base):
    """One submitted selfie: sha256 of its bytes and the difference hashes (hex) of its frames with
    a picture (``selfie.informative``; a selfie without any has no row), recorded when it is looked
    up, before its decision, and kept ``KycConfig.replay_days`` after ``at`` (then purged)."""

    __tablename__ = "kyc_fingerprints"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    tenant: Mapped[str] = mapped_column(String(TENANT_MAX_LENGTH), index=True)
    session_id: Mapped[str] = mapped_column(ForeignKey("kyc_sessions.id", ondelete="CASCADE"), index=True)
    digest: Mapped[str] = mapped_column(String(64), index=True)
    hashes: Mapped[list[str]] = mapped_column(JSON)
    at: Mapped[datetime] = mapped_column(DateTime, default=utcnow, index=True)


class KycReference(Base):
    """A reference face image (JPEG) of a decided session, deleted once ``expires_at`` passes."""

    __tablename__ = "kyc_references"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    session_id: Mapped[str] = mapped_column(ForeignKey("kyc_sessions.id", ondelete="CASCADE"), index=True)
    kind: Mapped[str] = mapped_column(String(20))
    image: Mapped[bytes] = mapped_column(LargeBinary)
    expires_at: Mapped[datetime] = mapped_column(DateTime, index=True)


def migrate(engine: Engine) -> None:
    """Bring the verification tables to the latest Alembic revision."""
    upgrade(engine, Path(__file__).parent / "migrations")
