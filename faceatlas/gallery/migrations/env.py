"""Alembic environment of the gallery tables; run by ``faceatlas.gallery.db.migrate``."""

from faceatlas.gallery.db import run_migrations_env
from faceatlas.gallery.models import Base

run_migrations_env(Base.metadata)
