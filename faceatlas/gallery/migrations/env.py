"""Alembic environment of the gallery tables; run by ``faceatlas.gallery.models.migrate``."""

from faceatlas.db import run_migrations_env
from faceatlas.gallery.models import Base

run_migrations_env(Base.metadata)
