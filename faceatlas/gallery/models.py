"""ORM tables of the gallery: tenant -> collection -> subject -> face (SQLAlchemy 2, typed).

Schema changes go through a new Alembic revision in ``migrations/versions``.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from importlib import resources
from pathlib import Path
from typing import Any

from sqlalchemy import JSON, Engine, Float, ForeignKey, Index, LargeBinary, String, UniqueConstraint, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column, relationship, sessionmaker

from faceatlas.db import upgrade, utcnow


class Base(DeclarativeBase):
    """Declarative base of every gallery table."""


class Tenant(Base):
    """An isolated owner of collections; every query is scoped by tenant."""

    __tablename__ = "tenants"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(200), unique=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class Collection(Base):
    """A set of subjects whose faces were all embedded by one model pack.

    ``revision`` is bumped in the same transaction as every change to the collection's faces;
    the derived vector index records the revision it reflects. ``removed_revision`` is the last
    revision that removed a face (a catch-up from before it diffs every face id; one from after it
    reads only the faces whose ``revision`` is newer than its own).
    """

    __tablename__ = "collections"
    __table_args__ = (UniqueConstraint("tenant_id", "name", name="uq_collection_tenant_name"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    tenant_id: Mapped[int] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(200))
    pack_name: Mapped[str] = mapped_column(String(100))
    pack_version: Mapped[str] = mapped_column(String(50))
    recognizer_id: Mapped[str] = mapped_column(String(200))
    embedding_size: Mapped[int]
    keep_crops: Mapped[bool] = mapped_column(default=False)
    meta: Mapped[dict[str, Any]] = mapped_column("metadata", JSON, default=dict)
    revision: Mapped[int] = mapped_column(default=0)
    removed_revision: Mapped[int] = mapped_column(default=0, server_default="0")
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


def new_history() -> str:
    """A random token naming one revision of one collection in one history of the database."""
    return uuid.uuid4().hex


class CollectionRevision(Base):
    """The history token of each revision of a collection (random, made by the transaction that
    reached the revision): what tells an index copy of this database's history from one of another
    history that reached the same revision number (a database restored from a backup, then written
    again: the same revisions, other faces under the same face ids). An index copy records the
    token of its revision; it is trusted, or caught up from the faces changed since, only when the
    database holds the same token for that revision, and rebuilt otherwise. Rows older than
    ``HISTORY_KEPT`` revisions go (a copy that far behind is rebuilt)."""

    __tablename__ = "collection_revisions"

    collection_id: Mapped[int] = mapped_column(ForeignKey("collections.id", ondelete="CASCADE"), primary_key=True)
    revision: Mapped[int] = mapped_column(primary_key=True, autoincrement=False)
    history: Mapped[str] = mapped_column(String(32))


HISTORY_KEPT = 100_000  # revisions of a collection whose history token is kept (pruned every HISTORY_PRUNE_EVERY)
HISTORY_PRUNE_EVERY = 1_000


class Subject(Base):
    """A person in a collection, known to the caller by ``external_id``."""

    __tablename__ = "subjects"
    __table_args__ = (UniqueConstraint("collection_id", "external_id", name="uq_subject_collection_external"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    collection_id: Mapped[int] = mapped_column(ForeignKey("collections.id", ondelete="CASCADE"), index=True)
    external_id: Mapped[str] = mapped_column(String(200))
    name: Mapped[str | None] = mapped_column(String(400))
    meta: Mapped[dict[str, Any]] = mapped_column("metadata", JSON, default=dict)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)

    faces: Mapped[list[FaceRecord]] = relationship(back_populates="subject", passive_deletes=True)


class FaceRecord(Base):
    """One enrolled face: its embedding (float32 bytes) and, when the collection keeps crops,
    the source crop (JPEG) that lets ``reembed`` migrate it to another model."""

    __tablename__ = "faces"
    # ids are never reused (SQLite would reuse the highest after a delete): a stale index copy
    # must not hold a deleted face's vector under a new face's id
    __table_args__ = (Index("ix_faces_collection_id_id", "collection_id", "id"),
                      Index("ix_faces_collection_id_revision", "collection_id", "revision"),
                      {"sqlite_autoincrement": True})

    id: Mapped[int] = mapped_column(primary_key=True)
    collection_id: Mapped[int] = mapped_column(ForeignKey("collections.id", ondelete="CASCADE"))
    subject_id: Mapped[int] = mapped_column(ForeignKey("subjects.id", ondelete="CASCADE"), index=True)
    embedding: Mapped[bytes] = mapped_column(LargeBinary)
    quality: Mapped[float | None] = mapped_column(Float)  # as the migration made it (Float, not Double)
    source: Mapped[str | None] = mapped_column(String(1000))
    crop: Mapped[bytes | None] = mapped_column(LargeBinary, deferred=True)
    # the collection revision of the transaction that added the face or last moved it (or changed its vector)
    revision: Mapped[int] = mapped_column(default=0, server_default="0")
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    subject: Mapped[Subject] = relationship(back_populates="faces")


class GalleryIdentity(Base):
    """This database's id, one row made by its migration (0003): what names the copy of its vectors
    kept outside it (Milvus's default collection prefix, and the record of which database a prefix
    belongs to), where its URL would not (it changes with host names and mounts)."""

    __tablename__ = "gallery_identity"

    id: Mapped[int] = mapped_column(primary_key=True)
    database_id: Mapped[str] = mapped_column(String(32))


def database_id(sessions: sessionmaker[Session]) -> str:
    """The database's id (32 hex digits), made when its row is missing (a row deleted by hand)."""
    with sessions() as session:
        found = session.scalar(select(GalleryIdentity.database_id).where(GalleryIdentity.id == 1))
    if found is not None:
        return found
    try:
        with sessions.begin() as session:
            session.add(GalleryIdentity(id=1, database_id=uuid.uuid4().hex))
    except IntegrityError:  # another process made it meanwhile: its id is the one
        pass
    with sessions() as session:
        return session.scalars(select(GalleryIdentity.database_id).where(GalleryIdentity.id == 1)).one()


def database_identity(engine: Engine) -> str:
    """The database's id (32 hex digits: the one row of ``gallery_identity``, made by the gallery's
    migration 0003, run here when it has not yet): what scopes this database's state in a Redis or
    a Milvus that other databases may share. Its URL is no identity (host names and mounts change);
    a copy of the database (a dump restored, a file copied) carries the same id until its row is
    deleted (it is made again)."""
    migrate(engine)
    return database_id(sessionmaker(engine))


def migrate(engine: Engine) -> None:
    """Bring the gallery tables to the newest Alembic revision shipped in ``faceatlas/gallery/migrations``."""
    upgrade(engine, Path(str(resources.files("faceatlas.gallery").joinpath("migrations"))))
