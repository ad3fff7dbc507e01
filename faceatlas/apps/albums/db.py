"""The albums app's tables: albums, photos (by content hash), faces (the gallery face id, where in
which photo, quality, person, must-link lock), people, cannot-link pairs and the person ids
absorbed into a person.

They share the gallery's database and have their own Alembic history (version table
``faceatlas_albums_alembic_version``). Face vectors live only in the gallery.
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Any

from sqlalchemy import JSON, BigInteger, DateTime, Float, ForeignKey, Integer, MetaData, String, UniqueConstraint
from sqlalchemy.engine import Engine
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from faceatlas.db import upgrade, utcnow

VERSION_TABLE = "faceatlas_albums_alembic_version"


class Base(DeclarativeBase):
    metadata = MetaData()


class AlbumRecord(Base):
    """An album: its owner (a door's tenant), name and the pack its faces are embedded with.
    ``revision`` goes up with every change to its placed faces (a face placed, a person joined,
    a correction, an erasure, a re-cluster), in the change's transaction: a process's cached
    library of the album (:class:`faceatlas.apps.albums.album.Libraries`) is current only at it."""

    __tablename__ = "album_albums"
    __table_args__ = (UniqueConstraint("owner", "name", name="uq_album_albums_owner_name"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    owner: Mapped[str] = mapped_column(String(100))
    name: Mapped[str] = mapped_column(String(200))
    pack: Mapped[str] = mapped_column(String(100))
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    revision: Mapped[int] = mapped_column(Integer, default=0, server_default="0")


class Photo(Base):
    """A scanned photo, known by the sha256 of its bytes (a rescan skips it)."""

    __tablename__ = "album_photos"
    __table_args__ = (UniqueConstraint("album_id", "sha256", name="uq_album_photos_hash"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    album_id: Mapped[int] = mapped_column(ForeignKey("album_albums.id", ondelete="CASCADE"), index=True)
    sha256: Mapped[str] = mapped_column(String(64))
    source: Mapped[str] = mapped_column(String(2000))
    taken_at: Mapped[datetime | None] = mapped_column(DateTime, nullable=True, index=True)
    added_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)


class Person(Base):
    """A person of the album; its faces are the gallery subject ``p<id>``."""

    __tablename__ = "album_people"
    __table_args__ = {"sqlite_autoincrement": True}  # an id is never given twice (migration 0003)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    album_id: Mapped[int] = mapped_column(ForeignKey("album_albums.id", ondelete="CASCADE"), index=True)
    name: Mapped[str | None] = mapped_column(String(400), nullable=True)


class FaceRow(Base):
    """A face of a photo; ``id`` is its gallery face id. ``person_id`` None: in the unsorted
    pool (``unsorted`` True: the quality gate put it there). ``lock``: must-link group."""

    __tablename__ = "album_faces"

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    album_id: Mapped[int] = mapped_column(ForeignKey("album_albums.id", ondelete="CASCADE"), index=True)
    photo_id: Mapped[int] = mapped_column(ForeignKey("album_photos.id", ondelete="CASCADE"), index=True)
    person_id: Mapped[int | None] = mapped_column(ForeignKey("album_people.id", ondelete="SET NULL"),
                                                  nullable=True, index=True)
    bbox: Mapped[list[float]] = mapped_column(JSON)
    quality: Mapped[float] = mapped_column(Float)
    yaw: Mapped[float] = mapped_column(Float)
    unsorted: Mapped[bool] = mapped_column(default=False)
    lock: Mapped[int | None] = mapped_column(Integer, nullable=True)


class CannotLink(Base):
    """Two faces the user said are not one person (kept forever)."""

    __tablename__ = "album_cannot_links"
    __table_args__ = (UniqueConstraint("face_a", "face_b", name="uq_album_cannot_pair"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    album_id: Mapped[int] = mapped_column(ForeignKey("album_albums.id", ondelete="CASCADE"), index=True)
    face_a: Mapped[int] = mapped_column(ForeignKey("album_faces.id", ondelete="CASCADE"), index=True)
    face_b: Mapped[int] = mapped_column(ForeignKey("album_faces.id", ondelete="CASCADE"), index=True)


class Absorbed(Base):
    """A person id gone into person ``person_id`` (a merge, a scan joining two people, a correction
    or re-cluster that left it without faces, its faces theirs now). What named the old id (a
    stored answer of a rename of it, an audit record) named the faces ``person_id`` holds: erasing
    ``person_id`` erases those too, and these rows (a person absorbed into several people has a row
    for each). Only ids: names are never kept here."""

    __tablename__ = "album_absorbed"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    album_id: Mapped[int] = mapped_column(ForeignKey("album_albums.id", ondelete="CASCADE"), index=True)
    person_id: Mapped[int] = mapped_column(Integer, index=True)
    absorbed: Mapped[int] = mapped_column(Integer)


def migrate(engine: Engine) -> None:
    """Bring the album tables to the latest Alembic revision."""
    upgrade(engine, Path(__file__).parent / "migrations")


def row_dict(row: Any) -> dict[str, Any]:
    return {c.key: getattr(row, c.key) for c in row.__table__.columns}
